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

Files: :meth:`Index.to_parquet` writes one row per item, ``path`` (string), ``label`` (string, null when
unknown) and ``code`` (``fixed_size_list<uint64>[w]``), with ``bits`` and the format version in the schema
metadata (key ``dahash``). :meth:`Index.from_parquet` reads it; with ``mmap=True`` the codes are kept in a
sidecar ``<file>.codes.npy`` (written once, atomically) and memory-mapped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dahash.eval.metrics import _as_bits, _pack_bits, binarize

__all__ = ["INDEX_VERSION", "Index", "SearchError", "SearchResult", "pack_codes", "precision_at_k", "unpack_codes"]

#: version of the parquet layout; files of another version are refused.
INDEX_VERSION = 1

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
    Hamming distances, row i in ranking order (``k = min(k, n)``)."""

    indices: np.ndarray
    distances: np.ndarray


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
                 labels: Sequence[Any] | None = None, meta: dict | None = None) -> None:
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

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_u(cls, u: Any, paths: Sequence[str] | None = None, labels: Sequence[Any] | None = None,
               meta: dict | None = None) -> Index:
        """From continuous outputs ``u`` (n, d): bits ``1[u > 0]`` (the evaluation's rule), packed."""
        b = binarize(u)
        return cls(_pack_bits(b), b.shape[1], paths, labels, meta)

    @classmethod
    def from_bits(cls, bits: Any, paths: Sequence[str] | None = None, labels: Sequence[Any] | None = None,
                  meta: dict | None = None) -> Index:
        """From ``(n, d)`` {0, 1} bits."""
        b = _as_bits(bits, "bits")
        return cls(_pack_bits(b), b.shape[1], paths, labels, meta)

    def to_parquet(self, path: str | Path) -> Path:
        """Write the index (module docstring's layout) atomically; returns the path."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from dahash.atomic import temp_prefix

        path = Path(path)
        n, w = self.codes.shape
        flat = pa.array(np.ascontiguousarray(self.codes).reshape(-1), type=pa.uint64())
        cols = {"path": pa.array(self.paths if self.paths is not None else [None] * n, type=pa.string()),
                "label": pa.array([None if lab is None else str(lab) for lab in self.labels]
                                  if self.labels is not None else [None] * n, type=pa.string()),
                "code": pa.FixedSizeListArray.from_arrays(flat, w)}
        meta = {"version": INDEX_VERSION, "bits": self.bits, **self.meta}
        table = pa.table(cols).replace_schema_metadata({"dahash": json.dumps(meta)})
        tmp = path.with_name(temp_prefix(path) + f"{os.getpid()}.tmp")
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def from_parquet(cls, path: str | Path, *, mmap: bool = False) -> Index:
        """Read an index written by :meth:`to_parquet`.

        Args:
            mmap: keep the codes in ``<path>.codes.npy`` (created from the parquet file when missing or older
                than it) and memory-map them: searches read them block by block.

        Raises:
            SearchError: not a dahash index, or another layout version (names the file and the fix).
        """
        import pyarrow.parquet as pq

        path = Path(path)
        try:
            table = pq.read_table(path)
        except FileNotFoundError as exc:
            raise SearchError(f"{path}: no such index file; create it with `dahash encode`") from exc
        except Exception as exc:  # pyarrow.ArrowInvalid: not parquet
            raise SearchError(f"{path}: not a parquet index ({exc}); create it with `dahash encode`") from exc
        raw = (table.schema.metadata or {}).get(b"dahash")
        if raw is None or not {"code", "path", "label"} <= set(table.column_names):
            raise SearchError(f"{path}: not a dahash index (no 'dahash' metadata or code/path/label columns); "
                              f"create it with `dahash encode`")
        meta = json.loads(raw)
        if meta.get("version") != INDEX_VERSION:
            raise SearchError(f"{path}: index version {meta.get('version')!r}, this dahash reads version "
                              f"{INDEX_VERSION}; re-create it with `dahash encode`")
        bits = int(meta.pop("bits"))
        meta.pop("version")
        w = -(-bits // 64)
        n = table.num_rows
        if mmap:
            codes = cls._mapped_codes(path, table, n, w)
        else:
            codes = cls._codes_of(table, n, w)
        labels = table.column("label").to_pylist()
        return cls(codes, bits, table.column("path").to_pylist(),
                   None if all(lab is None for lab in labels) else labels, meta)

    @staticmethod
    def _codes_of(table: Any, n: int, w: int) -> np.ndarray:
        col = table.column("code").combine_chunks()
        return np.ascontiguousarray(col.flatten().to_numpy(zero_copy_only=False).astype(np.uint64)).reshape(n, w)

    @classmethod
    def _mapped_codes(cls, path: Path, table: Any, n: int, w: int) -> np.ndarray:
        side = path.with_name(path.name + ".codes.npy")
        fresh = side.is_file() and side.stat().st_mtime_ns >= path.stat().st_mtime_ns
        if fresh:
            codes = np.load(side, mmap_mode="r")
            if codes.shape == (n, w) and codes.dtype == np.uint64:
                return codes
        from dahash.atomic import temp_prefix

        tmp = side.with_name(temp_prefix(side) + f"{os.getpid()}.tmp.npy")
        try:
            np.save(tmp, cls._codes_of(table, n, w))
            os.replace(tmp, side)
        finally:
            tmp.unlink(missing_ok=True)
        return np.load(side, mmap_mode="r")

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

    def search(self, queries: Any, k: int = 10, *, block: int | None = None) -> SearchResult:
        """The first ``k`` items of each query's stable Hamming ranking (module docstring).

        Args:
            queries: ``(m, w)`` uint64 packed codes, ``(m, d)`` {0, 1} bits, one code (1-D), or an :class:`Index`.
            k: answers per query (``min(k, n)`` are returned).
            block: query x database pairs per block (default ``_BLOCK_ELEMENTS``; the result does not depend on it).

        Returns:
            :class:`SearchResult` with ``(m, min(k, n))`` arrays.
        """
        if int(k) < 1:
            raise SearchError(f"k must be >= 1, got {k}")
        q = self._queries(queries)
        n, m = len(self), q.shape[0]
        k = min(int(k), n)
        if k == 0:  # an empty index
            return SearchResult(np.zeros((m, 0), np.int64), np.zeros((m, 0), np.int64))
        qs, nb = self._blocks(block)
        out = np.empty((m, k), dtype=np.int64)
        for qa in range(0, m, qs):
            qc = q[qa:qa + qs]
            best = np.empty((qc.shape[0], 0), dtype=np.int64)
            for start in range(0, n, nb):
                db = np.asarray(self.codes[start:start + nb])
                keys = _distances(qc, db) * n + np.arange(start, start + db.shape[0], dtype=np.int64)
                cand = np.concatenate([best, keys], axis=1)
                if cand.shape[1] > k:
                    cand = np.partition(cand, k - 1, axis=1)[:, :k]
                best = cand
            out[qa:qa + qs] = np.sort(best, axis=1)
        return SearchResult(indices=out % n, distances=out // n)

    def radius_search(self, queries: Any, radius: int, *, block: int | None = None) -> list[SearchResult]:
        """Every item within Hamming distance ``radius`` of each query, in ranking order: one
        :class:`SearchResult` with ``(1, n_i)`` arrays per query (``n_i`` may be 0)."""
        if int(radius) < 0:
            raise SearchError(f"radius must be >= 0, got {radius}")
        q = self._queries(queries)
        n, m = len(self), q.shape[0]
        qs, nb = self._blocks(block)
        found: list[list[np.ndarray]] = [[] for _ in range(m)]
        for qa in range(0, m, qs):
            qc = q[qa:qa + qs]
            for start in range(0, n, nb):
                dist = _distances(qc, np.asarray(self.codes[start:start + nb]))
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
            res.append(SearchResult(indices=(keys % max(n, 1))[None], distances=(keys // max(n, 1))[None]))
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
