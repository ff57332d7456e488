"""Tests for dahash.eval.metrics on hand-made cases (expected numbers computed by hand in comments)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from dahash.eval import metrics
from dahash.eval.metrics import (
    MAPResult,
    accuracy,
    binarize,
    hamming_distance,
    mean_average_precision,
    precision_recall_curve,
    predict_eq6,
)

# --------------------------------------------------------------------------------------------
# Shared hand-made retrieval case, d = 3 bits.
#   db0 = 000 label 0     db1 = 001 label 1     db2 = 000 label 1
#   db3 = 011 label 0     db4 = 111 label 2
#   q0  = 000 label 1     q1  = 111 label 2     q2  = 010 label 7 (no relevant db item)
# Hamming distances (rows q0..q2, columns db0..db4):
#   q0: 0 1 0 2 3
#   q1: 3 2 3 1 0
#   q2: 1 2 1 1 2
# --------------------------------------------------------------------------------------------
DB = np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 1], [1, 1, 1]], dtype=np.uint8)
DB_LAB = np.array([0, 1, 1, 0, 2])
Q = np.array([[0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=np.uint8)
Q_LAB = np.array([1, 2, 7])
DIST = np.array([[0, 1, 0, 2, 3], [3, 2, 3, 1, 0], [1, 2, 1, 1, 2]])


def _brute_hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0], b.shape[0]), dtype=int)
    for i in range(a.shape[0]):
        for k in range(b.shape[0]):
            out[i, k] = sum(int(a[i, j] != b[k, j]) for j in range(a.shape[1]))
    return out


def _brute_ap(dist_row: np.ndarray, rel_row: np.ndarray) -> float:
    """Stable-sort AP written as a plain loop (independent of the vectorised code)."""
    order = sorted(range(len(dist_row)), key=lambda k: (dist_row[k], k))
    hits, total = 0, 0.0
    for r, k in enumerate(order, start=1):
        if rel_row[k]:
            hits += 1
            total += hits / r
    return total / hits if hits else float("nan")


# ----------------------------------------------------------------------------- binarize
def test_binarize_exact_zero_is_bit_zero() -> None:
    u = np.array([[0.0, 0.5, -0.2], [-0.0, 1e-9, -1e-9]])
    b = binarize(u)
    assert b.dtype == np.uint8
    np.testing.assert_array_equal(b, [[0, 1, 0], [0, 1, 0]])


def test_binarize_accepts_torch_and_rejects_1d() -> None:
    np.testing.assert_array_equal(binarize(torch.tensor([[0.3, -0.3]])), [[1, 0]])
    with pytest.raises(ValueError, match="u"):
        binarize(np.array([0.1, -0.1]))


# ----------------------------------------------------------------------------- hamming
def test_hamming_hand_case() -> None:
    np.testing.assert_array_equal(hamming_distance(Q, DB), DIST)


def test_hamming_matches_brute_force_128_bits() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, size=(7, 128))
    b = rng.integers(0, 2, size=(11, 128)).astype(bool)
    got = hamming_distance(a, b)
    assert got.shape == (7, 11)
    assert np.issubdtype(got.dtype, np.integer)
    np.testing.assert_array_equal(got, _brute_hamming(a, b.astype(int)))


def test_hamming_chunked_equals_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2, size=(23, 16))
    b = rng.integers(0, 2, size=(9, 16))
    full = hamming_distance(a, b)
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 10)  # 1 query row per chunk
    np.testing.assert_array_equal(hamming_distance(a, b), full)


def test_hamming_bad_inputs() -> None:
    with pytest.raises(ValueError, match="db_bits"):
        hamming_distance(Q, DB[:, :2])
    with pytest.raises(ValueError, match="q_bits"):
        hamming_distance(np.array([[0.3, -0.2]]), DB[:, :2])  # not bits
    with pytest.raises(ValueError, match="q_bits"):
        hamming_distance(np.array([0, 1, 0]), DB)


# ----------------------------------------------------------------------------- predict_eq6
# 2 bits; one target u_t = (1, 1). Source in this order:
#   k0 = (1, 1)     class 0 -> u_t.u_s = 2
#   k1 = (0, 1)     class 1 -> 1
#   k2 = (1, 0)     class 1 -> 1
#   k3 = (0.5, 0.5) class 1 -> 1
# no cap:           class 0: e^2 = 7.389;  class 1: 3e = 8.155  -> predict 1
# max_per_class=2:  class 1: 2e = 5.437 < 7.389                 -> predict 0
U_S = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
Y_S = np.array([0, 1, 1, 1])


def test_predict_eq6_cap_changes_answer() -> None:
    u_t = np.array([[1.0, 1.0]])
    assert predict_eq6(u_t, U_S, Y_S, 2, max_per_class=None).tolist() == [1]
    assert predict_eq6(u_t, U_S, Y_S, 2, max_per_class=3).tolist() == [1]
    assert predict_eq6(u_t, U_S, Y_S, 2, max_per_class=2).tolist() == [0]
    assert predict_eq6(u_t, U_S, Y_S, 2).tolist() == [1]  # default cap 200 > 3


def test_predict_eq6_takes_first_items_in_order() -> None:
    # u_t = (1, 1); class 1 items: (-1,-1) dot -2, then (1,1) dot 2; class 0 item (0.5,0) dot 0.5.
    # cap 1 keeps only the FIRST class-1 item: class 1 e^-2 = 0.135 < class 0 e^0.5 = 1.65 -> 0.
    # Reversed order keeps (1,1): e^2 = 7.39 > 1.65 -> 1.
    u_t = np.array([[1.0, 1.0]])
    u_s = np.array([[-1.0, -1.0], [0.5, 0.0], [1.0, 1.0]])
    y_s = np.array([1, 0, 1])
    assert predict_eq6(u_t, u_s, y_s, 2, max_per_class=1).tolist() == [0]
    rev = [2, 1, 0]
    assert predict_eq6(u_t, u_s[rev], y_s[rev], 2, max_per_class=1).tolist() == [1]


def test_predict_eq6_ties_empty_class_and_brute_force() -> None:
    # u_t = (0, 0): every dot is 0 -> class 0 score 1, class 1 score 3 (no cap) -> 1;
    # cap 1 -> both score e^0 = 1, tie -> lowest index 0. Class 2 has no item -> -inf, never chosen.
    # u_t = (-1, -1): class 0 e^-2 = 0.135; class 1 3e^-1 = 1.10 (cap 1: first item k1 = (0, 1),
    # e^-1 = 0.368) -> 1 either way.
    u_t = torch.tensor([[0.0, 0.0], [-1.0, -1.0]])
    assert predict_eq6(u_t, U_S, Y_S, 3, max_per_class=None).tolist() == [1, 1]
    assert predict_eq6(u_t, U_S, Y_S, 3, max_per_class=1).tolist() == [0, 1]
    # random case against the naive sum of exponentials
    rng = np.random.default_rng(2)
    ut = rng.normal(size=(30, 8))
    us = rng.normal(size=(40, 8))
    ys = rng.integers(0, 4, size=40)
    naive = np.stack([np.exp(ut @ us[ys == j].T).sum(axis=1) for j in range(4)], axis=1)
    np.testing.assert_array_equal(predict_eq6(ut, us, ys, 4, None), naive.argmax(axis=1))
    # dots 800 (class 1) and 780 (class 0): exp() overflows to inf for both (a naive argmax
    # would tie and say 0); log-space keeps 800 > 780 -> 1
    big = predict_eq6(
        np.array([[20.0, 20.0]]), np.array([[20.0, 20.0], [19.0, 20.0]]), np.array([1, 0]), 2, None
    )
    assert big.tolist() == [1]


def test_predict_eq6_bad_inputs() -> None:
    with pytest.raises(ValueError, match="y_s"):
        predict_eq6(np.zeros((1, 2)), U_S, Y_S[:3], 2)
    with pytest.raises(ValueError, match="y_s"):
        predict_eq6(np.zeros((1, 2)), U_S, np.array([0, 1, 2, 1]), 2)  # label 2 >= C
    with pytest.raises(ValueError, match="u_s"):
        predict_eq6(np.zeros((1, 3)), U_S, Y_S, 2)
    with pytest.raises(ValueError, match="max_per_class"):
        predict_eq6(np.zeros((1, 2)), U_S, Y_S, 2, max_per_class=0)


# ----------------------------------------------------------------------------- accuracy
def test_accuracy() -> None:
    # 3 of 4 correct -> 0.75
    assert accuracy(np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1])) == 0.75
    assert accuracy(torch.tensor([2, 2]), np.array([2, 2])) == 1.0
    with pytest.raises(ValueError, match="true"):
        accuracy(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="pred"):
        accuracy(np.array([]), np.array([]))


# ----------------------------------------------------------------------------- mAP
def test_map_hand_case_ties_empty_query() -> None:
    # q0 (label 1): stable ranking db0(0) db2(0) db1(1) db3(2) db4(3); relevant = db2, db1
    #   -> rel = [0,1,1,0,0], R = 2, AP = (1/2 + 2/3) / 2 = 7/12
    #   (db0 and db2 tie at distance 0; database order puts the irrelevant db0 first)
    # q1 (label 2): ranking db4(0) db3(1) db1(2) db0(3) db2(3); rel = [1,0,0,0,0] -> AP = 1
    # q2 (label 7): R = 0 -> excluded, AP NaN, n_empty = 1
    # mAP = (7/12 + 1) / 2 = 19/24
    res = mean_average_precision(Q, DB, Q_LAB, DB_LAB)
    assert isinstance(res, MAPResult)
    assert res.map == pytest.approx(19 / 24)
    assert (res.n_queries, res.n_scored, res.n_empty) == (3, 2, 1)
    assert res.ap[0] == pytest.approx(7 / 12)
    assert res.ap[1] == pytest.approx(1.0)
    assert np.isnan(res.ap[2])


def test_map_tie_order_is_database_order() -> None:
    # Swap db0 and db2 (both at distance 0 from q0): ranking now db2(rel) db0 db1(rel) ...
    #   rel = [1,0,1,0,0] -> AP = (1/1 + 2/3) / 2 = 5/6 instead of 7/12.
    perm = [2, 1, 0, 3, 4]
    res = mean_average_precision(Q[:1], DB[perm], Q_LAB[:1], DB_LAB[perm])
    assert res.map == pytest.approx(5 / 6)


def test_map_all_relevant_and_none_scored() -> None:
    # every db item shares the query's label -> precision@r = 1 at every rank -> AP = 1
    res = mean_average_precision(Q, DB, np.array([5, 5, 5]), np.full(5, 5))
    assert res.map == 1.0 and res.n_scored == 3
    # no query has a relevant item -> map NaN, n_scored 0
    none = mean_average_precision(Q, DB, np.array([8, 9, 8]), DB_LAB)
    assert np.isnan(none.map)
    assert (none.n_scored, none.n_empty) == (0, 3)
    assert np.isnan(none.ap).all()


def test_map_against_sklearn_without_ties() -> None:
    # For each query build a database at distances 0..d from it (all distinct -> no ties), in a
    # random order with random labels; then sklearn's AP on score = -distance is the same AP.
    rng = np.random.default_rng(3)
    d, ours, theirs = 16, [], []
    for _ in range(12):
        q = rng.integers(0, 2, size=(1, d))
        db = np.repeat(q, d + 1, axis=0)
        for k in range(d + 1):
            flip = rng.permutation(d)[:k]
            db[k, flip] ^= 1
        db = db[rng.permutation(d + 1)]
        db_lab = rng.integers(0, 3, size=d + 1)
        q_lab = np.array([db_lab[0]])  # at least one relevant item
        dist = hamming_distance(q, db)[0]
        assert len(set(dist.tolist())) == d + 1
        ours.append(mean_average_precision(q, db, q_lab, db_lab).map)
        theirs.append(average_precision_score(db_lab == q_lab[0], -dist))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert np.mean(ours) == pytest.approx(np.mean(theirs))


def test_map_random_with_ties_matches_loop_and_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    q = rng.integers(0, 2, size=(25, 6))  # 6 bits, 40 db items: many ties
    db = rng.integers(0, 2, size=(40, 6))
    ql = rng.integers(0, 5, size=25)
    dl = rng.integers(0, 4, size=40)  # label 4 queries have no relevant item
    dist = _brute_hamming(q, db)
    expected = np.array([_brute_ap(dist[i], dl == ql[i]) for i in range(25)])
    res = mean_average_precision(q, db, ql, dl)
    np.testing.assert_allclose(res.ap, expected, rtol=1e-12, equal_nan=True)
    assert res.n_empty == int(np.isnan(expected).sum())
    assert res.map == pytest.approx(np.nanmean(expected))
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 50)  # 1 query per chunk
    np.testing.assert_allclose(
        mean_average_precision(q, db, ql, dl).ap, expected, rtol=1e-12, equal_nan=True
    )


def test_map_bad_shapes() -> None:
    with pytest.raises(ValueError, match="q_labels"):
        mean_average_precision(Q, DB, Q_LAB[:2], DB_LAB)
    with pytest.raises(ValueError, match="db_labels"):
        mean_average_precision(Q, DB, Q_LAB, DB_LAB[:, None])
    with pytest.raises(ValueError, match="db_bits"):
        mean_average_precision(Q, DB[:0], Q_LAB, DB_LAB[:0])


# ----------------------------------------------------------------------------- PR curve
def test_pr_curve_hand_case() -> None:
    # Per-query (retrieved, relevant retrieved) within radius r (distances in DIST):
    #   q0 (R=2): r0 (2,1)  r1 (3,2)  r2 (4,2)  r3 (5,2)
    #   q1 (R=1): r0 (1,1)  r1 (2,1)  r2 (3,1)  r3 (5,1)
    #   q2 (R=0): r0 (0,0)  r1 (3,0)  r2 (5,0)  r3 (5,0)
    # precision over queries retrieving >= 1 item:
    #   r0: (1/2 + 1)/2 = 3/4 (q2 retrieves nothing, n=2)
    #   r1: (2/3 + 1/2 + 0)/3 = 7/18   r2: (1/2 + 1/3 + 0)/3 = 5/18   r3: (2/5 + 1/5 + 0)/3 = 1/5
    # recall over queries with R >= 1 (q0, q1; n=2):
    #   r0: (1/2 + 1)/2 = 3/4; r1..r3: 1
    pr = precision_recall_curve(Q, DB, Q_LAB, DB_LAB)
    assert list(pr.columns) == [
        "radius", "precision", "recall", "n_queries_precision", "n_queries_recall"
    ]
    assert pr["radius"].tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(pr["precision"], [3 / 4, 7 / 18, 5 / 18, 1 / 5])
    np.testing.assert_allclose(pr["recall"], [3 / 4, 1, 1, 1])
    assert pr["n_queries_precision"].tolist() == [2, 3, 3, 3]
    assert pr["n_queries_recall"].tolist() == [2, 2, 2, 2]


def test_pr_curve_random_recall_monotone_and_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    q = rng.integers(0, 2, size=(30, 12))
    db = rng.integers(0, 2, size=(50, 12))
    ql = rng.integers(0, 6, size=30)
    dl = rng.integers(0, 5, size=50)
    pr = precision_recall_curve(q, db, ql, dl)
    assert len(pr) == 13
    assert (np.diff(pr["recall"]) >= 0).all()
    assert pr["recall"].iloc[-1] == pytest.approx(1.0)  # r = d retrieves everything
    n_scored = int(sum((dl == lab).any() for lab in ql))
    assert pr["n_queries_recall"].iloc[0] == n_scored
    assert pr["n_queries_precision"].iloc[-1] == 30
    # precision at r = d = mean fraction of relevant items in the database, over all queries
    assert pr["precision"].iloc[-1] == pytest.approx(np.mean([(dl == lab).mean() for lab in ql]))
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 60)  # chunks of one query
    chunked = precision_recall_curve(q, db, ql, dl)
    np.testing.assert_allclose(chunked[["precision", "recall"]], pr[["precision", "recall"]])


# ----------------------------------------------------------------------------- ranking kernel vs the reference
def _random_case(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    m = int(rng.integers(1, 25))
    d = int(rng.choice([1, 3, 8, 31, 64, 65, 128]))
    p = rng.uniform(0.1, 0.9)  # skewed bits: many equal distances (ties)
    q = (rng.random((m, d)) < p).astype(np.uint8)
    db = (rng.random((n, d)) < p).astype(np.uint8)
    c = int(rng.integers(1, 8))
    return q, db, rng.integers(0, c, m), rng.integers(0, c, n)


# n around numpy's pairwise-summation block edges (8, 128) and the chunking (2**22 / n rows)
@pytest.mark.parametrize("path", ["kernel", "numpy"])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 127, 128, 129, 136, 257, 1000, 5000])
def test_ranking_identical_to_reference(n: int, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dahash.eval._metrics_reference import mean_average_precision_reference, precision_recall_curve_reference

    # small problems rank in numpy, big ones in the kernel: both must give the reference's values
    monkeypatch.setattr(metrics, "_KERNEL_MIN_PAIRS", 0 if path == "kernel" else 1 << 62)
    rng = np.random.default_rng(n)
    for _ in range(4):
        q, db, ql, dl = _random_case(rng, n)
        got, ref = mean_average_precision(q, db, ql, dl), mean_average_precision_reference(q, db, ql, dl)
        assert np.array_equal(got.ap, ref.ap, equal_nan=True)  # bit for bit, not a tolerance
        assert (got.map, got.n_scored, got.n_empty) == (ref.map, ref.n_scored, ref.n_empty) or (
            np.isnan(got.map) and np.isnan(ref.map))
        pd_got, pd_ref = precision_recall_curve(q, db, ql, dl), precision_recall_curve_reference(q, db, ql, dl)
        assert pd_got.equals(pd_ref)
        m2, pr2 = metrics.hamming_retrieval(q, db, ql, dl)
        assert np.array_equal(m2.ap, got.ap, equal_nan=True) and pr2.equals(pd_got)


@pytest.mark.parametrize("min_pairs", [0, 1 << 62])  # the kernel, the numpy path
def test_ranking_multiword_codes_brute_force(min_pairs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # 130 bits = 3 packed words with padding; 3 distinct db codes repeated: every query has big tie groups
    monkeypatch.setattr(metrics, "_KERNEL_MIN_PAIRS", min_pairs)
    rng = np.random.default_rng(11)
    base = rng.integers(0, 2, size=(3, 130))
    db = base[rng.integers(0, 3, size=30)]
    q = rng.integers(0, 2, size=(6, 130))
    ql, dl = rng.integers(0, 3, size=6), rng.integers(0, 3, size=30)
    dist = _brute_hamming(q, db)
    expected = np.array([_brute_ap(dist[i], dl == ql[i]) for i in range(6)])
    np.testing.assert_allclose(mean_average_precision(q, db, ql, dl).ap, expected, rtol=1e-15, equal_nan=True)


def test_ranking_non_integer_labels() -> None:
    # relevance is ==: strings work; a NaN label equals nothing (not even another NaN)
    res = mean_average_precision(Q, DB, np.array(["b", "c", "x"]), np.array(["a", "b", "b", "a", "c"]))
    ref = mean_average_precision(Q, DB, Q_LAB, DB_LAB)
    assert np.array_equal(res.ap, ref.ap, equal_nan=True)
    fl = mean_average_precision(Q, DB, np.array([np.nan, 2.0, 1.0]), np.array([np.nan, 1.0, 1.0, 0.0, 2.0]))
    assert np.isnan(fl.ap[0]) and fl.ap[1] == 1.0  # q1: its one relevant item db4 is at rank 1
    assert fl.ap[2] == pytest.approx(_brute_ap(DIST[2], np.array([0, 1, 1, 0, 0], bool)))


def _torch_ranking(q: np.ndarray, db: np.ndarray, ql: np.ndarray, dl: np.ndarray, device: str) -> tuple:
    qc, dc = metrics._label_codes(np.asarray(ql), np.asarray(dl))
    return metrics._rank_stats_torch(q, db, qc, dc, device)


def test_torch_ranking_path_matches_kernel_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # the CUDA code path, run on CPU tensors: same counts, APs equal up to summation order
    rng = np.random.default_rng(12)
    q, db, ql, dl = rng.integers(0, 2, (40, 9)), rng.integers(0, 2, (300, 9)), rng.integers(0, 4, 40), rng.integers(0, 4, 300)
    ap_k, hist_k, rel_k, _ = metrics._rank_stats_kernel(q, db, *metrics._label_codes(ql, dl))
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 3000)  # several query blocks
    ap_t, hist_t, rel_t, _ = _torch_ranking(q, db, ql, dl, "cpu")
    np.testing.assert_array_equal(hist_t, hist_k)
    np.testing.assert_array_equal(rel_t, rel_k)
    np.testing.assert_allclose(ap_t, ap_k, rtol=1e-14, equal_nan=True)
    dist = _brute_hamming(q, db)
    np.testing.assert_allclose(ap_t, [_brute_ap(dist[i], dl == ql[i]) for i in range(40)], rtol=1e-12, equal_nan=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh runs it)")
def test_ranking_on_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(13)
    q, db, ql, dl = rng.integers(0, 2, (500, 64)), rng.integers(0, 2, (2000, 64)), rng.integers(0, 10, 500), rng.integers(0, 10, 2000)
    cpu_m, cpu_pr = metrics.hamming_retrieval(q, db, ql, dl)
    gpu_m, gpu_pr = metrics.hamming_retrieval(torch.as_tensor(q, device="cuda"), db, ql, dl)  # cuda input -> cuda
    np.testing.assert_allclose(gpu_m.ap, cpu_m.ap, rtol=1e-14, equal_nan=True)
    np.testing.assert_allclose(gpu_pr.to_numpy(float), cpu_pr.to_numpy(float), rtol=1e-14, equal_nan=True)
    np.testing.assert_allclose(mean_average_precision(q, db, ql, dl, device="cuda").ap, cpu_m.ap, rtol=1e-14, equal_nan=True)
