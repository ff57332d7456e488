"""Stage `mirror_state`: what the download stage depends on instead of the value of ``data.mirror``.

data/mirror-state/<dataset>.json holds the content digest of the mirror's domains (the same digest as the
copy's tree digest, dahash.data.mirror.mirror_digest), the dataset and its domains: never the mirror's path.
So fixing or adding an image in the mirror reruns download (and what follows), and pointing ``data.mirror`` at a
byte-identical copy elsewhere reruns nothing. The file is rewritten only when its content changes (its mtime
is what Snakemake compares).

* DVC: the stage is ``always_changed`` (DVC can hash only folders it is told of in dvc.yaml, and a mirror is
  optional), so `dvc repro` runs it first every time and `dvc status` lists it as "always changed"; files whose
  size, mtime, ctime and inode are those of the last run are not read again (a digest cache in data.cache_dir).
* Snakemake: the Snakefile calls :func:`refresh` when it plans, before it compares mtimes.

A mirror that cannot be read is not an error here: its state records the error, download then says it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from dahash.data.download import mirror_domains
from dahash.data.fetch import DownloadError
from dahash.data.mirror import MirrorEscape, mirror_digest
from stages.common import ROOT, StageError, dataset_spec, load_params, main_wrapper, project_path

STATE_DIR = Path("data") / "mirror-state"


def state_path(params: dict[str, Any], root: Path = ROOT) -> Path:
    """data/mirror-state/<dataset>.json below ``root``."""
    return root / STATE_DIR / f"{params['data']['dataset']}.json"


def mirror_state(params: dict[str, Any]) -> dict[str, Any]:
    """The state of ``data.mirror`` for ``data.dataset``: ``{"dataset", "mirror": False}`` (and ``domains`` for a
    custom dataset) without a mirror; with one, also its ``tree_sha256`` and ``files``, or the ``error`` reading
    it gave.

    digits: the mirror's files are checked against their published checksums (dahash.data.digits), so their
    content cannot change what download makes: only whether a mirror is used is recorded.
    """
    data = params["data"]
    state: dict[str, Any] = {"dataset": data["dataset"], "mirror": bool(data["mirror"])}
    if data["dataset"] == "custom":  # the domains copied are data.domains (a registered dataset: all of its own)
        state["domains"] = list(data["domains"])
    if not data["mirror"] or data["dataset"] == "digits":
        return state
    mirror = project_path(data["mirror"])
    cache = project_path(data["cache_dir"]) / "mirror-digests" / (
        hashlib.sha256(os.fsencode(os.path.realpath(mirror))).hexdigest()[:16] + ".json")
    try:
        spec = dataset_spec(params, source=True)
        digest, files = mirror_digest(mirror, mirror_domains(mirror, spec), cache_file=cache)
    except (StageError, DownloadError, MirrorEscape, OSError) as exc:
        return {**state, "error": f"{type(exc).__name__}: {exc}"}
    return {**state, "tree_sha256": digest, "files": files}


def _is_state(text: str | None) -> bool:
    try:
        obj = json.loads(text) if text is not None else None
    except ValueError:
        return False
    return isinstance(obj, dict) and "dataset" in obj and "mirror" in obj


def refresh(params: dict[str, Any], *, create: bool = True) -> bool:
    """Write :func:`mirror_state` to :func:`state_path` when it differs from what is there; True when written.

    ``create=False`` leaves a missing file missing, and a file this function did not write as it is (the
    Snakefile: then the stage's rule makes it, and `snakemake -n` plans it as DVC does).
    """
    from dahash.atomic import write_text_atomic

    path = state_path(params)
    try:
        old = path.read_text()
    except (OSError, UnicodeDecodeError):
        old = None
    if not create and not _is_state(old):  # missing, or not written here: the stage's rule makes it
        return False
    text = json.dumps(mirror_state(params), indent=2, sort_keys=True) + "\n"
    if old == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return True


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    changed = refresh(params)
    path = state_path(params)
    if not changed and path.stat().st_mtime < _newest_code():
        # Snakemake reran this for a code change (its deps); an unchanged state keeps its old date and would look
        # stale forever: date it after the code (DVC runs it every time; this only moves after a code change)
        os.utime(path)
    print(f"{path.relative_to(ROOT)}: {'changed' if changed else 'unchanged'}")


def _newest_code() -> float:
    """The newest mtime among the project's modules this process imported (the stage's code deps)."""
    times = [0.0]
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and Path(f).resolve().is_relative_to(ROOT):
            try:
                times.append(os.stat(f).st_mtime)
            except OSError:
                pass
    return max(times)


if __name__ == "__main__":
    main()
