"""Issue 9's speed figures, each with its reference measured in the same run: ``python benchmarks/run.py``.

    python benchmarks/run.py [--npz SOURCE.npz TARGET.npz] [--digits DIR] [--skip ranking startup baselines extract]
                             [--no-slow-references]

1. Hamming ranking at 15,500 x 15,500 x 64 bits (target 3): the kernel vs the previous implementation, the
   plain-numpy version and the popcount bound (``bench_ranking.py``);
2. start-up of every stage's ``--help`` (target 2) vs a bare interpreter and the old import set
   (``bench_startup.py``);
3. K-means hashing and BA on one quickstart task, A->C (target 4), each beside its previous implementation
   (KMH: scipy per codeword; BA: LinearSVC per bit), with the share of identical code bits and both mAPs
   (``bench_hashing_speed.py``; pass ``--npz`` with real features, arrays ``x`` and ``y``: synthetic data of
   the same size converge differently);
4. digits (target 5) with ``--digits DIR`` (a prepared digits tree): an M->U epoch, moments and encoding from the
   PNG files vs from images decoded once (``bench_digits.py``);
5. feature extraction (target 7): images/s of the previous loop vs ``extract_features`` (workers, draft) on real
   Office-Caltech-10 images, the draft decoder's feature difference, and peak memory at N and 4N images,
   in memory vs streamed to the ``.npy`` (``bench_extract.py``).

Not a test: the figures depend on the machine and its load; the ratios measured in one run are the point.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


def baselines(npz: list[str] | None, slow_references: bool) -> None:
    import bench_hashing_speed

    bench_hashing_speed.main(npz, repeat=2, before=slow_references)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npz", nargs=2, metavar=("SOURCE", "TARGET"), help="A->C features (.npz with x, y)")
    ap.add_argument("--digits", type=Path, help="prepared digits tree (data/raw/digits) for the digits figures")
    ap.add_argument("--skip", nargs="*", default=[], choices=["ranking", "startup", "baselines", "extract"])
    ap.add_argument("--no-slow-references", action="store_true",
                    help="skip the references that take minutes (the previous ranking, KMH and BA)")
    args = ap.parse_args()
    import numba
    import torch

    print(f"{datetime.date.today()} {platform.node()} python {platform.python_version()} numpy {np.__version__} "
          f"numba {numba.__version__} torch {torch.__version__}, {numba.get_num_threads()} threads")
    if "ranking" not in args.skip:
        import bench_ranking

        bench_ranking.main(15500, reference=not args.no_slow_references)
    if "startup" not in args.skip:
        import bench_startup

        bench_startup.main()
    if "baselines" not in args.skip:
        baselines(args.npz, not args.no_slow_references)
    if args.digits:
        import bench_digits

        sys.argv = ["bench_digits.py", str(args.digits)]
        bench_digits.main()
    if "extract" not in args.skip:
        import bench_extract

        bench_extract.main([])


if __name__ == "__main__":
    main()
