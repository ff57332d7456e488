"""Parallel jobs starting their MLflow runs on a FRESH sqlite store (issue 10, "Also").

N processes import everything, then wait behind a file barrier and call ``stages.tracking.start_run`` at the
same moment, each for the same experiment, on a store that does not exist yet: the first client creates and
migrates the database, and the experiment is created by whoever gets there first. With the project's file lock
(``stages.tracking_store._lock``) all N succeed and the store holds N runs in ONE experiment. Without it (the lock
replaced by a no-op) the jobs race; ``benchmarks/bench_mlflow_race.py`` repeats both variants and counts the
failures (figures in benchmarks/README.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import contextlib, os, sys, time
    from pathlib import Path
    from stages import tracking, tracking_store
    import mlflow.store.tracking.sqlalchemy_store  # import everything before the barrier
    barrier, me, lock = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "lock"
    if not lock:
        tracking_store._lock = contextlib.nullcontext
    (barrier / f"ready-{me}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.001)
    try:
        run_id = tracking.start_run("dahash-race", f"job{me}", {}, {"job": me})
    except BaseException as exc:
        print(f"FAILED {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        sys.exit(1)
    print(run_id)
""")


def race(tmp: Path, n: int, *, lock: bool) -> list[subprocess.CompletedProcess]:
    """Start ``n`` jobs on the fresh store ``tmp/mlflow.db`` behind a barrier; return their results."""
    barrier = tmp / "barrier"
    barrier.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(barrier), str(i), "lock" if lock else "nolock"],
                              env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    deadline = time.monotonic() + 300  # hang guard while they import
    while len(list(barrier.glob("ready-*"))) < n:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            break
        time.sleep(0.01)
    (barrier / "go").touch()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_parallel_jobs_on_a_fresh_store_all_start_with_the_lock(tmp_path: Path) -> None:
    n = 6
    results = race(tmp_path, n, lock=True)
    failed = [r.stdout + r.stderr[-500:] for r in results if r.returncode != 0]
    assert not failed, failed
    run_ids = {r.stdout.strip().splitlines()[-1] for r in results}
    assert len(run_ids) == n

    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exps = [e for e in c.search_experiments() if e.name == "dahash-race"]
    assert len(exps) == 1
    runs = c.search_runs([exps[0].experiment_id])
    assert {r.info.run_id for r in runs} == run_ids
