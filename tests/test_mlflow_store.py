"""The MLflow store (issue 23 points 5 and 8): artifacts stay inside a moved or copied project; an authenticated
server works and its credentials never reach a log.

5. Before: the experiment's artifact location was an absolute ``file://`` URI recorded in mlflow.db, so after
   ``mv proj moved`` every run wrote its artifacts under the OLD path (recreating it).
8. Before: ``MLFLOW_TRACKING_URI=http://user:pw@host:port`` was refused as unreachable ("Name or service not known":
   the probe took ``user:pw@host`` for a host name) and the password was printed in ERROR/WARNING lines and stored
   in logs/tracking-pending/*.jsonl.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

LOG_A_RUN = textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path
    from stages.common import main_wrapper
    from stages import tracking

    def main(argv):
        run = sys.argv[1] if len(sys.argv) > 1 else tracking.start_run("dahash-x", "r", {}, {"a": 1})
        f = Path(tempfile.mkdtemp()) / "note.txt"
        f.write_text("hello")
        tracking.log_artifacts(run, [f])
        tracking.finish_run(run)
        c = tracking.client()
        print(json.dumps({"run": run, "uri": c.get_run(run).info.artifact_uri}))
    main_wrapper(main)()
""")


def _project(dest: Path) -> Path:
    """The code a stage runs (stages/, src/) and params.yaml: ROOT is where stages/ lies."""
    dest.mkdir(parents=True)
    for d in ("stages", "src"):
        shutil.copytree(REPO / d, dest / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "params.yaml", dest / "params.yaml")
    return dest


def _run(proj: Path, *args: str, uri: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = f"{proj / 'src'}{os.pathsep}{proj}"
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run([sys.executable, "-c", LOG_A_RUN, *args], cwd=proj, env=env, capture_output=True,
                          text=True, timeout=300)


def _result(res: subprocess.CompletedProcess[str]) -> dict:
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_moved_project_keeps_its_artifacts_inside(tmp_path: Path) -> None:
    proj = _project(tmp_path / "proj")
    first = _result(_run(proj))
    assert (proj / "mlartifacts").is_dir()

    moved = tmp_path / "moved"
    shutil.move(proj, moved)
    again = _run(moved, first["run"])  # the evaluate stage: logs into a run an earlier stage created
    second = _result(again)
    new = _result(_run(moved))  # the train stage: a new run
    assert not proj.exists(), "artifacts were written under the project's old path"
    for r in (second, new):
        assert r["uri"].startswith((moved / "mlartifacts").as_uri()), r
    assert (moved / "mlartifacts" / "dahash-x" / first["run"] / "artifacts" / "note.txt").read_text() == "hello"
    assert "moved or copied from" in again.stderr


def test_a_store_outside_the_project_says_where_its_artifacts_go(tmp_path: Path) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    a, b = _project(tmp_path / "a"), _project(tmp_path / "b")
    _result(_run(a, uri=shared))
    res = _run(b, uri=shared)
    r = _result(res)
    assert r["uri"].startswith((a / "mlartifacts").as_uri())  # the experiment's, as MLflow keeps it ...
    assert f"keeps its artifacts in {a / 'mlartifacts' / 'dahash-x'}, outside this project" in res.stderr  # ... said


# ------------------------------------------------------------------ an MLflow server behind basic authentication
SERVER = textwrap.dedent("""
    import base64, os, sys
    os.environ["_MLFLOW_SERVER_FILE_STORE"] = sys.argv[1]
    os.environ["_MLFLOW_SERVER_ARTIFACT_ROOT"] = sys.argv[2]
    from mlflow.server import app
    from werkzeug.serving import make_server

    expected = "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()

    def guarded(environ, start_response):  # what a proxy or MLflow's basic-auth app does
        if environ.get("HTTP_AUTHORIZATION") != expected:
            start_response("401 UNAUTHORIZED", [("WWW-Authenticate", 'Basic realm="mlflow"'),
                                                ("Content-Type", "text/plain")])
            return [b"You are not authenticated."]
        return app.wsgi_app(environ, start_response)

    srv = make_server("127.0.0.1", 0, guarded, threaded=True)
    print(srv.server_port, flush=True)
    srv.serve_forever()
""")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:<port>``: an MLflow tracking server answering only user alice, password s3cret-pw."""
    d = tmp_path_factory.mktemp("server")
    proc = subprocess.Popen([sys.executable, "-c", SERVER, f"sqlite:///{d / 's.db'}", (d / "art").as_uri()],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.isdigit(), "the test server did not start"
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_an_authenticated_server_works(auth_server: str, tmp_path: Path) -> None:
    proj = _project(tmp_path / "proj")
    res = _run(proj, uri=f"http://alice:s3cret-pw@{auth_server}")
    r = _result(res)
    assert r["run"] and "s3cret" not in res.stdout + res.stderr


def test_a_wrong_password_is_one_line_without_the_password(auth_server: str, tmp_path: Path) -> None:
    proj = _project(tmp_path / "proj")
    res = _run(proj, uri=f"http://alice:wrong-pw-123@{auth_server}")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), res.stderr
    assert "wrong-pw-123" not in res.stderr and "401" in res.stderr
    assert f"http://{auth_server}" in lines[0]


def test_credentials_never_reach_a_warning_or_the_pending_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from stages import tracking

    uri = "http://alice:s3cret-pw@mlflow.example:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setattr(tracking, "PENDING_DIR", tmp_path / "pending")
    monkeypatch.setattr(tracking, "_diverted", set())

    def refused(run_id: str, **kwargs) -> None:  # what MLflow raises: the URL with its credentials
        raise ConnectionError(f"API request to {uri}/api/2.0/mlflow/runs/update failed with exception "
                              "HTTPConnectionPool(host='mlflow.example', port=5000): Max retries exceeded")

    monkeypatch.setitem(tracking._OPS, "finish_run", refused)
    tracking.finish_run("abc123")
    err = capsys.readouterr().err
    kept = (tmp_path / "pending" / "abc123.jsonl").read_text()
    assert "WARNING: MLflow logging failed" in err and "mlflow.example:5000" in err
    assert "s3cret" not in err and "s3cret" not in kept and "alice" not in kept
    assert json.loads(kept)["op"] == "finish_run"
