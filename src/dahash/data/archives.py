"""Safe extraction of zip and tar archives (a downloaded file is untrusted input).

:func:`safe_extract` checks every member before anything is written (absolute paths, ``..``, links leading outside,
device files), extracts into a temporary folder beside the destination and renames it onto the destination only
when complete.
"""

from __future__ import annotations

import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from dahash.atomic import mkdtemp, remove_tree, sweep_stale_temps, temp_prefix
from dahash.data.fetch import DownloadError

__all__ = ["safe_extract", "replace_dir", "MAX_DEPTH"]

#: deepest member path accepted (dataset archives hold <wrapper>/<domain>/<images>/<class>/<file>); a tree ~1,000
#: levels deep would otherwise exhaust Python's recursion in the extraction itself
MAX_DEPTH = 64


def _unsafe_name_reason(name: str) -> str | None:
    """Why a member name is unsafe, or None. Backslashes count as separators."""
    norm = name.replace("\\", "/")
    if not norm:
        return "empty member name"
    if norm.startswith("/") or (len(norm) >= 2 and norm[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(norm).parts:
        return "'..' path component (would escape the destination)"
    if "\x00" in norm:
        return "NUL byte in name"
    depth = len(PurePosixPath(norm).parts)
    if depth > MAX_DEPTH:
        return f"nested {depth} folders deep (a dataset has a few; more than {MAX_DEPTH} is refused)"
    return None


def _link_escapes(member_name: str, target: str, *, hard: bool) -> bool:
    """Whether a link named ``member_name`` pointing to ``target`` resolves outside the root."""
    target = target.replace("\\", "/")
    if target.startswith("/") or (len(target) >= 2 and target[1] == ":"):
        return True
    base = PurePosixPath() if hard else PurePosixPath(member_name.replace("\\", "/")).parent
    depth = 0
    for part in (base / target).parts:
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            return True
    return False


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> None:
    for info in zf.infolist():
        reason = _unsafe_name_reason(info.filename)
        mode = info.external_attr >> 16
        if reason is None and info.create_system == 3 and mode:  # unix attributes present
            if stat.S_ISLNK(mode):
                target = zf.read(info).decode("utf-8", "replace")
                reason = (
                    f"symlink to {target!r} outside the archive"
                    if _link_escapes(info.filename, target, hard=False)
                    else f"symlink to {target!r} (links are not allowed in zip archives)"
                )
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                reason = "device, fifo or socket file"
        if reason:
            raise DownloadError(
                f"refusing to extract {archive}: unsafe member {info.filename!r} ({reason}). "
                f"The archive is corrupt or malicious; delete it and obtain a genuine copy."
            )


def _check_tar(tf: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = tf.getmembers()
    for m in members:
        reason = _unsafe_name_reason(m.name)
        if reason is None:
            if m.issym() and _link_escapes(m.name, m.linkname, hard=False):
                reason = f"symlink to {m.linkname!r} outside the archive"
            elif m.islnk() and (
                _unsafe_name_reason(m.linkname) or _link_escapes(m.name, m.linkname, hard=True)
            ):
                reason = f"hardlink to {m.linkname!r} outside the archive"
            elif m.ischr() or m.isblk() or m.isfifo() or m.isdev():
                reason = "device or fifo file"
            elif not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                reason = f"unsupported member type {m.type!r}"
        if reason:
            raise DownloadError(
                f"refusing to extract {archive}: unsafe member {m.name!r} ({reason}). "
                f"The archive is corrupt or malicious; delete it and obtain a genuine copy."
            )
    return members


def replace_dir(new: Path, dest: Path) -> None:
    """Move the finished folder ``new`` to ``dest``, replacing an existing ``dest`` only now.

    The old ``dest`` is set aside as ``.<name>.pid<PID>.old`` (:func:`dahash.atomic.temp_prefix`) and deleted;
    a process killed in between leaves that name, which the next run's :func:`dahash.atomic.sweep_stale_temps`
    removes."""
    if dest.exists() or dest.is_symlink():
        old = dest.parent / f"{temp_prefix(dest)}old"
        if old.exists() or old.is_symlink():
            remove_tree(old)
        os.replace(dest, old)
        try:
            os.replace(new, dest)
        except BaseException:
            os.replace(old, dest)
            raise
        remove_tree(old)
    else:
        os.replace(new, dest)


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a zip, tar, tar.gz/tgz, tar.bz2 or tar.xz ``archive`` into the folder ``dest``.

    Every member is checked before anything is written: absolute paths, ``..`` components, links
    resolving outside the archive, device/fifo files are refused. Tar members are additionally
    extracted with ``filter="data"``. Extraction goes to a temporary folder beside ``dest``
    which is renamed to ``dest`` on success (an existing ``dest`` is replaced only then).

    Raises:
        DownloadError: unsafe member (named), or the archive is unreadable/truncated.
    """
    archive, dest = Path(archive), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(dest)  # a killed earlier extraction of the same dest
    tmp = mkdtemp(dest.parent, temp_prefix(dest), ".tmp")  # renamed onto dest: the umask's mode, not 0700
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _check_zip(zf, archive)
                bad = zf.testzip()
                if bad is not None:
                    raise DownloadError(f"{archive} is corrupt: member {bad!r} fails its CRC check")
                zf.extractall(tmp)
        else:
            try:
                tf = tarfile.open(archive, "r:*")
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise DownloadError(
                    f"{archive} is not a readable zip or tar archive ({type(exc).__name__}: {exc}); "
                    f"it is probably truncated or not the dataset file (e.g. an HTML page)."
                ) from exc
            with tf:
                members = _check_tar(tf, archive)
                try:
                    if hasattr(tarfile, "data_filter"):
                        tf.extractall(tmp, members=members, filter="data")
                    else:  # pragma: no cover - Python without PEP 706
                        tf.extractall(tmp, members=members)
                except tarfile.FilterError as exc:  # pragma: no cover - caught by _check_tar
                    name = getattr(getattr(exc, "tarinfo", None), "name", "?")
                    raise DownloadError(
                        f"refusing to extract {archive}: unsafe member {name!r} ({exc})"
                    ) from exc
        replace_dir(tmp, dest)
    except DownloadError:
        remove_tree(tmp)
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError,
            RuntimeError, NotImplementedError, ValueError) as exc:  # zip: encrypted / unknown method / bad header
        remove_tree(tmp)
        raise DownloadError(
            f"could not extract {archive} ({type(exc).__name__}: {exc}); it is probably truncated "
            f"or corrupt. Delete it and download it again. Nothing was extracted."
        ) from exc
    except BaseException:
        remove_tree(tmp)
        raise
    return dest
