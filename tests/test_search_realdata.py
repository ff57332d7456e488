"""Issue 12 "Done when": encode the Office-Caltech-10 DSLR images with a quickstart-like model and search them.

The model: the quickstart's head mode on EfficientNet-Lite0 features (64 bits), trained here briefly on the
DSLR features (source labels; the same images as the unlabelled target) and written by the train stage's own
writer (stages.train.write_outputs), so the run folder has the pipeline's layout. About a minute on 1 core.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dahash.codes.index import Index, unpack_codes
from dahash.eval.evaluation import score
from dahash.eval.metrics import binarize, hamming_distance, precision_recall_curve, retrieval_scores
from tests.toy_run import dahash_cli

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata


def _dahash(*args: str) -> subprocess.CompletedProcess:
    return dahash_cli(*args, timeout=600)


def test_encode_dslr_and_search(shared_data: Path, tmp_path: Path) -> None:
    from dahash.nn.backbones import build_backbone
    from dahash.nn.extract import extract_features
    from dahash.train.head import DAHConfig, encode, train_dah
    from stages.train import write_outputs

    images = shared_data / "office-caltech-10" / "images" / "dslr"
    if not images.is_dir():
        pytest.skip(f"{images} is absent")
    paths = sorted(p for p in images.rglob("*.jpg"))
    classes = sorted({p.parent.name for p in paths})
    ys = np.array([classes.index(p.parent.name) for p in paths])
    torch.set_num_threads(1)
    feats = torch.from_numpy(extract_features(paths, build_backbone("efficientnet_lite0"), progress=False))
    config = DAHConfig(hash_bits=64, hidden_dims=(256, 256), epochs=15, gamma=5e3)
    result = train_dah(feats, torch.from_numpy(ys), feats, len(classes), config, seed=0)
    u = encode(result.model, feats)
    run = tmp_path / "models" / "office_caltech10" / "efficientnet_lite0" / "dah" / "D_D" / "seed0"
    write_outputs(run, result.model.state_dict(), result.history, config, u, u, {"mode": "head"})

    out = tmp_path / "dslr.parquet"
    _dahash("encode", str(run), str(images), "-o", str(out), "-q")
    index = Index.from_parquet(out)
    assert index.paths == [str(p.relative_to(images)) for p in paths] and index.meta["skipped"] == []
    assert index.labels == [p.parent.name for p in paths]
    # the CLI's codes are the train stage's codes (codes.npz, bit = 1[u > 0]) up to bits with |u| ~ 0
    u_stage = np.load(run / "codes.npz")["u_source"]
    bits = unpack_codes(index.codes, 64)
    differ = bits != binarize(u_stage)
    assert not differ.any() or np.abs(u_stage[differ]).max() < 1e-4

    # batch search (the index as query): precision@10 = an independent computation on the same codes
    csv = tmp_path / "top10.csv"
    _dahash("search", str(out), str(out), "-k", "10", "--format", "csv", "-o", str(csv))
    df = pd.read_csv(csv)
    assert len(df) == 10 * len(paths)
    dist = hamming_distance(bits, bits)
    top = np.argsort(dist, axis=1, kind="stable")[:, :10]
    labels = np.array(index.labels)
    want_p10 = float(np.mean(labels[top] == labels[:, None]))
    assert float((df["query_label"] == df["label"]).mean()) == pytest.approx(want_p10, abs=1e-12)
    assert df["path"].tolist() == [index.paths[j] for j in top.ravel()]
    # every image finds itself at distance 0, first unless an earlier image has the very same code
    first = df[df["rank"] == 1]
    assert (first["distance"] == 0).all()
    own = np.diag(dist) == 0
    unique = (dist == 0).sum(axis=1) == 1
    assert own.all() and (first["path"].to_numpy()[unique] == np.array(index.paths)[unique]).all()

    # ... and = the evaluation's precision@k (dahash.eval.metrics.retrieval_scores: the evaluate stage's ranking and tie
    # rule) on the same codes, DSLR as queries and database; at k = 100 through dahash.eval.evaluation.score itself, the
    # function the evaluate stage calls, with these codes as its source and target outputs (bit = 1[u > 0])
    assert retrieval_scores(bits, bits, labels, labels, ks=(10,)).precision_at_k[10] == pytest.approx(want_p10,
                                                                                                     abs=1e-12)
    df100 = pd.read_csv(io.StringIO(_dahash("search", str(out), str(out), "-k", "100", "--format", "csv").stdout))
    u_same = bits.astype(np.float32) * 2 - 1
    stage = score({"u_source": u_same, "u_target": u_same}, ys, ys, num_classes=len(classes),
                  retrieval="source_database", max_per_class=200, query_fraction=0.1, split_seed=0, protocol="dah")
    assert stage["precision_at_k"][100] == pytest.approx(float((df100["query_label"] == df100["label"]).mean()),
                                                         abs=1e-12)

    # radius 2: the precision the evaluation's PR curve gives (dahash.eval.metrics, as the evaluate stage)
    rows = json.loads(_dahash("search", str(out), str(out), "--radius", "2", "--format", "json").stdout)
    per_query = pd.DataFrame(rows).assign(hit=lambda d: d["query_label"] == d["label"]).groupby("query")["hit"]
    assert per_query.mean().mean() == pytest.approx(precision_recall_curve(bits, bits, labels, labels).precision[2],
                                                    rel=1e-12)

    # one image as the query, encoded with the model the index records
    q = int(np.flatnonzero(unique)[0])
    top_img = json.loads(_dahash("search", str(out), str(paths[q]), "-k", "10", "--format", "json").stdout)
    assert top_img[0]["path"] == index.paths[q] and top_img[0]["distance"] == 0
    print(f"dslr: {len(paths)} images, precision@10 = {want_p10:.4f}, "
          f"{int(unique.sum())} images with a code of their own")
