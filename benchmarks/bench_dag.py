"""DAG overhead with nothing to do (issue 9, target 6): ``python benchmarks/bench_dag.py [--reference DIR]``.

For this checkout (and, as the reference measured in the same run, another checkout such as the main branch
before a change): a copy of it in a temp git repo with the full quickstart preset applied (``quickstart-full``,
or ``quickstart`` where that is the full one), every stage's outputs written as placeholders, recorded in
dvc.lock by the Snakefile's own end-of-run commit (``workflow.dvcdag.commit_stages``) and given mtimes in DAG
order, i.e. the state right after a complete run. Then it times, best of ``--repeat`` runs:

* ``snakemake -n`` (the whole DAG is built: dvc.yaml resolved by DVC, one rule per stage, params stamps) and
  the number of jobs it still plans (0 when both tools agree that nothing is to do);
* ``dvc status``;
* the Snakefile's parse alone (``snakemake --list-rules``) to split ``snakemake -n`` into rule building and
  the rest.

Each checkout's own code builds and commits its project (subprocesses with its PYTHONPATH). Not a test:
figures depend on the machine and its load; compare the two checkouts' figures from the same run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run inside the project with the checkout's own code: placeholders for every out, done-markers, the Snakefile's
# end-of-run commit, then mtimes in DAG order (dvc.yaml lists stages upstream first).
SETUP = r"""
import os, time
from pathlib import Path
from workflow import dvcdag
stages = dvcdag.load_stages(".")
deps = {d for st in stages for d in st.deps}
for st in stages:
    for out in st.outs:
        p = Path(out)
        if dvcdag.is_directory_out(out):
            p.mkdir(parents=True, exist_ok=True)
            (p / "placeholder.txt").write_text(st.name + "\n")
            for d in deps:  # what other stages read inside this out (analysis: models/<ds>/<bb>/dan/<task>/seed0)
                if d.startswith(out.rstrip("/") + "/"):
                    Path(d).mkdir(parents=True, exist_ok=True)
                    (Path(d) / "placeholder.txt").write_text(st.name + "\n")
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(st.name + "\n")
    dvcdag.mark_done(".", st.name)
dvcdag.commit_stages(".")
base = time.time()
for i, st in enumerate(stages):
    t = base + 0.01 * i
    for out in st.outs:
        p = Path(out)
        for q in ([*p.rglob("*"), p] if p.is_dir() else [p]):
            os.utime(q, (t, t))
print(len(stages))
"""


def env_for(checkout: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(checkout / "src"), str(checkout)])
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def copy_checkout(src: Path, dest: Path) -> None:
    """The tracked + untracked-but-not-ignored files of ``src`` (no dvc.lock)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=src,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        if rel != "dvc.lock" and (src / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / rel, dest / rel)


def make_project(checkout: Path, base: Path) -> tuple[Path, int]:
    """The full quickstart DAG of ``checkout`` after a complete (placeholder) run. Returns (project, stages)."""
    proj = base / "proj"
    proj.mkdir(parents=True)
    copy_checkout(checkout, proj)
    preset = "quickstart-full" if (checkout / "workflow" / "presets" / "quickstart-full.yaml").exists() else "quickstart"
    env = env_for(proj)
    subprocess.run([sys.executable, "-m", "stages.preset", preset, "--set", "data.mirror=some/folder"], cwd=proj,
                   env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    out = subprocess.run([sys.executable, "-c", SETUP], cwd=proj, env=env, check=True, capture_output=True, text=True)
    return proj, int(out.stdout.strip().splitlines()[-1])


def best_of(cmd: list[str], proj: Path, repeat: int) -> tuple[float, str]:
    """Smallest wall time of ``repeat`` runs, and the last run's stdout."""
    best, text = float("inf"), ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = subprocess.run(cmd, cwd=proj, env=env_for(proj), capture_output=True, text=True)
        best = min(best, time.perf_counter() - t0)
        if res.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed in {proj}:\n{res.stderr[-3000:]}")
        text = res.stdout
    return best, text


def planned_jobs(dry_stdout: str) -> int:
    """Jobs in ``snakemake -n``'s "Job stats" table ("total" row, minus the ``all`` target); 0 when none."""
    m = re.search(r"^total\s+(\d+)", dry_stdout, re.M)
    return max(int(m.group(1)) - 1, 0) if m else 0


def measure(checkout: Path, repeat: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench_dag_") as td:
        proj, n = make_project(checkout, Path(td))
        dry, dry_out = best_of(["snakemake", "-n"], proj, repeat)
        rules, _ = best_of(["snakemake", "--list-rules"], proj, repeat)
        status, status_out = best_of(["dvc", "status"], proj, repeat)
        return {"stages": n, "snakemake -n (s)": dry, "jobs still planned": planned_jobs(dry_out),
                "snakemake --list-rules (s)": rules, "dvc status (s)": status,
                "dvc status clean": float("up to date" in status_out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", type=Path, help="another checkout (e.g. the main branch) measured in the same run")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = {"this checkout": measure(ROOT, args.repeat)}
    if args.reference:
        rows[f"reference {args.reference}"] = measure(args.reference.resolve(), args.repeat)
    keys = list(next(iter(rows.values())))
    print("| what | " + " | ".join(rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for k in keys:
        print(f"| {k} | " + " | ".join(f"{r[k]:.2f}" if isinstance(r[k], float) and not r[k].is_integer()
                                         else f"{r[k]:g}" for r in rows.values()) + " |")


if __name__ == "__main__":
    main()
