"""Fetching and verifying files: datasets' archives and backbone weights.

:func:`fetch` downloads with pooch (Google Drive links through gdown, which follows Drive's confirmation and
virus-scan pages) into a private temporary folder inside the cache and moves the file into place only after its
checksum (when published: md5, sha1 or sha256, see ``RemoteFile.known_hash``) matched; on any failure the
temporary folder is removed and :class:`DownloadError` explains how to place the file by hand. With
``offline=True`` nothing is downloaded: only a copy placed by hand or already cached is used. The checksums are
the registry's (:mod:`dahash.data.datasets`): nothing in the environment replaces them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.parse
from pathlib import Path

import pooch

from dahash.atomic import mkstemp, remove_tree, sweep_stale_temps, temp_prefix
from dahash.data.datasets import RemoteFile, get_weights
from dahash.progress import progress as progress_bar

__all__ = ["DownloadError", "ManualCopyError", "GOOGLE_DRIVE_HOSTS", "is_google_drive", "fetch", "fetch_weights",
           "sha256_file", "hash_file"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 20

class DownloadError(RuntimeError):
    """A file could not be obtained, verified or safely unpacked. The message says what to do."""


class ManualCopyError(DownloadError):
    """A file placed by hand in the manual folder fails its checksum or cannot be unpacked.

    The file is never touched; the source it belongs to is not retried (it would fail the same way).
    """


def hash_file(path: Path, alg: str = "sha256") -> str:
    """Lower-case hex digest of the file at ``path`` with ``alg`` (``md5``, ``sha1``, ``sha256``)."""
    h = hashlib.new(alg)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """Lower-case hex SHA256 of the file at ``path``."""
    return hash_file(path, "sha256")


def _matches(path: Path, remote: RemoteFile) -> tuple[bool, str]:
    """Whether ``path`` matches ``remote.known_hash`` (which must be set) and its digest."""
    assert remote.hash_alg is not None and remote.hash_hex is not None
    got = hash_file(path, remote.hash_alg)
    return got == remote.hash_hex, got



def _manual_help(remote: RemoteFile, manual_dir: Path | None) -> str:
    where = (
        str(Path(manual_dir) / remote.filename)
        if manual_dir is not None
        else f"<manual folder>/{remote.filename} and pass that folder as manual_dir"
    )
    return (
        f"The file needed is {remote.filename!r} from {remote.url} ({remote.checksum_text}). "
        f"Download it by hand and put it at {where}, then run again."
        + (f" Note: {remote.note.rstrip()}" if remote.note.strip() else "")
    )


#: hosts whose URLs are fetched with gdown (Google Drive answers large files with a confirmation /
#: virus-scan page that gdown parses and follows; pooch would save that HTML page instead).
GOOGLE_DRIVE_HOSTS = ("drive.google.com", "docs.google.com")


def is_google_drive(url: str) -> bool:
    """Whether ``url`` is a Google Drive link (fetched with gdown rather than pooch's HTTP client)."""
    return urllib.parse.urlsplit(url).hostname in GOOGLE_DRIVE_HOSTS


def _gdrive_downloader(progress: bool):
    """A pooch downloader (``(url, output_file, pooch)``) that fetches a Google Drive link with gdown.

    gdown follows Drive's confirmation and virus-scan pages, fails on a transfer shorter than the
    announced Content-Length, and writes the file in place only when complete; pooch then checks the
    checksum and moves it. Cookies are kept in the session only (``use_cookies=False``: nothing is
    read from or written to ``~/.cache/gdown``). Requests honours ``HTTPS_PROXY`` and
    ``REQUESTS_CA_BUNDLE`` as usual (the tests use them to put a local server in Drive's place).
    """

    def download(url: str, output_file: str, pooch_obj: object) -> None:
        import gdown  # imported here: only Drive downloads need it

        gdown.download(url, output=str(output_file), quiet=not progress, use_cookies=False, timeout=60)

    return download


class _PoochBar:
    """A :func:`dahash.progress.progress` bar as pooch's custom progress bar (pooch sets ``total``, calls ``update``,
    ``reset``, ``close``); it tests ``if progressbar:``, which a tqdm without a total cannot answer."""

    def __init__(self, bar) -> None:
        object.__setattr__(self, "_bar", bar)

    def __bool__(self) -> bool:
        return True

    def __getattr__(self, name: str):
        return getattr(self._bar, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self._bar, name, value)


def _downloader(url: str, progress: bool):
    if is_google_drive(url):
        return _gdrive_downloader(progress)
    if url.startswith(("http://", "https://")):
        # our bar (dahash.progress: one line per 30 s in a log, none with DAHASH_PROGRESS=0), which pooch fills
        bar = _PoochBar(progress_bar(desc=url.rsplit("/", 1)[-1][:40] or "download", unit="B", unit_scale=True,
                                     unit_divisor=1024)) if progress else False
        return pooch.HTTPDownloader(progressbar=bar, timeout=60)
    return None  # pooch chooses (ftp://, doi:)


def fetch(
    remote: RemoteFile,
    cache_dir: Path,
    *,
    manual_dir: Path | None = None,
    progress: bool = True,
    offline: bool = False,
) -> Path:
    """Path of a verified local copy of ``remote``.

    1. ``manual_dir/<filename>`` (placed there by hand) is used in place when present, after its
       checksum (``remote.known_hash``, when published) is checked with the published algorithm.
       It is never modified or deleted.
    2. ``cache_dir/<filename>`` is reused when present and (when a checksum is published) it matches.
    3. Otherwise, unless ``offline``, pooch downloads it into a temporary folder inside
       ``cache_dir`` and checks ``remote.known_hash`` (when ``None``, pooch logs the SHA256 it
       computed); the file is moved to ``cache_dir/<filename>`` only on success.

    Args:
        offline: never touch the network: use only a copy placed by hand or already cached.

    Raises:
        DownloadError: network failure, truncated transfer or checksum mismatch, or (``offline``)
            no usable local copy; the message names the file, URL, manual location and checksum.
            Nothing is left in ``cache_dir``.
    """
    cache_dir = Path(cache_dir)
    local, stale = _local_copy(remote, cache_dir, manual_dir, quiet=offline)
    if local is not None:
        return local
    target = cache_dir / remote.filename

    if offline:
        found = (
            f"the cached copy {target} fails its {remote.hash_alg} checksum (delete or replace it)"
            if stale
            else f"it is neither placed by hand nor in the cache {cache_dir}"
        )
        raise DownloadError(
            f"offline mode: {remote.filename!r} is not available locally ({found}), and offline "
            f"mode does not download. Nothing was written. {_manual_help(remote, manual_dir)}"
        )
    return _download(remote, cache_dir, manual_dir, progress)


def _local_copy(
    remote: RemoteFile, cache_dir: Path, manual_dir: Path | None, *, quiet: bool = False
) -> tuple[Path | None, bool]:
    """``(path, stale)``: the verified copy placed by hand or cached, else ``None``.

    ``stale`` is True when a cached copy exists but fails its checksum (it is left in place).

    Raises:
        DownloadError: a copy placed by hand fails the published checksum (it is never touched).
    """
    if manual_dir is not None:
        manual = Path(manual_dir) / remote.filename
        if manual.is_file():
            if remote.known_hash:
                ok, got = _matches(manual, remote)
                if not ok:
                    raise ManualCopyError(
                        f"{manual} (placed by hand) has {remote.hash_alg} {got} but "
                        f"{remote.filename!r} must have {remote.checksum_text}: it is incomplete or "
                        f"a different file. Replace it with the right file (from {remote.url}). "
                        f"Nothing was written."
                    )
            log.info("using %s placed by hand", manual)
            return manual, False

    target = Path(cache_dir) / remote.filename
    if target.is_file():
        if remote.known_hash is None:
            log.info("using cached %s (no published checksum)", target)
            return target, False
        if _matches(target, remote)[0]:
            return target, False
        if not quiet:
            log.warning("cached %s fails its %s checksum; downloading it again", target, remote.hash_alg)
        return None, True
    return None, False


def _download(remote: RemoteFile, cache_dir: Path, manual_dir: Path | None, progress: bool) -> Path:
    """Download ``remote`` into ``cache_dir`` via a private temporary folder (see :func:`fetch`)."""
    target = cache_dir / remote.filename
    cache_dir.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(target)  # the partial download of a killed earlier run
    tmp_dir = Path(tempfile.mkdtemp(prefix=temp_prefix(target), suffix=".tmp", dir=cache_dir))
    try:
        got = pooch.retrieve(
            remote.url,
            known_hash=remote.known_hash,
            fname=remote.filename,
            path=tmp_dir,
            downloader=_downloader(remote.url, progress),
            progressbar=False if remote.url.startswith(("http://", "https://")) else progress,
        )
        os.replace(got, target)
    except Exception as exc:  # network errors (requests), hash mismatch (ValueError), OSError
        text = " ".join(str(exc).split())  # gdown's messages span several lines
        reason = (text[:400] + " ...") if len(text) > 400 else (text or type(exc).__name__)
        if isinstance(exc, ValueError) and "hash" in str(exc).lower():
            what = (
                f"the download of {remote.filename!r} failed its {remote.hash_alg} checksum "
                f"(expected {remote.checksum_text}; {reason})"
            )
        else:
            what = f"could not download {remote.filename!r} from {remote.url}: {type(exc).__name__}: {reason}"
        raise DownloadError(
            f"{what}. Nothing was written: the partial download was deleted. "
            f"{_manual_help(remote, manual_dir)}"
        ) from exc
    finally:
        remove_tree(tmp_dir)
    return target


def fetch_weights(
    name: str,
    dest: Path,
    manual_dir: Path | None = None,
    *,
    progress: bool = True,
    offline: bool = False,
) -> Path:
    """Fetch the ``WEIGHTS[name]`` file into the folder ``dest``; returns ``dest/<filename>``.

    ``dest`` also serves as the download cache. A copy placed by hand in ``manual_dir`` is checked
    (when a checksum is published) and copied into ``dest`` atomically. With ``offline=True``
    nothing is downloaded (see :func:`fetch`).

    Raises:
        ValueError: unknown ``name`` (lists the valid ones).
        DownloadError: as :func:`fetch`.
    """
    remote = get_weights(name)
    dest = Path(dest)
    got = fetch(remote, dest, manual_dir=manual_dir, progress=progress, offline=offline)
    target = dest / remote.filename
    if got.resolve() != target.resolve():
        dest.mkdir(parents=True, exist_ok=True)
        fd, tmp = mkstemp(dest, f".{remote.filename}.", ".tmp")  # the umask's mode, not mkstemp's 0600
        os.close(fd)
        try:
            shutil.copyfile(got, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target
