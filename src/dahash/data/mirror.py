"""Reading a local mirror (``data.mirror``) without ever leaving it, even while it changes.

A mirror is a folder the user points at; it is copied into ``data/raw/<dataset>/`` and from there into the DVC
cache and remote. A symbolic link in it that leads outside it would smuggle in any file the user can read, so
such links are refused (:mod:`dahash.data.links` names them up front). Checking first and copying afterwards is
not enough: a link swapped in between the check and the copy would be followed. So every path below the mirror
is opened here through file descriptors, one component at a time, from a descriptor of the mirror's root
(``openat`` with ``O_NOFOLLOW``): a symbolic link met on the way is read (``readlinkat``) and its target is
resolved the same way, below the root only, whatever the link says at that instant; ``..`` never climbs above the
root. What is finally read is the file that was opened (``fstat`` on that descriptor: a regular file), never a
path looked up again. This is ``openat2(RESOLVE_BENEATH)`` done by hand (Python has no binding for it).

:func:`copy_mirror` copies the domains' ``<class>/<file>`` this way; :func:`mirror_digest` digests their content
(the same walk), which is what decides whether a dataset taken from a mirror is out of date.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from dahash.atomic import write_text_atomic
from dahash.data.fetch import DownloadError

__all__ = ["MirrorEscape", "Beneath", "copy_mirror", "mirror_files", "mirror_digest"]

_CHUNK = 1 << 20
_MAX_LINKS = 40  # as the kernel's limit on links followed in one lookup
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)  # NONBLOCK: a fifo never hangs


class MirrorEscape(OSError):
    """A path below the mirror leads outside it (a symbolic link, ``..``), or a link loop / dangling link."""


class Beneath:
    """Opens paths below ``root`` through file descriptors, following symbolic links only while they stay below it.

    Use as a context manager (it holds a descriptor of ``root``). ``root`` itself may be reached through links
    (the user chose it); everything below it is resolved by :meth:`open`.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.real_root = os.path.realpath(self.root)
        self._fd = os.open(self.real_root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))

    def __enter__(self) -> "Beneath":
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)

    def _link_parts(self, target: str, rel: str) -> tuple[bool, list[str]]:
        """(from the root?, components) of a link's ``target``; an absolute target must lie below the root."""
        if not os.path.isabs(target):
            return False, list(PurePosixPath(target).parts)
        real = os.path.realpath(target)  # what it names now: then walked again below the root, so a race cannot escape
        if real != self.real_root and not real.startswith(self.real_root.rstrip("/") + "/"):
            raise MirrorEscape(errno.EXDEV, f"{rel} is a symbolic link to {target}, outside the mirror")
        return True, list(PurePosixPath(os.path.relpath(real, self.real_root)).parts)

    def open(self, rel: str | PurePosixPath, *, directory: bool) -> int:
        """A new descriptor of ``root/rel`` (a folder when ``directory``, else a regular file, read-only).

        Raises:
            MirrorEscape: the path (through any link, at any component) leads outside the root, a link dangles
                or loops.
            NotADirectoryError / IsADirectoryError / FileNotFoundError: what is there is not what was asked for
                (a file that is a fifo, socket or device raises IsADirectoryError's sibling ``OSError(ENXIO)``).
        """
        todo = [p for p in PurePosixPath(rel).parts if p not in ("", ".")]
        stack: list[int] = []  # descriptors of the folders below the root, innermost last
        links = 0
        try:
            while todo:
                name = todo.pop(0)
                if name == "..":
                    if not stack:
                        raise MirrorEscape(errno.EXDEV, f"{rel} leads above the mirror ('..')")
                    os.close(stack.pop())
                    continue
                last = not todo
                cur = stack[-1] if stack else self._fd
                try:
                    fd = os.open(name, _DIR if (directory or not last) else _FILE, dir_fd=cur)
                except OSError as exc:
                    try:
                        target = os.readlink(name, dir_fd=cur)
                    except OSError:
                        if exc.errno == errno.ENOENT:
                            raise MirrorEscape(errno.ENOENT, f"{rel}: {name} is missing (a dangling link?)") from exc
                        raise exc from None
                    links += 1
                    if links > _MAX_LINKS:
                        raise MirrorEscape(errno.ELOOP, f"{rel}: too many levels of symbolic links") from exc
                    absolute, parts = self._link_parts(target, str(rel))
                    if absolute:
                        for fd_ in stack:
                            os.close(fd_)
                        stack.clear()
                    todo = [p for p in parts if p not in ("", ".")] + todo
                    continue
                if last and not directory:
                    st = os.fstat(fd)
                    if not stat.S_ISREG(st.st_mode):
                        os.close(fd)
                        raise OSError(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.ENXIO,
                                      f"{rel} is not a regular file")
                    return fd
                stack.append(fd)
            return os.dup(stack[-1]) if stack else os.dup(self._fd)
        finally:
            for fd_ in stack:
                os.close(fd_)

    def listdir(self, rel: str | PurePosixPath) -> list[str]:
        """Sorted names in the folder ``root/rel`` (resolved as :meth:`open`)."""
        fd = self.open(rel, directory=True)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def mirror_files(bn: Beneath, domains: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """``(domain, relative path below the root, class)`` of every visible file ``<domain folder>/<class>/<file>``.

    ``domains`` maps each domain to its folder relative to the root. Entries that are not folders (at the class
    level) or not regular files (at the file level) are skipped, as are hidden names.
    """
    for domain, drel in domains.items():
        for cls in bn.listdir(drel):
            if _is_hidden(cls):
                continue
            crel = PurePosixPath(drel) / cls
            try:
                names = bn.listdir(crel)
            except NotADirectoryError:
                continue
            for name in names:
                if not _is_hidden(name):
                    yield domain, (crel / name).as_posix(), cls


def _relative_domains(root: Path, src_domains: dict[str, Path]) -> dict[str, str]:
    return {d: Path(p).relative_to(root).as_posix() or "." for d, p in src_domains.items()}


def _refuse(root: Path, exc: MirrorEscape) -> DownloadError:
    return DownloadError(
        f"refusing to copy from mirror {root}: {exc.strerror} (a symbolic link leaving the mirror, possibly "
        "swapped in while copying). Files outside the mirror would be copied into the dataset and the DVC cache: "
        "replace the links with the files themselves and run again. Nothing was written to the dataset."
    )


def copy_mirror(root: Path, src_domains: dict[str, Path], build: Path) -> dict[str, int]:
    """Copy every visible ``<class>/<file>`` of each domain folder (``src_domains``: domain -> folder below
    ``root``) into ``build/<domain>/<class>/<file>`` (content only), reading through :class:`Beneath`.
    Returns the number of files per domain.

    Raises:
        DownloadError: a path leads outside ``root`` (at the time it is opened), a link dangles or loops.
    """
    root, build = Path(root), Path(build)
    counts = {d: 0 for d in src_domains}
    with Beneath(root) as bn:
        try:
            jobs = list(mirror_files(bn, _relative_domains(root, src_domains)))
        except MirrorEscape as exc:
            raise _refuse(root, exc) from exc

        def one(job: tuple[str, str, str]) -> bool:
            domain, rel, cls = job
            try:
                fd = bn.open(rel, directory=False)
            except (IsADirectoryError, OSError) as exc:
                if isinstance(exc, MirrorEscape):
                    raise
                if exc.errno in (errno.EISDIR, errno.ENXIO):  # a folder, fifo, socket or device: not an image
                    return False
                raise
            dest = build / domain / cls / PurePosixPath(rel).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            with os.fdopen(fd, "rb") as src, open(dest, "xb") as out:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
            return True

        for d in src_domains:
            (build / d).mkdir(parents=True, exist_ok=True)
        try:
            with ThreadPoolExecutor(max_workers=8) as pool:
                done = list(pool.map(one, jobs))
        except MirrorEscape as exc:
            raise _refuse(root, exc) from exc
    for (domain, _, _), ok in zip(jobs, done):
        counts[domain] += ok
    return counts


def _load_cache(path: Path | None) -> dict[str, list]:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def mirror_digest(root: Path, src_domains: dict[str, Path], classes: Sequence[str] | None = None, *,
                  cache_file: Path | None = None) -> tuple[str, int]:
    """``(digest, files)``: the content digest of a mirror's domains, equal to
    :func:`dahash.data.download.tree_digest` of the copy :func:`copy_mirror` makes of it (SHA256 over the sorted
    lines ``"<domain>/<class>/<file>\\t<sha256 of the file>\\n"``), and the number of files.

    ``classes``: only these class folders (None: all). Read through :class:`Beneath`, as the copy.
    ``cache_file``: a JSON file remembering each file's sha256 with its (size, mtime, ctime, inode, device), so
    that a file whose ``fstat`` still says the same is not read again (ctime changes on every write, even one that
    restores the mtime). It is rewritten atomically; a lost or corrupt cache only costs a full read.

    Raises:
        MirrorEscape: as :meth:`Beneath.open`.
    """
    root = Path(root)
    old = _load_cache(cache_file)
    with Beneath(root) as bn:
        jobs = [j for j in mirror_files(bn, _relative_domains(root, src_domains))
                if classes is None or j[2] in classes]

        def one(job: tuple[str, str, str]) -> tuple[str, list] | None:
            domain, rel, cls = job
            try:
                fd = bn.open(rel, directory=False)
            except OSError as exc:
                if not isinstance(exc, MirrorEscape) and exc.errno in (errno.EISDIR, errno.ENXIO):
                    return None
                raise
            key = f"{domain}/{cls}/{PurePosixPath(rel).name}"
            with os.fdopen(fd, "rb") as fh:
                st = os.fstat(fh.fileno())
                sig = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
                if isinstance(old.get(key), list) and old[key][:5] == sig:
                    return key, old[key]
                h = hashlib.sha256()
                while chunk := fh.read(_CHUNK):
                    h.update(chunk)
            return key, [*sig, h.hexdigest()]

        with ThreadPoolExecutor(max_workers=8) as pool:
            entries = dict(x for x in pool.map(one, jobs) if x is not None)
    total = hashlib.sha256()
    for line in sorted(f"{key}\t{entry[5]}\n" for key, entry in entries.items()):
        total.update(line.encode("utf-8"))
    if cache_file is not None and entries != old:
        Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(cache_file, json.dumps(entries, sort_keys=True))
    return total.hexdigest(), len(entries)
