"""dahash.eval.evaluation.score: which accuracy is reported, which items are queries/database, hand-computed
mAP and PR values, and the empty results for methods without codes."""

from __future__ import annotations

import numpy as np
import pytest

from dahash.eval.split import target_query_database_split
from dahash.eval.evaluation import score
from dahash.eval.metrics import binarize, mean_average_precision

KW = {"max_per_class": None, "query_fraction": 0.1, "split_seed": 0}


def f32(rows) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


# ----------------------------------------------------------------------------- accuracy
def test_pred_target_accuracy_wins_over_eq6() -> None:
    yt = np.array([0, 1, 1, 1])
    pred = np.array([0, 1, 2, 1])  # 3 of 4 right
    out = score({"pred_target": pred}, np.array([0, 1]), yt, num_classes=3, retrieval=None, **KW)
    assert out["accuracy"] == pytest.approx(0.75)
    assert out["map"] is None and out["bits"] is None and out["n_queries"] is None
    # with codes present too, the method's own classifier is what is scored: eq. 6 would put every target
    # item (-1,-1) in class 0 (e^2 for source item 1 vs e^-2 for source item 0) and score 4/4 here
    codes = {"pred_target": pred, "u_source": f32([[1, 1], [-1, -1]]), "u_target": f32([[-1, -1]] * 4)}
    ys = np.array([1, 0])
    out = score(codes, ys, np.array([0, 0, 0, 0]), num_classes=3, retrieval=None, **KW)
    assert out["accuracy"] == pytest.approx(0.25)  # pred == yt only at index 0


def test_eq6_accuracy_from_source_and_target_codes() -> None:
    # class 0: a far item (-1,-1) first, then a close one (1,1); class 1: one item (0.9, 0.9)
    u_s = f32([[-1, -1], [1, 1], [0.9, 0.9]])
    ys = np.array([0, 0, 1])
    u_t = f32([[1, 1], [-1, -1]])
    yt = np.array([0, 1])
    # all items (max_per_class None), target item 0: class 0 = e^-2 + e^2 = 7.52 > class 1 = e^1.8 = 6.05 -> 0
    #   target item 1: class 0 = e^2 + e^-2 = 7.52 > class 1 = e^-1.8 -> 0 (wrong)           -> accuracy 1/2
    out = score({"u_source": u_s, "u_target": u_t}, ys, yt, num_classes=2, retrieval=None, **KW)
    assert out["accuracy"] == pytest.approx(0.5)
    # max_per_class = 1 keeps only the far class-0 item: item 0 -> e^-2 < e^1.8 -> class 1 (wrong);
    #   item 1 -> class 0 = e^2 > e^-1.8 -> class 0 (wrong)                                  -> accuracy 0
    out = score({"u_source": u_s, "u_target": u_t}, ys, yt, num_classes=2, retrieval=None,
                **{**KW, "max_per_class": 1})
    assert out["accuracy"] == pytest.approx(0.0)
    # no source codes and no classifier: no accuracy
    out = score({"u_target": u_t}, ys, yt, num_classes=2, retrieval="target_split", **KW)
    assert out["accuracy"] is None and out["map"] is not None


# ----------------------------------------------------------------------------- source_database
def test_source_database_map_and_pr_by_hand() -> None:
    # database (source) codes, bit = 1 iff u > 0 (an exact 0.0 is bit 0):
    #   db0 = 111 (label 0), db1 = 110 (1), db2 = 000 (0), db3 = 100 (1)
    u_s = f32([[0.5, 0.2, 0.9], [0.1, 0.3, -0.4], [0.0, -0.5, -0.1], [0.7, -0.2, 0.0]])
    ys = np.array([0, 1, 0, 1])
    # queries (target codes):
    #   q0 = 111, label 0: distances 0,1,3,2 -> ranking db0 db1 db3 db2, relevant [1,0,0,1]
    #       AP = (1/1 + 2/4) / 2 = 0.75
    #   q1 = 101, label 1: distances 1,2,2,1 -> ties keep database order: db0 db3 db1 db2, relevant [0,1,1,0]
    #       AP = (1/2 + 2/3) / 2 = 7/12
    #   q2 = 000, label 2: no relevant item in the database -> excluded from the mean, counted as empty
    #   mAP = (0.75 + 7/12) / 2 = 2/3
    u_t = f32([[0.3, 0.3, 0.3], [0.2, -0.9, 0.4], [-0.1, 0.0, -1.0]])
    yt = np.array([0, 1, 2])
    out = score({"u_source": u_s, "u_target": u_t}, ys, yt, num_classes=3, retrieval="source_database", **KW)
    assert out["map"] == pytest.approx(2 / 3)
    assert (out["bits"], out["n_queries"], out["n_database"], out["n_scored"], out["n_empty"]) == (3, 3, 4, 2, 1)
    pr = out["pr"]
    assert list(pr["radius"]) == [0, 1, 2, 3]
    # radius 0: q0 retrieves db0 (relevant), q1 nothing, q2 db2 (not relevant)
    #   precision = mean over q0, q2 = (1 + 0) / 2; recall = mean over q0, q1 = (1/2 + 0) / 2
    assert pr.loc[0, "precision"] == pytest.approx(0.5) and pr.loc[0, "recall"] == pytest.approx(0.25)
    # radius 3: everything; precision = (2/4 + 2/4 + 0) / 3, recall = 1
    assert pr.loc[3, "precision"] == pytest.approx(1 / 3) and pr.loc[3, "recall"] == pytest.approx(1.0)
    # the query/database roles are not swapped: source as queries would give another value
    swapped = mean_average_precision(binarize(u_s), binarize(u_t), ys, yt).map
    assert swapped != pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- target_split
def test_target_split_uses_exactly_the_seeded_split() -> None:
    n, frac, seed = 40, 0.3, 3
    rng = np.random.default_rng(0)
    u_t = rng.standard_normal((n, 4)).astype(np.float32)
    yt = rng.integers(0, 3, n)
    qi, di = target_query_database_split(n, query_fraction=frac, seed=seed)
    assert len(qi) == 12

    def map_of(q, d):
        bt = binarize(u_t)
        return mean_average_precision(bt[q], bt[d], yt[q], yt[d]).map

    expected = map_of(qi, di)
    # the test has power: any other choice of queries/database gives a different mAP here
    others = [target_query_database_split(n, query_fraction=frac, seed=s) for s in (0, 1, 2, 4)]
    others += [(np.arange(12), np.arange(12, n)), (di[:12], np.sort(np.r_[qi, di[12:]])), (di, qi)]
    for q, d in others:
        assert map_of(q, d) != pytest.approx(expected)

    out = score({"u_target": u_t}, np.zeros(0, dtype=np.int64), yt, num_classes=3, retrieval="target_split",
                max_per_class=None, query_fraction=frac, split_seed=seed)
    assert out["map"] == pytest.approx(expected)
    assert (out["n_queries"], out["n_database"], out["bits"]) == (12, 28, 4)
    assert out["n_scored"] + out["n_empty"] == 12
    assert out["accuracy"] is None
    # split_seed is honoured: another seed scores that seed's split
    other_seed = score({"u_target": u_t}, np.zeros(0, dtype=np.int64), yt, num_classes=3, retrieval="target_split",
                       max_per_class=None, query_fraction=frac, split_seed=seed + 1)
    assert other_seed["map"] == pytest.approx(map_of(*target_query_database_split(n, query_fraction=frac,
                                                                                   seed=seed + 1)))


def test_target_split_ignores_source_codes_for_retrieval() -> None:
    rng = np.random.default_rng(1)
    u_t = rng.standard_normal((20, 6)).astype(np.float32)
    yt = rng.integers(0, 2, 20)
    a = score({"u_target": u_t}, np.array([0]), yt, num_classes=2, retrieval="target_split", **KW)
    u_s = rng.standard_normal((5, 6)).astype(np.float32)
    b = score({"u_target": u_t, "u_source": u_s}, np.array([0, 1, 0, 1, 0]), yt, num_classes=2,
              retrieval="target_split", **KW)
    assert a["map"] == b["map"] and a["n_database"] == b["n_database"] == 18  # round(0.1 * 20) = 2 queries
    assert b["accuracy"] is not None  # eq. 6 still gives an accuracy when source codes exist


# ----------------------------------------------------------------------------- no codes / bad protocol
@pytest.mark.parametrize("retrieval", [None, "target_split", "source_database"])
def test_no_target_codes_means_no_map_and_an_empty_pr_frame(retrieval) -> None:
    out = score({"pred_target": np.array([0, 1])}, np.array([0, 1]), np.array([0, 0]), num_classes=2,
                retrieval=retrieval, **KW)
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["map"] is None and out["bits"] is None
    assert out["n_queries"] is None and out["n_database"] is None and out["n_scored"] is None
    assert list(out["pr"].columns) == ["radius", "precision", "recall"] and len(out["pr"]) == 0


def test_codes_without_a_retrieval_protocol_are_not_scored() -> None:
    out = score({"u_target": f32([[1, -1], [-1, 1]])}, np.array([0]), np.array([0, 1]), num_classes=2,
                retrieval=None, **KW)
    assert out["map"] is None and len(out["pr"]) == 0


def test_unknown_retrieval_protocol_raises() -> None:
    with pytest.raises(ValueError, match="unknown retrieval protocol 'target_database'"):
        score({"u_target": f32([[1, -1], [-1, 1]])}, np.array([0]), np.array([0, 1]), num_classes=2,
              retrieval="target_database", **KW)
    with pytest.raises(ValueError, match="unknown retrieval protocol 'typo'"):  # even with nothing to rank
        score({"pred_target": np.array([0, 1])}, np.array([0]), np.array([0, 1]), num_classes=2,
              retrieval="typo", **KW)
