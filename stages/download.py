"""Stage `download`: put the dataset's images at data/raw/<dataset>/<domain>/<class>/.

Sources, in order: ``data.mirror`` (a local, already-downloaded copy), an archive placed by hand in
``data.manual_dir``, the dataset's official URL (checksummed, resumable, via pooch). Without network
(or with ``DAHASH_OFFLINE=1``) and without a local copy it stops with a message naming the file, where to put it and its checksum.
"""

from __future__ import annotations

import argparse

import os

from dahash.download import prepare_dataset
from stages.common import ROOT, dataset_spec, load_params, main_wrapper, project_path, write_json


def offline() -> bool:
    """``DAHASH_OFFLINE=1`` in the environment: never touch the network, use local files only."""
    return os.environ.get("DAHASH_OFFLINE", "").strip().lower() in {"1", "true", "yes"}


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    data = params["data"]
    mirror = project_path(data["mirror"]) if data["mirror"] else None
    if data["dataset"] == "digits":
        from dahash.digits import prepare_digits

        out = ROOT / "data" / "raw" / "digits"
        prepare_digits(out, mirror=mirror, cache_dir=project_path(data["cache_dir"]),
                       manual_dir=project_path(data["manual_dir"]), offline=offline())
        portable_source_json(out / "SOURCE.json")
        print(f"digits: images ready at {out.relative_to(ROOT)}")
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
    print(f"{spec.name}: images ready at {root.relative_to(ROOT)}")


def portable_source_json(path) -> None:
    """Rewrite the local paths in SOURCE.json (a DVC output: pushed, shared) relative to the project root.

    ``mirror``, ``archive`` and ``files.<name>.path`` are absolute paths of this machine as the library
    records them; another machine has no use for them and they reveal the local layout.
    """
    import json

    info = json.loads(path.read_text())

    def rel(p):
        return os.path.relpath(p, ROOT) if isinstance(p, str) and os.path.isabs(p) else p

    for key in ("mirror", "archive"):
        if key in info:
            info[key] = rel(info[key])
    for entry in (info.get("files") or {}).values():
        if isinstance(entry, dict) and "path" in entry:
            entry["path"] = rel(entry["path"])
    write_json(path, info)


if __name__ == "__main__":
    main()
