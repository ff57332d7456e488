"""Stage `preprocess`: one parquet manifest per dataset, bad images listed with the reason.

Writes data/manifests/<dataset>.parquet (every image file: path, domain, label, class name, size,
mode, status, reason) and data/manifests/<dataset>.summary.json (counts; the excluded files with why).

Stops (writing nothing) when a class of a task's source domain has no usable image: training draws k
images of every class per batch and could not start. Warns when ``train.k_per_class`` (or a method's
override) exceeds the smallest source class: its batches then repeat images.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from dahash.data.manifest import build_manifest, manifest_summary, write_manifest
from stages.common import StageError, dataset_spec, load_params, main_wrapper, write_json
from stages.paths import manifest_path, raw_dir, shown


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    spec = dataset_spec(params)
    raw = raw_dir(spec.name)
    df = build_manifest(raw, spec, domains=params["data"]["domains"], progress=True)  # every image decoded once
    out = manifest_path(spec.name)
    excluded = df[df["status"] != "ok"]
    for row in excluded.itertuples():
        print(f"excluded: {row.path}: {row.reason}")
    for line in check_source_classes(df, spec.classes, params):
        print(f"WARNING: {line}", file=sys.stderr)
    write_manifest(df, out)
    summary = manifest_summary(df)
    summary["excluded_files"] = excluded[["path", "reason"]].to_dict(orient="records")
    write_json(out.with_suffix(".summary.json"), summary)
    print(f"{spec.name}: {len(df) - len(excluded)} images ok, {len(excluded)} excluded -> {shown(out)}")


def source_k_values(params: dict) -> dict[int, list[str]]:
    """``k_per_class`` -> the DAH methods using it (``train.k_per_class`` unless ``methods.<m>`` overrides it)."""
    out: dict[int, list[str]] = {}
    for method, over in params["methods"].items():
        out.setdefault(int({**params["train"], **(over or {})}["k_per_class"]), []).append(method)
    return out


def small_class_warning(counts: dict[str, int], k: int, domain: str, who: str = "train.k_per_class") -> str | None:
    """A warning naming the smallest class of ``domain`` when ``k`` > its usable image count, else None."""
    name, n = min(counts.items(), key=lambda kv: (kv[1], kv[0]))
    if k <= n:
        return None
    return (f"{who} = {k} but class {name!r} of source domain {domain!r} has only {n} usable image(s): "
            f"its batches repeat images; lower k_per_class to {n} or add images")


def warn_small_classes(ys: np.ndarray, classes, k: int, domain: str) -> None:
    """Print a WARNING line (stderr) when ``k`` exceeds the smallest class among source labels ``ys``."""
    counts = dict(zip(classes, np.bincount(np.asarray(ys), minlength=len(classes)).tolist()))
    line = small_class_warning(counts, k, domain)
    if line:
        print(f"WARNING: {line}", file=sys.stderr, flush=True)


def check_source_classes(df: pd.DataFrame, classes, params: dict) -> list[str]:
    """Check every class of every task's source domain against the manifest ``df``.

    Raises:
        StageError: a class with no usable (status ok) image, naming the domain, the class and why its
            files were excluded (nothing is written).
    Returns:
        Warning lines for k_per_class values larger than a domain's smallest class.
    """
    sources = sorted({t["source"] for t in params["tasks"].values()}, key=list(params["data"]["domains"]).index)
    ok = df[df["status"] == "ok"]
    warnings: list[str] = []
    for domain in sources:
        counts = {c: int(n) for c, n in zip(classes, np.bincount(ok.loc[ok["domain"] == domain, "label"],
                                                                  minlength=len(classes)))}
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            bad = df[(df["domain"] == domain) & df["class_name"].isin(empty)]
            why = "; ".join(f"{r.path}: {r.reason}" for r in bad.head(5).itertuples()) or "the folder is empty"
            raise StageError(
                f"source domain {domain!r}: class(es) {empty} have no usable image ({why}"
                f"{'; ...' if len(bad) > 5 else ''}). Training needs images of every class in a source domain: "
                f"add or fix images in data/raw/<dataset>/{domain}/<class>/ (or the mirror), or drop the "
                "task(s) with this source")
        for k, methods in source_k_values(params).items():
            line = small_class_warning(counts, k, domain, who=f"k_per_class (methods {methods})")
            if line:
                warnings.append(line)
    return warnings


if __name__ == "__main__":
    main()
