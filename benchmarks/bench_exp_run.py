"""What a ``dvc exp run`` costs beyond its training (issue 27): ``python benchmarks/bench_exp_run.py [--old REPO]``.

Builds the tiny project of tests/test_pipeline.py (its ``tiny_project`` and ``make_images``, loaded from the
checkout under test, so the copy is of THAT checkout) in a temp folder: head mode, DAH only, one task (``--tasks
2`` for two), no comparison methods, no analysis, a few epochs; runs ``snakemake --cores 2 --resources gpu=1``
once, commits, then times ``dvc exp run --set-param train.epochs=N`` line by line and breaks its wall time down:

* per stage DVC ran ("Running stage ..."): the time from its line to the next one (the stage's command plus what
  DVC does around it), the same command run alone afterwards, the imports of that command (``python -X
  importtime``, the top-level imports' cumulative time, lazy imports included) and, for the training, the work
  itself (the epochs: "trained in X s");
* DVC's own time: the exp run's wall time minus the stage commands run alone.

``--old REPO`` builds a second project from another checkout (e.g. main before the change) and the exp runs
of both alternate (``--repeat`` rounds, each from the same committed state), so that the machine's load weighs
on both alike; the table shows both side by side with their ratio. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
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

    def __init__(self, label: str, repo: Path, base: Path, tasks: int, epochs: int) -> None:
        self.label, self.helpers = label, pipeline_helpers(repo)
        base.mkdir(parents=True)
        h = self.helpers
        self.root, params = h.tiny_project(base, per_class=4)
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
        """Back to the committed first run (outputs from DVC's cache), for another round."""
        self.helpers.run(self.root, "git", "reset", "-q", "--hard", "HEAD")
        self.helpers.run(self.root, "dvc", "checkout", "--force", "-q")

    def timed(self, cmd: str) -> tuple[float, str]:
        """Wall time and output (stdout + stderr) of shell command ``cmd`` in the project."""
        t0 = time.perf_counter()
        res = subprocess.run(cmd, shell=True, cwd=self.root, env=self.helpers._env(self.root),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall = time.perf_counter() - t0
        if res.returncode:
            raise RuntimeError(f"[{self.label}] {cmd} failed ({res.returncode}):\n{res.stdout[-4000:]}")
        return wall, res.stdout

    def exp_run(self, epochs: int) -> tuple[float, list[tuple[float, str]]]:
        """``dvc exp run --set-param train.epochs=<epochs>``: its wall time and every output line with its time."""
        cmd = ["dvc", "exp", "run", "--set-param", f"train.epochs={epochs}"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=self.root, env=self.helpers._env(self.root), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        lines = [(time.perf_counter() - t0, line) for line in proc.stdout]
        if proc.wait():
            raise RuntimeError(f"[{self.label}] {' '.join(cmd)} failed:\n{''.join(l for _, l in lines)[-4000:]}")
        return time.perf_counter() - t0, lines

    def commands(self) -> dict[str, str]:
        """Each DVC stage's resolved command (workflow.dvcdag.load_stages, as the Snakefile sees them)."""
        code = ("import json; from workflow.dvcdag import load_stages; "
                "print(json.dumps({s.name: s.cmd for s in load_stages('.')}))")
        _, out = self.timed(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}")
        return yaml.safe_load(out.strip().splitlines()[-1])


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


def measure(project: Project, epochs: int) -> dict[str, float]:
    """One round on ``project``: the exp run, then each stage's command alone and with ``-X importtime``."""
    total, lines = project.exp_run(epochs)
    fig = {"exp run total": total}
    spans = stage_spans(total, lines)
    commands = project.commands()
    alone_sum = 0.0
    for name, span in spans.items():
        fig[f"{name}: span in exp run"] = span
        if name not in commands:
            continue
        cmd = commands[name]
        wall, out = project.timed(cmd)
        alone_sum += wall
        fig[f"{name}: command alone"] = wall
        _, imp = project.timed(re.sub(r"^python ", "python -X importtime ", cmd))
        fig[f"{name}: its imports"] = import_seconds(imp)
        if m := TRAINED.search(out):
            fig[f"{name}: the epochs (work)"] = float(m.group(1))
    fig["stage commands alone, sum"] = alone_sum
    fig["DVC's own (total - commands)"] = total - alone_sum
    fig["python -c pass"] = project.timed(f"{shlex.quote(sys.executable)} -c pass")[0]
    return fig


def table(results: dict[str, list[dict[str, float]]]) -> str:
    """Median over rounds per figure, one column per checkout, and new/old when there are two."""
    labels = list(results)
    keys = list(dict.fromkeys(k for rounds in results.values() for r in rounds for k in r))
    med = {lab: {k: statistics.median(r[k] for r in rs if k in r) for k in keys if any(k in r for r in rs)}
           for lab, rs in results.items()}
    head = f"| {'seconds (median of rounds)':52s} | " + " | ".join(f"{lab:>8s}" for lab in labels)
    head += " | after/before |" if len(labels) == 2 else " |"
    out = [head, "|" + "-" * 54 + "|" + "|".join("-" * 10 for _ in labels) + ("|-------------|" if len(labels) == 2 else "|")]
    for k in keys:
        cells = [f"{med[lab][k]:8.2f}" if k in med[lab] else f"{'-':>8s}" for lab in labels]
        row = f"| {k:52s} | " + " | ".join(cells)
        if len(labels) == 2:
            a, b = med[labels[0]].get(k), med[labels[1]].get(k)
            row += f" | {a / b:11.2f} |" if a is not None and b else f" | {'-':>11s} |"
        else:
            row += " |"
        out.append(row)
    return "\n".join(out)


def ratios(fig: dict[str, float]) -> str:
    """Shares of the exp run's wall time: DVC's own, the stage commands, their imports, the epochs."""
    total = fig["exp run total"]
    imports = sum(v for k, v in fig.items() if k.endswith(": its imports"))
    work = sum(v for k, v in fig.items() if k.endswith("(work)"))
    own = fig["DVC's own (total - commands)"]
    return (f"DVC's own {100 * own / total:.0f} %, stage commands {100 * fig['stage commands alone, sum'] / total:.0f} % (of which imports "
            f"{100 * imports / total:.0f} %), the epochs {100 * work / total:.1f} %"
            + (f"; exp run / epochs = {total / work:.0f}x" if work else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=ROOT, help="the checkout to measure (default: this one)")
    ap.add_argument("--old", type=Path, help="another checkout measured in the same run (before)")
    ap.add_argument("--tasks", type=int, default=1, choices=(1, 2))
    ap.add_argument("--epochs", type=int, default=3, help="epochs of the first run")
    ap.add_argument("--exp-epochs", type=int, default=5, help="the experiment's train.epochs")
    ap.add_argument("--repeat", type=int, default=1, help="rounds (each checkout alternately)")
    ap.add_argument("--workdir", type=Path, help="build the projects here and keep them (default: a temp folder)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-exp-run-") as tmp:
        td = args.workdir or tmp
        checkouts = {"after": args.repo.resolve()} if args.old else {"this": args.repo.resolve()}
        if args.old:
            checkouts["before"] = args.old.resolve()
        projects = [Project(lab, repo, Path(td) / lab, args.tasks, args.epochs) for lab, repo in checkouts.items()]
        results: dict[str, list[dict[str, float]]] = {p.label: [] for p in projects}
        for r in range(args.repeat):
            for p in projects if r % 2 == 0 else projects[::-1]:
                if r:
                    p.reset()
                results[p.label].append(measure(p, args.exp_epochs))
                print(f"[{p.label}] round {r + 1}: exp run {results[p.label][-1]['exp run total']:.1f} s", flush=True)
    print(f"\n`dvc exp run --set-param train.epochs={args.exp_epochs}` on the tiny project ({args.tasks} task(s), "
          f"DAH head mode, {args.repeat} round(s)):\n")
    print(table(results))
    for lab, rounds in results.items():
        print(f"\n{lab}: " + ratios({k: statistics.median(r[k] for r in rounds if k in r)
                                     for k in rounds[0]}))


if __name__ == "__main__":
    main()
