"""MLflow tracking for the stages (the library knows nothing about MLflow): the runs and what they log.

The store (URI, fail-fast check, client, experiment): :mod:`stages.tracking_store`; a run's source tags and
dataset inputs: :mod:`stages.tracking_inputs` (both re-exported here). Runs are nested:
one PARENT run per (method, task) (run name ``<method>:<task>``, tag ``group``), found or created under the
file lock, and one CHILD run per training job, i.e. per seed (``<method>:<task>:seed<S>``, tag
``mlflow.parentRunId``); a rerun (new params) adds children to the same parent. Each child carries MLflow's
own source tags (``mlflow.source.name/type/git.commit``, ``mlflow.user``) and its data as dataset inputs
(:func:`feature_inputs`, :func:`image_inputs`: name, DVC md5 as digest, project-relative source).

Durations are the work's: the train/baseline stage creates its run when its work starts and closes it when
the work ends (:func:`end_run`, which returns the end time it recorded); the evaluate stage logs accuracy and
mAP into that closed run at that same end time (:func:`log_evaluation`), so neither the queue before the
evaluation nor the evaluation itself stretches the run's span.

Calls: a job batches what it logs. After the start (experiment and parent lookup, ``create_run`` with all
tags, one ``log_batch`` of params, one ``log_inputs``), training sends its per-epoch history every 10 epochs
(one ``log_batch``), then ONE :func:`end_run` (the rest of the history and the final metrics in one
``log_batch``, then ``set_terminated``); an evaluation is ONE :func:`log_evaluation` (one ``log_batch`` and
one ``log_artifacts`` of a folder). The client is built once per process and store.

Concurrent jobs (Snakemake runs several) serialise the first database creation, the experiment lookup and
the parent-run lookup with a file lock, since sqlite schema migrations are not safe to race and two seeds of
one task must find one parent.

Failures (docs/troubleshooting.md):
* at the start of a job (:func:`client`, :func:`start_run`): an unreachable server (probed with one HTTP
  request, 5 s timeout), a read-only or missing store, a full disk stop the job with ONE line (:class:`TrackingError`,
  printed as ``ERROR: ...``) naming the URI or path and the fix; nothing has been computed yet;
* after the run started (:func:`log_history`, :func:`end_run`, :func:`log_evaluation`, :func:`log_metrics`,
  :func:`log_artifacts`, :func:`finish_run`): never fatal. The stage's outputs (model, codes, metrics) are still written; one
  ``WARNING:`` line names the failure and every later call for that run is appended to
  ``logs/tracking-pending/<run id>.jsonl``; ``python -m stages.tracking replay`` sends them once the store
  works again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from stages import tracking_store as store
from stages.common import ROOT, StageError
from stages.tracking_inputs import DataInput, dvc_md5, feature_inputs, git_commit, image_inputs, source_tags
from stages.tracking_store import (TrackingError, check_store, client, describe, experiment_id, portable_uri,
                                   tracking_uri)

__all__ = ["DataInput", "TrackingError", "check_store", "client", "describe", "dvc_md5", "end_run", "experiment_id",
           "feature_inputs", "finish_run", "git_commit", "image_inputs", "log_artifacts", "log_evaluation",
           "log_history", "log_metrics", "now_ms", "portable_uri", "replay", "source_tags", "start_run",
           "tracking_uri"]

PENDING_DIR = ROOT / "logs" / "tracking-pending"
GROUP_TAG = "group"  # "<method>:<task>" on a parent run and its children


def start_run(experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any], *,
              group: str | None = None, inputs: Iterable[DataInput] = (), source: str | None = None) -> str:
    """Create a run with tags, params and dataset ``inputs``; return its id.

    Tags: ``tags`` plus :func:`source_tags` (``source``: the stage's script, default the running one).
    With ``group`` (``<method>:<task>``) the run is the child of that group's parent run (:func:`parent_run`).

    Raises:
        TrackingError: the store cannot be used (one line; the job has not started its work).
    """
    from mlflow.entities import Param

    c = client()
    source = source or _script()
    entities = [i.entity() for i in inputs]  # hashed before the run exists: a bad path fails the job cleanly
    try:
        exp = experiment_id(experiment)
        all_tags = {**source_tags(source), **experiment_tags(), **{k: str(v) for k, v in tags.items()}}
        if group:
            all_tags.update({GROUP_TAG: group, "role": "seed",
                             "mlflow.parentRunId": parent_run(exp, group, tags, source)})
        run = c.create_run(exp, start_time=int(time.time() * 1000), tags=all_tags, run_name=run_name)
        plist = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(plist), 100):  # MLflow's cap per batch
            c.log_batch(run.info.run_id, params=plist[i : i + 100])
        if entities:
            c.log_inputs(run.info.run_id, datasets=entities)
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(describe(exc)) from exc
    return run.info.run_id


def _script() -> str:
    main = sys.modules.get("__main__")
    path = Path(getattr(main, "__file__", "") or sys.argv[0] or "python").resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


_GROUP_KEYS = ("method", "task", "source", "target", "dataset", "backbone", "algorithm", "family")


def parent_run(exp_id: str, group: str, tags: Mapping[str, str], source: str) -> str:
    """The id of the parent run of ``group`` (``<method>:<task>``) in experiment ``exp_id``, created when missing.

    Under the project's file lock (concurrent seeds of one task must find ONE parent). The parent holds the
    group's keys (method, task, ...) as PARAMS, not as tags: the UI shows a matching child's parent whatever the
    search, and "Group by -> Tags -> method" would count it in the method's group ("dah 8" for 4 runs); without
    the tags, parents fall into the UI's "Additional runs". It is closed at once: it does no work, its children
    do; it gets their seed summary as they are evaluated (:func:`supersede_and_summarise`).
    """
    from mlflow.entities import Param

    c = client()
    with store._lock():
        found = c.search_runs([exp_id], filter_string=f"tags.{GROUP_TAG} = '{group}' and tags.role = 'parent'",
                              max_results=1)
        if found:
            return found[0].info.run_id
        now = int(time.time() * 1000)
        shared = {k: str(v) for k, v in tags.items() if k in _GROUP_KEYS}
        run = c.create_run(exp_id, start_time=now, run_name=group, tags={
            **source_tags(source), GROUP_TAG: group, "role": "parent"})
        c.log_batch(run.info.run_id, params=[Param(k, v) for k, v in shared.items()])
        # closed at once (it does no work); each evaluation of a child moves its end and updates its summary
        c.set_terminated(run.info.run_id, "FINISHED", end_time=now)
        return run.info.run_id


# ------------------------------------------------------------------ logging after the start: never fatal
_diverted: set[str] = set()


def pending_file(run_id: str) -> Path:
    """``logs/tracking-pending/<run id>.jsonl``: the calls for ``run_id`` the store did not take."""
    return PENDING_DIR / f"{run_id}.jsonl"


def _defer(run_id: str, op: str, args: dict[str, Any]) -> None:
    PENDING_DIR.mkdir(parents=True, exist_ok=True)
    with open(pending_file(run_id), "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"op": op, "uri": portable_uri(), "args": args}) + "\n")  # no credentials
        fh.flush()
        os.fsync(fh.fileno())


def _divert(run_id: str, exc: BaseException) -> None:
    """From now on keep every call for ``run_id`` for replay; say so in one WARNING line."""
    _diverted.add(run_id)
    pending = pending_file(run_id)
    shown = pending.relative_to(ROOT) if pending.is_relative_to(ROOT) else pending
    print(f"WARNING: MLflow logging failed, {describe(exc)}. The stage's outputs are still written; "
          f"the logging of run {run_id} is kept in {shown}: send it with "
          "`python -m stages.tracking replay` once the store works", file=sys.stderr, flush=True)


def _safely(run_id: str, op: str, args: dict[str, Any], keep: str | None = None) -> None:
    """Run ``_OPS[op](run_id, **args)``; on any failure keep it (and every later call for this run) for replay.

    ``keep`` names an argument holding a (temporary) folder: a deferred call keeps a copy of it under
    ``logs/tracking-pending/<run id>/`` and the replay reads that copy.
    """
    if run_id not in _diverted:
        try:
            _OPS[op](run_id, **args)
            return
        except Exception as exc:
            _divert(run_id, exc)
    try:
        if keep is not None:
            kept = PENDING_DIR / run_id / f"{op}-{time.time_ns()}"
            shutil.copytree(args[keep], kept)
            args = {**args, keep: str(kept)}
        _defer(run_id, op, args)
    except OSError as exc:  # even the replay file cannot be written: say so, never fail the stage for it
        print(f"WARNING: could not keep the MLflow logging of run {run_id} ({exc})", file=sys.stderr, flush=True)


def _metric_batches(c, run_id: str, metrics: list) -> None:
    for i in range(0, len(metrics), 1000):  # MLflow's cap per batch
        c.log_batch(run_id, metrics=metrics[i : i + 1000])


def _history_metrics(history: list[dict[str, float]], keys: list[str], timestamp: int) -> list:
    from mlflow.entities import Metric

    return [Metric(k, float(h[k]), timestamp, int(h["epoch"])) for h in history for k in keys if k in h]


def _log_metrics(run_id: str, metrics: Mapping[str, float], step: int = 0, timestamp: int | None = None) -> None:
    from mlflow.entities import Metric

    now = timestamp or int(time.time() * 1000)
    client().log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def _log_history(run_id: str, history: list[dict[str, float]], keys: list[str], timestamp: int | None = None) -> None:
    _metric_batches(client(), run_id, _history_metrics(history, keys, timestamp or int(time.time() * 1000)))


def _log_artifacts(run_id: str, paths: list[str], artifact_path: str | None = None) -> None:
    c = client()
    for p in paths:
        c.log_artifact(run_id, str(p), artifact_path)


def _finish_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)


def _end_run(run_id: str, metrics: Mapping[str, float], history: list[dict[str, float]], keys: list[str],
             status: str, end_time: int) -> None:
    from mlflow.entities import Metric

    c = client()
    batch = _history_metrics(history, keys, end_time) + [Metric(k, float(v), end_time, 0) for k, v in metrics.items()]
    _metric_batches(c, run_id, batch)
    c.set_terminated(run_id, status=status, end_time=end_time)


def _log_evaluation(run_id: str, metrics: Mapping[str, float], timestamp: int, folder: str,
                    close: bool = False) -> None:
    from mlflow.entities import Metric

    c = client()
    if metrics:
        c.log_batch(run_id, metrics=[Metric(k, float(v), timestamp, 0) for k, v in metrics.items()])
    c.log_artifacts(run_id, folder)
    if close:  # a run of an older train stage, which left it open for the evaluation
        c.set_terminated(run_id, status="FINISHED")
    supersede_and_summarise(c, run_id)


def experiment_tags() -> dict[str, str]:
    """``dvc_experiment``: the experiment's name when ``dvc exp run`` runs the stage (DVC sets ``DVC_EXP_NAME``)."""
    name = os.environ.get("DVC_EXP_NAME")
    return {"dvc_experiment": name} if name else {}


SUMMARISED = ("accuracy", "map", "precision_radius2")  # and every precision_at_<k>
SUPERSEDED = "superseded"  # the role of a run an evaluated rerun of its (method, task, seed) replaced
SUPERSEDED_SUFFIX = " (superseded)"  # appended to such a run's name (the UI shows it under its parent)


def supersede_and_summarise(c, run_id: str) -> None:
    """``run_id`` was just evaluated: it is now THE run of its (method, task, seed).

    Earlier runs of that group and seed (tags ``group``, ``seed``, ``role = seed``) get ``role = superseded``
    and ``superseded_by = <run_id>``, and " (superseded)" after their name (kept for the record, and shown
    under the parent by the UI's expander; out of ``tags.role = 'seed'`` searches, so the
    README's comparison snippet and the UI's grouping count each result once). Then the parent run gets the seed
    summary of its current children: ``<metric>_mean`` and ``<metric>_std`` (sample std, ddof = 1, as the
    report; 0 for one seed) of accuracy, mAP, precision@k, ``n_seeds``, and the span of its children
    (closed at the latest child's end). Metric names differ from the children's, so averaging ``accuracy``
    over a search that includes parents is not skewed by them.
    """
    import numpy as np
    from mlflow.entities import Metric

    run = c.get_run(run_id)
    tags = run.data.tags
    group, seed, parent = tags.get(GROUP_TAG), tags.get("seed"), tags.get("mlflow.parentRunId")
    if not group or seed is None or tags.get("role") != "seed":
        return
    exp = run.info.experiment_id
    with store._lock():  # one search: the group's current children, this run among them
        found = c.search_runs([exp], filter_string=f"tags.{GROUP_TAG} = '{group}' and tags.role = 'seed'",
                              max_results=1000)
        children = []
        for r in found:
            if r.info.run_id != run_id and r.data.tags.get("seed") == seed:
                c.set_tag(r.info.run_id, "role", SUPERSEDED)
                c.set_tag(r.info.run_id, "superseded_by", run_id)
                # the UI lists a parent's children whatever their role: the name says which one is old
                if not (r.info.run_name or "").endswith(SUPERSEDED_SUFFIX):
                    c.update_run(r.info.run_id, name=f"{r.info.run_name}{SUPERSEDED_SUFFIX}")
            else:
                children.append(r)
    if not parent:
        return
    keys = sorted({k for r in children for k in r.data.metrics
                   if k in SUMMARISED or k.startswith("precision_at_")})
    now = now_ms()
    summary = [Metric("n_seeds", float(len(children)), now, 0)]
    for key in keys:
        values = np.array([r.data.metrics[key] for r in children if key in r.data.metrics], dtype=float)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        summary += [Metric(f"{key}_mean", float(values.mean()), now, 0), Metric(f"{key}_std", std, now, 0)]
    c.log_batch(parent, metrics=summary)
    ends = [r.info.end_time for r in children if r.info.end_time]
    if ends:
        c.set_terminated(parent, "FINISHED", end_time=max(ends))


_OPS: dict[str, Callable[..., None]] = {"log_metrics": _log_metrics, "log_history": _log_history,
                                        "log_artifacts": _log_artifacts, "finish_run": _finish_run,
                                        "end_run": _end_run, "log_evaluation": _log_evaluation}


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log scalar metrics at one step in a single batch call (never raises: see the module docstring)."""
    _safely(run_id, "log_metrics", {"metrics": {k: float(v) for k, v in metrics.items()}, "step": int(step),
                                    "timestamp": int(time.time() * 1000)})


def now_ms() -> int:
    """Now, in MLflow's unit (ms since the epoch)."""
    return int(time.time() * 1000)


def _history_rows(history: list[dict[str, float]], keys: list[str]) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in h.items() if k in keys or k == "epoch"} for h in history]


def log_history(run_id: str, history: list[dict[str, float]], keys: list[str]) -> None:
    """Per-epoch metrics (``history[e][key]`` at step ``history[e]['epoch']``), batched by 1000 (MLflow's cap)."""
    _safely(run_id, "log_history", {"history": _history_rows(history, keys), "keys": list(keys),
                                    "timestamp": int(time.time() * 1000)})


def end_run(run_id: str, metrics: Mapping[str, float], history: list[dict[str, float]] = (),
            keys: list[str] = (), status: str = "FINISHED", end_time: int | None = None) -> int:
    """The end of a training job, in one go: the history not sent yet and the final ``metrics`` in one
    ``log_batch``, then the run closed with ``status`` at ``end_time`` (ms since the epoch; default now,
    :func:`now_ms`). Returns that end time (the evaluation logs at it). Never raises; a deferred call keeps the
    same end time for the replay.
    """
    end_time = now_ms() if end_time is None else int(end_time)
    _safely(run_id, "end_run", {"metrics": {k: float(v) for k, v in metrics.items()},
                                "history": _history_rows(list(history), list(keys)), "keys": list(keys),
                                "status": status, "end_time": end_time})
    return end_time


def log_evaluation(run_id: str, metrics: Mapping[str, float], paths: list[Path], timestamp: int | None) -> None:
    """The evaluation's record in its training run, in one go: ``metrics`` (one ``log_batch``, at
    ``timestamp``: the run's end time, so the run's span stays the training's) and the files ``paths`` (one
    ``log_artifacts`` of a folder). ``timestamp`` None: a run an older train stage left open; it is closed.
    Never raises; a deferred call keeps a copy of the files for the replay."""
    import tempfile

    with tempfile.TemporaryDirectory() as td:
        for p in map(Path, paths):
            shutil.copy2(p, Path(td) / p.name)
        _safely(run_id, "log_evaluation", {"metrics": {k: float(v) for k, v in metrics.items()},
                                           "timestamp": int(timestamp or time.time() * 1000), "folder": td,
                                           "close": timestamp is None}, keep="folder")


def log_artifacts(run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
    """Copy files into the run's artifact store (under ``artifact_path``; never raises). A deferred call keeps
    a copy of each file under ``logs/tracking-pending/<run id>/`` (some are temporary), so the replay sends what
    the stage made."""
    if run_id not in _diverted:
        try:
            _log_artifacts(run_id, [str(p) for p in paths], artifact_path)
            return
        except Exception as exc:
            _divert(run_id, exc)
    try:
        keep = PENDING_DIR / run_id
        keep.mkdir(parents=True, exist_ok=True)
        for p in map(Path, paths):
            shutil.copy2(p, keep / p.name)
        _defer(run_id, "log_artifacts", {"paths": [str(keep / Path(p).name) for p in paths],
                                         "artifact_path": artifact_path})
    except OSError as exc:
        print(f"WARNING: could not keep the MLflow artifacts of run {run_id} ({exc})", file=sys.stderr, flush=True)


def finish_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark the run terminated (never raises)."""
    _safely(run_id, "finish_run", {"status": status})


def replay(pending_dir: Path | None = None) -> int:
    """Send every kept call (``logs/tracking-pending/*.jsonl``) to the current store, in order.

    A file is deleted once all its calls went through; on a failure it is kept and the error printed.
    Returns the number of runs that still have pending calls.
    """
    pending_dir = pending_dir or PENDING_DIR
    left = 0
    for f in sorted(pending_dir.glob("*.jsonl")) if pending_dir.is_dir() else []:
        run_id = f.stem
        calls = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        try:
            for call in calls:
                _OPS[call["op"]](run_id, **call["args"])
        except Exception as exc:
            print(f"ERROR: replaying {f}: {describe(exc)}", file=sys.stderr)
            left += 1
            continue
        f.unlink()
        shutil.rmtree(pending_dir / run_id, ignore_errors=True)
        print(f"replayed {len(calls)} call(s) of MLflow run {run_id}")
    return left


def main(argv: list[str] | None = None) -> None:
    """``python -m stages.tracking replay``: send the logging kept while the store was failing."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("command", choices=["replay"])
    ap.parse_args(argv)
    try:
        left = replay()
    except StageError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    raise SystemExit(1 if left else 0)


if __name__ == "__main__":
    main()
