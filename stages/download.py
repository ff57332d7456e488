"""Stage `download`: put the dataset's images at data/raw/<dataset>/<domain>/<class>/.

Sources, in order: ``data.mirror`` (a local, already-downloaded copy); else the dataset's sources
(``dahash.data.datasets``: its own archive, then a second source such as Transfer-Learning-Library's
per-domain archives), a copy placed by hand in ``data.manual_dir`` or cached being used before any
download (checksummed where published; Google Drive through gdown). Without network (or with
``DAHASH_OFFLINE=1``) and without a local copy it stops with a message naming every source, the files
to put in the manual folder and their checksums.

What it accepts is decided by the registry's published checksums only: no environment variable replaces them
(tests inject stand-ins through the library's API or a mirror). SOURCE.json (a DVC output) holds no absolute
path and no time: identical inputs give an identical output, wherever the project or the mirror lies. The mirror's
content, not its path, decides whether this stage reruns (stages.mirror_state).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from dahash.data.download import prepare_dataset
from stages.common import ROOT, dataset_spec, load_params, main_wrapper, offline, project_path, write_json


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    data = params["data"]
    mirror = project_path(data["mirror"]) if data["mirror"] else None
    shown = f" (from the mirror {data['mirror']})" if mirror is not None else ""
    if data["dataset"] == "digits":
        from dahash.data.digits import prepare_digits

        out = ROOT / "data" / "raw" / "digits"
        prepare_digits(out, mirror=mirror, cache_dir=project_path(data["cache_dir"]),
                       manual_dir=project_path(data["manual_dir"]), offline=offline(),
                       mnist_split=data.get("digits_mnist", "test"))
        portable_source_json(out / "SOURCE.json")
        print(f"digits: images ready at {out.relative_to(ROOT)}{shown}")
        return
    spec = dataset_spec(params, source=True)
    out = ROOT / "data" / "raw" / spec.name
    root = prepare_dataset(
        spec,
        out,
        mirror=mirror,
        cache_dir=project_path(data["cache_dir"]),
        manual_dir=project_path(data["manual_dir"]),
        offline=offline(),
    )
    portable_source_json(root / "SOURCE.json")
    print(f"{spec.name}: images ready at {root.relative_to(ROOT)}{shown}")


#: keys of SOURCE.json (at any depth: ``archives`` is a list of per-domain entries) that hold a local path
PATH_KEYS = ("mirror", "archive", "path")


def portable(obj: Any, root: Path) -> Any:
    """``obj`` (parsed SOURCE.json) with every absolute path under :data:`PATH_KEYS`, at any depth, made relative
    to ``root``: another machine has no use for this one's paths, and they reveal the local layout."""
    if isinstance(obj, dict):
        return {k: (os.path.relpath(v, root) if k in PATH_KEYS and isinstance(v, str) and os.path.isabs(v)
                    else portable(v, root)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [portable(v, root) for v in obj]
    return obj


def portable_source_json(path: Path) -> None:
    """Rewrite the local paths in SOURCE.json (a DVC output: pushed, shared) relative to the project root."""
    info = json.loads(Path(path).read_text())
    fixed = portable(info, ROOT)
    if fixed != info:
        write_json(path, fixed)


if __name__ == "__main__":
    main()
