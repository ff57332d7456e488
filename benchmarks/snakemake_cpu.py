"""Snakemake's own CPU over a whole run (issue 9, target 6): ``python benchmarks/snakemake_cpu.py -- COMMAND ...``.

Runs COMMAND (e.g. ``make quickstart-full MIRROR=../shared/data/office-caltech-10 CORES=2 GPU_SLOTS=2`` in a fresh
clone), finds the Snakemake process among its descendants and samples that one process's own user + system CPU
time (not its jobs': they are separate processes) every ``--every`` seconds until it exits. Prints the run's wall
time, the CPU of all its processes (psutil's children times, like ``/usr/bin/time``), and Snakemake's own CPU as
seconds and as a share of one core over the time it ran. psutil is already installed (snakemake and dvc need it).
The last sample is taken at most ``--every`` seconds before Snakemake exits: a lower bound by that much.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import psutil


def find_snakemake(root: psutil.Process) -> psutil.Process | None:
    """``root`` or the first of its descendants whose command line runs snakemake (not one of its jobs)."""
    try:
        for p in [root, *root.children(recursive=True)]:
            cmd = p.cmdline()
            if any(part.endswith("/snakemake") or part == "snakemake" for part in cmd[:2]):
                return p
    except psutil.Error:
        return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--every", type=float, default=2.0, help="seconds between samples (default 2)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = ap.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command to run after --")
    t0 = time.perf_counter()
    proc = subprocess.Popen(command)
    root = psutil.Process(proc.pid)
    smk, smk_start, smk_cpu = None, None, 0.0
    while proc.poll() is None:
        if smk is None:
            smk = find_snakemake(root)
            smk_start = time.perf_counter() if smk is not None else None
        if smk is not None:
            try:
                t = smk.cpu_times()
                smk_cpu = t.user + t.system
            except psutil.Error:  # it exited between two samples: keep the last reading
                pass
        time.sleep(args.every)
    wall = time.perf_counter() - t0
    children = psutil.Process().cpu_times()
    print(f"command exit status {proc.returncode}; wall {wall:.0f} s ({wall / 60:.1f} min)", file=sys.stderr)
    print(f"CPU of the whole run (user + sys of all its processes): {children.children_user + children.children_system:.0f} s",
          file=sys.stderr)
    if smk_start is None:
        print("no snakemake process was seen", file=sys.stderr)
        return
    span = time.perf_counter() - smk_start
    print(f"Snakemake's own CPU: {smk_cpu:.1f} s over the {span:.0f} s it was seen running: "
          f"{100 * smk_cpu / span:.2f} % of one core", file=sys.stderr)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
