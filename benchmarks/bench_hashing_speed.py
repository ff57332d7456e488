"""K-means hashing and BA on one quickstart task (A->C, 64 bits), before and after issue 9 target 4, in one run.

    python benchmarks/bench_hashing_speed.py [--npz SOURCE.npz TARGET.npz] [--repeat 2] [--no-before]

"After" is the default estimator (``dahash.baselines.registry.run_baseline`` as the baseline stage calls it); "before" is the
previous implementation, still reachable:

* KMH: ``optimizer="scipy"`` (one ``scipy.optimize.minimize`` call per codeword update), the PCA by
  ``itq.pca_top`` (LAPACK ``syevr`` on an index subset) and the cell sums by ``np.add.at``;
* BA: ``svm_solver="liblinear"`` (one ``sklearn.svm.LinearSVC`` fit per bit and MAC iteration).

Printed per method: wall and CPU seconds (best of ``--repeat`` for "after"), the before / after ratios, the share
of identical code bits and of identical 64-bit codes, and the mAP of both (the evaluate stage's ``target_split``
protocol: seeded 10 % query split). Imports and numba's compiled-kernel load happen before the clocks start.
Pass ``--npz`` with the real features (arrays ``x``, ``y``): synthetic data of the same size converge differently.
Not a test: the figures depend on the machine and its load; CPU seconds and the ratios of one run are the
figures to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

BEFORE_OPTIONS = {"kmh": {"optimizer": "scipy"}, "ba": {"svm_solver": "liblinear"}}


@contextlib.contextmanager
def previous_kmh_helpers() -> Iterator[None]:
    """KMH's PCA and cell sums as before this change (``itq.pca_top``, ``np.add.at``)."""
    import dahash.baselines.kmh as kmh
    from dahash.baselines.itq import pca_top

    def add_at(x: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
        sums = np.zeros((k, x.shape[1]))
        np.add.at(sums, idx, x)
        return sums

    saved = kmh.pca_all_eigh, kmh._cell_sums
    kmh.pca_all_eigh, kmh._cell_sums = pca_top, add_at
    try:
        yield
    finally:
        kmh.pca_all_eigh, kmh._cell_sums = saved


def _timed(name: str, data: tuple, options: dict) -> tuple[float, float, np.ndarray]:
    from dahash.baselines.registry import run_baseline

    xs, ys, xt, _ = data
    wall, cpu = time.perf_counter(), time.process_time()
    out = run_baseline(name, xs, ys, xt, 10, options=options, bits=64, seed=0)
    return time.perf_counter() - wall, time.process_time() - cpu, out.arrays["u_target"]


def _map(codes: np.ndarray, yt: np.ndarray) -> float:
    from dahash.eval.evaluation import score

    return float(score({"u_target": codes}, yt, yt, num_classes=10, retrieval="target_split", max_per_class=None,
                       query_fraction=0.1, split_seed=0)["map"])


def warm_up() -> None:
    """Imports and numba's kernels (compiled or loaded from the cache) outside the timed region."""
    from dahash.baselines import BinaryAutoencoder, KMeansHashing
    from dahash.baselines.registry import algorithm_of

    algorithm_of("kmh"), algorithm_of("ba")
    x = np.random.default_rng(0).standard_normal((64, 20))
    KMeansHashing(8, n_iter=1).fit(x)
    BinaryAutoencoder(8, n_mu=1).fit(x)


def main(npz: list[str] | None = None, repeat: int = 2, before: bool = True) -> dict[str, dict]:
    from bench_baselines import task_features

    xs, ys, xt, yt, what = task_features("office_caltech10", "efficientnet_lite0", "amazon", "caltech10", npz)
    print(f"K-means hashing and BA, A->C, 64 bits, {what}: target {xt.shape} (targets: KMH <= 5 s, BA <= 10 s)")
    warm_up()
    data = (xs, ys, xt, yt)
    results = {}
    for name in ("kmh", "ba"):
        runs = [_timed(name, data, {}) for _ in range(repeat)]
        wall, cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        codes = runs[0][2]
        assert all(np.array_equal(codes, r[2]) for r in runs), f"{name}: repeated fits differ"
        res = {"wall": wall, "cpu": cpu, "map": _map(codes, yt)}
        print(f"  {name:4s} after : {wall:6.1f} s wall, {cpu:6.1f} s CPU (best of {repeat}), "
              f"mAP {100 * res['map']:.2f} %", flush=True)
        if before:
            ctx = previous_kmh_helpers() if name == "kmh" else contextlib.nullcontext()
            with ctx:
                b_wall, b_cpu, b_codes = _timed(name, data, BEFORE_OPTIONS[name])
            res.update(before_wall=b_wall, before_cpu=b_cpu, before_map=_map(b_codes, yt),
                       same_bits=float(np.mean(b_codes == codes)),
                       same_codes=float(np.mean(np.all(b_codes == codes, axis=1))))
            print(f"  {name:4s} before: {b_wall:6.1f} s wall, {b_cpu:6.1f} s CPU, "
                  f"mAP {100 * res['before_map']:.2f} %  ({BEFORE_OPTIONS[name]})", flush=True)
            print(f"  {name:4s} before / after: {b_wall / wall:.1f}x wall, {b_cpu / cpu:.1f}x CPU; identical bits "
                  f"{100 * res['same_bits']:.2f} %, identical codes {100 * res['same_codes']:.1f} %, mAP after - before "
                  f"{100 * (res['map'] - res['before_map']):+.2f} points", flush=True)
        results[name] = res
    return results


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", nargs=2, metavar=("SOURCE", "TARGET"), help="A->C features (.npz with x, y)")
    ap.add_argument("--repeat", type=int, default=2, help="timed 'after' fits per method (best is printed)")
    ap.add_argument("--no-before", action="store_true", help="skip the previous implementations (BA's takes minutes)")
    args = ap.parse_args()
    main(args.npz, args.repeat, not args.no_before)
