"""Search hash codes: packed 64-bit codes, top-k and radius search with the evaluation's rules.

Rules (the same as :mod:`dahash.eval.metrics`, so a search agrees with mAP and the PR curves):

* a code is ``b = 1[u > 0]`` of the network's continuous outputs (:func:`dahash.eval.metrics.binarize`);
* the Hamming distance ``D(q, x) = popcount(q XOR x)`` on the packed words (the d bits zero-padded to
  ``w = ceil(d / 64)`` uint64 words with :func:`dahash.eval.metrics._pack_bits`, so ``D`` equals the bit count);
* ranking by ``(D, database position)``: ties keep database order (the stable sort of the evaluation);
  top-k = the first k items of that ranking; radius search = every item with ``D <= r``, in that order.

Search streams over the database in blocks of rows (a numpy memmap is read block by block), with the
distances from ``np.bitwise_count`` (numpy >= 2, one POPCNT per word, the same popcount as the evaluation's
numba kernel, :mod:`dahash.eval._hamming_kernel`, which computes AP rather than top-k). Top-k per block uses a
unique integer key ``D * n + position``: ``np.partition`` keeps the k smallest keys (O(n) per query) and
their order is exactly the stable ranking, with no sort of the whole database.

Backends (:mod:`dahash.codes.backends`): this scan is ``scan``, the reference; ``flat`` (FAISS, exact, same
answers), ``hnsw`` and ``mih`` (FAISS, approximate). Re-ranking (``search(..., rerank=True)``) orders the
Hamming candidates by ``(D, asymmetric distance to the stored continuous outputs, position)``.

Files: :meth:`Index.to_parquet` / :meth:`Index.from_parquet`, layout, checks and the content digest in
:mod:`dahash.codes.store`; with ``mmap=True`` the codes are memory-mapped from a digest-named sidecar.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dahash.codes.store import INDEX_VERSION
from dahash.eval.metrics import _as_bits, _pack_bits, binarize

__all__ = ["INDEX_VERSION", "Index", "SearchError", "SearchResult", "pack_codes", "precision_at_k", "unpack_codes"]


#: query x database elements per block (a few tens of MB of working arrays)
_BLOCK_ELEMENTS = 1 << 22


class SearchError(ValueError):
    """An index file or query that cannot be used (the message names it and what to do)."""


def pack_codes(bits: Any) -> np.ndarray:
    """``(n, d)`` bits in {0, 1} (or bool) -> ``(n, ceil(d / 64))`` uint64 words (zero padding)."""
    return _pack_bits(_as_bits(bits, "bits"))


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``(n, w)`` uint64 -> ``(n, bits)`` uint8."""
    p = np.ascontiguousarray(packed, dtype=np.uint64)
    return np.unpackbits(p.view(np.uint8).reshape(p.shape[0], -1), axis=1)[:, :bits]


#: popcount of every byte, for numpy < 2 (no np.bitwise_count)
_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 as uint8: ``np.bitwise_count`` (numpy >= 2), else a byte table."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _BYTE_POPCOUNT[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


def _distances(q: np.ndarray, db: np.ndarray) -> np.ndarray:
    """``(m, w)`` and ``(n, w)`` packed codes -> ``(m, n)`` int64 Hamming distances."""
    x = _popcount(q[:, None, :] ^ db[None, :, :])  # (m, n, w) uint8
    return x[..., 0].astype(np.int64) if x.shape[2] == 1 else x.sum(axis=2, dtype=np.int64)


@dataclass
class SearchResult:
    """Top-k answers of ``m`` queries: ``indices`` (m, k) database positions and ``distances`` (m, k)
    Hamming distances, row i in ranking order (``k = min(k, n)``); ``order`` says which ranking that is,
    ``backend`` which backend answered (an approximate one may return ``-1`` positions when it finds fewer)."""

    indices: np.ndarray
    distances: np.ndarray
    order: str = "hamming distance, then database position"
    backend: str = "scan"
    scores: np.ndarray | None = None  # with re-ranking: the asymmetric distances (m, k)


class Index:
    """A database of packed hash codes with optional paths and labels.

    Args:
        codes: ``(n, w)`` uint64 packed codes (any array, including a ``np.memmap``).
        bits: d, the code length (``ceil(d / 64) == w``).
        paths: n item names (image paths) or None.
        labels: n labels (strings; None entries for unknown) or None.
        meta: free-form JSON-able dict stored with the file (e.g. the model it came from).

    Example::

        index = Index.from_parquet("index.parquet")
        res = index.search(Index.from_parquet("queries.parquet"), k=10)
        index.paths[res.indices[0, 0]], res.distances[0, 0]
    """

    def __init__(self, codes: np.ndarray, bits: int, paths: Sequence[str] | None = None,
                 labels: Sequence[Any] | None = None, meta: dict | None = None, u: Any = None) -> None:
        if codes.ndim != 2 or codes.dtype != np.uint64:
            raise SearchError(f"codes must be a (n, w) uint64 array, got {codes.dtype} {codes.shape}")
        if int(bits) < 1 or -(-int(bits) // 64) != codes.shape[1]:
            raise SearchError(f"{bits} bits need {-(-int(bits) // 64)} uint64 words per code, got {codes.shape[1]}")
        for name, v in (("paths", paths), ("labels", labels)):
            if v is not None and len(v) != codes.shape[0]:
                raise SearchError(f"{name} has {len(v)} entries for {codes.shape[0]} codes")
        self.codes, self.bits = codes, int(bits)
        self.paths = None if paths is None else [str(p) for p in paths]
        self.labels = None if labels is None else list(labels)
        self.meta = dict(meta or {})
        if u is not None:
            u = np.asarray(u, dtype=np.float32)
            if u.shape != (codes.shape[0], self.bits):
                raise SearchError(f"u must be ({codes.shape[0]}, {self.bits}) continuous outputs, got {u.shape}")
        self._u = u
        self._u_in_file = False
        self.source: Path | None = None  # the parquet file this index was read from
        self.digest_value: str | None = None
        self._backends: dict[str, Any] = {}

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_u(cls, u: Any, paths: Sequence[str] | None = None, labels: Sequence[Any] | None = None,
               meta: dict | None = None, keep_u: bool = False) -> Index:
        """From continuous outputs ``u`` (n, d): bits ``1[u > 0]`` (the evaluation's rule), packed; ``keep_u``
        also keeps ``u`` (written to the parquet file, used by re-ranking)."""
        b = binarize(u)
        return cls(_pack_bits(b), b.shape[1], paths, labels, meta, u=np.asarray(u) if keep_u else None)

    @classmethod
    def from_bits(cls, bits: Any, paths: Sequence[str] | None = None, labels: Sequence[Any] | None = None,
                  meta: dict | None = None) -> Index:
        """From ``(n, d)`` {0, 1} bits."""
        b = _as_bits(bits, "bits")
        return cls(_pack_bits(b), b.shape[1], paths, labels, meta)

    def to_parquet(self, path: str | Path) -> Path:
        """Write the index (:mod:`dahash.codes.store`'s layout, with the continuous outputs when held)
        atomically; returns the path."""
        from dahash.codes.store import write_index

        return write_index(Path(path), self.codes, self.bits, self.paths, self.labels, self.meta, self._u)

    @classmethod
    def from_parquet(cls, path: str | Path, *, mmap: bool = False) -> Index:
        """Read an index written by :meth:`to_parquet` (every column and the metadata checked).

        Args:
            mmap: memory-map the codes from the sidecar ``<path>.codes-<digest>.npy`` (written once from the
                parquet file; tied to the codes' content by their digest, never to mtimes).

        Raises:
            SearchError: not a dahash index, another layout version, a damaged or edited file (one line naming
                the file and the fix).
        """
        from dahash.codes.store import read_index

        got = read_index(path, mmap=mmap)
        index = cls(got["codes"], got["bits"], got["paths"], got["labels"], got["meta"])
        index.source, index.digest_value, index._u_in_file = Path(path), got["digest"], got["has_u"]
        return index

    # ---- continuous outputs, digest, backends ------------------------------------------------
    @property
    def u(self) -> np.ndarray | None:
        """``(n, bits)`` float32 continuous outputs kept at encode time (for re-ranking), or None."""
        if self._u is None and self._u_in_file and self.source is not None:
            from dahash.codes.store import read_u

            self._u = read_u(self.source, len(self), self.bits)
        return self._u

    @property
    def digest(self) -> str:
        """sha256 of the codes (:func:`dahash.codes.store.codes_digest`): what derived files are tied to."""
        if self.digest_value is None:
            from dahash.codes.store import codes_digest

            self.digest_value = codes_digest(self.codes, self.bits)
        return self.digest_value

    def backend(self, name: str = "auto") -> Any:
        """The search backend ``name`` (:mod:`dahash.codes.backends`), built or loaded once and kept.

        ``auto``: :func:`~dahash.codes.backends.default_backend`. An approximate backend of an index read from a
        file is loaded from its saved file (refused when stale); of an in-memory index, built.
        """
        from dahash.codes import backends as bk

        if name == "auto":
            existing = ({k for k in ("hnsw", "mih") if bk.backend_file(self.source, k).is_file()}
                        if self.source is not None else set())
            name = bk.default_backend(len(self), existing)
        if name not in bk.BACKENDS:
            raise SearchError(f"unknown backend {name!r}; choose one of {', '.join(bk.BACKENDS)} or auto")
        if name not in self._backends:
            if name == "scan":
                self._backends[name] = _Scan(self)
            elif name in bk.EXACT or self.source is None:
                self._backends[name] = bk.build_backend(name, self.codes)
            else:
                self._backends[name] = bk.load_backend(name, self.source, self.digest, len(self), self.bits)
        return self._backends[name]

    def build_backend(self, name: str, *, save: bool = True) -> Path | None:
        """Build the approximate backend ``name`` and (index read from a file, ``save``) write its file beside
        the parquet file; returns that path."""
        from dahash.codes import backends as bk

        b = bk.build_backend(name, self.codes)
        self._backends[name] = b
        if save and self.source is not None and name not in bk.EXACT:
            return bk.save_backend(b, self.source, self.digest, self.bits)
        return None

    # ---- search ------------------------------------------------------------------------------
    def _queries(self, queries: Any) -> np.ndarray:
        """Queries as packed ``(m, w)`` uint64: an :class:`Index`, packed uint64 codes, or {0, 1} bits."""
        if isinstance(queries, Index):
            q, bits = np.asarray(queries.codes), queries.bits
        else:
            a = np.asarray(queries)
            if a.ndim == 1:
                a = a[None]
            if a.dtype == np.uint64:
                q, bits = a, self.bits
            elif a.dtype.kind == "f":
                raise SearchError("queries are floats: pass bits (dahash.eval.metrics.binarize(u)) or Index.from_u(u)")
            else:
                q, bits = _pack_bits(_as_bits(a, "queries")), a.shape[1]
        if bits != self.bits or q.shape[1] != self.codes.shape[1]:
            raise SearchError(f"queries have {bits}-bit codes but the index holds {self.bits}-bit codes; "
                              f"encode both with the same model")
        return np.ascontiguousarray(q, dtype=np.uint64)

    def _blocks(self, block: int | None) -> tuple[int, int]:
        """(query rows, database rows) per block: about ``block`` query-database pairs."""
        block = _BLOCK_ELEMENTS if block is None else max(1, int(block))
        nb = max(1, min(len(self), block))
        return max(1, block // nb), nb

    def search(self, queries: Any, k: int = 10, *, block: int | None = None, backend: str = "auto",
               rerank: bool = False, candidates: int | None = None) -> SearchResult:
        """The first ``k`` items of each query's Hamming ranking (module docstring).

        Args:
            queries: ``(m, w)`` uint64 packed codes, ``(m, d)`` {0, 1} bits, one code (1-D), or an :class:`Index`.
            k: answers per query (``min(k, n)`` are returned).
            block: ``scan`` only (given with ``auto``, it means ``scan``): query x database pairs per block (the
                result does not depend on it).
            backend: ``auto`` (default: :func:`~dahash.codes.backends.default_backend`), ``scan`` (the reference),
                ``flat``, ``hnsw`` or ``mih`` (:mod:`dahash.codes.backends`); the exact ones give the same answer.
            rerank: order each query's Hamming candidates by ``(D, a, position)`` with the asymmetric distance
                ``a = ||s_q - u_x||^2`` between the query's code as signs ``s_q = 2 b_q - 1`` and the database's
                continuous outputs ``u_x`` kept at encode time: among codes at one Hamming distance, the items
                whose outputs lie closest to the query's code come first.
            candidates: with ``rerank``: the Hamming candidates re-ranked per query (default ``max(10 k, 1000)``);
                ties beyond them are not seen.

        Returns:
            :class:`SearchResult` with ``(m, min(k, n))`` arrays; its ``order`` names the ranking used.
        """
        if int(k) < 1:
            raise SearchError(f"k must be >= 1, got {k}")
        q = self._queries(queries)
        n, m = len(self), q.shape[0]
        k = min(int(k), n)
        if k == 0:  # an empty index
            return SearchResult(np.zeros((m, 0), np.int64), np.zeros((m, 0), np.int64))
        be = self.backend("scan" if backend == "auto" and block is not None else backend)
        order = "hamming distance, then database position" if be.exact else \
            f"hamming distance (approximate: {be.name}), then database position"
        if not rerank:
            idx, dist = be.search(q, k) if be.name != "scan" else be.search(q, k, block)
            return SearchResult(idx, dist, order, be.name)
        if self.u is None:
            raise SearchError("re-ranking needs the continuous outputs kept at encode time; re-encode with "
                              "`dahash encode` (it keeps them unless --no-continuous)")
        c = min(n, max(k, int(candidates) if candidates else max(10 * k, 1000)))
        idx, dist = be.search(q, c) if be.name != "scan" else be.search(q, c, block)
        signs = unpack_codes(q, self.bits).astype(np.float32) * 2 - 1  # (m, d)
        out_i, out_d, out_s = (np.empty((m, k), np.int64), np.empty((m, k), np.int64), np.empty((m, k), np.float32))
        for i in range(m):
            ok = idx[i] >= 0
            ci, cd = idx[i][ok], dist[i][ok]
            score = ((self.u[ci] - signs[i]) ** 2).sum(axis=1)
            pick = np.lexsort((ci, score, cd))[:k]
            out_i[i], out_d[i], out_s[i] = ci[pick], cd[pick], score[pick]
        return SearchResult(out_i, out_d, order.replace(", then database position",
                                                        ", then asymmetric distance to the stored outputs"),
                            be.name, out_s)

    def radius_search(self, queries: Any, radius: int, *, block: int | None = None,
                      backend: str = "auto") -> list[SearchResult]:
        """Every item within Hamming distance ``radius`` of each query, in ranking order: one
        :class:`SearchResult` with ``(1, n_i)`` arrays per query (``n_i`` may be 0); exact backends only
        (``auto``: flat with FAISS, else scan; scan when ``block`` is given)."""
        if int(radius) < 0:
            raise SearchError(f"radius must be >= 0, got {radius}")
        q = self._queries(queries)
        if backend == "auto":
            from dahash.codes.backends import faiss_available

            backend = "flat" if block is None and faiss_available() else "scan"
        be = self.backend(backend)
        if not be.exact:
            raise SearchError(f"radius search needs an exact backend (scan or flat), not {be.name}")
        found = be.range_search(q, radius) if be.name != "scan" else be.range_search(q, radius, block)
        return [SearchResult(i[None], d[None], "hamming distance, then database position", be.name)
                for i, d in found]


class _Scan:
    """The reference backend: numpy block scan with the ``D * n + position`` keys (module docstring)."""

    name, exact = "scan", True

    def __init__(self, index: Index) -> None:
        self.index = index

    def search(self, q: np.ndarray, k: int, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        codes, n, m = self.index.codes, len(self.index), q.shape[0]
        k = min(int(k), n)
        qs, nb = self.index._blocks(block)
        out = np.empty((m, k), dtype=np.int64)
        for qa in range(0, m, qs):
            qc = q[qa:qa + qs]
            best = np.empty((qc.shape[0], 0), dtype=np.int64)
            for start in range(0, n, nb):
                db = np.asarray(codes[start:start + nb])
                keys = _distances(qc, db) * n + np.arange(start, start + db.shape[0], dtype=np.int64)
                cand = np.concatenate([best, keys], axis=1)
                if cand.shape[1] > k:
                    cand = np.partition(cand, k - 1, axis=1)[:, :k]
                best = cand
            out[qa:qa + qs] = np.sort(best, axis=1)
        return out % n, out // n

    def range_search(self, q: np.ndarray, radius: int, block: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        codes, n, m = self.index.codes, len(self.index), q.shape[0]
        qs, nb = self.index._blocks(block)
        found: list[list[np.ndarray]] = [[] for _ in range(m)]
        for qa in range(0, m, qs):
            qc = q[qa:qa + qs]
            for start in range(0, n, nb):
                dist = _distances(qc, np.asarray(codes[start:start + nb]))
                rows, cols = np.nonzero(dist <= int(radius))
                keys = dist[rows, cols] * n + (cols + start)
                if not len(keys):
                    continue
                cuts = np.flatnonzero(np.diff(rows)) + 1  # np.nonzero returns the rows in order
                for i, part in zip(rows[np.r_[0, cuts]], np.split(keys, cuts)):
                    found[qa + int(i)].append(part)
        res = []
        for parts in found:
            keys = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
            res.append((keys % max(n, 1), keys // max(n, 1)))
        return res


def precision_at_k(result: SearchResult, q_labels: Sequence[Any], db_labels: Sequence[Any]) -> float:
    """Mean over queries of ``#{top-k answers with the query's label} / k``.

    ``k`` = the result's width; relevance = equal labels (as in the evaluation).
    """
    ql = np.asarray(q_labels)
    dl = np.asarray(db_labels)
    if len(ql) != result.indices.shape[0]:
        raise SearchError(f"{len(ql)} query labels for {result.indices.shape[0]} queries")
    return float(np.mean(dl[result.indices] == ql[:, None]))
