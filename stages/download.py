"""Stage `download`: put the dataset's images at data/raw/<dataset>/<domain>/<class>/.

Sources, in order: ``data.mirror`` (a local, already-downloaded copy); else the dataset's sources
(``dahash.data.datasets``: its own archive, then a second source such as Transfer-Learning-Library's
per-domain archives), a copy placed by hand in ``data.manual_dir`` or cached being used before any
download (checksummed where published; Google Drive through gdown). Without network (or with
``DAHASH_OFFLINE=1``) and without a local copy it stops with a message naming every source, the files
to put in the manual folder and their checksums.
"""

from __future__ import annotations

import argparse

import os

from dahash.data.download import prepare_dataset
from stages.common import ROOT, StageError, dataset_spec, load_params, main_wrapper, project_path, write_json


#: TEST-ONLY: a JSON object {"<archive file name>": "<alg>:<hex>"} replacing published checksums, so that a
#: stand-in archive built by a test (tests/test_paper_standin.py) goes through the same verification path.
TEST_HASHES_ENV = "DAHASH_TEST_KNOWN_HASHES"


def apply_test_hashes(spec):  # DatasetSpec -> DatasetSpec
    """``spec`` with the checksums named in ``$DAHASH_TEST_KNOWN_HASHES`` (test-only; warns loudly when used)."""
    import dataclasses
    import json
    import sys

    raw = os.environ.get(TEST_HASHES_ENV, "").strip()
    if not raw or spec.archive is None:
        return spec
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StageError(f"{TEST_HASHES_ENV} must be a JSON object {{file name: 'alg:hex'}}: {exc}") from exc
    if spec.archive.filename not in table:
        return spec
    print(f"WARNING: {TEST_HASHES_ENV} replaces the published checksum of {spec.archive.filename} "
          f"(test-only setting; unset it for real data)", file=sys.stderr)
    archive = dataclasses.replace(spec.archive, known_hash=table[spec.archive.filename])
    return dataclasses.replace(spec, archive=archive)


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
        from dahash.data.digits import prepare_digits

        out = ROOT / "data" / "raw" / "digits"
        prepare_digits(out, mirror=mirror, cache_dir=project_path(data["cache_dir"]),
                       manual_dir=project_path(data["manual_dir"]), offline=offline(),
                       mnist_split=data.get("digits_mnist", "test"))
        portable_source_json(out / "SOURCE.json")
        print(f"digits: images ready at {out.relative_to(ROOT)}")
        return
    spec = apply_test_hashes(dataset_spec(params, source=True))
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
