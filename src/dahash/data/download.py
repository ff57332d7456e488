"""Preparing a dataset's image tree: from a local mirror, or from its archives (fetched and unpacked safely).

Nothing here leaves a half-written file or folder behind. The pieces live by concern:

* :mod:`dahash.data.fetch`: :func:`fetch` (download, checksum, manual placement, cache) and ``fetch_weights``;
* :mod:`dahash.data.archives`: :func:`safe_extract` (every member checked first, temporary folder, rename);
* :mod:`dahash.data.mirror`: copying a local mirror through file descriptors that never leave it;
* here, :func:`prepare_dataset` tries the dataset's sources in order (a mirror; else its archive, then e.g. one
  archive per domain from a second publisher; local copies before any download), builds ``out_dir`` in a
  temporary folder beside it, verifies it, and only then replaces an existing ``out_dir``. When every source
  fails, one error names each source, what went wrong and what to place by hand. The names are re-exported here.

Hidden files (names starting with ``.``, e.g. ``.DS_Store``, ``._x.jpg``) are never part of a
dataset tree: they are neither copied nor digested.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dahash.atomic import mkdtemp, mkstemp, remove_tree, sweep_stale_temps, temp_prefix
from dahash.data.archives import replace_dir as _replace_dir
from dahash.data.archives import safe_extract
from dahash.data.datasets import DatasetSpec, RemoteFile, SplitSource
from dahash.data.fetch import (GOOGLE_DRIVE_HOSTS, DownloadError, ManualCopyError, _local_copy, _manual_help, fetch,
                               fetch_weights, hash_file, is_google_drive, sha256_file)
from dahash.data.mirror import copy_mirror

__all__ = [
    "DownloadError",
    "ManualCopyError",
    "GOOGLE_DRIVE_HOSTS",
    "is_google_drive",
    "fetch",
    "fetch_weights",
    "safe_extract",
    "prepare_dataset",
    "tree_digest",
    "tree_files",
    "sha256_file",
    "hash_file",
]

log = logging.getLogger(__name__)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def tree_files(
    root: Path, domains: Sequence[str], classes: Sequence[str] | None = None
) -> list[str]:
    """Posix paths ``<domain>/<class>/<file>`` (relative to ``root``) of a dataset tree, sorted.

    Only regular files (or links to them) directly inside a class folder count; hidden names are
    skipped. ``classes=None`` takes every class folder present, otherwise only the listed ones.

    Raises:
        DownloadError: a domain folder is missing.
    """
    root = Path(root)
    out: list[str] = []
    for domain in domains:
        ddir = root / domain
        if not ddir.is_dir():
            raise DownloadError(f"domain folder {ddir} is missing (expected <root>/<domain>/<class>/<file>)")
        class_names = (
            sorted(c.name for c in ddir.iterdir() if c.is_dir() and not _is_hidden(c.name))
            if classes is None
            else list(classes)
        )
        for cls in class_names:
            cdir = ddir / cls
            if not cdir.is_dir():
                continue
            for f in cdir.iterdir():
                if not _is_hidden(f.name) and f.is_file():
                    out.append(f"{domain}/{cls}/{f.name}")
    return sorted(out)


def tree_digest(
    root: Path, domains: Sequence[str], classes: Sequence[str] | None = None
) -> str:
    """Content digest of a dataset tree ``root/<domain>/<class>/<file>``.

    SHA256 over the sorted lines ``"<domain>/<class>/<file>\\t<sha256 of file>\\n"`` (UTF-8) of
    the files :func:`tree_files` lists. Independent of timestamps, permissions and archive format,
    so it verifies an archive's contents, a mirror and a hand-placed copy alike.
    """
    root = Path(root)
    rels = tree_files(root, domains, classes)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        digests = list(pool.map(lambda r: sha256_file(root / r), rels))
    lines = sorted(f"{rel}\t{d}\n" for rel, d in zip(rels, digests))
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
    return h.hexdigest()




# ---------------------------------------------------------------------------------------------
# prepare_dataset
# ---------------------------------------------------------------------------------------------
def _candidate_roots(base: Path) -> Iterator[Path]:
    """``base`` and, while a folder holds exactly one visible sub-folder, that sub-folder."""
    cur = base
    for _ in range(3):
        yield cur
        subs = [p for p in cur.iterdir() if p.is_dir() and not _is_hidden(p.name)]
        if len(subs) != 1:
            return
        cur = subs[0]


def _locate_domains(base: Path, spec: DatasetSpec) -> dict[str, Path]:
    """Map each domain to its class-folder parent under ``base``.

    Accepts the extracted-archive layout (``spec.domain_dirs``, optionally below a single wrapper
    folder) or the normalised layout ``<domain>/<class>/``.
    """
    if not base.is_dir():
        raise DownloadError(f"{base} is not a folder")
    for root in _candidate_roots(base):
        for layout in (spec.domain_dirs, {d: d for d in spec.domains}):
            found = {d: root / rel for d, rel in layout.items()}
            if all(p.is_dir() for p in found.values()):
                return found
    expected_a = ", ".join(f"{spec.domain_dirs[d]!r}" for d in spec.domains)
    expected_b = ", ".join(repr(d) for d in spec.domains)
    raise DownloadError(
        f"{base} does not hold the {spec.name!r} domains: expected the folders {expected_a} "
        f"(archive layout) or {expected_b} (normalised layout <domain>/<class>/), each holding the "
        f"class folders. Found: {sorted(p.name for p in base.iterdir())[:20]}."
    )


def _move_tree(src_domains: dict[str, Path], build: Path) -> dict[str, int]:
    """Move ``src/<class>/<file>`` of each domain (our own extracted archives) into ``build/<domain>/<class>/``.

    Links among the extracted files (checked by :func:`safe_extract` to stay inside the archive) are copied as
    the file they name."""
    counts: dict[str, int] = {}
    jobs: list[tuple[Path, Path]] = []
    for domain, src in src_domains.items():
        n = 0
        (build / domain).mkdir(parents=True)
        for cdir in sorted(src.iterdir()):
            if _is_hidden(cdir.name) or not cdir.is_dir():
                continue
            out = build / domain / cdir.name
            out.mkdir()
            for f in sorted(cdir.iterdir()):
                if _is_hidden(f.name) or not f.is_file():
                    continue
                jobs.append((f, out / f.name))
                n += 1
        counts[domain] = n

    def _one(job: tuple[Path, Path]) -> None:
        s, d = job
        if s.is_symlink():
            shutil.copyfile(s, d)
        else:
            os.replace(s, d)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(_one, jobs))
    return counts


def _refuse_links_leaving(mirror: Path, src_domains: dict[str, Path], out_dir: Path) -> None:
    """DownloadError naming every symlink under the mirror's domains that points outside the mirror."""
    from dahash.data.links import links_leaving

    bad = links_leaving(mirror, src_domains.values())
    if bad:
        shown = "; ".join(f"{rel} -> {target}" for rel, target in bad[:10])
        raise DownloadError(
            f"refusing to copy from mirror {mirror}: {len(bad)} symlink(s) point outside it ({shown}"
            f"{'; ...' if len(bad) > 10 else ''}). Files outside the mirror would be copied into the "
            f"dataset and the DVC cache: replace the links with the files themselves or remove them. "
            f"{out_dir} was not changed."
        )


def _write_json_atomic(path: Path, obj: object) -> None:
    fd, tmp = mkstemp(path.parent, f".{path.name}.", ".tmp")  # the umask's mode, not mkstemp's 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Source:
    """One way to obtain a dataset's images: its archive, or a :class:`SplitSource`'s per-domain archives."""

    label: str
    files: tuple[RemoteFile, ...]
    split: SplitSource | None  # None: ``spec.archive``, laid out as ``spec.domain_dirs``
    cache_dir: Path

    def describe(self) -> str:
        files = ", ".join(f"{f.filename} ({f.checksum_text}) from {f.url}" for f in self.files)
        return f"{self.label}: {files}"


def _sources(spec: DatasetSpec, cache_dir: Path) -> list[_Source]:
    """``spec.archive`` (cached in ``cache_dir``) then each ``spec.alternates`` entry (cached in
    ``cache_dir/<dataset>-<n>/``: per-domain archive names such as ``amazon.tgz`` are too generic
    to share one folder)."""
    assert spec.archive is not None
    out = [_Source(f"the dataset's archive {spec.archive.filename}", (spec.archive,), None, cache_dir)]
    for n, alt in enumerate(spec.alternates, start=2):
        out.append(_Source(alt.name, tuple(p.remote for p in alt.parts), alt, cache_dir / f"{spec.name}-{n}"))
    return out


def _is_local(src: _Source, manual_dir: Path | None) -> bool:
    """Whether every file of ``src`` has a verified copy placed by hand or cached (no network needed).

    Raises:
        DownloadError: a copy placed by hand fails its published checksum.
    """
    return all(_local_copy(f, src.cache_dir, manual_dir, quiet=True)[0] is not None for f in src.files)


def _find_folder(base: Path, candidates: Sequence[str], classes: Sequence[str]) -> Path | None:
    """The first ``<root>/<candidate>`` (``root``: ``base`` or a single wrapper folder below it)
    holding at least one of ``classes`` as a sub-folder."""
    for root in _candidate_roots(base):
        for rel in candidates:
            folder = root / rel
            if folder.is_dir() and any((folder / c).is_dir() for c in classes):
                return folder
    return None


def _unpack_source(
    src: _Source,
    spec: DatasetSpec,
    scratch: Path,
    *,
    manual_dir: Path | None,
    progress: bool,
    offline: bool,
) -> tuple[dict[str, Path], dict[str, object]]:
    """Fetch ``src``'s files (:func:`fetch`) and :func:`safe_extract` them into ``scratch``.

    Returns the folder holding each domain's class folders, and the provenance for ``SOURCE.json``.
    An archive from our own cache that cannot be unpacked is deleted (it would fail forever).

    Raises:
        DownloadError: as :func:`fetch`, or an archive is unreadable, unsafe or lacks its layout.
    """
    got: list[Path] = []
    for remote in src.files:
        got.append(fetch(remote, src.cache_dir, manual_dir=manual_dir, progress=progress, offline=offline))
    is_manual = [manual_dir is not None and path == Path(manual_dir) / r.filename
                 for path, r in zip(got, src.files)]
    files_info = [
        {"filename": r.filename, "url": r.url, "archive": str(path.resolve()),
         "archive_sha256": sha256_file(path), "archive_known_hash": r.known_hash,
         "kind": "manual" if manual else "download"}
        for r, path, manual in zip(src.files, got, is_manual)
    ]
    info: dict[str, object] = {"source": src.label,
                               "kind": "manual" if all(is_manual) else "download"}
    if src.split is None:
        info.update({k: files_info[0][k] for k in ("url", "archive", "archive_sha256", "archive_known_hash")})
    else:
        info["archives"] = files_info

    src_domains: dict[str, Path] = {}
    for i, (remote, path, manual) in enumerate(zip(src.files, got, is_manual)):
        extracted = scratch / f"x{i}"
        try:
            safe_extract(path, extracted)
            if src.split is None:
                src_domains.update(_locate_domains(extracted, spec))
            else:
                part = src.split.parts[i]
                folder = _find_folder(extracted, part.folders, spec.classes)
                if folder is None:
                    raise DownloadError(
                        f"{path} does not hold the {part.domain!r} class folders: expected one of the "
                        f"folders {list(part.folders)} holding class folders such as "
                        f"{list(spec.classes[:3])}. Found: {sorted(q.name for q in extracted.iterdir())[:20]}."
                    )
                src_domains[part.domain] = folder
        except DownloadError as exc:
            if not manual:  # a bad archive in our own cache would fail forever: drop it
                path.unlink(missing_ok=True)
            raise (ManualCopyError if manual else DownloadError)(
                f"{exc} {_manual_help(remote, manual_dir)}"
                + ("" if manual else " The cached archive was deleted.")
            ) from exc
    return src_domains, info


def _all_sources_failed(
    spec: DatasetSpec, sources: list[_Source], errors: dict[int, list[str]], manual_dir: Path | None,
    offline: bool, out_dir: Path,
) -> str:
    """One message naming every source, what went wrong with each, and what to place by hand."""
    where = str(manual_dir) if manual_dir is not None else "the manual folder (data.manual_dir)"
    lines = [
        f"could not obtain the {spec.name!r} images from any of its {len(sources)} sources"
        + (" (offline mode: nothing was downloaded)" if offline else "")
        + f". {out_dir} was not changed (complete downloads stay in the cache for the next run). "
        "Tried, in order:"
    ]
    for n, src in enumerate(sources):
        lines.append(f"  {n + 1}. {src.describe()}")
        lines.extend(f"     -> {msg}" for msg in dict.fromkeys(errors.get(n, ["not tried"])))
    options = [
        " + ".join(f"{f.filename} ({f.checksum_text})" for f in src.files) for src in sources
    ]
    lines.append(
        f"To go on without a download, put into {where} either "
        + ", or ".join(f"[{o}]" for o in options)
        + " (exact file names; download them by hand, e.g. in a browser, from the URLs above), "
        "then run again; or set data.mirror to a folder holding an extracted copy."
    )
    return "\n".join(lines)


#: build folders of earlier versions (no process id in the name): ``<name>.tmp-XXXXXXXX``,
#: ``.<name>.extract-XXXXXXXX``, ``.<name>.old-XXXXXXXX``
_LEGACY_DEBRIS = r"^(?:{name}\.tmp|\.{name}\.extract|\.{name}\.old)-[A-Za-z0-9_]{{8}}$"


def sweep_build_debris(out_dir: Path) -> list[Path]:
    """Delete what a killed earlier :func:`prepare_dataset` of ``out_dir`` left beside it; return what went.

    Its build and scratch folders are named ``.<name>.pid<PID>.<x>.tmp`` (:func:`dahash.atomic.temp_prefix`):
    those of a process that no longer runs are removed, a live one's are never touched. Names of earlier versions
    (without a process id) are removed too.
    """
    out_dir = Path(out_dir)
    removed = sweep_stale_temps(out_dir)
    legacy = re.compile(_LEGACY_DEBRIS.format(name=re.escape(out_dir.name)))
    if out_dir.parent.is_dir():
        for p in out_dir.parent.iterdir():
            if legacy.match(p.name) and p.is_dir() and not p.is_symlink():
                remove_tree(p)
                removed.append(p)
    for p in removed:
        log.warning("removed %s, left by an interrupted earlier run", p)
    return removed


def mirror_domains(mirror: Path, spec: DatasetSpec) -> dict[str, Path]:
    """The folder holding each domain's class folders in ``mirror`` (the archive's layout, possibly below one
    wrapper folder, or ``<domain>/<class>/``), as :func:`prepare_dataset` reads it.

    Raises:
        DownloadError: the domains are not found (the message lists what is there).
    """
    return _locate_domains(Path(mirror), spec)


def _from_sources(spec: DatasetSpec, scratch: Path, *, cache_dir: Path, manual_dir: Path | None, progress: bool,
                  offline: bool, out_dir: Path) -> tuple[dict[str, Path], dict[str, object]]:
    """The first of ``spec``'s sources that works, unpacked below ``scratch``: each domain's class-folder parent
    and the provenance for SOURCE.json. Pass 1: a source available locally (no network); pass 2: each source in
    order (downloads unless ``offline``).

    Raises:
        DownloadError: every source failed (one message naming each, what went wrong, what to place by hand).
    """
    sources = _sources(spec, cache_dir)
    errors: dict[int, list[str]] = {}
    failed_for_good: set[int] = set()
    for local_pass in (True, False):
        for n, src in enumerate(sources):
            if n in failed_for_good:
                continue
            try:
                if local_pass and not _is_local(src, manual_dir):
                    continue
                work = scratch / f"s{n}"
                remove_tree(work)
                work.mkdir()
                return _unpack_source(src, spec, work, manual_dir=manual_dir, progress=progress,
                                      offline=local_pass or offline)
            except DownloadError as exc:
                errors.setdefault(n, []).append(str(exc))
                if isinstance(exc, ManualCopyError):  # the same file would fail again
                    failed_for_good.add(n)
                log.warning("source %d of %s (%s) failed: %s", n + 1, spec.name, src.label, exc)
    if len(sources) == 1:  # the single source's own message(s)
        raise DownloadError(" ".join(dict.fromkeys(errors[0])))
    raise DownloadError(_all_sources_failed(spec, sources, errors, manual_dir, offline, out_dir))


def _verified(spec: DatasetSpec, build: Path, counts: dict[str, int], origin: str, out_dir: Path) -> dict[str, object]:
    """SOURCE.json's verification fields of the tree in ``build``: counts and tree digest, checked against the
    registry (a digest mismatch raises; counts that differ from the published ones warn).

    Raises:
        DownloadError: ``spec.tree_sha256`` is set and the tree's digest differs.
    """
    digest = tree_digest(build, spec.domains)
    counts_txt = ", ".join(f"{d} {counts[d]}" for d in spec.domains)
    expected_txt = ", ".join(f"{d} {spec.image_counts[d]}" for d in spec.domains) if spec.image_counts else "unknown"
    if spec.tree_sha256 is not None and digest != spec.tree_sha256:
        raise DownloadError(
            f"the {spec.name!r} image tree from {origin} does not match its registered digest: got tree sha256 "
            f"{digest}, expected {spec.tree_sha256}. Files found per domain: {counts_txt} (expected {expected_txt}). "
            f"Files are missing, extra or altered; use a complete, unmodified copy. {out_dir} was not changed."
        )
    if spec.image_counts and any(counts[d] != spec.image_counts[d] for d in spec.domains):
        warnings.warn(f"{spec.name}: files per domain {counts_txt} differ from the published counts ({expected_txt})",
                      stacklevel=3)
    return {"domains": list(spec.domains), "counts": counts, "expected_counts": spec.image_counts,
            "tree_sha256": digest, "tree_sha256_verified": spec.tree_sha256 is not None}


def prepare_dataset(
    spec: DatasetSpec,
    out_dir: Path,
    *,
    mirror: Path | None = None,
    cache_dir: Path,
    manual_dir: Path | None = None,
    progress: bool = True,
    offline: bool = False,
) -> Path:
    """Produce the normalised tree ``out_dir/<domain>/<class>/<file>`` for ``spec``.

    Sources: ``mirror`` (a local folder in the archive layout, possibly below one wrapper folder,
    or already normalised) when given. Otherwise ``spec.archive`` then each of ``spec.alternates``
    (per-domain archives), in that order:

    1. the first source whose every file is available locally (placed by hand in ``manual_dir``
       under its exact file name, or in the cache) and unpacks is used: no network;
    2. else (unless ``offline``) each source in order is fetched (:func:`fetch`: manual copy,
       cache, download; Google Drive links through gdown) and :func:`safe_extract`-ed; the first
       that works is used.

    When every source fails, one :class:`DownloadError` names each source (files, URLs, checksums),
    what went wrong with it, and the file names to place by hand in ``manual_dir``. A spec without
    an archive (a user's own folders, :func:`dahash.data.datasets.folder_dataset`) needs ``mirror``.

    The tree is built in a temporary folder beside ``out_dir``; ``spec.tree_sha256`` (when set) is
    verified; ``SOURCE.json`` (provenance: source, archives and their sha256, counts, digest) is
    written; only then does it replace ``out_dir``. On failure ``out_dir`` is left as it was and no
    temporary folder remains.

    Raises:
        DownloadError: every source failed (download/extraction failure, no local copy in
            ``offline`` mode, layout not found), digest mismatch, or a spec without an archive
            and no ``mirror``.
    """
    out_dir = Path(out_dir)
    cache_dir = Path(cache_dir)
    if mirror is None and spec.archive is None:
        raise DownloadError(
            f"dataset {spec.name!r} has no archive to download (it is a folder of your own images): "
            f"set data.mirror (prepare_dataset's mirror) to the folder holding its "
            f"<domain>/<class>/<image> folders (domains {list(spec.domains)}). "
            f"{out_dir} was not changed."
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    sweep_build_debris(out_dir)
    build = mkdtemp(out_dir.parent, temp_prefix(out_dir), ".tmp")  # renamed onto out_dir: the umask's mode
    scratch: Path | None = None
    source: dict[str, object] = {"dataset": spec.name}
    try:
        if mirror is not None:
            mirror = Path(mirror)
            src_domains = _locate_domains(mirror, spec)
            _refuse_links_leaving(mirror, src_domains, out_dir)  # names every such link at once
            source.update(kind="mirror")  # not its path: an identical copy elsewhere gives the same output
            counts = copy_mirror(mirror, src_domains, build)  # and refuses one swapped in meanwhile
            origin = str(mirror)
        else:
            scratch = mkdtemp(out_dir.parent, f"{temp_prefix(out_dir)}x", ".tmp")
            src_domains, info = _from_sources(spec, scratch, cache_dir=cache_dir, manual_dir=manual_dir,
                                              progress=progress, offline=offline, out_dir=out_dir)
            source.update(info)
            counts = _move_tree(src_domains, build)
            origin = str(info.get("archive") or info.get("source"))
        source.update(_verified(spec, build, counts, origin, out_dir))
        _write_json_atomic(build / "SOURCE.json", source)
        _replace_dir(build, out_dir)
    except BaseException:
        remove_tree(build)
        raise
    finally:
        if scratch is not None:
            remove_tree(scratch)
    log.info("prepared %s in %s (%s)", spec.name, out_dir, source.get("source") or source.get("kind"))
    return out_dir
