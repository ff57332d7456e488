"""MLflow tracking for the stages (the library knows nothing about MLflow).

Store: an embedded sqlite database at an ABSOLUTE path inside the project (``<project>/mlflow.db``),
artifacts under ``<project>/mlartifacts/``; ``MLFLOW_TRACKING_URI`` overrides the store.
One experiment per dataset (``dahash-<dataset>`` unless ``tracking.experiment`` is set); one run per
(method, task, seed). The train stage creates the run and writes its id to ``run.json`` beside the
model; the evaluate stage reopens that run to log the final metrics and artifacts.

Concurrent jobs (Snakemake runs several) serialise the first database creation and the experiment
lookup with a file lock, since sqlite schema migrations are not safe to race.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from stages.common import ROOT

DEFAULT_DB = ROOT / "mlflow.db"
ARTIFACT_ROOT = ROOT / "mlartifacts"


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<absolute project path>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"


def portable_uri(uri: str | None = None) -> str:
    """``uri`` (default :func:`tracking_uri`) as recorded in versioned outputs (run.json, pushed with DVC).

    A local store (``sqlite:///`` or ``file://``, or a bare path) is given relative to the project root
    (``sqlite:///mlflow.db``, ``mlruns``: read from the project folder); a server URI loses any ``user:password@``.
    """
    from urllib.parse import urlsplit, urlunsplit

    uri = uri or tracking_uri()
    if uri.startswith("sqlite:///") and os.path.isabs(uri[len("sqlite:///"):]):
        return "sqlite:///" + Path(os.path.relpath(uri[len("sqlite:///"):], ROOT)).as_posix()
    if uri.startswith("file://") and os.path.isabs(uri[len("file://"):]):  # a relative file store is a plain path
        return Path(os.path.relpath(uri[len("file://"):], ROOT)).as_posix()
    parts = urlsplit(uri)
    if not parts.scheme:
        return Path(os.path.relpath(uri, ROOT)).as_posix() if os.path.isabs(uri) else uri
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return uri


def _lock() -> FileLock:
    return FileLock(str(ROOT / ".mlflow.lock"), timeout=300)


def client():  # -> mlflow.MlflowClient
    """An MlflowClient on :func:`tracking_uri` (import deferred: mlflow is slow to import).

    Built under the project's file lock: the client creates and migrates a new sqlite store, and two jobs
    doing that at once fail ("table ... already exists").
    """
    from mlflow import MlflowClient

    with _lock():
        return MlflowClient(tracking_uri())


def experiment_id(name: str) -> str:
    """Get or create experiment ``name`` (artifacts under ``mlartifacts/<name>``), under a file lock."""
    c = client()
    with _lock():
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return c.create_experiment(name, artifact_location=(ARTIFACT_ROOT / name).as_uri())


def git_commit() -> str:
    """The project's current git commit, or ``unknown`` outside a git checkout."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def start_run(experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> str:
    """Create a run with tags (plus ``git_commit``) and params; return its id."""
    from mlflow.entities import Param, RunTag

    c = client()
    run = c.create_run(experiment_id(experiment), run_name=run_name)
    all_tags = {"git_commit": git_commit(), **tags}
    c.log_batch(
        run.info.run_id,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in all_tags.items()],
    )
    return run.info.run_id


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log scalar metrics at one step in a single batch call."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    client().log_batch(run_id, metrics=batch)


def log_history(run_id: str, history: list[dict[str, float]], keys: list[str]) -> None:
    """Per-epoch metrics (``history[e][key]`` at step ``history[e]['epoch']``), batched by 1000 (MLflow's cap)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(h[k]), now, int(h["epoch"])) for h in history for k in keys if k in h]
    c = client()
    for i in range(0, len(batch), 1000):
        c.log_batch(run_id, metrics=batch[i : i + 1000])


def log_artifacts(run_id: str, paths: list[Path]) -> None:
    """Copy files into the run's artifact store."""
    c = client()
    for p in paths:
        c.log_artifact(run_id, str(p))


def finish_run(run_id: str, status: str = "FINISHED") -> None:
    """Mark the run terminated."""
    client().set_terminated(run_id, status=status)
