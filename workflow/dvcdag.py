"""Build Snakemake rules from DVC's resolved stages, so dvc.yaml is the single source of truth.

For every stage that DVC resolves (``foreach`` expanded, ``${...}`` interpolated) we take the command,
the file deps, the outs, the params it declares and ``meta.snakemake`` (``threads`` and ``resources``:
``mem_mb``, ``runtime`` in minutes, ``gpu``), declared once beside the stage and read by local runs and by
the Slurm executor alike (workflow/profiles/slurm). The Snakefile turns each into a rule. Staleness is kept in agreement between the two tools:

* file deps and outs: Snakemake compares modification times, DVC compares hashes in dvc.lock;
* params: DVC compares the values recorded in dvc.lock. For Snakemake we keep one stamp file per
  stage, ``.snakemake/dvc-params/<stage>.json``, as an extra input. Its mtime is set to the epoch when
  the stage's current params equal those recorded in dvc.lock (or the stage has no lock entry yet),
  and to "now" when they differ, so Snakemake reruns exactly the stages DVC considers params-stale;
* each Snakemake job, once its command succeeded, commits its own stage to dvc.lock (``python -m workflow.dvcdag
  commit STAGE``, :func:`commit_job`), so DVC sees every finished job as up to date whatever happens to the run
  afterwards (Ctrl-C, a failed job, a killed Snakemake); a commit that could not happen is retried at the end of
  the run and at the next run's start (:func:`commit_stages`).
"""

from __future__ import annotations

import bisect
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STAMP_DIR = Path(".snakemake") / "dvc-params"
DONE_DIR = Path(".snakemake") / "dvc-done"


@dataclass(frozen=True)
class DvcStage:
    """One resolved DVC stage, as Snakemake needs it."""

    name: str  # DVC address, e.g. "train@A_W"
    cmd: str
    deps: list[str]
    outs: list[str]
    params: dict[str, Any]  # "<file>:<key>" -> current value
    resources: dict[str, int] = field(default_factory=dict)
    threads: int = 1

    @property
    def rule_name(self) -> str:
        """Snakemake rule names must be identifiers: ``train@dah-A_W-0`` -> ``train__dah_A_W_0``."""
        return re.sub(r"\W", "_", self.name.replace("@", "__"))

    @property
    def stamp(self) -> str:
        return (STAMP_DIR / f"{self.name}.json").as_posix()


def is_directory_out(path: str) -> bool:
    """Convention of this project's dvc.yaml: an out without a file extension is a directory."""
    return Path(path).suffix == ""


def load_stages(root: str | os.PathLike[str]) -> list[DvcStage]:
    """Resolve dvc.yaml with DVC's own loader and return the stages in definition order."""
    from dvc.dependency.param import MissingParamsFile, ParamsDependency, read_param_file
    from dvc.repo import Repo

    repo = Repo(os.fspath(root))
    files: dict[str, Any] = {}  # params file -> its parsed content, parsed ONCE (DVC's read_params parses per stage)

    def current(d: ParamsDependency) -> dict[str, Any]:
        """What ``d.read_params()`` returns (flattened keys), from the file parsed once."""
        if d.fs_path not in files:
            try:
                d.validate_filepath()
                files[d.fs_path] = read_param_file(repo.fs, d.fs_path)
            except MissingParamsFile:
                files[d.fs_path] = {}
        config = files[d.fs_path]
        if not d.params:
            return dict(config)
        return {k: v for k in d.params if (v := _lookup(config, k)) is not _MISSING}

    try:
        stages = []
        for s in repo.index.stages:
            params: dict[str, Any] = {}
            deps: list[str] = []
            for d in s.deps:
                if isinstance(d, ParamsDependency):
                    params.update({f"{d.def_path}:{k}": v for k, v in current(d).items()})
                else:
                    deps.append(d.def_path)
            threads, resources = snakemake_meta(s.addressing, s.meta)
            stages.append(
                DvcStage(
                    name=s.addressing,
                    cmd=s.cmd,
                    deps=deps,
                    outs=[o.def_path for o in s.outs],
                    params=params,
                    resources=resources,
                    threads=threads,
                )
            )
        return stages
    finally:
        repo.close()


_MISSING = object()


def _lookup(config: Any, dotted: str) -> Any:
    """``config["a"]["b"]`` for ``"a.b"`` (list items by index), or _MISSING: DVC's dpath.get with "." separator."""
    node = config
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _flat_params(entry: dict[str, Any]) -> dict[str, Any]:
    """A dvc.lock stage entry's params as ``{"<file>:<key>": value}``."""
    return {f"{fname}:{k}": v for fname, values in (entry.get("params") or {}).items() for k, v in values.items()}


SNAKEMAKE_META_KEYS = {"threads", "resources"}


def snakemake_meta(stage: str, meta: dict[str, Any] | None) -> tuple[int, dict[str, int]]:
    """``threads`` and ``resources`` from a stage's ``meta.snakemake`` in dvc.yaml (1 thread, none when absent).

    Every value must be a positive integer (``runtime`` in minutes, ``mem_mb`` in MB, ``gpu`` a count): a
    typo or a unit string would otherwise reach ``sbatch`` as a malformed request, so it is refused here
    with the stage and key named.
    """
    snake = (meta or {}).get("snakemake") or {}
    if not isinstance(snake, dict) or set(snake) - SNAKEMAKE_META_KEYS:
        raise ValueError(
            f"dvc.yaml, stage {stage}: meta.snakemake may hold only {sorted(SNAKEMAKE_META_KEYS)}, "
            f"got {snake!r}"
        )
    declared = {"threads": snake.get("threads", 1)} | {
        f"resources.{k}": v for k, v in (snake.get("resources") or {}).items()
    }
    for key, value in declared.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"dvc.yaml, stage {stage}: meta.snakemake.{key} must be a positive integer, got {value!r}"
            )
    resources = {k.removeprefix("resources."): v for k, v in declared.items() if k != "threads"}
    return declared["threads"], resources


def shared_threads(threads: int, cores: int | None, gpu_slots: int | None) -> int:
    """A job's threads when ``--resources gpu=N`` asks for N jobs at once: ``min(threads, max(1, cores // N))``.

    ``--resources gpu=N`` runs N training jobs at once (N GPUs, or N trainings sharing a CPU-only machine's
    cores), so every job gets at most its share of the ``--cores``: without this, a training's 8 declared
    threads would be cut to ALL the cores and the N slots could never be used together. On 2 cores, two
    one-thread trainings side by side do 1.6x the work of one two-thread training (measured: 45.7 s for two
    W_C runs vs 36.4 s for one; small matrices scale badly across threads), and the one-thread comparison
    methods and evaluations run beside them. Unknown ``cores`` or ``gpu_slots`` (no ``--resources gpu``, or
    a cluster run where each job gets its node's cores) keep the declared threads.
    """
    if not cores or not gpu_slots:
        return threads
    return max(1, min(threads, cores // gpu_slots))


class _Yaml12FloatLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """PyYAML's safe loader that also reads YAML 1.2 floats without a dot (``1e-05``) as floats."""


_Yaml12FloatLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def locked_params(root: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Params recorded in dvc.lock per stage: ``{stage: {"<file>:<key>": value}}`` (empty without a lock)."""
    lock = Path(root) / "dvc.lock"
    if not lock.exists():
        return {}
    # YAML 1.2 floats as DVC writes them: PyYAML's YAML 1.1 reads 1e-05 (train.lr_end) as a string, which made
    # every stage declaring it look params-stale to Snakemake after a run. PyYAML's C parser: a 500-stage lock in
    # a fraction of the time ruamel.yaml takes
    data = yaml.load(lock.read_text(), Loader=_Yaml12FloatLoader) or {}
    return {name: _flat_params(entry) for name, entry in (data.get("stages") or {}).items()}


def write_param_stamps(root: str | os.PathLike[str], stages: list[DvcStage]) -> None:
    """Write each stage's params stamp; mtime = epoch when in agreement with dvc.lock, now otherwise."""
    root = Path(root)
    locked = locked_params(root)
    (root / STAMP_DIR).mkdir(parents=True, exist_ok=True)
    now = time.time()
    for st in stages:
        path = root / st.stamp
        text = json.dumps(st.params, sort_keys=True, indent=1, default=str)
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
        recorded = locked.get(st.name)
        stale = recorded is not None and _normalise(recorded) != _normalise(st.params)
        stamp_time = now if stale else 0.0
        os.utime(path, (stamp_time, stamp_time))


def _normalise(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


#: files inside a source folder dep that are not source: Python's and numba's caches, written while jobs run
CACHE_DIRS = frozenset({"__pycache__"})
CACHE_SUFFIXES = (".pyc", ".pyo", ".nbi", ".nbc")


def folder_files(folder: Path) -> list[str]:
    """The files under ``folder`` (sorted; paths start with ``folder`` as given), without the
    caches Python and numba write beside the code (``__pycache__/``, ``*.pyc``, ``*.nbi``, ``*.nbc``)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in CACHE_DIRS)
        files += [os.path.join(dirpath, f) for f in sorted(filenames) if not f.endswith(CACHE_SUFFIXES)]
    return [Path(f).as_posix() for f in files]


def snakemake_inputs(stage: DvcStage, stages: list[DvcStage], root: str | os.PathLike[str] | None = None) -> list[str]:
    """A stage's deps for Snakemake: a directory dep that contains other stages' outs is expanded to those outs,
    a dep inside another stage's directory out becomes that out, and a folder no stage writes (source code such
    as ``src/dahash/baselines``, git-kept folders) becomes its files without Python's and numba's caches.

    DVC links ``deps: [metrics/ds]`` to every stage writing ``metrics/ds/<method>``, and
    ``deps: [models/ds/bb/dan/A_W/seed0]`` to the stage writing ``models/ds/bb/dan``; Snakemake matches
    inputs to outputs by their exact paths. Snakemake dates a folder input by the newest file inside it, so
    the ``__pycache__`` a job writes into ``src/dahash/baselines`` (numba's kernel cache, .pyc files) made every
    earlier job on that folder look stale after a first run; DVC ignores the same caches (.dvcignore).
    ``root``: the project folder the relative deps are in (default: the working directory).
    """
    index = outs_index(stages)
    base = Path(root) if root is not None else Path.cwd()
    inputs: list[str] = []
    for dep in stage.deps:
        inside = [o for o, owner in index.under(dep) if owner is not stage]
        if not inside and Path(dep).as_posix() not in index.by_path:  # another stage's out: as it is
            outer = index.containing(dep)
            if outer is not None:
                inside = [outer[0]] if outer[1] is not stage else []
            elif (base / dep).is_dir():
                inside = [Path(f).relative_to(base).as_posix() for f in folder_files(base / dep)]
        inputs.extend(inside if inside else [dep])
    return list(dict.fromkeys(inputs)) + [stage.stamp]


class OutsIndex:
    """Every stage's outs, sorted, to find those under a folder by bisection (O(log n + k) per dep instead of a
    pathlib comparison with every out of every stage: quadratic, seconds on a 500-stage DAG)."""

    def __init__(self, stages: list[DvcStage]) -> None:
        self.stages = stages
        self.outs = sorted((Path(o).as_posix(), s) for s in stages for o in s.outs)
        self.keys = [o for o, _ in self.outs]
        self.by_path = dict(self.outs)

    def under(self, dep: str) -> list[tuple[str, DvcStage]]:
        """(out, stage) for the outs strictly inside folder ``dep``, in path order."""
        prefix = Path(dep).as_posix().rstrip("/") + "/"
        lo = bisect.bisect_left(self.keys, prefix)
        hi = bisect.bisect_left(self.keys, prefix[:-1] + chr(ord("/") + 1))
        return self.outs[lo:hi]

    def containing(self, dep: str) -> tuple[str, DvcStage] | None:
        """(out, stage) for the out that is a folder strictly above ``dep``, if any (the nearest)."""
        for parent in Path(dep).parents:
            key = parent.as_posix()
            if key in self.by_path:
                return key, self.by_path[key]
        return None


_INDEX: dict[int, OutsIndex] = {}


def outs_index(stages: list[DvcStage]) -> OutsIndex:
    """The OutsIndex of ``stages``, built once per list (the Snakefile asks for every stage of the same list)."""
    index = _INDEX.get(id(stages))
    if index is None or index.stages is not stages:
        index = _INDEX[id(stages)] = OutsIndex(stages)
    return index


def mark_done(root: str | os.PathLike[str], stage_name: str) -> None:
    """Record that Snakemake finished ``stage_name`` (its job commits it at once; the marker stays only when that
    commit did not happen: the end of the run, or the next run's start, commits it then)."""
    d = Path(root) / DONE_DIR
    d.mkdir(parents=True, exist_ok=True)
    (d / stage_name).touch()


class CommitError(RuntimeError):
    """Some stages Snakemake ran could not be recorded in dvc.lock; the message names them and what to do."""


#: the file lock serialising every write of dvc.lock by Snakemake's jobs and its main process
COMMIT_LOCK = Path(".snakemake") / "dvc-commit.lock"
#: set by the Snakefile's main process (its pid) while it holds DVC's repository lock for the whole run
RUNNER_ENV = "DAHASH_SNAKEMAKE_PID"
#: above this many stages to record, resolve the whole pipeline once instead of each stage alone
_ONE_BY_ONE = 8


def pending_stages(root: str | os.PathLike[str]) -> list[str]:
    """The stages Snakemake finished whose commit to dvc.lock has not happened yet (their done-markers)."""
    done_dir = Path(root) / DONE_DIR
    return sorted(p.name for p in done_dir.glob("*")) if done_dir.exists() else []


def commit_stages(root: str | os.PathLike[str], names: list[str] | None = None) -> list[str]:
    """``dvc commit`` the stages Snakemake finished (default: every pending done-marker), so dvc.lock matches
    their outputs. Each job calls it for its own stage as soon as its command succeeded (``python -m
    workflow.dvcdag commit STAGE``); the end of the run and the next run's start call it for what is left.

    Returns the committed stage names. A stage that cannot be committed (e.g. a param it declares is missing
    from params.yaml) does not stop the others: they are recorded, its outputs stay as they are, its done-marker
    stays (a later run retries), and :class:`CommitError` then names every such stage, the reason, and the
    command that records it once fixed. Writes of dvc.lock are serialised by :data:`COMMIT_LOCK`; DVC's own
    repository lock is taken unless the Snakemake run this process belongs to holds it (:data:`RUNNER_ENV`).
    """
    from filelock import FileLock

    root = Path(root)
    names = pending_stages(root) if names is None else names
    if not names:
        return []
    (root / COMMIT_LOCK).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / COMMIT_LOCK)):
        committed, failed = _commit(root, names)
    if failed:
        raise CommitError(commit_failure_message(failed, len(committed)))
    return committed


def _runner_holds_dvc_lock(root: Path) -> bool:
    """True when this process belongs to a Snakemake run (:data:`RUNNER_ENV`) whose main process holds DVC's
    repository lock (``.dvc/tmp/lock`` names its pid)."""
    pid = os.environ.get(RUNNER_ENV)
    try:
        return bool(pid) and (root / ".dvc" / "tmp" / "lock").read_text().split() == [pid]
    except OSError:
        return False


def _commit(root: Path, names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Save, commit and dump ``names`` (done-markers of the committed ones removed): (committed, {failed: why})."""
    from dvc.lock import LockNoop
    from dvc.repo import Repo

    done_dir = root / DONE_DIR
    committed: list[str] = []
    failed: dict[str, str] = {}
    repo = Repo(os.fspath(root))
    if _runner_holds_dvc_lock(root):  # DVC's stage methods assert its lock is held: the run holds it for us
        repo.lock = LockNoop()
    try:
        # What `dvc commit -f <stage>` does. Few stages (a job's own): each resolved alone (DVC resolves one
        # foreach/matrix item without the others). Many: the pipeline resolved ONCE (Repo.commit re-parses it per
        # target: seconds per stage on a large matrix) and the lock file written ONCE per dvc file (dumping stage
        # by stage re-reads and rewrites the whole dvc.lock each time: quadratic, minutes for 500).
        by_name = ({s.addressing: s for s in repo.index.stages} if len(names) > _ONE_BY_ONE else None)
        with repo.lock:
            by_file: dict[str, tuple[object, list]] = {}
            for name in names:
                try:
                    stage = _load_stage(repo, name) if by_name is None else by_name.get(name)
                except Exception as exc:  # noqa: BLE001 - reported per stage below, the others still committed
                    failed[name] = f"{type(exc).__name__}: {exc}"
                    continue
                if stage is None:  # params.yaml changed during the run so that this stage no longer exists
                    print(f"dvc commit: {name} is no longer a stage of dvc.yaml (params.yaml changed during the "
                          "run?); not recorded", file=sys.stderr)
                    (done_dir / name).unlink(missing_ok=True)
                    continue
                try:
                    stage.save()
                    stage.commit()
                except Exception as exc:  # noqa: BLE001 - reported per stage below, the others still committed
                    failed[name] = f"{type(exc).__name__}: {exc}"
                    continue
                by_file.setdefault(stage.dvcfile.path, (stage.dvcfile, []))[1].append(stage)
                committed.append(name)
            for dvcfile, stages in by_file.values():
                dvcfile.dump_stages(stages, update_pipeline=False)
            for name in committed:
                (done_dir / name).unlink(missing_ok=True)
    finally:
        repo.close()
    return committed, failed


def _load_stage(repo: Any, name: str) -> Any:
    """The resolved stage ``name`` of dvc.yaml, resolving only it; None when dvc.yaml has no such stage."""
    from dvc.stage.exceptions import StageNotFound

    try:
        return repo.stage.load_one("dvc.yaml", name)
    except (StageNotFound, KeyError):
        return None


def commit_job(root: str | os.PathLike[str], name: str) -> int:
    """A Snakemake job's last step (its command succeeded): mark ``name`` done, then record it in dvc.lock.

    Never fails the job: its outputs are complete, and Snakemake would delete them. When the commit cannot
    happen now, one WARNING line says so and the done-marker stays (the run's end or the next run retries).
    Ctrl-C and SIGTERM are ignored meanwhile, so an interrupted run does not cut a dvc.lock write short.
    """
    import logging
    import signal

    logging.getLogger("dvc").setLevel(logging.WARNING)  # not DVC's "Updating lock file" per job
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    mark_done(root, name)
    try:
        commit_stages(root, [name])
    except Exception as exc:  # noqa: BLE001 - see the docstring
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"WARNING: {name} finished but is not recorded in dvc.lock yet ({reason}); the end of the run "
              "retries, or `dvc commit -f " + name + "` records it", file=sys.stderr)
    return 0


def commit_failure_message(failed: dict[str, str], n_committed: int) -> str:
    """What went wrong per stage and what to do (the outputs are kept; dvc.lock lacks these stages)."""
    lines = [f"dvc commit failed for {len(failed)} stage(s) that ran successfully ({n_committed} other(s) recorded "
             "in dvc.lock). Their outputs are kept, but dvc.lock does not record them, so `dvc status` lists them "
             "as changed:"]
    lines += [f"  {name}: {reason}" for name, reason in sorted(failed.items())]
    lines.append("What to do: fix the cause above (a missing parameter: add it to params.yaml, or remove it from "
                 "the stage's `params:` in dvc.yaml), then record the outputs without rerunning anything:")
    lines.append("  dvc commit -f " + " ".join(sorted(failed)))
    return "\n".join(lines)


def dvc_plan(root: str | os.PathLike[str]) -> tuple[set[str], set[str]]:
    """What ``dvc repro`` will run, from DVC's own status and graph: (stale, plan).

    ``stale``: the stages ``dvc status`` lists for a change of their own deps, outs or params (not the
    ``always_changed`` ones listed for that alone: mirror_state runs on every repro and rewrites its file only
    when the mirror changed). ``plan``: those and every stage downstream of them in DVC's graph, which DVC reruns
    once their inputs were rewritten (a retraining always rewrites them). This is the list ``snakemake -n``
    gives (tests/test_same_plan.py); ``dvc repro --dry --force-downstream`` would add everything below the
    always-changed stage.
    """
    import networkx as nx
    from dvc.repo import Repo

    repo = Repo(os.fspath(root))
    try:
        status = repo.status()
        graph = repo.index.graph
        by_name = {s.addressing: s for s in graph.nodes}
        stale = {name for name, changes in status.items() if name in by_name and changes != ["always changed"]}
        plan = set(stale)
        for name in stale:  # DVC's edges point from a stage to the stages it depends on
            plan |= {s.addressing for s in nx.ancestors(graph, by_name[name])}
        return stale, plan
    finally:
        repo.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m workflow.dvcdag commit STAGE``: a Snakemake job records its finished stage in dvc.lock.
    ``python -m workflow.dvcdag plan``: the stages ``dvc repro`` will run (:func:`dvc_plan`), one a line."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("command", choices=["commit", "plan"])
    ap.add_argument("stage", nargs="?")
    args = ap.parse_args(argv)
    if args.command == "plan":
        stale, plan = dvc_plan(".")
        for name in sorted(plan):
            print(name if name in stale else f"{name}  (downstream)")
        return 0
    if not args.stage:
        ap.error("commit needs the stage name")
    return commit_job(".", args.stage)


if __name__ == "__main__":
    raise SystemExit(main())
