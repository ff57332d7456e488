"""How often parallel jobs on a fresh MLflow sqlite store fail, with and without the project's file lock.

Usage: ``python benchmarks/bench_mlflow_race.py [--rounds 8] [--jobs 6] [--variants nolock lock]``.
Each round starts ``--jobs`` processes behind a barrier on a new store (tests/test_mlflow_race.py's harness) and
records how many failed and with what. Prints one line per round and a summary per variant.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import re
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("race_harness", HERE.parent / "tests" / "test_mlflow_race.py")
harness = importlib.util.module_from_spec(spec)
spec.loader.exec_module(harness)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--variants", nargs="+", default=["nolock", "lock"], choices=["nolock", "lock"])
    args = ap.parse_args()
    for variant in args.variants:
        bad_rounds, kinds, failed_jobs = 0, collections.Counter(), 0
        for r in range(args.rounds):
            with tempfile.TemporaryDirectory() as td:
                results = harness.race(Path(td), args.jobs, lock=variant == "lock")
            fails = [(x.stdout.strip().splitlines() or ["?"])[-1] for x in results if x.returncode != 0]
            failed_jobs += len(fails)
            bad_rounds += bool(fails)
            for f in fails:
                kinds[re.sub(r"MLflow store \S+: ", "", f)[:120]] += 1
            print(f"{variant} round {r + 1}: {len(fails)}/{args.jobs} jobs failed", flush=True)
        print(f"== {variant}: {bad_rounds}/{args.rounds} rounds with a failure, {failed_jobs}/"
              f"{args.rounds * args.jobs} jobs failed")
        for k, n in kinds.most_common():
            print(f"   {n} x {k}")


if __name__ == "__main__":
    main()
