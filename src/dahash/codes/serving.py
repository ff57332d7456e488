"""Images in, codes out: the model logic behind the served model (MLflow pyfunc, ``stages/pyfunc_model.py``) and
any loaded-once encoder.

Input: a table with an ``image`` column (the encoded file's bytes: JPEG, PNG, ...) or a ``path`` column (files on
the serving machine); a row may fill either. Output, one row per input row, same order:

* ``code``: the packed code as hex text, word 0 first, each uint64 word as 16 hex digits (big-endian digits of
  the word; :func:`code_hex` / :func:`parse_code_hex`). Bit ``j`` of the code is bit ``j % 64`` of word
  ``j // 64``, as in :func:`dahash.codes.index.pack_codes`; JSON carries it exactly (no 2^53 limit).
* ``bits``: the code length d.
* ``error``: empty, or why the image was not encoded (then ``code`` is empty).

The codes are those of ``dahash encode`` for the same image: the same export, transform and rule
``b = 1[u > 0]`` (bytes are written to a temporary file first, so decoding is the very same path).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["INPUT_COLUMNS", "OUTPUT_COLUMNS", "Searcher", "code_hex", "encode_table", "parse_code_hex"]

INPUT_COLUMNS = ("image", "path")
OUTPUT_COLUMNS = ("code", "bits", "error")


def code_hex(words: np.ndarray) -> str:
    """One packed code ``(w,)`` uint64 -> ``16 w`` hex digits, word 0 first."""
    return "".join(f"{int(x):016x}" for x in np.asarray(words, dtype=np.uint64))


def parse_code_hex(text: str) -> np.ndarray:
    """Inverse of :func:`code_hex`: ``(w,)`` uint64."""
    if len(text) % 16:
        raise ValueError(f"a code is 16 hex digits per 64-bit word, got {len(text)} digits")
    return np.array([int(text[i:i + 16], 16) for i in range(0, len(text), 16)], dtype=np.uint64)


def _cell(v: Any) -> Any:
    """None for a missing cell (None, NaN, pandas NA, empty)."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    try:
        import pandas as pd

        if v is pd.NA:
            return None
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return v if (not isinstance(v, (bytes, bytearray, str)) or len(v)) else None


def encode_table(encoder: Any, images: Sequence[Any] | None, paths: Sequence[Any] | None) -> dict[str, list]:
    """Encode one row per input (``images[i]`` bytes, else ``paths[i]``) with ``encoder``
    (:class:`dahash.codes.export.Encoder`); returns the output columns (module docstring) as lists."""
    from dahash.codes.index import pack_codes

    n = len(images) if images is not None else len(paths or [])
    bits = int(encoder.hash_bits)
    out: dict[str, list] = {"code": [""] * n, "bits": [bits] * n, "error": [""] * n}
    with tempfile.TemporaryDirectory(prefix="dahash-serve-") as tmp:
        files: list[Path] = []
        rows: list[int] = []
        for i in range(n):
            data = _cell(images[i]) if images is not None else None
            where = _cell(paths[i]) if paths is not None else None
            if data is not None:
                f = Path(tmp) / f"{i}.img"
                f.write_bytes(bytes(data))
            elif where is not None:
                f = Path(str(where))
            else:
                out["error"][i] = "no image bytes and no path in this row"
                continue
            files.append(f)
            rows.append(i)
        res = encoder.encode(files)
        why = {Path(p): reason for p, reason in res.skipped}
        packed = pack_codes(res.u > 0) if len(res.paths) else np.zeros((0, -(-bits // 64)), np.uint64)
        done = {Path(p): packed[j] for j, p in enumerate(res.paths)}
        for f, i in zip(files, rows):
            if f in done:
                out["code"][i] = code_hex(done[f])
            else:
                out["error"][i] = f"cannot decode the image: {why.get(f, 'unknown error')}"
    return out


class Searcher:
    """Load the model and the index once, then answer image queries in milliseconds plus encoding.

    A single ``dahash search`` spends seconds starting Python and loading the network (see benchmarks/README.md);
    a long-lived process keeps them::

        s = Searcher("model_export.pt", "index.parquet")          # once
        res = s.search(["query.jpg"], k=10, rerank=True)           # per query: encode + search
        [s.index.paths[j] for j in res.indices[0]]

    Args:
        model: a run folder or export file (:func:`dahash.codes.export.load_export`).
        index: an index file (:meth:`dahash.codes.index.Index.from_parquet`) or an :class:`Index`.
        backend: the search backend (``auto``: :func:`dahash.codes.backends.default_backend`).
    """

    def __init__(self, model: Any, index: Any, *, backend: str = "auto", weights: Any = None,
                 device: str = "cpu", mmap: bool = False) -> None:
        from dahash.codes.export import Encoder, load_export
        from dahash.codes.index import Index

        self.encoder = Encoder(load_export(model), weights=weights, device=device)
        self.index = index if isinstance(index, Index) else Index.from_parquet(index, mmap=mmap)
        self.backend = backend
        self.index.backend(backend)  # built (or loaded) now, not at the first query

    def search(self, images: Sequence[Any], k: int = 10, *, rerank: bool = False) -> Any:
        """Top-k of each image (paths); an unreadable image raises :class:`dahash.codes.index.SearchError`."""
        from dahash.codes.index import Index, SearchError

        res = self.encoder.encode(list(images))
        if res.skipped:
            raise SearchError(f"{res.skipped[0][0]}: cannot read the image ({res.skipped[0][1]})")
        return self.index.search(Index.from_u(res.u), k, backend=self.backend, rerank=rerank)
