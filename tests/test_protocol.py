"""The pwcf evaluation protocol (issue 12 part 2): queries = a seeded label-free 10 % of the target, database =
the whole source, the query items left out of training; precision@k and radius-2 precision in the scores."""

from __future__ import annotations

import numpy as np
import pytest

from dahash.eval.split import target_query_database_split
from dahash.eval.evaluation import pwcf_training_rows, score
from dahash.eval.metrics import binarize, mean_average_precision, retrieval_scores

KW = {"max_per_class": None, "query_fraction": 0.1, "split_seed": 0}


def _codes(seed: int = 0, n_s: int = 60, n_t: int = 50, d: int = 8) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = {"u_source": rng.standard_normal((n_s, d)).astype(np.float32),
             "u_target": rng.standard_normal((n_t, d)).astype(np.float32)}
    return codes, rng.integers(0, 3, n_s), rng.integers(0, 3, n_t)


def test_pwcf_queries_are_the_seeded_target_part_against_the_whole_source() -> None:
    codes, ys, yt = _codes()
    qi, _ = target_query_database_split(len(yt), query_fraction=0.1, seed=0)
    assert len(qi) == 5
    out = score(codes, ys, yt, num_classes=3, retrieval="source_database", protocol="pwcf", **KW)
    bt, bs = binarize(codes["u_target"]), binarize(codes["u_source"])
    want = retrieval_scores(bt[qi], bs, yt[qi], ys)
    assert out["map"] == want.map.map and (out["n_queries"], out["n_database"]) == (5, 60)
    assert out["precision_at_k"] == want.precision_at_k and out["precision_radius2"] == want.precision_radius
    # the test has power: the DAH protocol (all 50 target queries) gives another mAP on these codes
    dah = score(codes, ys, yt, num_classes=3, retrieval="source_database", protocol="dah", **KW)
    assert dah["n_queries"] == 50 and dah["map"] == mean_average_precision(bt, bs, yt, ys).map
    assert dah["map"] != pytest.approx(out["map"])
    # another split seed draws other queries
    other = score(codes, ys, yt, num_classes=3, retrieval="source_database", protocol="pwcf",
                  **{**KW, "split_seed": 1})
    assert other["map"] != pytest.approx(out["map"])
    # accuracy stays over all target items under both protocols
    assert out["accuracy"] == dah["accuracy"]


def test_pwcf_split_ignores_labels() -> None:
    codes, ys, yt = _codes(1)
    a = score(codes, ys, yt, num_classes=3, retrieval="source_database", protocol="pwcf", **KW)
    b = score(codes, ys, np.roll(yt, 7), num_classes=3, retrieval="source_database", protocol="pwcf", **KW)
    assert a["n_queries"] == b["n_queries"] == 5  # same size; the items are fixed by (n, fraction, seed) only
    qi, _ = target_query_database_split(50, query_fraction=0.1, seed=0)
    bt, bs = binarize(codes["u_target"]), binarize(codes["u_source"])
    assert b["map"] == mean_average_precision(bt[qi], bs, np.roll(yt, 7)[qi], ys).map


def test_target_split_methods_unchanged_by_protocol() -> None:
    codes, ys, yt = _codes(2)
    t = {"u_target": codes["u_target"]}
    a = score(t, ys, yt, num_classes=3, retrieval="target_split", protocol="dah", **KW)
    b = score(t, ys, yt, num_classes=3, retrieval="target_split", protocol="pwcf", **KW)
    assert a["map"] == b["map"] and a["precision_at_k"] == b["precision_at_k"]


def test_training_rows_exclude_exactly_the_queries() -> None:
    assert np.array_equal(pwcf_training_rows(50, protocol="dah", query_fraction=0.1, split_seed=0), np.arange(50))
    rows = pwcf_training_rows(50, protocol="pwcf", query_fraction=0.1, split_seed=3)
    qi, di = target_query_database_split(50, query_fraction=0.1, seed=3)
    assert np.array_equal(rows, di) and not set(rows) & set(qi) and len(rows) == 45


@pytest.mark.parametrize("bad", ["pwfc", "", None])
def test_unknown_protocol_refused(bad) -> None:
    codes, ys, yt = _codes()
    with pytest.raises(ValueError, match="protocol"):
        score(codes, ys, yt, num_classes=3, retrieval="source_database", protocol=bad, **KW)
    with pytest.raises(ValueError, match="protocol"):
        pwcf_training_rows(10, protocol=bad, query_fraction=0.1, split_seed=0)


# ----------------------------------------------------------------------------- params and presets
def test_pwcf_presets_and_refusals(tmp_path) -> None:
    from stages.common import PARAMS_FILE, StageError, load_params
    from stages.preset import apply_preset

    target = tmp_path / "params.yaml"
    target.write_text(PARAMS_FILE.read_text())
    assert load_params(target)["eval"]["protocol"] == "dah"  # the DAH paper's protocol stays the default
    apply_preset("quickstart-pwcf", ["data.mirror=some/folder"], target)
    p = load_params(target)
    assert p["eval"]["protocol"] == "pwcf" and len(p["tasks"]) == 12 and not p["baselines"]["methods"]
    assert {m: o["hash_bits"] for m, o in p["methods"].items()} == {"dah_16": 16, "dah_32": 32, "dah_64": 64,
                                                                   "dah_128": 128}
    apply_preset("quickstart", [], target)  # back to the DAH protocol: quickstart sets it explicitly
    assert load_params(target)["eval"]["protocol"] == "dah"
    # the comparison methods would train on the pwcf queries: refused, with the way out named
    before = target.read_text()
    with pytest.raises(StageError, match="quickstart-pwcf"):
        apply_preset("quickstart", ["eval.protocol=pwcf"], target)
    assert target.read_text() == before  # nothing half-written
    with pytest.raises(StageError, match="train.gamma = auto"):
        apply_preset("quickstart-pwcf", ["train.gamma=auto"], target)
    for name, n_tasks in (("pwcf-office-home", 6), ("pwcf-office31", 6)):
        apply_preset(name, [], target)
        p = load_params(target)
        assert p["eval"]["protocol"] == "pwcf" and len(p["tasks"]) == n_tasks
    with pytest.raises(StageError, match="eval.protocol"):
        apply_preset("quickstart-pwcf", ["eval.protocol=pwfc"], target)
