"""precision@k and precision within Hamming radius r (dahash.eval.metrics.retrieval_scores): hand-made rankings and a
brute-force oracle, on the numpy path, the numba kernel and the torch path (run on the CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from dahash.eval import metrics
from dahash.eval.metrics import mean_average_precision, precision_recall_curve, retrieval_scores

# d = 4; query 0 = 0000 (label A), query 1 = 0000 (label C: no relevant item), query 2 = 1111 (label B)
Q = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
Q_LAB = np.array(["A", "C", "B"])
DB = np.array([[1, 1, 0, 0],   # db0 A: d(q0) = 2, d(q2) = 2
               [1, 0, 0, 0],   # db1 B: d(q0) = 1, d(q2) = 3
               [0, 0, 0, 0],   # db2 A: d(q0) = 0, d(q2) = 4
               [0, 1, 0, 0],   # db3 A: d(q0) = 1, d(q2) = 3
               [1, 1, 1, 0]])  # db4 A: d(q0) = 3, d(q2) = 1
DB_LAB = np.array(["A", "B", "A", "A", "A"])


@pytest.fixture(params=["numpy", "kernel"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(metrics, "_KERNEL_MIN_PAIRS", 0 if request.param == "kernel" else 1 << 62)
    return request.param


def test_hand_made_ranking(path: str) -> None:
    # q0's stable ranking: db2 (A, d0) | db1 (B, d1), db3 (A, d1) | db0 (A, d2) | db4 (A, d3)
    s = retrieval_scores(Q, DB, Q_LAB, DB_LAB, ks=(1, 2, 3, 5, 10))
    # q1 has no relevant item: excluded (as from mAP); q2 (label B): its one relevant item db1 ranks 3rd or 4th
    # (d = 3, tied with db3, db1 first in database order): ranking db4, db0, db1, db3, db2
    assert s.map.n_scored == 2 and s.map.n_empty == 1
    want = {1: (1 + 0) / 2, 2: (1 / 2 + 0) / 2, 3: (2 / 3 + 1 / 3) / 2, 5: (4 / 5 + 1 / 5) / 2, 10: (4 / 5 + 1 / 5) / 2}
    # k = 2 cuts the d = 1 tie group {db1, db3} of q0 after db1 (database order): 1 hit of 2, not 1.5
    assert s.precision_at_k == pytest.approx(want, abs=1e-15)
    # radius 2: q0 retrieves db2, db1, db3, db0 (3 of 4 relevant); q2 retrieves db4, db0 (none relevant)
    assert s.radius == 2 and s.precision_radius == pytest.approx((3 / 4 + 0) / 2, abs=1e-15)
    assert s.n_radius_empty == 0
    # radius 0: q2 retrieves nothing -> precision 0, counted; the PR curve averages over q0 and q1 instead
    s0 = retrieval_scores(Q, DB, Q_LAB, DB_LAB, radius=0)
    assert s0.precision_radius == pytest.approx((1.0 + 0.0) / 2) and s0.n_radius_empty == 1
    pr = precision_recall_curve(Q, DB, Q_LAB, DB_LAB)
    assert pr["precision"][0] == pytest.approx((1.0 + 0.0) / 2)  # q0: 1/1, q1 (no relevant, retrieves db2): 0/1
    assert pr["n_queries_precision"][0] == 2
    # the same pass gives the same mAP and PR table as the single-purpose functions
    assert np.array_equal(s.map.ap, mean_average_precision(Q, DB, Q_LAB, DB_LAB).ap, equal_nan=True)
    assert s.pr.equals(pr)


def test_default_ks_and_database_smaller_than_k(path: str) -> None:
    s = retrieval_scores(Q, DB, Q_LAB, DB_LAB)
    assert list(s.precision_at_k) == [100, 500, 1000]
    # n = 5 < k: every item is retrieved, precision@k = the share of relevant items in the database
    for k in (100, 500, 1000):
        assert s.precision_at_k[k] == pytest.approx((4 / 5 + 1 / 5) / 2)


def test_no_scored_query_gives_nan() -> None:
    s = retrieval_scores(Q[:2], DB, np.array(["X", "Y"]), DB_LAB, ks=(2,))
    assert np.isnan(s.precision_at_k[2]) and np.isnan(s.precision_radius) and s.map.n_scored == 0


@pytest.mark.parametrize("bad", [{"ks": (0,)}, {"ks": (-5,)}, {"radius": -1}, {"radius": 1.5}, {"radius": True}])
def test_bad_arguments(bad: dict) -> None:
    with pytest.raises(ValueError, match="ks|radius"):
        retrieval_scores(Q, DB, Q_LAB, DB_LAB, **bad)


def _oracle(q: np.ndarray, db: np.ndarray, ql: np.ndarray, dl: np.ndarray, ks: list[int], r: int
            ) -> tuple[dict[int, float], float, int]:
    """Plain Python: sort by (distance, database index), count; scored queries only (R >= 1)."""
    n = len(db)
    pk = {k: [] for k in ks}
    pr, empty = [], 0
    for i in range(len(q)):
        dist = [int(np.sum(q[i] != db[j])) for j in range(n)]
        rel = [dl[j] == ql[i] for j in range(n)]
        if not any(rel):
            continue
        order = sorted(range(n), key=lambda j: (dist[j], j))
        for k in ks:
            kk = min(k, n)
            pk[k].append(sum(rel[j] for j in order[:kk]) / kk)
        within = [j for j in range(n) if dist[j] <= r]
        if not within:
            empty += 1
        pr.append(sum(rel[j] for j in within) / len(within) if within else 0.0)
    mean = {k: float(np.mean(v)) if v else float("nan") for k, v in pk.items()}
    return mean, float(np.mean(pr)) if pr else float("nan"), empty


@pytest.mark.parametrize("seed", range(6))
def test_brute_force_oracle(seed: int, path: str) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(3):
        m, n = int(rng.integers(1, 15)), int(rng.integers(1, 300))
        d = int(rng.choice([2, 5, 8, 64, 70]))
        p = rng.uniform(0.1, 0.9)  # skewed bits: big tie groups, cuts inside them
        q, db = (rng.random((m, d)) < p).astype(np.uint8), (rng.random((n, d)) < p).astype(np.uint8)
        c = int(rng.integers(1, 6))
        ql, dl = rng.integers(0, c, m), rng.integers(0, c, n)
        ks = sorted({int(x) for x in rng.integers(1, 2 * n + 2, 3)})
        r = int(rng.integers(0, 4))
        s = retrieval_scores(q, db, ql, dl, ks=ks, radius=r)
        want_k, want_r, want_empty = _oracle(q, db, ql, dl, ks, r)
        np.testing.assert_allclose([s.precision_at_k[k] for k in ks], [want_k[k] for k in ks], rtol=1e-12,
                                   equal_nan=True)
        np.testing.assert_allclose(s.precision_radius, want_r, rtol=1e-12, equal_nan=True)
        assert s.n_radius_empty == want_empty


def test_torch_path_same_hits_as_kernel() -> None:
    torch = pytest.importorskip("torch")
    del torch
    rng = np.random.default_rng(7)
    q, db = rng.integers(0, 2, (30, 9)), rng.integers(0, 2, (400, 9))
    qc, dc = metrics._label_codes(rng.integers(0, 4, 30), rng.integers(0, 4, 400))
    ks = np.array([1, 7, 100, 400], dtype=np.int64)
    *_, hits_k = metrics._rank_stats_kernel(q, db, qc, dc, ks)
    *_, hits_n = metrics._rank_stats_numpy(q, db, qc, dc, ks)
    *_, hits_t = metrics._rank_stats_torch(q, db, qc, dc, "cpu", ks)
    np.testing.assert_array_equal(hits_k, hits_n)
    np.testing.assert_array_equal(hits_t, hits_n)
    assert (hits_n[:, -1] == (dc[None, :] == qc[:, None]).sum(axis=1)).all()  # k = n: every relevant item
