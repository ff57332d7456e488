"""MLflow tracking for the stages (the library knows nothing about MLflow).

Store: an embedded sqlite database at an ABSOLUTE path inside the project (``<project>/mlflow.db``),
artifacts under ``<project>/mlartifacts/``; ``MLFLOW_TRACKING_URI`` overrides the store.
One experiment per dataset (``dahash-<dataset>`` unless ``tracking.experiment`` is set); one run per
(method, task, seed). The train stage creates the run and writes its id to ``run.json`` beside the
model; the evaluate stage reopens that run to log the final metrics and artifacts.

Concurrent jobs (Snakemake runs several) serialise the first database creation and the experiment
lookup with a file lock, since sqlite schema migrations are not safe to race.

Failures (docs/README "Troubleshooting"):
* at the start of a job (:func:`client`, :func:`start_run`): an unreachable server (probed with one HTTP
  request, 5 s timeout), a read-only or missing store, a full disk stop the job with ONE line (:class:`TrackingError`,
  printed as ``ERROR: ...``) naming the URI or path and the fix; nothing has been computed yet;
* after the run started (:func:`log_metrics`, :func:`log_history`, :func:`log_artifacts`,
  :func:`finish_run`): never fatal. The stage's outputs (model, codes, metrics) are still written; one
  ``WARNING:`` line names the failure and every later call for that run is appended to
  ``logs/tracking-pending/<run id>.jsonl``; ``python -m stages.tracking replay`` sends them once the store
  works again.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from filelock import FileLock

from stages.common import ROOT, StageError

DEFAULT_DB = ROOT / "mlflow.db"
ARTIFACT_ROOT = ROOT / "mlartifacts"
PENDING_DIR = ROOT / "logs" / "tracking-pending"
PROBE_TIMEOUT_S = 5.0


class TrackingError(StageError):
    """The tracking store cannot be used; the message is one line naming the URI/path and the fix."""


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<absolute project path>/mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{DEFAULT_DB}"


def portable_uri(uri: str | None = None) -> str:
    """``uri`` (default :func:`tracking_uri`) as recorded in versioned outputs (run.json, pushed with DVC).

    A local store (``sqlite:///`` or ``file://``, or a bare path) is given relative to the project root
    (``sqlite:///mlflow.db``, ``mlruns``: read from the project folder); a server URI loses any ``user:password@``.
    """
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


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///<path>`` URI (None for other stores)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if path.startswith("file:"):
        path = path[len("file:"):]
    return Path(path) if os.path.isabs(path) else ROOT / path


_FIX_SERVER = "start the server, or unset MLFLOW_TRACKING_URI to log to the project's store mlflow.db"


def describe(exc: BaseException, uri: str | None = None) -> str:
    """One line saying what went wrong with the store at ``uri`` and what to do (no traceback)."""
    uri = uri or tracking_uri()
    db = _sqlite_path(uri)
    where = str(db) if db is not None else uri
    text = " ".join(str(exc).split())
    code = getattr(exc, "errno", None) or getattr(getattr(exc, "__cause__", None), "errno", None)
    if "readonly database" in text or "read-only file system" in text.lower() or code in (errno.EROFS, errno.EACCES):
        return (f"the MLflow store {where} is read-only: make it and its folder writable, or set "
                "MLFLOW_TRACKING_URI to a writable store")
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)) or "disk is full" in text or "No space left" in text:
        return f"no space left on the device of the MLflow store {where}: free some space, then rerun"
    if db is None and any(k in text for k in ("Connection refused", "Max retries exceeded", "Failed to establish",
                                              "Name or service not known", "timed out", "ConnectionError")):
        return f"the MLflow tracking server {uri} is unreachable: {_FIX_SERVER}"
    return f"MLflow store {where}: {type(exc).__name__}: {text[:300]}"


_checked: set[str] = set()


def check_store(uri: str | None = None) -> None:
    """Fail fast (within about :data:`PROBE_TIMEOUT_S` s) when the store at ``uri`` cannot be used.

    A server URI gets one HTTP request (``<uri>/health``; any answer will do); a sqlite store needs an existing, writable folder
    and, when it exists, a writable database file. Checked once per process and URI.

    Raises:
        TrackingError: one line naming the URI or path and the fix.
    """
    uri = uri or tracking_uri()
    if uri in _checked:
        return
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        import urllib.error
        import urllib.request

        try:  # any HTTP answer (even 404) counts as reachable; no answer within the timeout does not
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            pass
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            why = ("no answer within " f"{PROBE_TIMEOUT_S:g} s" if isinstance(reason, TimeoutError)
                   else getattr(reason, "strerror", None) or str(reason))
            raise TrackingError(f"the MLflow tracking server {uri} is unreachable ({why}): {_FIX_SERVER}") from None
    db = _sqlite_path(uri)
    if db is not None:
        if not db.parent.is_dir():
            raise TrackingError(f"the MLflow store's folder {db.parent} does not exist: create it, or fix "
                                "MLFLOW_TRACKING_URI")
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise TrackingError(describe(PermissionError(errno.EACCES, "read-only"), uri))
    _checked.add(uri)


def client():  # -> mlflow.MlflowClient
    """An MlflowClient on :func:`tracking_uri` (import deferred: mlflow is slow to import).

    The store is checked first (:func:`check_store`: fails within seconds, one line). HTTP requests get at
    most 2 retries and a 10 s timeout unless ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` / ``..._TIMEOUT`` say
    otherwise (MLflow's defaults wait minutes on a dead server). Built under the project's file lock: the
    client creates and migrates a new sqlite store, and two jobs doing that at once fail ("table ...
    already exists").
    """
    check_store()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    import logging

    from mlflow import MlflowClient

    # its own ERROR log of a failed query is a many-line traceback; the failure reaches the user as one line
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    try:
        with _lock():
            return MlflowClient(tracking_uri())
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(describe(exc)) from exc


def experiment_id(name: str) -> str:
    """Get or create experiment ``name`` (artifacts under ``mlartifacts/<name>``), under a file lock."""
    c = client()
    try:
        with _lock():
            exp = c.get_experiment_by_name(name)
            if exp is not None:
                return exp.experiment_id
            return c.create_experiment(name, artifact_location=(ARTIFACT_ROOT / name).as_uri())
    except Exception as exc:
        raise TrackingError(describe(exc)) from exc


def git_commit() -> str:
    """The project's current git commit, or ``unknown`` outside a git checkout."""
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def start_run(experiment: str, run_name: str, tags: Mapping[str, str], params: Mapping[str, Any]) -> str:
    """Create a run with tags (plus ``git_commit``) and params; return its id.

    Raises:
        TrackingError: the store cannot be used (one line; the job has not started its work).
    """
    from mlflow.entities import Param, RunTag

    c = client()
    try:
        run = c.create_run(experiment_id(experiment), run_name=run_name)
        all_tags = {"git_commit": git_commit(), **tags}
        c.log_batch(
            run.info.run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in all_tags.items()],
        )
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(describe(exc)) from exc
    return run.info.run_id


# ------------------------------------------------------------------ logging after the start: never fatal
_diverted: set[str] = set()


def pending_file(run_id: str) -> Path:
    """``logs/tracking-pending/<run id>.jsonl``: the calls for ``run_id`` the store did not take."""
    return PENDING_DIR / f"{run_id}.jsonl"


def _defer(run_id: str, op: str, args: dict[str, Any]) -> None:
    PENDING_DIR.mkdir(parents=True, exist_ok=True)
    with open(pending_file(run_id), "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"op": op, "uri": tracking_uri(), "args": args}) + "\n")
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


def _safely(run_id: str, op: str, args: dict[str, Any]) -> None:
    """Run ``_OPS[op](run_id, **args)``; on any failure keep it (and every later call for this run) for replay."""
    if run_id not in _diverted:
        try:
            _OPS[op](run_id, **args)
            return
        except Exception as exc:
            _divert(run_id, exc)
    try:
        _defer(run_id, op, args)
    except OSError as exc:  # even the replay file cannot be written: say so, never fail the stage for it
        print(f"WARNING: could not keep the MLflow logging of run {run_id} ({exc})", file=sys.stderr, flush=True)


def _log_metrics(run_id: str, metrics: Mapping[str, float], step: int = 0, timestamp: int | None = None) -> None:
    from mlflow.entities import Metric

    now = timestamp or int(time.time() * 1000)
    client().log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def _log_history(run_id: str, history: list[dict[str, float]], keys: list[str], timestamp: int | None = None) -> None:
    from mlflow.entities import Metric

    now = timestamp or int(time.time() * 1000)
    batch = [Metric(k, float(h[k]), now, int(h["epoch"])) for h in history for k in keys if k in h]
    c = client()
    for i in range(0, len(batch), 1000):
        c.log_batch(run_id, metrics=batch[i : i + 1000])


def _log_artifacts(run_id: str, paths: list[str]) -> None:
    c = client()
    for p in paths:
        c.log_artifact(run_id, str(p))


def _finish_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)


_OPS: dict[str, Callable[..., None]] = {"log_metrics": _log_metrics, "log_history": _log_history,
                                        "log_artifacts": _log_artifacts, "finish_run": _finish_run}


def log_metrics(run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    """Log scalar metrics at one step in a single batch call (never raises: see the module docstring)."""
    _safely(run_id, "log_metrics", {"metrics": {k: float(v) for k, v in metrics.items()}, "step": int(step),
                                    "timestamp": int(time.time() * 1000)})


def log_history(run_id: str, history: list[dict[str, float]], keys: list[str]) -> None:
    """Per-epoch metrics (``history[e][key]`` at step ``history[e]['epoch']``), batched by 1000 (MLflow's cap)."""
    rows = [{k: float(v) for k, v in h.items() if k in keys or k == "epoch"} for h in history]
    _safely(run_id, "log_history", {"history": rows, "keys": list(keys), "timestamp": int(time.time() * 1000)})


def log_artifacts(run_id: str, paths: list[Path]) -> None:
    """Copy files into the run's artifact store (never raises). A deferred call keeps a copy of each file
    under ``logs/tracking-pending/<run id>/`` (some are temporary), so the replay sends what the stage made."""
    if run_id not in _diverted:
        try:
            _log_artifacts(run_id, [str(p) for p in paths])
            return
        except Exception as exc:
            _divert(run_id, exc)
    try:
        keep = PENDING_DIR / run_id
        keep.mkdir(parents=True, exist_ok=True)
        for p in map(Path, paths):
            shutil.copy2(p, keep / p.name)
        _defer(run_id, "log_artifacts", {"paths": [str(keep / Path(p).name) for p in paths]})
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
