"""What a ``dvc exp run`` costs beyond its training (issue 27): ``python benchmarks/bench_exp_run.py [--old REPO]``.

Builds the tiny project of tests/test_pipeline.py (its ``tiny_project`` and ``make_images``, loaded from the
checkout under test, so the copy is of THAT checkout) in a temp folder: head mode, DAH only, one task (``--tasks
2`` for two), no comparison methods, no analysis, a few epochs; runs ``snakemake --cores 2 --resources gpu=1``
once, commits, then times ``dvc exp run --set-param train.epochs=N`` line by line and breaks it down, in wall
time and in CPU time (user + system of the whole process tree, far less sensitive than wall time to a machine
shared with other jobs):

* per stage DVC ran ("Running stage ..."): the time from its line to the next one (the stage's command plus what
  DVC does around it), the same command run alone afterwards, the imports of that command (``python -X
  importtime``, the top-level imports' cumulative time, lazy imports included) and, for the training, its
  "trained in X s" (the epochs and the encoding, plus torch.optim's first-use import of ``torch._dynamo``,
  measured alone as a reference row and taken off for "the epochs");
* DVC's own time: the exp run's time minus the stage commands run alone.

``--old REPO`` builds a second project from another checkout (e.g. main before the change) and the exp runs
of both alternate (``--repeat`` rounds, each from the same committed state, DVC's run cache emptied), so that
the machine's load weighs on both alike; the table shows both side by side with their ratio; ``--old-pure-yaml``
runs that checkout without ruamel.yaml's C parser, as it ran before the project required ``ruamel.yaml.clib``.
Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNNING = re.compile(r"Running stage '([^']+)'")
TRAINED = re.compile(r"trained in ([\d.]+) s")


def pipeline_helpers(repo: Path) -> ModuleType:
    """``repo``/tests/test_pipeline.py as a module: its ``tiny_project`` copies ``repo``."""
    name = f"_bench_pipeline_{abs(hash(str(repo)))}"
    spec = importlib.util.spec_from_file_location(name, repo / "tests" / "test_pipeline.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class Project:
    """A tiny project built from one checkout, with its helpers' environment."""

    def __init__(self, label: str, repo: Path, base: Path, tasks: int, epochs: int, pure_yaml: bool = False) -> None:
        self.label, self.helpers = label, pipeline_helpers(repo)
        base.mkdir(parents=True)
        h = self.helpers
        self.root, params = h.tiny_project(base, per_class=4)
        self.env = h._env(self.root)
        if pure_yaml:  # ruamel.yaml without its C parser (before the project required ruamel.yaml.clib)
            shim = base / "no-yaml-clib"
            shim.mkdir()
            (shim / "_ruamel_yaml.py").write_text("raise ImportError('hidden by bench_exp_run --old-pure-yaml')\n")
            self.env["PYTHONPATH"] = f"{shim}:{self.env['PYTHONPATH']}"
        params["train"].update(mode="head", hash_bits=16, hidden_dims=[32, 32], k_per_class=2, epochs=epochs,
                               lr_start=1e-2, lr_end=1e-3, gamma=5.0, seeds=[0], checkpoint_every=1)
        params["methods"] = {"dah": {}}
        params["baselines"] = {"seed": 0, "methods": {}}
        params["analysis"] = {"tasks": [], "max_points": 1000}
        params["tasks"] = dict(list(h.TASKS.items())[:tasks])
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench project"]):
            h.run(self.root, *cmd)
        t0 = time.perf_counter()
        h.run(self.root, "snakemake", "--cores", "2", "--resources", "gpu=1")
        print(f"[{label}] first snakemake run: {time.perf_counter() - t0:.1f} s ({self.root})", flush=True)
        h.run(self.root, "git", "add", "-A")
        h.run(self.root, "git", "commit", "-qm", "first run")

    def reset(self) -> None:
        """Back to the committed first run (outputs from DVC's cache, DVC's run cache emptied: the round
        trains again instead of restoring the previous round's outputs), for another round."""
        self.helpers.run(self.root, "git", "reset", "-q", "--hard", "HEAD")
        self.helpers.run(self.root, "dvc", "checkout", "--force", "-q")
        shutil.rmtree(self.root / ".dvc" / "cache" / "runs", ignore_errors=True)

    def timed(self, cmd: str) -> tuple[float, float, str]:
        """Wall time, CPU time (user + system, its whole process tree) and output (stdout + stderr) of shell
        command ``cmd`` in the project."""
        t0, c0 = time.perf_counter(), children_cpu()
        res = subprocess.run(cmd, shell=True, cwd=self.root, env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall, cpu = time.perf_counter() - t0, children_cpu() - c0
        if res.returncode:
            raise RuntimeError(f"[{self.label}] {cmd} failed ({res.returncode}):\n{res.stdout[-4000:]}")
        return wall, cpu, res.stdout

    def exp_run(self, epochs: int) -> tuple[float, float, list[tuple[float, str]]]:
        """``dvc exp run --set-param train.epochs=<epochs>``: its wall time, CPU time (DVC and the stages) and
        every output line with its time."""
        cmd = ["dvc", "exp", "run", "--set-param", f"train.epochs={epochs}"]
        t0, c0 = time.perf_counter(), children_cpu()
        proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines = [(time.perf_counter() - t0, line) for line in proc.stdout]
        if proc.wait():
            raise RuntimeError(f"[{self.label}] {' '.join(cmd)} failed:\n{''.join(l for _, l in lines)[-4000:]}")
        return time.perf_counter() - t0, children_cpu() - c0, lines

    def commands(self) -> dict[str, str]:
        """Each DVC stage's resolved command (workflow.dvcdag.load_stages, as the Snakefile sees them)."""
        code = ("import json; from workflow.dvcdag import load_stages; "
                "print(json.dumps({s.name: s.cmd for s in load_stages('.')}))")
        out = self.timed(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}")[2]
        return yaml.safe_load(out.strip().splitlines()[-1])


def children_cpu() -> float:
    """User + system CPU seconds of this process's waited-for children (and theirs), so far."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def stage_spans(total: float, lines: list[tuple[float, str]]) -> dict[str, float]:
    """Per stage DVC ran: from its "Running stage" line to the next one (the last: to the end); ``(before the
    first stage)``: DVC's set-up and planning until the first stage starts."""
    starts = [(t, m.group(1)) for t, line in lines if (m := RUNNING.search(line))]
    spans = {"(before the first stage)": starts[0][0] if starts else total}
    for (t, name), nxt in zip(starts, starts[1:] + [(total, "")]):
        spans[name] = nxt[0] - t
    return spans


def import_seconds(importtime: str) -> float:
    """Sum of the top-level imports' cumulative times in ``python -X importtime`` output, in seconds."""
    total = 0
    for line in importtime.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) == 1:  # one space: a top-level import
            total += int(m.group(1))
    return total / 1e6


YAML_PARSE = ("import time; from dvc.utils.serialize._yaml import parse_yaml as p\n"
              "for f in ('dvc.yaml', 'dvc.lock'):\n"
              "    text = open(f).read(); t = time.perf_counter(); [p(text, f) for _ in range(5)]\n"
              "    print((time.perf_counter() - t) / 5)")
DYNAMO = ("import time, torch; t = time.perf_counter(); import torch._dynamo; "
          "print(time.perf_counter() - t)")


def measure(project: Project, epochs: int) -> dict[str, float]:
    """One round on ``project``: the exp run, then each stage's command alone and with ``-X importtime``."""
    total, cpu, lines = project.exp_run(epochs)
    fig = {"exp run, wall": total, "exp run, CPU (DVC + stages)": cpu}
    spans = stage_spans(total, lines)
    commands = project.commands()
    walls = cpus = 0.0
    for name, span in spans.items():
        fig[f"{name}: span in exp run, wall"] = span
        if name not in commands:
            continue
        wall, c, out = project.timed(commands[name])
        walls, cpus = walls + wall, cpus + c
        fig[f"{name}: alone, wall"], fig[f"{name}: alone, CPU"] = wall, c
        imp = project.timed(re.sub(r"^python ", "python -X importtime ", commands[name]))[2]
        fig[f"{name}: its imports (-X importtime)"] = import_seconds(imp)
        if m := TRAINED.search(out):
            fig[f"{name}: training + encoding (\"trained in\")"] = float(m.group(1))
    fig["stage commands alone, wall"], fig["stage commands alone, CPU"] = walls, cpus
    fig["DVC's own, wall (exp run - commands alone)"] = total - walls
    fig["DVC's own, CPU (exp run - commands alone)"] = cpu - cpus
    fig["(ref) torch._dynamo import, in training's time"] = float(
        project.timed(f"{shlex.quote(sys.executable)} -c {shlex.quote(DYNAMO)}")[2].split()[-1])
    parse = project.timed(f"{shlex.quote(sys.executable)} -c {shlex.quote(YAML_PARSE)}")[2].split()
    fig["(ref) DVC's parse of dvc.yaml (one, as DVC reads it)"] = float(parse[-2])
    fig["(ref) DVC's parse of dvc.lock (one, as DVC reads it)"] = float(parse[-1])
    fig["(ref) python -c pass, wall"] = project.timed(f"{shlex.quote(sys.executable)} -c pass")[0]
    return fig


def table(results: dict[str, list[dict[str, float]]]) -> str:
    """Median over rounds per figure, one column per checkout, and new/old when there are two."""
    labels = list(results)
    keys = list(dict.fromkeys(k for rounds in results.values() for r in rounds for k in r))
    med = {lab: {k: statistics.median(r[k] for r in rs if k in r) for k in keys if any(k in r for r in rs)}
           for lab, rs in results.items()}
    head = f"| {'seconds (median of rounds)':56s} | " + " | ".join(f"{lab:>8s}" for lab in labels)
    head += " | after/before |" if len(labels) == 2 else " |"
    out = [head, "|" + "-" * 58 + "|" + "|".join("-" * 10 for _ in labels) + ("|-------------|" if len(labels) == 2 else "|")]
    for k in keys:
        cells = [f"{med[lab][k]:8.2f}" if k in med[lab] else f"{'-':>8s}" for lab in labels]
        row = f"| {k:56s} | " + " | ".join(cells)
        if len(labels) == 2:
            a, b = med[labels[0]].get(k), med[labels[1]].get(k)
            row += f" | {a / b:11.2f} |" if a is not None and b else f" | {'-':>11s} |"
        else:
            row += " |"
        out.append(row)
    return "\n".join(out)


def ratios(fig: dict[str, float]) -> str:
    """Shares of the exp run's wall time: DVC's own, the stage commands, their imports, the epochs (all wall
    times: on a loaded machine they are inflated alike, the CPU rows of the table are the steadier ones)."""
    wall = fig["exp run, wall"]
    imports = sum(v for k, v in fig.items() if k.endswith("(-X importtime)"))
    trained = sum(v for k, v in fig.items() if k.endswith('("trained in")'))
    work = trained - fig["(ref) torch._dynamo import, in training's time"] if trained else 0.0
    own = fig["DVC's own, wall (exp run - commands alone)"]
    return (f"of the exp run's wall time: DVC's own {100 * own / wall:.0f} %, the stage commands "
            f"{100 * fig['stage commands alone, wall'] / wall:.0f} % (their imports {100 * imports / wall:.0f} %), "
            f"the epochs {100 * work / wall:.0f} %" + (f"; exp run / epochs = {wall / work:.0f}x" if work > 0 else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    ap.add_argument("--old", type=Path, help="another checkout measured in the same run (before)")
    ap.add_argument("--tasks", type=int, default=1, choices=(1, 2))
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the first run")
    ap.add_argument("--exp-epochs", type=int, default=5, help="the experiment's train.epochs")
    ap.add_argument("--repeat", type=int, default=1, help="rounds (each checkout alternately)")
    ap.add_argument("--old-pure-yaml", action="store_true",
                    help="run --old without ruamel.yaml's C parser (as before ruamel.yaml.clib was required)")
    ap.add_argument("--workdir", type=Path, help="build the projects here and keep them (default: a temp folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-exp-run-") as tmp:
        td = args.workdir or tmp
        checkouts = {"after": args.repo.resolve()} if args.old else {"this": args.repo.resolve()}
        if args.old:
            checkouts["before"] = args.old.resolve()
        projects = [Project(lab, repo, Path(td) / lab, args.tasks, args.epochs, args.old_pure_yaml and lab == "before")
                    for lab, repo in checkouts.items()]
        results: dict[str, list[dict[str, float]]] = {p.label: [] for p in projects}
        for r in range(args.repeat):
            for p in projects if r % 2 == 0 else projects[::-1]:
                if r:
                    p.reset()
                results[p.label].append(measure(p, args.exp_epochs))
                last = results[p.label][-1]
                print(f"[{p.label}] round {r + 1}: exp run {last['exp run, wall']:.1f} s, CPU {last['exp run, CPU (DVC + stages)']:.1f} s",
                      flush=True)
    print(f"\n`dvc exp run --set-param train.epochs={args.exp_epochs}` on the tiny project ({args.tasks} task(s), "
          f"DAH head mode, {args.repeat} round(s)):\n")
    print(table(results))
    for lab, rounds in results.items():
        print(f"\n{lab}: " + ratios({k: statistics.median(r[k] for r in rounds if k in r)
                                     for k in rounds[0]}))


if __name__ == "__main__":
    main()
