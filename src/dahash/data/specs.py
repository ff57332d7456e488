"""The types of the data registry: remote files, archives, dataset specs, and a user's own image folders.

:class:`RemoteFile` (a URL with its published checksum), :class:`DomainArchive` and :class:`SplitSource` (one
archive per domain), :class:`DatasetSpec` (domains, the class order shared by every domain, where each domain's
class folders are) and :func:`folder_dataset` (a spec read off ``<root>/<domain>/<class>/`` folders). The
registry's entries are in :mod:`dahash.data.datasets`, which re-exports these names; its docstring states the
conventions (class order, layout, checksums).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CUSTOM", "HASH_ALGORITHMS", "DatasetSpec", "DomainArchive", "RemoteFile", "SplitSource", "folder_dataset"]

#: Checksum algorithms accepted in ``RemoteFile.known_hash``, with their hex digest lengths.
HASH_ALGORITHMS: dict[str, int] = {"md5": 32, "sha1": 40, "sha256": 64}

#: Dataset name of a user's own image folders (see :func:`folder_dataset`).
CUSTOM = "custom"

_KNOWN_HASH = re.compile(r"^(md5|sha1|sha256):([0-9a-fA-F]+)$")


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file.

    Attributes:
        url: where :func:`dahash.data.download.fetch` downloads it from.
        filename: the name it is stored under (in the cache, and the name a user must give a
            copy placed by hand in the manual folder).
        known_hash: the published checksum in pooch's format ``"<alg>:<hex>"`` with ``alg`` one of
            ``md5``, ``sha1``, ``sha256`` (hex stored lower-case), or ``None`` when no checksum is
            published.
        size: size in bytes when known (informational), else ``None``.
        note: free text for the user (provenance, why a checksum is missing, how to download by hand).

    Raises:
        ValueError: ``known_hash`` is not ``"<alg>:<hex>"`` with a supported ``alg`` and a hex
            digest of that algorithm's length.
    """

    url: str
    filename: str
    known_hash: str | None
    size: int | None
    note: str

    def __post_init__(self) -> None:
        if self.known_hash is None:
            return
        m = _KNOWN_HASH.match(self.known_hash) if isinstance(self.known_hash, str) else None
        if m is None or len(m.group(2)) != HASH_ALGORITHMS[m.group(1)]:
            lengths = ", ".join(f"{a} {n}" for a, n in HASH_ALGORITHMS.items())
            raise ValueError(
                f"RemoteFile {self.filename!r}: known_hash {self.known_hash!r} is not "
                f"'<alg>:<hex>' with alg one of {', '.join(HASH_ALGORITHMS)} and a hex digest of "
                f"that algorithm's length ({lengths} hex digits), e.g. 'md5:' + 32 hex digits; "
                f"use None when no checksum is published"
            )
        object.__setattr__(self, "known_hash", f"{m.group(1)}:{m.group(2).lower()}")

    @property
    def hash_alg(self) -> str | None:
        """Algorithm of ``known_hash`` (``"md5"``, ``"sha1"`` or ``"sha256"``), or ``None``."""
        return self.known_hash.split(":", 1)[0] if self.known_hash else None

    @property
    def hash_hex(self) -> str | None:
        """Hex digest of ``known_hash`` (lower-case), or ``None``."""
        return self.known_hash.split(":", 1)[1] if self.known_hash else None

    @property
    def checksum_text(self) -> str:
        """``"<alg> <hex>"`` (e.g. ``"md5 b1c1..."``) or ``"no published checksum"``, for messages."""
        return f"{self.hash_alg} {self.hash_hex}" if self.known_hash else "no published checksum"


@dataclass(frozen=True)
class DomainArchive:
    """One domain's archive of a :class:`SplitSource`.

    Attributes:
        domain: the registry's domain name it holds.
        remote: the archive.
        folders: candidate folders (posix, relative to the extracted archive below any single
            wrapper folder) holding the domain's class folders; the first that exists and holds
            at least one of the dataset's class folders is used (publishers' layouts are not
            documented, so e.g. both ``amazon/images`` and ``amazon`` are accepted).
    """

    domain: str
    remote: RemoteFile
    folders: tuple[str, ...]


@dataclass(frozen=True)
class SplitSource:
    """A second source of a dataset: one archive per domain (e.g. Transfer-Learning-Library's).

    Attributes:
        name: short name used in messages and ``SOURCE.json``.
        parts: one :class:`DomainArchive` per domain of the dataset.
        note: provenance and what is (not) verified.
    """

    name: str
    parts: tuple[DomainArchive, ...]
    note: str


@dataclass(frozen=True)
class DatasetSpec:
    """A multi-domain image dataset laid out as ``<domain>/<class>/<image>``.

    Attributes:
        name: registry key.
        domains: domain names, in the registry's order.
        classes: exact class folder names, sorted; label ``i`` is ``classes[i]`` in every domain.
        archive: the archive to download; ``None`` for a dataset that exists only as local
            folders (:func:`folder_dataset`), which ``prepare_dataset`` copies from its ``mirror``.
        domain_dirs: domain -> folder (posix, relative to the archive root below any single
            wrapper folder) that holds that domain's class folders.
        homepage: the dataset's home page.
        citation: what to cite.
        tree_sha256: digest of the normalised image tree (:func:`dahash.data.download.tree_digest`),
            verified after preparation; ``None`` when not known.
        image_counts: number of images per domain when known (informational: reported in error
            messages and ``SOURCE.json``, and a mismatch is warned about).
        alternates: further sources, tried in order after ``archive`` (see :class:`SplitSource`).
    """

    name: str
    domains: tuple[str, ...]
    classes: tuple[str, ...]
    archive: RemoteFile | None
    domain_dirs: dict[str, str] = field(hash=False)
    homepage: str
    citation: str
    tree_sha256: str | None
    image_counts: dict[str, int] | None = field(default=None, hash=False)
    alternates: tuple[SplitSource, ...] = ()

    def __post_init__(self) -> None:
        for alt in self.alternates:
            if sorted(p.domain for p in alt.parts) != sorted(self.domains):
                raise ValueError(
                    f"DatasetSpec {self.name!r}: source {alt.name!r} must have exactly one archive per "
                    f"domain {list(self.domains)}, got {[p.domain for p in alt.parts]}"
                )
        if set(self.domain_dirs) != set(self.domains):
            raise ValueError(
                f"DatasetSpec {self.name!r}: domain_dirs keys {sorted(self.domain_dirs)} must be "
                f"exactly the domains {list(self.domains)}"
            )
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"DatasetSpec {self.name!r}: duplicate class names")
        if list(self.classes) != sorted(self.classes):
            raise ValueError(
                f"DatasetSpec {self.name!r}: classes must be sorted (label order is sorted folder names)"
            )
        if self.image_counts is not None and set(self.image_counts) != set(self.domains):
            raise ValueError(f"DatasetSpec {self.name!r}: image_counts keys must be the domains")

    def label_of(self, class_name: str) -> int:
        """Integer label of ``class_name``; ``ValueError`` naming the dataset if unknown."""
        try:
            return self.classes.index(class_name)
        except ValueError:
            raise ValueError(
                f"class {class_name!r} is not a class of dataset {self.name!r} "
                f"(expected one of its {len(self.classes)} class folders)"
            ) from None


# --------------------------------------------------------------------------------------------
# A user's own image folders
# --------------------------------------------------------------------------------------------
def _list_preview(names: Sequence[str], limit: int = 20) -> str:
    shown = list(names[:limit])
    return str(shown) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def folder_dataset(root: Path, domains: Sequence[str], name: str = CUSTOM) -> DatasetSpec:
    """Describe a user's own images ``root/<domain>/<class>/<image>`` as a :class:`DatasetSpec`.

    ``classes`` are the class sub-folder names, sorted (hidden names, starting with ``.``, are
    ignored); every domain must have exactly the same class folders, so that label ``i`` means the
    same class in every domain. The spec has no archive (``prepare_dataset`` copies it from its
    ``mirror``, i.e. ``root``), no ``tree_sha256``, no ``image_counts``, no homepage, and
    ``domain_dirs`` maps each domain to the folder of the same name. The spec does not depend on
    where ``root`` is, so one read from a prepared copy equals the one read from the original. Only
    folder names are read; images are not opened.

    Args:
        root: the folder holding one sub-folder per domain.
        domains: the domain folder names to use (other folders under ``root`` are ignored).
        name: the dataset name (:data:`CUSTOM` by default).

    Raises:
        ValueError: ``root`` or a domain folder is missing, ``domains`` is empty, repeats a name or
            holds a name that is not a plain folder name, a domain has no class folders, or the
            class folders differ between domains (the message lists which classes are missing
            from which domain folder).
    """
    root = Path(root)
    domains = tuple(domains)
    if not root.is_dir():
        raise ValueError(
            f"dataset {name!r}: {root} is not a folder; point it at the folder holding your "
            f"<domain>/<class>/<image> folders"
        )
    if not domains:
        raise ValueError(f"dataset {name!r}: no domains given; name the domain folders under {root}")
    if len(set(domains)) != len(domains):
        raise ValueError(f"dataset {name!r}: domains {list(domains)} repeat a name")
    for d in domains:
        if not isinstance(d, str) or not d or d.startswith(".") or Path(d).name != d or "\\" in d:
            raise ValueError(
                f"dataset {name!r}: domain {d!r} must be the plain name of a folder directly under "
                f"{root} (no path separators, not hidden)"
            )
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_domain: dict[str, list[str]] = {}
    for d in domains:
        ddir = root / d
        if not ddir.is_dir():
            raise ValueError(
                f"dataset {name!r}: domain folder {ddir} is missing (folders found under {root}: "
                f"{_list_preview(present)}); create it or fix the domain names"
            )
        classes = sorted(c.name for c in ddir.iterdir() if c.is_dir() and not c.name.startswith("."))
        if not classes:
            raise ValueError(
                f"dataset {name!r}: domain folder {ddir} has no class sub-folders; expected "
                f"{ddir}/<class>/<image>"
            )
        per_domain[d] = classes
    all_classes = sorted(set().union(*per_domain.values()))
    missing = {d: [c for c in all_classes if c not in set(cs)] for d, cs in per_domain.items()}
    if any(missing.values()):
        lines = "; ".join(
            f"{root / d} lacks {_list_preview(m)}" for d, m in missing.items() if m
        )
        raise ValueError(
            f"dataset {name!r}: the class folders differ between the domains under {root} "
            f"(every domain needs the same <class> folders, so that a label means the same class "
            f"everywhere): {lines}. Add the missing class folders or remove the extra ones."
        )
    return DatasetSpec(
        name=name,
        domains=domains,
        classes=tuple(all_classes),
        archive=None,
        domain_dirs={d: d for d in domains},
        homepage="",  # path-independent: the spec read from a copy equals the original's
        citation="the user's own images (cite their source)",
        tree_sha256=None,
        image_counts=None,
    )
