"""The MLflow store the stages log to: its URI, the fail-fast check, the client, the experiment.

Store: an embedded sqlite database at an ABSOLUTE path inside the project (``<project>/mlflow.db``),
artifacts under ``<project>/mlartifacts/``; ``MLFLOW_TRACKING_URI`` overrides the store.
One experiment per dataset (``dahash-<dataset>`` unless ``tracking.experiment`` is set), created as a
model-training experiment (tag ``mlflow.experimentKind = custom_model_development``).

Concurrent jobs (Snakemake runs several) serialise the first database creation and the experiment lookup
with a file lock (:func:`_lock`), since sqlite schema migrations are not safe to race.

An unusable store (unreachable server, probed with one HTTP request, 5 s timeout; a read-only or missing
store; a full disk) stops a job at its start with ONE line (:class:`TrackingError`) naming the URI or path
and the fix. How runs are logged: :mod:`stages.tracking`.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from filelock import FileLock

from stages import mlflow_store
from stages.common import ROOT, StageError

DEFAULT_DB = ROOT / "mlflow.db"
ARTIFACT_ROOT = ROOT / "mlartifacts"
PROBE_TIMEOUT_S = 5.0
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}  # MLflow's model-training view


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
    """One line saying what went wrong with the store at ``uri`` and what to do (no traceback, no credentials)."""
    uri = uri or tracking_uri()
    return mlflow_store.redact(_describe(exc, uri), uri)


def _describe(exc: BaseException, uri: str) -> str:
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

        try:  # any HTTP answer (even 404 or 401) counts as reachable; no answer within the timeout does not
            with urllib.request.urlopen(mlflow_store.probe_request(uri), timeout=PROBE_TIMEOUT_S):
                pass
        except urllib.error.HTTPError:
            pass
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            why = ("no answer within " f"{PROBE_TIMEOUT_S:g} s" if isinstance(reason, TimeoutError)
                   else getattr(reason, "strerror", None) or str(reason))
            raise TrackingError(mlflow_store.redact(
                f"the MLflow tracking server {uri} is unreachable ({why}): {_FIX_SERVER}", uri)) from None
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
            _clients[uri] = MlflowClient(mlflow_store.client_uri(uri))  # credentials not in the URI MLflow shows
            _settle_artifacts()  # a moved or copied project: its store's artifact locations follow it
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


def _settle_artifacts() -> None:
    """The project's own sqlite store, moved or copied with the project: its artifact locations follow it
    (:func:`stages.mlflow_store.relocate_store`; once per process, under the lock)."""
    db = _sqlite_path(tracking_uri())
    if db is None or db in _settled or not mlflow_store.inside(db, ROOT):
        return
    _settled.add(db)
    old = mlflow_store.relocate_store(db, ARTIFACT_ROOT)
    if old:
        print(f"MLflow store {db.relative_to(ROOT)}: the project was moved or copied from {Path(old).parent}; "
              f"its artifact locations now point into {ARTIFACT_ROOT}", file=sys.stderr, flush=True)


_settled: set[Path] = set()
_warned: set[str] = set()


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
                return c.create_experiment(
                    name, artifact_location=mlflow_store.new_artifact_location(tracking_uri(), ARTIFACT_ROOT, name),
                    tags=EXPERIMENT_TAGS)
            warning = mlflow_store.artifact_warning(name, exp.artifact_location, ROOT)
            if warning and name not in _warned:
                _warned.add(name)
                print(warning, file=sys.stderr, flush=True)
            for k, v in EXPERIMENT_TAGS.items():
                if exp.tags.get(k) != v:
                    c.set_experiment_tag(exp.experiment_id, k, v)
            return exp.experiment_id
    except Exception as exc:
        raise TrackingError(describe(exc)) from exc

