"""dahash.codes.index: top-k / radius search against a brute-force reference with the evaluation's tie rule."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from dahash.codes.index import Index, SearchError, pack_codes, precision_at_k, unpack_codes
from dahash.eval.metrics import hamming_distance, precision_recall_curve


def _reference(q: np.ndarray, db: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute force: matrix-product distances (dahash.eval.metrics.hamming_distance), stable argsort, first k."""
    dist = hamming_distance(q, db)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(dist, order, axis=1)


def test_hand_made_ties() -> None:
    """3-bit codes, by hand: query 000; database distances [1, 0, 1, 3, 0, 1] -> ranking 1, 4, 0, 2, 5, 3."""
    db = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 1, 1], [0, 0, 0], [0, 0, 1]])
    index = Index.from_bits(db)
    res = index.search(np.array([[0, 0, 0]]), k=4)
    assert res.indices.tolist() == [[1, 4, 0, 2]] and res.distances.tolist() == [[0, 0, 1, 1]]
    for block in (1, 2, 5, None):  # the blocks never change the answer
        assert index.search(np.array([0, 0, 0]), k=6, block=block).indices.tolist() == [[1, 4, 0, 2, 5, 3]]
    r = index.radius_search(np.array([[0, 0, 0]]), 1)[0]
    assert r.indices.tolist() == [[1, 4, 0, 2, 5]] and r.distances.tolist() == [[0, 0, 1, 1, 1]]
    assert index.radius_search(np.array([[1, 1, 1]]), 0)[0].indices.tolist() == [[3]]


@pytest.mark.parametrize("d", [3, 64, 70, 130])
@pytest.mark.parametrize("block", [7, 1000, None])
def test_matches_brute_force(d: int, block: int | None) -> None:
    rng = np.random.default_rng(d)
    proto = rng.integers(0, 2, (5, d))  # few distinct codes: many exact ties
    db = proto[rng.integers(0, 5, 300)] ^ (rng.random((300, d)) < 0.05)
    q = proto[rng.integers(0, 5, 23)] ^ (rng.random((23, d)) < 0.05)
    index = Index.from_bits(db)
    for k in (1, 10, 300, 500):
        res = index.search(q, k=k, block=block)
        ref_i, ref_d = _reference(q, db, k)
        np.testing.assert_array_equal(res.indices, ref_i)
        np.testing.assert_array_equal(res.distances, ref_d)
    dist = hamming_distance(q, db)
    for r in (0, 2, d // 3):
        for i, got in enumerate(index.radius_search(q, r, block=block)):
            want = np.flatnonzero(dist[i] <= r)
            want = want[np.argsort(dist[i][want], kind="stable")]
            np.testing.assert_array_equal(got.indices[0], want)


def test_radius_precision_equals_evaluation_pr_curve() -> None:
    """Precision of radius search = the evaluation's PR-curve precision at that radius (dahash.eval.metrics)."""
    rng = np.random.default_rng(1)
    db, q = rng.integers(0, 2, (200, 12)), rng.integers(0, 2, (40, 12))
    yd, yq = rng.integers(0, 3, 200), rng.integers(0, 3, 40)
    pr = precision_recall_curve(q, db, yq, yd)
    index = Index.from_bits(db)
    for r in (1, 3, 6):
        precs = [float(np.mean(yd[res.indices[0]] == yq[i])) for i, res in enumerate(index.radius_search(q, r))
                 if res.indices.shape[1]]
        assert np.mean(precs) == pytest.approx(pr.precision[r], rel=1e-12)


def test_precision_at_k_by_hand() -> None:
    index = Index.from_bits(np.array([[0, 0], [0, 1], [1, 1], [0, 0]]))
    res = index.search(np.array([[0, 0], [1, 1]]), k=2)  # -> [0, 3] and [2, 1]
    assert res.indices.tolist() == [[0, 3], [2, 1]]
    assert precision_at_k(res, ["a", "b"], ["a", "b", "b", "c"]) == pytest.approx((1 / 2 + 2 / 2) / 2)


def test_pack_unpack_and_u_rule() -> None:
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2, (9, 70)).astype(np.uint8)
    assert pack_codes(bits).shape == (9, 2)
    np.testing.assert_array_equal(unpack_codes(pack_codes(bits), 70), bits)
    u = np.array([[0.5, 0.0, -0.2]])  # bit = 1 iff u > 0: an exact 0 is bit 0
    np.testing.assert_array_equal(unpack_codes(Index.from_u(u).codes, 3), [[1, 0, 0]])


def test_parquet_roundtrip_and_mmap(tmp_path) -> None:
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2, (50, 70))
    index = Index.from_bits(bits, [f"im{i}.jpg" for i in range(50)], [None] * 10 + ["cat"] * 40, {"model": "m"})
    p = index.to_parquet(tmp_path / "i.parquet")
    assert pq.read_table(p).column_names == ["path", "label", "code"]
    for mmap in (False, True):
        back = Index.from_parquet(p, mmap=mmap)
        np.testing.assert_array_equal(back.codes, index.codes)
        assert back.bits == 70 and back.paths == index.paths and back.labels == index.labels
        assert back.meta == {"model": "m"}
        np.testing.assert_array_equal(back.search(bits[:5], k=7).indices, index.search(bits[:5], k=7).indices)
    assert isinstance(Index.from_parquet(p, mmap=True).codes, np.memmap)
    assert Index.from_parquet(p).search(Index.from_parquet(p), k=1).indices[:, 0].tolist() == \
        _reference(bits, bits, 1)[0][:, 0].tolist()


def test_bad_inputs_named(tmp_path) -> None:
    index = Index.from_bits(np.zeros((3, 8), np.uint8))
    with pytest.raises(SearchError, match="16-bit codes but the index holds 8-bit"):
        index.search(np.zeros((1, 16), np.uint8))
    with pytest.raises(SearchError, match="binarize"):
        index.search(np.zeros((1, 8)))
    p = index.to_parquet(tmp_path / "i.parquet")
    t = pq.read_table(p)
    meta = json.loads(t.schema.metadata[b"dahash"])
    pq.write_table(t.replace_schema_metadata({"dahash": json.dumps({**meta, "version": 99})}), p)
    with pytest.raises(SearchError, match=r"i\.parquet: index version 99.*dahash encode"):
        Index.from_parquet(p)
    (tmp_path / "x.parquet").write_text("nope")
    with pytest.raises(SearchError, match=r"x\.parquet: not a parquet index"):
        Index.from_parquet(tmp_path / "x.parquet")


def test_empty_index() -> None:
    index = Index.from_bits(np.zeros((0, 8), np.uint8))
    assert index.search(np.zeros((2, 8), np.uint8), k=3).indices.shape == (2, 0)
    assert [r.indices.shape for r in index.radius_search(np.zeros((1, 8), np.uint8), 8)] == [(1, 0)]


def test_mmap_sidecar_tied_to_content_not_mtime(tmp_path) -> None:
    """Issue 23 point 4: `cp -p b.parquet a.parquet` (an older mtime) after an --mmap search of a: the codes
    come from b, never from a's sidecar; sidecars of other contents are removed when the new one is written."""
    import os
    import shutil

    rng = np.random.default_rng(4)
    a_bits, b_bits = rng.integers(0, 2, (40, 64)), rng.integers(0, 2, (40, 64))
    b = Index.from_bits(b_bits, [f"b{i}" for i in range(40)]).to_parquet(tmp_path / "b.parquet")
    a = Index.from_bits(a_bits, [f"a{i}" for i in range(40)]).to_parquet(tmp_path / "a.parquet")
    os.utime(b, (1, 1))  # b is much older than a and its sidecar
    np.testing.assert_array_equal(Index.from_parquet(a, mmap=True).codes, pack_codes(a_bits))
    shutil.copy2(b, a)
    back = Index.from_parquet(a, mmap=True)
    np.testing.assert_array_equal(back.codes, pack_codes(b_bits))
    assert back.paths[0] == "b0" and back.search(b_bits[7], 1).indices.tolist() == [[7]]
    assert sorted(p.name for p in tmp_path.iterdir() if ".codes" in p.name) == \
        [f"a.parquet.codes-{back.digest[:16]}.npy"]


def test_killed_writer_leftovers_are_swept(tmp_path) -> None:
    """Issue 23 point 13: a temporary of a killed `dahash encode` (dead pid) is removed by the next write of the
    same index; a live writer's is kept."""
    import os

    dead = tmp_path / ".i.parquet.pid999999999.999999999.tmp"
    live = tmp_path / f".i.parquet.pid{os.getppid()}.12.tmp"
    dead.write_bytes(b"half a parquet file")
    live.write_bytes(b"being written")
    Index.from_bits(np.zeros((2, 8), np.uint8)).to_parquet(tmp_path / "i.parquet")
    assert not dead.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "i.parquet"]


def test_continuous_outputs_round_trip(tmp_path) -> None:
    u = np.random.default_rng(5).normal(size=(7, 12)).astype(np.float32)
    p = Index.from_u(u, keep_u=True).to_parquet(tmp_path / "u.parquet")
    back = Index.from_parquet(p)
    np.testing.assert_array_equal(back.u, u)
    np.testing.assert_array_equal(back.codes, Index.from_u(u).codes)
    assert Index.from_parquet(Index.from_u(u).to_parquet(tmp_path / "nou.parquet")).u is None
