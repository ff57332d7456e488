"""Stage `download`: put the dataset's images at data/raw/<dataset>/<domain>/<class>/.

Sources, in order: ``data.mirror`` (a local, already-downloaded copy); else the dataset's sources
(``dahash.datasets``: its own archive, then a second source such as Transfer-Learning-Library's
per-domain archives), a copy placed by hand in ``data.manual_dir`` or cached being used before any
download (checksummed where published; Google Drive through gdown). Without network (or with
``DAHASH_OFFLINE=1``) and without a local copy it stops with a message naming every source, the files
to put in the manual folder and their checksums.
"""

from __future__ import annotations

import argparse

import os

from dahash.download import prepare_dataset
from stages.common import ROOT, dataset_spec, load_params, main_wrapper, project_path


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
    print(f"{spec.name}: images ready at {root.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
