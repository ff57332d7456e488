"""Search backends of :class:`dahash.codes.index.Index`: the exact scan, FAISS exact, FAISS approximate.

=========  =====================================  ==========  =====================================================
name       what                                   exact       tie rule / parameters
=========  =====================================  ==========  =====================================================
``scan``   numpy block scan (np.bitwise_count)    yes         ``(D, position)``: the evaluation's stable ranking
``flat``   ``faiss.IndexBinaryFlat``              yes         ``(D, position)``: FAISS's heaps compare (distance,
                                                              id) pairs; tests check it equals ``scan``
``hnsw``   ``faiss.IndexBinaryHNSW``              no          M = 32, efConstruction = 40, efSearch = 128
``mih``    ``faiss.IndexBinaryMultiHash``         no          multi-index hashing: ``d / 16`` tables of 16 bits,
                                                              nflip = 3 (exact for every answer within
                                                              ``4 * d / 16 - 1`` bits, approximate beyond)
=========  =====================================  ==========  =====================================================

FAISS works on bytes: the ``(n, w)`` uint64 codes are viewed as ``(n, 8 w)`` uint8 (``d_faiss = 64 w`` bits;
the zero padding adds nothing to a distance). ``auto`` = ``flat`` when faiss-cpu is installed
(``pip install -e ".[faiss]"``), else ``scan``; an approximate backend only when asked or when its file
exists for an index of at least :data:`APPROX_MIN` codes (hnsw before mih).

Files: an approximate backend is slow to build, so it is saved beside its parquet index as
``<index>.<name>.faiss``: a header line ``dahash-faiss <version> <name> <codes sha256> <n> <bits>\\n`` then
FAISS's own serialisation. :func:`load_backend` refuses a file whose digest, size or kind is not the index's
(a stale file never answers for another index; rebuild it with ``dahash index``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["APPROX_MIN", "BACKENDS", "EXACT", "Backend", "backend_file", "build_backend", "default_backend",
           "faiss_available", "load_backend", "save_backend"]

BACKENDS = ("scan", "flat", "hnsw", "mih")
EXACT = frozenset({"scan", "flat"})
#: from this many codes an existing approximate backend file is used by ``auto`` (an exact scan of 20M 64-bit
#: codes takes tens of ms per query on one core; see benchmarks/README.md)
APPROX_MIN = 20_000_000
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 40, 128
MIH_BITS_PER_TABLE, MIH_NFLIP = 16, 3
FILE_VERSION = 1


def _error(msg: str) -> Exception:
    from dahash.codes.index import SearchError

    return SearchError(msg)


def faiss_available() -> bool:
    """Whether faiss-cpu (the ``faiss`` extra) is importable."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise _error("this backend needs FAISS: pip install -e \".[faiss]\" (or faiss-cpu), or use --backend scan") \
            from exc
    return faiss


class Backend(Protocol):
    """``search(q, k)`` -> ``(indices, distances)`` (m, k') int64 in ranking order; ``range_search(q, r)`` (exact
    backends only) -> per query the positions with ``D <= r`` in ``(D, position)`` order and their distances."""

    name: str
    exact: bool

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def _bytes(codes: np.ndarray) -> np.ndarray:
    """``(n, w)`` uint64 -> ``(n, 8 w)`` uint8 (a copy in RAM for a memory map: FAISS keeps its own)."""
    c = np.ascontiguousarray(codes, dtype="<u8")
    return c.view(np.uint8).reshape(c.shape[0], -1)


class FaissBackend:
    """A FAISS binary index over the codes (``kind``: flat, hnsw or mih)."""

    def __init__(self, kind: str, index: Any, n: int) -> None:
        self.name, self.index, self.n = kind, index, n
        self.exact = kind in EXACT

    def search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(int(k), self.n)
        dist, idx = self.index.search(_bytes(q), k)
        dist, idx = dist.astype(np.int64), idx.astype(np.int64)
        if not self.exact:  # an approximate index may return fewer than k (-1 ids): drop them, keep the order
            order = np.lexsort((idx, np.where(idx < 0, np.iinfo(np.int64).max, dist)), axis=1)
            idx, dist = np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)
        return idx, dist

    def range_search(self, q: np.ndarray, radius: int) -> list[tuple[np.ndarray, np.ndarray]]:
        if not self.exact:
            raise _error(f"radius search needs an exact backend (scan or flat), not {self.name}")
        lims, dist, idx = self.index.range_search(_bytes(q), int(radius) + 1)  # FAISS keeps D < radius
        out = []
        for i in range(q.shape[0]):
            d, j = dist[lims[i]:lims[i + 1]].astype(np.int64), idx[lims[i]:lims[i + 1]].astype(np.int64)
            order = np.lexsort((j, d))
            out.append((j[order], d[order]))
        return out


def build_backend(kind: str, codes: np.ndarray) -> FaissBackend:
    """A FAISS backend of ``kind`` over ``codes`` (``(n, w)`` uint64) with the module's default parameters."""
    faiss = _faiss()
    d = 64 * codes.shape[1]
    if kind == "flat":
        index = faiss.IndexBinaryFlat(d)
    elif kind == "hnsw":
        index = faiss.IndexBinaryHNSW(d, HNSW_M)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    elif kind == "mih":
        index = faiss.IndexBinaryMultiHash(d, d // MIH_BITS_PER_TABLE, MIH_BITS_PER_TABLE)
    else:
        raise _error(f"unknown backend {kind!r}; choose one of {', '.join(BACKENDS)} or auto")
    step = 1 << 20
    for s in range(0, codes.shape[0], step):
        index.add(_bytes(codes[s:s + step]))
    _search_params(kind, index)
    return FaissBackend(kind, index, codes.shape[0])


def _search_params(kind: str, index: Any) -> None:
    if kind == "hnsw":
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "mih":
        index.nflip = MIH_NFLIP


def default_backend(n: int, existing: set[str] = frozenset()) -> str:
    """``auto``: ``scan`` without FAISS; with it, an approximate backend whose file exists when
    ``n >= APPROX_MIN`` (hnsw before mih: faster per query in benchmarks/README.md), else ``flat``."""
    if not faiss_available():
        return "scan"
    if n >= APPROX_MIN:
        for kind in ("hnsw", "mih"):
            if kind in existing:
                return kind
    return "flat"


def backend_file(index_path: str | Path, kind: str) -> Path:
    """``<index>.<kind>.faiss`` beside the parquet index."""
    p = Path(index_path)
    return p.with_name(f"{p.name}.{kind}.faiss")


def _header(kind: str, digest: str, n: int, bits: int) -> bytes:
    return f"dahash-faiss {FILE_VERSION} {kind} {digest} {n} {bits}\n".encode()


def save_backend(backend: FaissBackend, index_path: str | Path, digest: str, bits: int) -> Path:
    """Write ``backend`` to :func:`backend_file` atomically, its header tying it to the codes' ``digest``."""
    from dahash.atomic import mkstemp, sweep_stale_temps, temp_prefix

    faiss = _faiss()
    path = backend_file(index_path, backend.name)
    sweep_stale_temps(path)
    fd, tmp = mkstemp(path.parent, temp_prefix(path), ".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(_header(backend.name, digest, backend.n, bits))
            fh.write(faiss.serialize_index_binary(backend.index).tobytes())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_backend(kind: str, index_path: str | Path, digest: str, n: int, bits: int) -> FaissBackend:
    """The saved backend of ``kind`` for the index at ``index_path`` whose codes have ``digest``.

    Raises:
        SearchError: no file, or one written for other codes (stale), another kind or version, or damaged.
    """
    faiss = _faiss()
    path = backend_file(index_path, kind)
    rebuild = f"build it with `dahash index {index_path} --backend {kind}`"
    try:
        with open(path, "rb") as fh:
            head = fh.readline(200)
            body = fh.read()
    except FileNotFoundError as exc:
        raise _error(f"{path}: no {kind} backend file for this index; {rebuild}") from exc
    if head != _header(kind, digest, n, bits):
        fields = head.decode("ascii", "replace").split()
        if len(fields) == 6 and fields[0] == "dahash-faiss" and fields[3] != digest:
            raise _error(f"{path}: stale, built for other codes (sha256 {fields[3][:16]}..., the index holds "
                         f"{digest[:16]}...); re-{rebuild}")
        raise _error(f"{path}: not a {kind} backend file of this index (header {head[:80]!r}); re-{rebuild}")
    try:
        index = faiss.deserialize_index_binary(np.frombuffer(body, dtype=np.uint8))
    except RuntimeError as exc:
        raise _error(f"{path}: damaged FAISS data ({str(exc).splitlines()[0]}); re-{rebuild}") from exc
    if index.ntotal != n or index.d != 64 * (-(-bits // 64)):
        raise _error(f"{path}: holds {index.ntotal} codes of {index.d} bits, the index {n} of {bits}; re-{rebuild}")
    _search_params(kind, index)
    return FaissBackend(kind, index, n)
