"""Wall time of every comparison method (dahash.methods) on one transfer task: ``python benchmarks/bench_baselines.py``.

Uses the pipeline's cached features of a task when they exist (default: Office-Caltech-10, EfficientNet-Lite0,
amazon -> caltech10, the largest task: 958 + 1,123 items x 1,280-d), otherwise synthetic features of the same
size. Prints seconds per method (fit + predict/encode, as the baseline stage runs it) and the projected time of
the 12-task quickstart per method. Not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from dahash.baselines.split import target_query_database_split
from dahash.methods import ALGORITHMS, run_baseline

ROOT = Path(__file__).resolve().parents[1]


def task_features(dataset: str, backbone: str, source: str, target: str):
    """(xs, ys, xt, yt) from the pipeline's outputs, or synthetic data of Office-Caltech-10's A->C size."""
    try:
        from stages.features import labels_for, load_features

        xs, sp = load_features(dataset, backbone, source)
        xt, tp = load_features(dataset, backbone, target)
        return xs, labels_for(dataset, source, sp), xt, labels_for(dataset, target, tp), "pipeline features"
    except Exception:  # no pipeline outputs here: same sizes, random data
        rng = np.random.default_rng(0)
        ys, yt = rng.integers(0, 10, 958), rng.integers(0, 10, 1123)
        centres = rng.normal(size=(10, 1280)).astype(np.float32)
        xs = centres[ys] + rng.normal(size=(958, 1280)).astype(np.float32)
        xt = centres[yt] + 0.5 + rng.normal(size=(1123, 1280)).astype(np.float32)
        return xs, ys, xt, yt, "synthetic features (958 + 1123 x 1280)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--methods", nargs="*", default=list(ALGORITHMS))
    ap.add_argument("--hidden", type=int, nargs=2, default=[1024, 1024], help="deep methods' fc6/fc7 widths")
    args = ap.parse_args()
    xs, ys, xt, yt, what = task_features("office_caltech10", "efficientnet_lite0", "amazon", "caltech10")
    print(f"A->C, {what}: source {xs.shape}, target {xt.shape}")
    _, db = target_query_database_split(len(yt), query_fraction=0.1, seed=0)
    for name in args.methods:
        opts = {"hidden_dims": args.hidden} if name in ("source_only", "dan", "dann") else {}
        extra = {"yt_database": yt[db], "database_idx": db} if name == "suh" else {}
        t0 = time.perf_counter()
        out = run_baseline(name, xs, ys, xt, 10, options=opts, bits=64, seed=0, **extra)
        sec = time.perf_counter() - t0
        acc = f"  accuracy {100 * np.mean(out.arrays['pred_target'] == yt):.1f} %" if "pred_target" in out.arrays else ""
        print(f"{name:20s} {sec:7.1f} s   x12 tasks: {12 * sec / 60:5.1f} min{acc}", flush=True)


if __name__ == "__main__":
    main()
