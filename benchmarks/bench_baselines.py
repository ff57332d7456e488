"""Wall time of every comparison method (dahash.baselines.registry) on one transfer task: ``python benchmarks/bench_baselines.py``.

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

from dahash.eval.split import target_query_database_split
from dahash.baselines.registry import ALGORITHMS, run_baseline

ROOT = Path(__file__).resolve().parents[1]


def task_features(dataset: str, backbone: str, source: str, target: str, npz: list[str] | None = None):
    """(xs, ys, xt, yt) from two .npz files (arrays ``x``, ``y``), else the pipeline's outputs, else synthetic
    data of Office-Caltech-10's A->C size."""
    if npz:
        (xs, ys), (xt, yt) = ((np.load(f)["x"], np.load(f)["y"]) for f in npz)
        return xs, ys, xt, yt, f"features from {npz[0]} and {npz[1]}"
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


def time_methods(methods: list[str], npz: list[str] | None = None, hidden: tuple[int, int] = (1024, 1024),
                 label: str = "") -> dict[str, tuple[float, dict]]:
    """Fit + predict/encode each method on A->C as the baseline stage does; print and return
    ``{method: (seconds, outputs)}``."""
    xs, ys, xt, yt, what = task_features("office_caltech10", "efficientnet_lite0", "amazon", "caltech10", npz)
    print(f"A->C, {what}: source {xs.shape}, target {xt.shape}{label}")
    _, db = target_query_database_split(len(yt), query_fraction=0.1, seed=0)
    out_all = {}
    for name in methods:
        opts = {"hidden_dims": list(hidden)} if name in ("source_only", "dan", "dann") else {}
        extra = {"yt_database": yt[db], "database_idx": db} if name == "suh" else {}
        t0 = time.perf_counter()
        out = run_baseline(name, xs, ys, xt, 10, options=opts, bits=64, seed=0, **extra)
        sec = time.perf_counter() - t0
        acc = f"  accuracy {100 * np.mean(out.arrays['pred_target'] == yt):.1f} %" if "pred_target" in out.arrays else ""
        print(f"  {name:20s} {sec:7.1f} s   x12 tasks: {12 * sec / 60:5.1f} min{acc}", flush=True)
        out_all[name] = (sec, out.arrays)
    return out_all


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--methods", nargs="*", default=list(ALGORITHMS))
    ap.add_argument("--hidden", type=int, nargs=2, default=[1024, 1024], help="deep methods' fc6/fc7 widths")
    ap.add_argument("--npz", nargs=2, metavar=("SOURCE", "TARGET"), help=".npz files with features x and labels y")
    args = ap.parse_args()
    time_methods(args.methods, args.npz, tuple(args.hidden))


if __name__ == "__main__":
    main()
