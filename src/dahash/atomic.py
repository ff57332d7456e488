"""Atomic file writes: a temporary file in the destination's folder, fsync, then ``os.replace``.

A reader (or an interrupted run) sees the old file or the new one, never half of either.

Temporary names are ``.<dest name>.pid<PID>.<random>.tmp`` (:func:`temp_prefix`). A process killed between
writing the temporary and the rename (SIGKILL, power loss) leaves it behind, inside what may be a tracked
folder; the next write of the same destination removes every such leftover whose process is gone
(:func:`sweep_stale_temps`), so a successful rerun leaves the folder exactly as a clean run would.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

__all__ = ["current_umask", "mkdtemp", "mkstemp", "temp_prefix", "sweep_stale_temps", "remove_tree",
           "write_bytes_atomic", "write_text_atomic"]


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it (``/proc/self/status``, 4.7+).

    Elsewhere it is set and restored at once (``os.umask`` has no read-only form; the set-and-restore is the
    portable idiom, not safe against another thread creating files in between).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def mkstemp(dir: str | os.PathLike[str], prefix: str, suffix: str = ".tmp") -> tuple[int, str]:
    """``tempfile.mkstemp`` whose file gets the mode a plain ``open()`` would give it (``0o666 & ~umask``).

    mkstemp creates its file 0600 (private temporaries); renamed onto a destination, that mode would make a
    report, model or metrics file unreadable to the group and others whatever the user's umask says.
    """
    fd, name = tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    return fd, name


def mkdtemp(dir: str | os.PathLike[str], prefix: str, suffix: str = "") -> Path:
    """``tempfile.mkdtemp`` (created 0700) given the mode ``os.mkdir`` would give it (``0o777 & ~umask``):
    for a build folder that is renamed onto its destination once complete."""
    path = Path(tempfile.mkdtemp(dir=dir, prefix=prefix, suffix=suffix))
    os.chmod(path, 0o777 & ~current_umask())
    return path


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete the folder ``path`` and everything below it, however deep (best effort, like ``shutil.rmtree``
    with ``ignore_errors=True``); a symbolic link is removed, never followed.

    Iterative: ``shutil.rmtree`` recurses once per level and raises RecursionError on a tree ~1,000 folders deep
    (an archive or a mirror can hold one), which ``ignore_errors`` does not catch.
    """
    path = os.fspath(path)
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
            return
    except FileNotFoundError:
        return
    except OSError:
        return
    stack = [(path, False)]
    while stack:
        folder, emptied = stack.pop()
        if emptied:
            try:
                os.rmdir(folder)
            except OSError:
                pass
            continue
        stack.append((folder, True))
        try:
            with os.scandir(folder) as entries:
                for e in entries:
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append((e.path, False))
                        else:
                            os.unlink(e.path)
                    except OSError:
                        pass
        except OSError:
            pass


def temp_prefix(dest: str | os.PathLike[str]) -> str:
    """``.<dest name>.pid<this process id>.``: the prefix of this process's temporaries for ``dest``."""
    return f".{Path(dest).name}.pid{os.getpid()}."


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (ours counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def sweep_stale_temps(dest: str | os.PathLike[str]) -> list[Path]:
    """Delete the leftovers of interrupted atomic writes of ``dest``; return what was deleted.

    Matched beside ``dest``: ``.<name>.pid<PID>.<x>.tmp`` / ``.<name>.pid<PID>.old`` whose PID is not a
    running process, and the pid-less names earlier versions used (``.<name>.<8 chars>.tmp``,
    ``.<name>.old``). A temporary of a live writer is never touched.
    """
    dest = Path(dest)
    name = re.escape(dest.name)
    with_pid = re.compile(rf"^\.{name}\.pid(\d+)\.(?:[A-Za-z0-9_]+\.tmp|old)$")
    legacy = re.compile(rf"^\.{name}\.(?:[a-z0-9_]{{8}}\.tmp|old)$")
    removed: list[Path] = []
    try:
        entries = list(dest.parent.iterdir())
    except FileNotFoundError:
        return removed
    for p in entries:
        m = with_pid.match(p.name)
        if (m and not _alive(int(m.group(1)))) or legacy.match(p.name):
            remove_tree(p)
            removed.append(p)
    return removed


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; the temporary file is removed on any error."""
    path = Path(path)
    sweep_stale_temps(path)
    fd, tmp = mkstemp(path.parent, temp_prefix(path), ".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """UTF-8 text version of :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode("utf-8"))
