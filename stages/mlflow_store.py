"""The MLflow store as this project sees it: credentials that never reach a log, and artifacts that stay inside
the project wherever it is moved. Small functions that stages/tracking_store.py calls.

Credentials: a server URI may carry them (``http://user:password@host:port``, which MLflow's HTTP client turns
into a Basic ``Authorization`` header), or MLflow's own variables may (``MLFLOW_TRACKING_USERNAME`` /
``MLFLOW_TRACKING_PASSWORD``, ``MLFLOW_TRACKING_TOKEN``). The reachability probe sends them the same way, and
every line printed or written (errors, warnings, logs/tracking-pending/*.jsonl) goes through :func:`redact`.

Artifacts: MLflow stores an experiment's artifact location as an absolute URI (``file:///<project>/mlartifacts/
<experiment>``) and each run's artifact URI below it. A project moved or copied elsewhere keeps its mlflow.db,
whose locations still name the old folder: every artifact would be written there. For the project's own store
(mlflow.db inside the project) those locations are rewritten to the project's current folder when it is opened
(:func:`relocate_store`); for any other store an experiment whose local artifacts lie outside the project is named
in one WARNING line (:func:`artifact_warning`). A server keeps its artifacts itself (no location is imposed).
"""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["redact", "without_userinfo", "client_uri", "probe_request", "new_artifact_location", "relocate_store",
           "artifact_warning"]

_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]*@")
_SECRET_ENV = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def _secrets(uri: str | None) -> list[str]:
    """The password in ``uri`` (raw and percent-decoded) and those in MLflow's credential variables."""
    found = [os.environ.get(k, "") for k in _SECRET_ENV]
    if uri:
        password = urlsplit(uri).password
        if password:
            found += [password, unquote(password)]
    return [s for s in found if len(s) >= 3]  # a 1-2 character "secret" would blank out ordinary text


def redact(text: str, uri: str | None = None) -> str:
    """``text`` with the ``user:password@`` of every URL removed and any known password (``uri``'s, MLflow's
    credential variables') replaced by ``***``: what may be printed or written to a file."""
    text = _USERINFO.sub(r"\g<scheme>", text)
    for secret in sorted(set(_secrets(uri)), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def without_userinfo(uri: str) -> str:
    """``uri`` without ``user:password@`` (what may be shown)."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def client_uri(uri: str) -> str:
    """``uri`` without ``user:password@``, whose credentials are handed to MLflow through its own variables
    (``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD``: Basic authentication, as MLflow sends them): MLflow then never
    prints them (its "View run at <uri>" lines, its error messages name the URI it was given)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    os.environ["MLFLOW_TRACKING_USERNAME"] = unquote(parts.username or "")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = unquote(parts.password or "")
    return without_userinfo(uri)


def probe_request(uri: str) -> urllib.request.Request:
    """A GET of ``<uri>/health`` carrying the credentials as MLflow sends them: ``user:password@`` in the URI or
    ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` as Basic authentication, ``MLFLOW_TRACKING_TOKEN`` as a bearer
    token. (urllib would take ``user:password@host`` for a host name: "Name or service not known".)"""
    parts = urlsplit(uri)
    req = urllib.request.Request(without_userinfo(uri).rstrip("/") + "/health", method="GET")
    user = unquote(parts.username) if parts.username else os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = unquote(parts.password) if parts.password else os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user is not None and password is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        req.add_header("Authorization", f"Basic {token}")
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        req.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    return req


def _is_server(uri: str) -> bool:
    return urlsplit(uri).scheme in ("http", "https", "databricks")


def new_artifact_location(uri: str, artifact_root: Path, name: str) -> str | None:
    """Where a new experiment ``name`` keeps its artifacts: ``<artifact_root>/<name>`` for a local store, None
    (the server's own artifact store) for a tracking server."""
    return None if _is_server(uri) else (Path(artifact_root) / name).as_uri()


def _local_path(location: str | None) -> Path | None:
    """The folder of a ``file:`` artifact location (or a bare path); None for any other scheme."""
    if not location:
        return None
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(location) if not parts.scheme and os.path.isabs(location) else None


def inside(path: Path, root: Path) -> bool:
    path, root = Path(os.path.normpath(path)), Path(os.path.normpath(root))
    return path == root or root in path.parents


def relocate_store(db: Path, artifact_root: Path) -> str | None:
    """Point the artifact locations recorded in the project's own sqlite store ``db`` at ``artifact_root`` when they
    name an ``mlartifacts`` folder elsewhere (the project was moved or copied). Returns the old folder (None when
    nothing had to change).

    Rewritten: ``experiments.artifact_location``, ``runs.artifact_uri`` and (MLflow 3) ``logged_models.
    artifact_location``, each ``file://<old>/...`` -> ``file://<artifact_root>/...``. The artifacts themselves
    moved with the project. Call it under the project's MLflow file lock.
    """
    if not Path(db).exists():
        return None
    new_prefix = Path(artifact_root).as_uri()
    con = sqlite3.connect(str(db), timeout=60)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "experiments" not in tables:
            return None
        olds = set()
        for (loc,) in con.execute("SELECT artifact_location FROM experiments"):
            path = _local_path(loc)
            if path is not None and not inside(path, artifact_root) and path.parent.name == Path(artifact_root).name:
                olds.add(path.parent.as_uri())
        if not olds:
            return None
        columns = [("experiments", "artifact_location"), ("runs", "artifact_uri"),
                   ("logged_models", "artifact_location")]
        with con:
            for old in sorted(olds):
                for table, col in columns:
                    if table in tables:
                        con.execute(f"UPDATE {table} SET {col} = ? || substr({col}, ?) "  # noqa: S608 - fixed names
                                    f"WHERE substr({col}, 1, ?) = ? AND substr({col}, ? , 1) IN ('', '/')",
                                    (new_prefix, len(old) + 1, len(old), old, len(old) + 1))
        return ", ".join(sorted(unquote(urlsplit(o).path) for o in olds))
    finally:
        con.close()


def artifact_warning(experiment: str, location: str | None, project: Path) -> str | None:
    """One WARNING line when ``experiment`` keeps local artifacts outside ``project`` (a store shared by several
    projects, or one this project was copied from); None otherwise."""
    path = _local_path(location)
    if path is None or inside(path, project):
        return None
    return (f"WARNING: the MLflow experiment {experiment!r} keeps its artifacts in {path}, outside this project "
            f"({project}): this run's artifacts go there. To keep them in the project, use its own store (unset "
            "MLFLOW_TRACKING_URI) or another experiment (tracking.experiment)")
