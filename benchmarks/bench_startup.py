"""Fixed cost per pipeline job (issue 9, target 2): ``python benchmarks/bench_startup.py``.

Times ``python -m stages.<name> --help`` for every stage with a command line (best of ``--repeat`` runs, in
fresh processes, from this checkout) and, as references measured in the same run, a bare interpreter and the
imports every stage used to pay before its heavy imports moved into the functions that use them
(torch + scikit-learn + pandas). Not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage_names() -> list[str]:
    """Modules of stages/ that run as ``python -m stages.<name>``."""
    return sorted(p.stem for p in (ROOT / "stages").glob("*.py")
                  if 'if __name__ == "__main__"' in p.read_text())


def best_wall(cmd: list[str], repeat: int) -> float:
    """Smallest wall time of ``repeat`` runs of ``cmd`` (stdout discarded), in seconds."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def main(repeat: int = 3) -> dict[str, float]:
    """Print and return ``{name: seconds}`` for the references and every stage's ``--help``."""
    fig = {"(reference) python -c pass": best_wall([sys.executable, "-c", "pass"], repeat),
           "(reference) import torch, sklearn.svm, pandas": best_wall(
               [sys.executable, "-c", "import torch, sklearn.svm, pandas"], repeat)}
    for name in stage_names():
        fig[f"stages.{name} --help"] = best_wall([sys.executable, "-m", f"stages.{name}", "--help"], repeat)
    print(f"Start-up, best of {repeat} (target: every stage's --help <= 1.0 s):")
    for k, v in fig.items():
        print(f"  {k:48s} {v:5.2f} s")
    return fig


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    main(ap.parse_args().repeat)
