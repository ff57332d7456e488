"""Stage `analysis`: the paper's Figure 3 for each task in ``analysis.tasks``: A-distance and t-SNE of three feature kinds.

Feature kinds (source and target items of the task):
* ``backbone``: the extracted features the heads are trained on (the paper's "Deep (VGG-F)");
* ``dan``: fc7 of the DAN baseline (baselines.methods.dan, seed baselines.seed);
* ``dah``: fc7 of the DAH model (methods.dah, first of train.seeds), recomputed from its model.pt.
A-distance: 2 (1 - 2 err), err of a linear SVM telling source from target, 5-fold cross-validation
(dahash.analysis.a_distance). t-SNE: up to ``analysis.max_points`` items per domain (seeded sample), the
first 10 classes, coloured by class (labels are read here only to colour the plot: this runs after training).
Writes analysis/<dataset>/<KEY>/ (analysis.json, tsne_<kind>.png) for every task (the folder exists, empty,
when analysis.tasks is []) and plots/a_distance/<dataset>.csv (task, features, a_distance; a DVC bar plot).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from stages.common import (ROOT, StageError, atomic_path, load_params, main_wrapper, run_dir, task_of,
                           write_json)
from stages.features import domain_rows, load_features, penultimate_features

KINDS = ("backbone", "dan", "dah")


def dah_fc7(model_dir, xs: np.ndarray, xt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fc7 (after ReLU) of a head-mode DAH model for source and target features, ``(n, h2)`` each."""
    import torch  # torch and scikit-learn are imported where used: `--help` stays fast

    from dahash.model import DAHHead

    saved = torch.load(model_dir / "model.pt", map_location="cpu", weights_only=False)
    state, cfg = saved["state_dict"], saved["config"]
    if "fc6.weight" not in state:
        raise StageError(f"{model_dir}/model.pt: not a head-mode DAH model (train.mode: finetune); "
                         "the analysis needs train.mode: head")
    head = DAHHead(state["fc6.weight"].shape[1], tuple(cfg["hidden_dims"]), hash_bits=int(cfg["hash_bits"]))
    head.load_state_dict(state)
    head.eval()
    with torch.no_grad():
        return tuple(head(torch.from_numpy(x).float()).fc7.numpy() for x in (xs, xt))  # type: ignore[return-value]


def sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a uniform sample of ``min(n, k)`` of ``range(n)``."""
    return np.sort(rng.choice(n, size=min(n, k), replace=False))


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    dataset = params["data"]["dataset"]
    rows = []
    with atomic_path(ROOT / "analysis" / dataset) as tmp:
        tmp.mkdir()
        for key in params["analysis"]["tasks"]:
            record = analyse_task(params, key, tmp / key)
            rows += [{"task": key, "features": k, "a_distance": record["a_distance"][k]} for k in KINDS]
    with atomic_path(ROOT / "plots" / "a_distance" / f"{dataset}.csv") as tmp:
        pd.DataFrame(rows, columns=["task", "features", "a_distance"]).to_csv(tmp, index=False)


def analyse_task(params: dict, key: str, out) -> dict:
    """A-distance and t-SNE PNGs of the three feature kinds for task ``key``, into folder ``out``."""
    from dahash.analysis import a_distance, plot_tsne, tsne_embedding

    task = task_of(params, key)
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    xs, _ = load_features(dataset, backbone, task["source"])
    xt, _ = load_features(dataset, backbone, task["target"])
    feats = {"backbone": penultimate_features(backbone, xs, xt)}
    dan_dir = run_dir("models", params, "dan", key, params["baselines"]["seed"])
    try:
        codes = np.load(dan_dir / "codes.npz")
        feats["dan"] = (codes["f_source"], codes["f_target"])
    except (FileNotFoundError, KeyError) as exc:
        raise StageError(f"{dan_dir}: no DAN features; run baseline@dan-{key}") from exc
    feats["dah"] = dah_fc7(run_dir("models", params, "dah", key, params["train"]["seeds"][0]), xs, xt)

    ys = domain_rows(dataset, task["source"])["label"].to_numpy()
    yt = domain_rows(dataset, task["target"])["label"].to_numpy()
    rng = np.random.default_rng(0)
    k = params["analysis"]["max_points"]
    si, ti = sample(len(ys), k, rng), sample(len(yt), k, rng)
    keep = np.concatenate([np.isin(ys[si], np.arange(10)), np.isin(yt[ti], np.arange(10))])
    domain = np.array(["source"] * len(si) + ["target"] * len(ti))[keep]
    labels = np.concatenate([ys[si], yt[ti]])[keep]
    record = {"task": key, "source": task["source"], "target": task["target"], "dataset": dataset,
              "backbone": backbone, "a_distance": {}, "tsne": {}, "n_points": {"source": len(si), "target": len(ti)}}
    out.mkdir()
    for kind in KINDS:
        fs, ft = feats[kind]
        record["a_distance"][kind] = a_distance(fs, ft, seed=0)
        both = np.concatenate([fs[si], ft[ti]])[keep]
        emb = tsne_embedding(both, seed=0, perplexity=min(30.0, (len(both) - 1) / 3))
        name = f"tsne_{kind}.png"
        plot_tsne(emb, domain, labels, out / name, title=f"{kind}: {task['source']} -> {task['target']}")
        record["tsne"][kind] = name
        print(f"[analysis {key}] {kind}: A-distance {record['a_distance'][kind]:.3f}", flush=True)
    write_json(out / "analysis.json", record)
    return record


if __name__ == "__main__":
    main()
