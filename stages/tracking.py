"""MLflow tracking for the stages (the library knows nothing about MLflow).

Store: an embedded sqlite database at an ABSOLUTE path inside the project (``<project>/mlflow.db``),
artifacts under ``<project>/mlartifacts/``; ``MLFLOW_TRACKING_URI`` overrides the store.
One experiment per dataset (``dahash-<dataset>`` unless ``tracking.experiment`` is set), created as a
model-training experiment (tag ``mlflow.experimentKind = custom_model_development``). Runs are nested:
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

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from filelock import FileLock

from stages.common import ROOT, StageError

DEFAULT_DB = ROOT / "mlflow.db"
ARTIFACT_ROOT = ROOT / "mlartifacts"
PENDING_DIR = ROOT / "logs" / "tracking-pending"
PROBE_TIMEOUT_S = 5.0
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}  # MLflow's model-training view
GROUP_TAG = "group"  # "<method>:<task>" on a parent run and its children


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
    uri = tracking_uri()
    if uri in _clients:
        return _clients[uri]
    _no_mkdir_for_sqlite_file_uris()
    try:
        with _lock():
            _clients[uri] = MlflowClient(uri)
            return _clients[uri]
    except TrackingError:
        raise
    except Exception as exc:
        raise TrackingError(describe(exc)) from exc


_clients: dict[str, Any] = {}


def _no_mkdir_for_sqlite_file_uris() -> None:
    """MLflow 3.17 creates the parent folder of a sqlite store by stripping ``sqlite:///`` from the URI: for
    the URI form ``sqlite:///file:/abs/mlflow.db?mode=ro&uri=true`` that is a folder named ``file:/abs``
    RELATIVE TO THE WORKING DIRECTORY (``mlflow.store.db.utils._make_parent_dirs_if_sqlite``). Replace it by a
    version that reads such URIs as sqlite does (path after ``file:``, query dropped). Our stores' folders
    must exist anyway (:func:`check_store`)."""
    from mlflow.store.db import utils as db_utils

    original = getattr(db_utils, "_make_parent_dirs_if_sqlite", None)
    if original is None or getattr(original, "dahash_fixed", False):
        return

    def make_parent_dirs(db_uri: str) -> None:
        if db_uri.startswith("sqlite:///file:"):
            path = db_uri[len("sqlite:///file:"):].split("?", 1)[0]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            return
        original(db_uri)

    make_parent_dirs.dahash_fixed = True  # type: ignore[attr-defined]
    db_utils._make_parent_dirs_if_sqlite = make_parent_dirs


def experiment_id(name: str) -> str:
    """Get or create experiment ``name`` (artifacts under ``mlartifacts/<name>``), under a file lock.

    It is created as a model-training experiment (:data:`EXPERIMENT_TAGS`); an experiment of an older store
    without that tag gets it here.
    """
    c = client()
    try:
        with _lock():
            exp = c.get_experiment_by_name(name)
            if exp is None:
                return c.create_experiment(name, artifact_location=(ARTIFACT_ROOT / name).as_uri(),
                                           tags=EXPERIMENT_TAGS)
            for k, v in EXPERIMENT_TAGS.items():
                if exp.tags.get(k) != v:
                    c.set_experiment_tag(exp.experiment_id, k, v)
            return exp.experiment_id
    except Exception as exc:
        raise TrackingError(describe(exc)) from exc


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out or None


def git_commit() -> str:
    """The project's current git commit, or ``unknown`` outside a git checkout."""
    return _git("rev-parse", "HEAD") or "unknown"


def source_tags(source: str) -> dict[str, str]:
    """MLflow's own source tags, which its UI shows as a run's Source and git commit.

    ``source`` is the stage's script relative to the project (``stages/train.py``); type ``LOCAL`` as
    ``mlflow.start_run`` records for a script. Outside a git checkout the commit tags are left out.
    """
    import getpass

    tags = {"mlflow.source.name": source, "mlflow.source.type": "LOCAL"}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container): MLflow leaves it out too
        pass
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        branch = _git("rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags["mlflow.source.git.branch"] = branch
    return tags


# ------------------------------------------------------------------ datasets: what a run was trained on
_DVC_IGNORED = (".*.pid*.tmp", ".*.pid*.old")  # the project's .dvcignore: temporaries of atomic writes


def dvc_md5(path: Path) -> str:
    """DVC 3's md5 of ``path``, the value ``dvc.lock`` / a ``.dvc`` file records for it as an output.

    A file: the md5 of its bytes. A folder: ``<md5 of the JSON listing>.dir``, where the listing is
    ``[{"md5": <file md5>, "relpath": <posix path>}, ...]`` sorted by relpath and dumped with sorted keys
    (dvc_data.hashfile.tree.Tree.digest); files matching the project's .dvcignore patterns are skipped.
    Hand-written (15 lines) because importing dvc costs a stage about a second; tested against DVC's own hash.
    Computed by the job, never read from dvc.lock: under Snakemake the lock is committed at the END of the run,
    so while its jobs run it may still hold the previous run's features. Cost: about 0.25 s for 55 MB (the
    Office-Caltech-10 images, 2,533 files, measured on the 2-core machine); features are a few MB.
    """
    from fnmatch import fnmatch

    from stages.common import file_md5

    path = Path(path)
    if not path.is_dir():
        return file_md5(path)
    entries = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in files:
            if any(fnmatch(name, pat) for pat in _DVC_IGNORED):
                continue
            f = Path(root) / name
            entries.append({"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


@dataclass(frozen=True)
class DataInput:
    """One dataset input of a run: ``name`` (shown by the UI), ``path`` (hashed; recorded relative to the
    project), ``context`` (``source`` / ``target``: the domain's role) and a profile (rows, dims, ...)."""

    name: str
    path: Path
    context: str
    profile: Mapping[str, Any]

    def entity(self):  # -> mlflow.entities.DatasetInput
        """The MLflow DatasetInput: digest = :func:`dvc_md5` (computed here; see the module docstring)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        shown = self.path.relative_to(ROOT).as_posix() if self.path.is_relative_to(ROOT) else str(self.path)
        ds = Dataset(name=self.name, digest=dvc_md5(self.path), source_type="local",
                     source=json.dumps({"uri": shown, "digest": "DVC md5 (computed)"}),
                     profile=json.dumps(dict(self.profile)))
        return DatasetInput(ds, tags=[InputTag("mlflow.data.context", self.context)])


def feature_inputs(dataset: str, backbone: str, task: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]]
                   ) -> list[DataInput]:
    """The source and target domains' cached features (``data/features/<dataset>/<backbone>/<domain>``, the
    extract stage's DVC outputs) as dataset inputs; ``shapes[side]`` = the feature array's shape."""
    from stages.paths import features_dir

    return [DataInput(f"{task[side]}-{backbone}-features", features_dir(dataset, backbone, task[side]), side,
                      {"num_rows": int(shapes[side][0]), "num_features": int(shapes[side][1]),
                       "labels_read": side == "source"})
            for side in ("source", "target")]


def image_inputs(dataset: str, task: Mapping[str, str], counts: Mapping[str, int]) -> list[DataInput]:
    """Fine-tune mode: the two domains' image folders (``data/raw/<dataset>/<domain>``) and the manifest
    (``data/manifests/<dataset>.parquet``) as dataset inputs; ``counts[side]`` = images used."""
    from stages.paths import manifest_path

    raw = ROOT / "data" / "raw" / dataset
    return [*(DataInput(f"{task[side]}-images", raw / task[side], side,
                        {"num_rows": int(counts[side]), "labels_read": side == "source"})
              for side in ("source", "target")),
            DataInput(f"{dataset}-manifest", manifest_path(dataset), "manifest",
                      {"num_rows": int(counts["source"] + counts["target"])})]


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
        all_tags = {**source_tags(source), **{k: str(v) for k, v in tags.items()}}
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
    group's tags (method, task, ...) and is closed at once: it does no work, its children do.
    """
    c = client()
    with _lock():
        found = c.search_runs([exp_id], filter_string=f"tags.{GROUP_TAG} = '{group}' and tags.role = 'parent'",
                              max_results=1)
        if found:
            return found[0].info.run_id
        now = int(time.time() * 1000)
        run = c.create_run(exp_id, start_time=now, run_name=group, tags={
            **source_tags(source), GROUP_TAG: group, "role": "parent",
            **{k: str(v) for k, v in tags.items() if k in _GROUP_KEYS}})
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
