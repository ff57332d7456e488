"""Symbolic links that leave a folder: what a local mirror may not hand to the pipeline.

A custom ``data.mirror`` is copied into ``data/raw/<dataset>/`` and from there into the DVC cache (and
remote, on ``dvc push``). A link inside the mirror that points outside it would smuggle in any file the
user can read (``/etc/passwd`` named ``cat.jpg``), so such links are refused, as archive extraction
refuses link members (:func:`dahash.data.archives.safe_extract`). Links that stay inside the mirror are fine.
This check names every such link up front; the copy itself (:mod:`dahash.data.mirror`) reads through file
descriptors that cannot leave the mirror, so a link swapped in after this check is refused too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["links_leaving"]


def _inside(path: Path, root: Path) -> bool:
    """``path`` (fully resolved) is ``root`` or below it."""
    return path == root or root in path.parents


def links_leaving(root: Path, folders: Iterable[Path], *, skip_hidden: bool = True) -> list[tuple[str, str]]:
    """``(path relative to root, resolved target)`` of every entry under ``folders`` (two levels:
    ``<folder>/<class>/<file>``, and each folder itself) whose real path is outside ``root``'s real path.

    Every symlink in the chain counts: a link to a link that ends outside ``root`` is listed, as is a
    dangling link (its target cannot be checked). Hidden names (``.x``) are skipped when ``skip_hidden``,
    as the copy skips them.
    """
    real_root = Path(os.path.realpath(root))
    out: list[tuple[str, str]] = []

    def check(p: Path) -> bool:
        real = Path(os.path.realpath(p))
        if not _inside(real, real_root) or (p.is_symlink() and not p.exists()):
            try:
                rel = p.relative_to(root).as_posix()
            except ValueError:
                rel = str(p)
            out.append((rel, str(real)))
            return False
        return True

    for folder in folders:
        if not check(folder) or not folder.is_dir():
            continue
        for cdir in sorted(folder.iterdir()):
            if skip_hidden and cdir.name.startswith("."):
                continue
            if not check(cdir) or not cdir.is_dir():
                continue
            for f in sorted(cdir.iterdir()):
                if not (skip_hidden and f.name.startswith(".")):
                    check(f)
    return out
