"""Preprocessing: the image manifest of a prepared dataset tree.

The manifest lists every file under ``<root>/<domain>/`` of the selected domains, one row per
file. Each file is fully decoded with :func:`dahash.data.images.load_rgb`; files that cannot be used are
kept with ``status="excluded"`` and the ``reason``, never dropped silently.

Columns (:data:`COLUMNS`):
    path        posix path relative to ``root`` (``<domain>/<class>/<file>``)
    domain      domain name (the registry's)
    label       int index of ``class_name`` in ``spec.classes``; -1 for an unknown class folder
    class_name  the class folder's name
    width, height  image size in pixels, upright (EXIF orientation applied; 0 when it cannot be decoded)
    mode        PIL mode of the file as stored ("RGB", "L", "CMYK", "RGBA", ...; "" if unknown)
    status      "ok" or "excluded"
    reason      "" when ok, else why it is excluded
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image

from dahash.atomic import mkstemp, sweep_stale_temps, temp_prefix
from dahash.data.datasets import DatasetSpec
from dahash.data.images import UnsupportedImage, load_rgb
from dahash.progress import progress as progress_bar

__all__ = [
    "COLUMNS",
    "build_manifest",
    "write_manifest",
    "read_manifest",
    "manifest_summary",
]

COLUMNS: tuple[str, ...] = (
    "path",
    "domain",
    "label",
    "class_name",
    "width",
    "height",
    "mode",
    "status",
    "reason",
)
_INT_COLUMNS = ("label", "width", "height")
_STATUSES = ("ok", "excluded")


def _probe(file: Path) -> tuple[int, int, str, str]:
    """(width, height, original mode, reason) of one file; reason "" when it decodes."""
    try:
        if file.stat().st_size == 0:
            return 0, 0, "", "empty file"
    except OSError as exc:
        return 0, 0, "", f"cannot read: {exc}"
    try:
        with Image.open(file) as img:
            mode = img.mode
        width, height = load_rgb(file).size  # full decode (catches truncated / corrupt data), upright size
    except UnsupportedImage as exc:
        return 0, 0, mode, f"unsupported pixels: {exc}"
    except Exception as exc:  # PIL raises OSError, UnidentifiedImageError, DecompressionBombError, ...
        msg = str(exc).replace(str(file), file.name).strip() or type(exc).__name__
        return 0, 0, "", f"cannot decode: {msg}"
    return int(width), int(height), mode, ""


def _walk(top: Path) -> Iterator[tuple[str, list[str]]]:
    """``(folder, sorted file names)`` of ``top`` and every folder below it, depth first in name order, following
    links to folders once each (a link loop is not followed twice).

    Iterative: ``os.walk`` of Python 3.11 recurses once per level and fails (RecursionError) on a tree ~1,000
    folders deep.
    """
    seen: set[tuple[int, int]] = set()
    stack = [os.fspath(top)]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        dirs, files = [], []
        for e in entries:
            try:
                (dirs if e.is_dir() else files).append(e.name)
            except OSError:
                files.append(e.name)
        yield folder, files
        stack.extend(os.path.join(folder, d) for d in reversed(dirs))


def build_manifest(
    root: Path, spec: DatasetSpec, *, domains: Sequence[str] | None = None, progress: bool = False
) -> pd.DataFrame:
    """Manifest of the tree ``root/<domain>/<class>/<file>`` (see module docstring).

    Args:
        root: the prepared dataset folder (``dahash.data.download.prepare_dataset``'s ``out_dir``).
        spec: the dataset's registry entry; its ``classes`` give the labels.
        domains: subset of ``spec.domains`` (default: all), listed in ``spec`` order.
        progress: a bar over the images decoded (:mod:`dahash.progress`).

    Rows are sorted by domain (spec order), label, path. Files not directly inside a class folder,
    in an unknown class folder, empty or undecodable are ``status="excluded"`` with the reason.

    Raises:
        ValueError: an unknown domain name, or a domain folder is missing (named).
    """
    root = Path(root)
    if domains is None:
        domains = spec.domains
    unknown = [d for d in domains if d not in spec.domains]
    if unknown:
        raise ValueError(
            f"unknown domain(s) {unknown} for dataset {spec.name!r}; valid: {list(spec.domains)}"
        )
    selected = [d for d in spec.domains if d in set(domains)]
    for d in selected:
        if not (root / d).is_dir():
            raise ValueError(
                f"domain folder {root / d} of dataset {spec.name!r} is missing; prepare the dataset "
                f"first (dahash.data.download.prepare_dataset) or check the root folder {root}"
            )

    class_index = {c: i for i, c in enumerate(spec.classes)}
    rows: list[dict[str, object]] = []
    files: list[Path] = []
    for d in selected:
        ddir = root / d
        for dirpath, filenames in _walk(ddir):
            for name in filenames:
                f = Path(dirpath) / name
                rel = f.relative_to(root)
                parts = rel.parts  # (domain, class, file) when well placed
                row: dict[str, object] = {
                    "path": rel.as_posix(),
                    "domain": d,
                    "label": -1,
                    "class_name": parts[1] if len(parts) >= 3 else "",
                    "width": 0,
                    "height": 0,
                    "mode": "",
                    "status": "excluded",
                    "reason": "",
                }
                if len(parts) != 3:
                    row["reason"] = (
                        "not inside a class folder"
                        if len(parts) == 2
                        else f"nested below class folder '{parts[1]}' (expected <domain>/<class>/<file>)"
                    )
                elif parts[1] not in class_index:
                    row["reason"] = (
                        f"unknown class folder '{parts[1]}' (not one of the {len(spec.classes)} "
                        f"classes of {spec.name})"
                    )
                else:
                    row["label"] = class_index[parts[1]]
                rows.append(row)
                files.append(f)

    to_probe = [i for i, r in enumerate(rows) if not r["reason"]]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        results = list(progress_bar(pool.map(lambda i: _probe(files[i]), to_probe), total=len(to_probe),
                                    desc="check images", unit="img", enabled=progress))
    for i, (w, h, mode, reason) in zip(to_probe, results):
        rows[i].update(width=w, height=h, mode=mode)
        if reason:
            rows[i]["reason"] = reason
        else:
            rows[i]["status"] = "ok"

    df = pd.DataFrame(rows, columns=list(COLUMNS))
    if df.empty:
        df = pd.DataFrame({c: pd.Series(dtype="int64" if c in _INT_COLUMNS else "object") for c in COLUMNS})
    df = _coerce(df)
    order = {d: i for i, d in enumerate(spec.domains)}
    df = (
        df.assign(_d=df["domain"].map(order))
        .sort_values(["_d", "label", "path"], kind="mergesort")
        .drop(columns="_d")
        .reset_index(drop=True)
    )
    return df


def _coerce(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    for c in COLUMNS:
        if c in _INT_COLUMNS:
            df[c] = df[c].astype("int64")
        else:
            df[c] = df[c].astype(object).astype(str)
    return df[list(COLUMNS)]


def write_manifest(df: pd.DataFrame, path: Path) -> Path:
    """Write ``df`` as parquet (pyarrow) at ``path`` atomically (temp file + ``os.replace``)."""
    path = Path(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"cannot write manifest {path}: missing column(s) {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path)
    fd, tmp = mkstemp(path.parent, temp_prefix(path), ".tmp")  # the umask's mode, not mkstemp's 0600
    os.close(fd)
    try:
        _coerce(df).to_parquet(tmp, engine="pyarrow", index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`, checking its columns and values.

    Raises:
        FileNotFoundError: no such file (named).
        ValueError: not a parquet file, or missing columns / bad status values (file named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"manifest {path} does not exist; build it first (dahash.data.manifest.build_manifest + write_manifest)"
        )
    try:
        df = pd.read_parquet(path, engine="pyarrow")
    except Exception as exc:
        raise ValueError(f"manifest {path} is not a readable parquet file ({exc}); rebuild it") from exc
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(
            f"manifest {path} lacks column(s) {missing} (has {list(df.columns)}); rebuild it with "
            f"dahash.data.manifest.build_manifest"
        )
    bad = sorted(set(df["status"]) - set(_STATUSES))
    if bad:
        raise ValueError(f"manifest {path}: column 'status' has invalid values {bad}; expected {_STATUSES}")
    try:
        return _coerce(df)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"manifest {path}: column types are wrong ({exc}); rebuild it") from exc


def manifest_summary(df: pd.DataFrame) -> dict:
    """JSON-serialisable counts.

    ``{"total", "ok", "excluded", "by_domain": {domain: {"ok", "excluded", "total"}},
    "by_class": {domain: {class_name: n_ok}}, "excluded_files": [{"path", "reason"}, ...]}``
    (domains in order of first appearance, i.e. spec order for a built manifest).
    """
    by_domain: dict[str, dict[str, int]] = {}
    by_class: dict[str, dict[str, int]] = {}
    for domain, g in df.groupby("domain", sort=False):
        status = g["status"].value_counts()
        by_domain[str(domain)] = {
            "ok": int(status.get("ok", 0)),
            "excluded": int(status.get("excluded", 0)),
            "total": int(len(g)),
        }
        ok = g[g["status"] == "ok"]
        by_class[str(domain)] = {
            str(k): int(v) for k, v in ok.groupby("class_name", sort=False).size().items()
        }
    excluded = df[df["status"] != "ok"]
    return {
        "total": int(len(df)),
        "ok": int((df["status"] == "ok").sum()),
        "excluded": int(len(excluded)),
        "by_domain": by_domain,
        "by_class": by_class,
        "excluded_files": [
            {"path": str(p), "reason": str(r)} for p, r in zip(excluded["path"], excluded["reason"])
        ],
    }
