"""Stage `preprocess`: one parquet manifest per dataset, bad images listed with the reason.

Writes data/manifests/<dataset>.parquet (every image file: path, domain, label, class name, size,
mode, status, reason) and data/manifests/<dataset>.summary.json (counts; the excluded files with why).
"""

from __future__ import annotations

import argparse

from dahash.manifest import build_manifest, manifest_summary, write_manifest
from stages.common import ROOT, dataset_spec, load_params, main_wrapper, write_json


def manifest_path(dataset: str):
    """Where the manifest of ``dataset`` lives."""
    return ROOT / "data" / "manifests" / f"{dataset}.parquet"


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    spec = dataset_spec(params)
    raw = ROOT / "data" / "raw" / spec.name
    df = build_manifest(raw, spec, domains=params["data"]["domains"])
    out = manifest_path(spec.name)
    write_manifest(df, out)
    excluded = df[df["status"] != "ok"]
    summary = manifest_summary(df)
    summary["excluded_files"] = excluded[["path", "reason"]].to_dict(orient="records")
    write_json(out.with_suffix(".summary.json"), summary)
    for row in excluded.itertuples():
        print(f"excluded: {row.path}: {row.reason}")
    print(f"{spec.name}: {len(df) - len(excluded)} images ok, {len(excluded)} excluded -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
