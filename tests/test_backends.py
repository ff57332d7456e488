"""dahash.codes.backends: FAISS exact = the scan (same ties), approximate recall@10 >= 0.95 at the defaults on
100k random codes, saved files tied to the index's codes (a stale one refused), the scan without FAISS, and
re-ranking of Hamming ties by the continuous outputs."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest

from dahash.codes import backends as bk
from dahash.codes.index import Index, SearchError
from dahash.eval.metrics import hamming_distance

needs_faiss = pytest.mark.skipif(not bk.faiss_available(),
                                 reason="faiss-cpu not installed (pip install -e '.[faiss]'; the test extra has it)")


def _tied(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) database bits from 6 prototypes with few flips (many exact ties) and 17 queries."""
    rng = np.random.default_rng(seed)
    proto = rng.integers(0, 2, (6, d))
    db = proto[rng.integers(0, 6, n)] ^ (rng.random((n, d)) < 0.03)
    return db, proto[rng.integers(0, 6, 17)] ^ (rng.random((17, d)) < 0.03)


@needs_faiss
@pytest.mark.parametrize("d", [16, 64, 130])
def test_flat_equals_scan_with_ties(d: int) -> None:
    """FAISS IndexBinaryFlat breaks ties by position as the scan does: same indices, same distances, one thread
    and all threads; its radius search equals the scan's."""
    import faiss

    db, q = _tied(3000, d, d)
    index = Index.from_bits(db)
    ref = index.search(q, 50, backend="scan")
    dist = hamming_distance(q, db)
    np.testing.assert_array_equal(ref.indices, np.argsort(dist, axis=1, kind="stable")[:, :50])
    threads = faiss.omp_get_max_threads()
    try:
        for t in (1, threads):
            faiss.omp_set_num_threads(t)
            got = index.search(q, 50, backend="flat")
            np.testing.assert_array_equal(got.indices, ref.indices)
            np.testing.assert_array_equal(got.distances, ref.distances)
            for one in range(3):  # single queries too (FAISS splits the database, not the queries, then)
                np.testing.assert_array_equal(index.search(q[one], 50, backend="flat").indices, ref.indices[one:one + 1])
    finally:
        faiss.omp_set_num_threads(threads)
    for r in (0, 2, d // 4):
        for a, b in zip(index.radius_search(q, r, backend="flat"), index.radius_search(q, r, backend="scan")):
            np.testing.assert_array_equal(a.indices, b.indices)
            np.testing.assert_array_equal(a.distances, b.distances)


def _recall_at_10(got: np.ndarray, exact_d: np.ndarray, dist: np.ndarray) -> float:
    """Tie-aware recall@10: the share of returned items within the exact 10th distance (any item tied there is
    as right as the exact answer's)."""
    kth = exact_d[:, -1:]
    rows = np.arange(got.shape[0])[:, None]
    return float(np.mean((got >= 0) & (dist[rows, np.maximum(got, 0)] <= kth)))


@pytest.fixture(scope="module")
def random_100k() -> tuple[Index, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    db = rng.integers(0, 2, (100_000, 64), dtype=np.uint8)
    q = rng.integers(0, 2, (100, 64), dtype=np.uint8)
    index = Index.from_bits(db)
    exact = index.search(q, 10, backend="scan")
    return index, q, exact, hamming_distance(q, db)


@needs_faiss
def test_exact_backends_on_100k_random_codes(random_100k) -> None:
    index, q, exact, dist = random_100k
    np.testing.assert_array_equal(exact.distances, np.sort(dist, axis=1)[:, :10])
    got = index.search(q, 10, backend="flat")
    np.testing.assert_array_equal(got.indices, exact.indices)
    np.testing.assert_array_equal(got.distances, exact.distances)


@needs_faiss
@pytest.mark.parametrize("kind", ["mih", "hnsw"])
def test_approximate_recall_at_defaults(random_100k, kind: str) -> None:
    """Uniform random codes are the hard case (many codes near the 10th distance): recall@10 >= 0.95."""
    index, q, exact, dist = random_100k
    got = index.search(q, 10, backend=kind)
    assert got.backend == kind and "approximate" in got.order
    rows = np.arange(len(q))[:, None]
    np.testing.assert_array_equal(got.distances, dist[rows, got.indices])  # the distances are the true ones
    assert _recall_at_10(got.indices, exact.distances, dist) >= 0.95


@needs_faiss
def test_saved_backend_is_tied_to_the_codes(tmp_path) -> None:
    """A backend file answers only for the codes it was built from: after `cp -p b a` (an older file over the
    index) the old a's file is refused as stale, naming the rebuild command; rebuilt, it answers for b."""
    rng = np.random.default_rng(1)
    a_bits, b_bits = rng.integers(0, 2, (2000, 64)), rng.integers(0, 2, (2000, 64))
    b = Index.from_bits(b_bits).to_parquet(tmp_path / "b.parquet")
    a = Index.from_bits(a_bits).to_parquet(tmp_path / "a.parquet")
    os.utime(b, (1, 1))
    built = Index.from_parquet(a).build_backend("mih")
    assert built == tmp_path / "a.parquet.mih.faiss"
    first = Index.from_parquet(a).search(a_bits[:3], 5, backend="mih")
    assert first.distances[:, 0].tolist() == [0, 0, 0]
    shutil.copy2(b, a)  # keeps b's older mtime
    with pytest.raises(SearchError, match=r"a\.parquet\.mih\.faiss: stale.*dahash index .*--backend mih"):
        Index.from_parquet(a).search(b_bits[:3], 5, backend="mih")
    Index.from_parquet(a).build_backend("mih")
    res = Index.from_parquet(a).search(b_bits[:3], 5, backend="mih")
    assert res.indices[:, 0].tolist() == [0, 1, 2] and res.distances[:, 0].tolist() == [0, 0, 0]
    (tmp_path / "a.parquet.mih.faiss").write_bytes(b"garbage\n")
    with pytest.raises(SearchError, match="not a mih backend file of this index"):
        Index.from_parquet(a).search(b_bits[:1], 5, backend="mih")


def test_scan_without_faiss(monkeypatch) -> None:
    """Without faiss-cpu: auto is the scan, and FAISS backends say how to install it."""
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    assert not bk.faiss_available() and bk.default_backend(10**9, {"mih"}) == "scan"
    index = Index.from_bits(np.eye(8, dtype=np.uint8))
    assert index.search(np.eye(8, dtype=np.uint8)[2], 1, backend="auto").indices.tolist() == [[2]]
    with pytest.raises(SearchError, match=r"pip install -e \"\.\[faiss\]\""):
        index.search(np.eye(8, dtype=np.uint8)[2], 1, backend="flat")


@needs_faiss
def test_auto_uses_an_approximate_file_only_for_large_indexes(tmp_path, monkeypatch) -> None:
    p = Index.from_bits(np.random.default_rng(2).integers(0, 2, (500, 32))).to_parquet(tmp_path / "i.parquet")
    Index.from_parquet(p).build_backend("mih")
    assert Index.from_parquet(p).backend("auto").name == "flat"
    monkeypatch.setattr(bk, "APPROX_MIN", 400)
    assert Index.from_parquet(p).backend("auto").name == "mih"


@pytest.mark.parametrize("backend", ["scan", pytest.param("flat", marks=needs_faiss)])
def test_rerank_orders_ties_by_continuous_distance(tmp_path, backend: str) -> None:
    """4-bit codes by hand. Query code 1100 (signs + + - -). Items 0..3 share code 1100 (distance 0); their
    outputs' squared distances to the signs: 4 x 0.6^2 = 1.44, 4 x 0.1^2 = 0.04, 4 x 0.9^2 = 3.24,
    4 x 0.2^2 = 0.16 -> re-ranked 1, 3, 0, 2. Items 4 and 5 (code 1101, distance 1): 3 x 0.81 + 1.9^2 = 6.04 and
    3 x 0.01 + 1.1^2 = 1.24 -> 5 before 4. Plain Hamming keeps positions 0..5."""
    u = np.array([[0.4, 0.4, -0.4, -0.4],
                  [0.9, 0.9, -0.9, -0.9],
                  [0.1, 0.1, -0.1, -0.1],
                  [0.8, 0.8, -0.8, -0.8],
                  [0.1, 0.1, -0.1, 0.9],
                  [0.9, 0.9, -0.9, 0.1]], dtype=np.float32)
    signs = np.array([1, 1, -1, -1], np.float32)
    a = ((u - signs) ** 2).sum(axis=1)
    assert a.tolist() == pytest.approx([1.44, 0.04, 3.24, 0.16, 6.04, 1.24])
    index = Index.from_u(u, [f"i{j}" for j in range(6)], keep_u=True)
    p = index.to_parquet(tmp_path / "r.parquet")
    back = Index.from_parquet(p)
    q = np.array([[1, 1, 0, 0]])
    plain = back.search(q, 6, backend=backend)
    assert plain.indices.tolist() == [[0, 1, 2, 3, 4, 5]] and "position" in plain.order
    rr = back.search(q, 6, backend=backend, rerank=True)
    assert rr.indices.tolist() == [[1, 3, 0, 2, 5, 4]]
    assert rr.distances.tolist() == [[0, 0, 0, 0, 1, 1]] and "asymmetric" in rr.order
    np.testing.assert_allclose(rr.scores[0], a[[1, 3, 0, 2, 5, 4]], rtol=1e-6)
    with pytest.raises(SearchError, match="continuous outputs"):
        Index.from_u(u).search(q, 3, rerank=True)
