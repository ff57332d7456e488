"""Index files: the parquet layout, its checks, the content digest and the memory-mapped codes sidecar.

Layout (:func:`write_index` / :func:`read_index`): one row per item, ``path`` (string), ``label`` (string, null
when unknown), ``code`` (``fixed_size_list<uint64>[w]``, ``w = ceil(bits / 64)``) and optionally ``u``
(``fixed_size_list<float32>[bits]``, the network's continuous outputs, for re-ranking); the schema metadata key
``dahash`` holds JSON ``{"version": 1, "bits": d, "codes_sha256": D, ...free-form}``.

The digest ``D = sha256("dahash-codes" || bits || n || w || codes as little-endian uint64, row-major)``
(:func:`codes_digest`) names the codes' content. Every file derived from an index carries it: the
memory-mapped sidecar ``<index>.codes-<D[:16]>.npy`` in its name, a FAISS backend file in its header
(:mod:`dahash.codes.backends`). A derived file of another content is never used: replacing an index (even by
an older file, ``cp -p``) changes ``D``. Every check failure is a :class:`~dahash.codes.index.SearchError`
with one line naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["INDEX_VERSION", "MAX_BITS", "codes_digest", "mapped_codes", "read_index", "read_u", "utf8_or_none",
           "write_index"]

#: version of the parquet layout; files of another version are refused.
INDEX_VERSION = 1
#: the longest code accepted from a file (a guard against absurd sizes; the paper's codes have 16-128 bits)
MAX_BITS = 1 << 16


def _error(msg: str) -> Exception:
    from dahash.codes.index import SearchError

    return SearchError(msg)


def codes_digest(codes: np.ndarray, bits: int) -> str:
    """sha256 hex of the packed codes ``(n, w)`` uint64 and ``bits`` (module docstring), read in row blocks."""
    n, w = codes.shape
    h = hashlib.sha256(b"dahash-codes" + np.array([bits, n, w], dtype="<u8").tobytes())
    step = max(1, (1 << 23) // max(w, 1))
    for s in range(0, n, step):
        h.update(np.ascontiguousarray(codes[s:s + step], dtype="<u8").tobytes())
    return h.hexdigest()


def utf8_or_none(name: str) -> str | None:
    """``name`` if it can be stored as UTF-8 text (parquet strings), else None (a non-UTF-8 file name on
    Linux arrives as surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return name


def write_index(path: Path, codes: np.ndarray, bits: int, paths: list[str] | None, labels: list[Any] | None,
                meta: dict, u: np.ndarray | None) -> Path:
    """Write the layout atomically (temp file + rename; leftovers of killed writers are swept first)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from dahash.atomic import mkstemp, sweep_stale_temps, temp_prefix

    n, w = codes.shape
    for name, vals in (("path", paths), ("label", labels)):
        bad = [v for v in (vals or []) if v is not None and utf8_or_none(str(v)) is None]
        if bad:
            raise _error(f"{path}: {name} {bad[0].encode('utf-8', 'backslashreplace').decode()!r} is not UTF-8 "
                         f"text; rename it (or leave it out) before indexing")
    cols = {"path": pa.array(paths if paths is not None else [None] * n, type=pa.string()),
            "label": pa.array([None if lab is None else str(lab) for lab in labels]
                              if labels is not None else [None] * n, type=pa.string()),
            "code": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(codes).reshape(-1), type=pa.uint64()), w)}
    if u is not None:
        cols["u"] = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(u, dtype=np.float32).reshape(-1), type=pa.float32()), bits)
    head = {"version": INDEX_VERSION, "bits": int(bits), "codes_sha256": codes_digest(codes, bits)}
    table = pa.table(cols).replace_schema_metadata({"dahash": json.dumps({**meta, **head})})
    path = Path(path)
    sweep_stale_temps(path)
    fd, tmp = mkstemp(path.parent, temp_prefix(path), ".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _meta(path: Path, schema: Any) -> dict:
    """The checked ``dahash`` metadata of a parquet schema (``bits`` an int in 1..MAX_BITS)."""
    raw = (schema.metadata or {}).get(b"dahash")
    if raw is None or not {"code", "path", "label"} <= set(schema.names):
        raise _error(f"{path}: not a dahash index (no 'dahash' metadata or code/path/label columns); "
                     f"create it with `dahash encode`")
    try:
        meta = json.loads(raw)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise _error(f"{path}: the index metadata is not a JSON object (the file was edited or damaged); "
                     f"re-create it with `dahash encode`")
    if meta.get("version") != INDEX_VERSION:
        raise _error(f"{path}: index version {meta.get('version')!r}, this dahash reads version {INDEX_VERSION}; "
                     f"re-create it with `dahash encode`")
    bits = meta.get("bits")
    if not isinstance(bits, int) or isinstance(bits, bool) or not 1 <= bits <= MAX_BITS:
        raise _error(f"{path}: the index metadata gives bits={bits!r}, not an integer in 1..{MAX_BITS}; "
                     f"re-create it with `dahash encode`")
    digest = meta.get("codes_sha256")
    if digest is not None and (not isinstance(digest, str) or len(digest) != 64):
        raise _error(f"{path}: the index metadata's codes_sha256 is not a sha256; re-create it with `dahash encode`")
    return meta


def _check_list_column(path: Path, schema: Any, name: str, kinds: tuple[Any, ...], size: int, what: str) -> None:
    """Column ``name`` must be ``fixed_size_list<kind>[size]`` (the layout's type, nothing cast)."""
    import pyarrow as pa

    t = schema.field(name).type
    if not (pa.types.is_fixed_size_list(t) and t.list_size == size and t.value_type in kinds):
        raise _error(f"{path}: column {name!r} is {t}, expected fixed_size_list<{kinds[0]}>[{size}] ({what}); "
                     f"re-create the index with `dahash encode`")


def _check_text_column(path: Path, schema: Any, name: str) -> None:
    import pyarrow as pa

    t = schema.field(name).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
        raise _error(f"{path}: column {name!r} is {t}, expected strings; re-create the index with `dahash encode`")


def _codes_of(path: Path, column: Any, n: int, w: int) -> np.ndarray:
    """The code column as ``(n, w)`` uint64 (its type checked before); nulls refused."""
    col = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if col.null_count or col.values.null_count:
        raise _error(f"{path}: the code column has missing values; re-create the index with `dahash encode`")
    return np.ascontiguousarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.uint64).reshape(n, w)


def read_index(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """Read and check an index file: ``{"codes", "bits", "paths", "labels", "meta", "digest", "has_u"}``.

    Args:
        mmap: the codes come from the digest-named sidecar (:func:`mapped_codes`), memory-mapped; the parquet
            code column is only read when the sidecar must be written.

    Raises:
        SearchError: missing, not parquet, another version, bits out of range, metadata not JSON, a column of the
            wrong type (no silent casts), a digest that does not match the codes.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except FileNotFoundError as exc:
        raise _error(f"{path}: no such index file; create it with `dahash encode`") from exc
    except Exception as exc:  # pyarrow.ArrowInvalid and friends: not parquet
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _error(f"{path}: not a parquet index ({first}); create it with `dahash encode`") from exc
    meta = _meta(path, schema)
    bits = meta.pop("bits")
    meta.pop("version")
    digest = meta.pop("codes_sha256", None)
    w = -(-bits // 64)
    _check_list_column(path, schema, "code", (_pa_uint64(),), w, f"{bits}-bit codes in {w} uint64 word(s)")
    _check_text_column(path, schema, "path")
    _check_text_column(path, schema, "label")
    has_u = "u" in schema.names
    if has_u:
        import pyarrow as pa

        _check_list_column(path, schema, "u", (pa.float32(), pa.float64(), pa.float16()), bits,
                           "the continuous outputs")
    try:
        table = pq.read_table(path, columns=["path", "label"] + ([] if mmap and digest else ["code"]))
    except Exception as exc:  # a damaged body behind a readable footer
        raise _error(f"{path}: cannot read the index ({str(exc).splitlines()[0] if str(exc) else exc!r}); "
                     f"re-create it with `dahash encode`") from exc
    n = table.num_rows
    codes = None if "code" not in table.column_names else _codes_of(path, table.column("code"), n, w)
    if codes is not None:
        actual = codes_digest(codes, bits)
        if digest is not None and actual != digest:
            raise _error(f"{path}: the codes do not match the digest recorded when the index was written (the "
                         f"file was modified); re-create it with `dahash encode`")
        digest = actual
    if mmap:
        codes = mapped_codes(path, codes, n, w, digest)
    labels = table.column("label").to_pylist()
    return {"codes": codes, "bits": bits, "paths": table.column("path").to_pylist(),
            "labels": None if all(lab is None for lab in labels) else labels, "meta": meta, "digest": digest,
            "has_u": has_u}


def _pa_uint64() -> Any:
    import pyarrow as pa

    return pa.uint64()


def read_u(path: str | Path, n: int, bits: int) -> np.ndarray:
    """The ``u`` column of an index file as ``(n, bits)`` float32 (checked by :func:`read_index` before)."""
    import pyarrow.parquet as pq

    col = pq.read_table(path, columns=["u"]).column("u").combine_chunks()
    if col.null_count or col.values.null_count:
        raise _error(f"{path}: the u column has missing values; re-create the index with `dahash encode`")
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(n, bits)


def sidecar_path(path: Path, digest: str) -> Path:
    """``<index>.codes-<digest[:16]>.npy``: the sidecar of exactly this content."""
    return path.with_name(f"{path.name}.codes-{digest[:16]}.npy")


def _check_sidecar(side: Path, n: int, w: int) -> None:
    """The sidecar's .npy header must say ``<u8``, C order, shape ``(n, w)``, and the file hold exactly that."""
    from numpy.lib import format as npf

    try:
        with open(side, "rb") as fh:
            version = npf.read_magic(fh)
            shape, fortran, dtype = (npf.read_array_header_1_0 if version == (1, 0) else
                                     npf.read_array_header_2_0)(fh, max_header_size=10_000)
            offset = fh.tell()
        size = side.stat().st_size
    except (OSError, ValueError, SyntaxError) as exc:
        raise _error(f"{side}: not a codes sidecar ({str(exc).splitlines()[0] if str(exc) else exc!r}); delete "
                     f"it, the next --mmap search writes it again") from exc
    if dtype != np.dtype("<u8") or fortran or tuple(shape) != (n, w) or size != offset + 8 * n * w:
        raise _error(f"{side}: a codes sidecar must hold ({n}, {w}) uint64 in {offset + 8 * n * w} bytes, it claims "
                     f"{dtype} {tuple(shape)} in {size} bytes; delete it, the next --mmap search writes it again")


def mapped_codes(path: Path, codes: np.ndarray | None, n: int, w: int, digest: str) -> np.ndarray:
    """The codes memory-mapped from the sidecar of ``digest`` (written from ``codes``, or from the parquet
    file when None, if missing; sidecars of other contents beside the index are deleted then)."""
    side = sidecar_path(path, digest)
    if not side.is_file():
        from dahash.atomic import mkstemp, sweep_stale_temps, temp_prefix

        if codes is None:
            full = read_index(path)  # checks the recorded digest against the codes
            if full["digest"] != digest:
                raise _error(f"{path}: changed while it was read; search again")
            codes = full["codes"]
        for old in [path.with_name(path.name + ".codes.npy"), *path.parent.glob(f"{path.name}.codes-*.npy")]:
            old.unlink(missing_ok=True)  # the mtime-tied sidecar of earlier versions, and other contents'
        sweep_stale_temps(side)
        fd, tmp = mkstemp(side.parent, temp_prefix(side), ".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(codes, dtype="<u8"))
            os.replace(tmp, side)
        finally:
            Path(tmp).unlink(missing_ok=True)
    _check_sidecar(side, n, w)
    return np.load(side, mmap_mode="r", allow_pickle=False)
