"""Tracking failures (issue 10 point 5): fail fast and in one line at the start of a job; never lose a trained
model or its metrics after the start; full or read-only disks give one line naming the path.

The "within 15 s" requirement is checked by a hang guard (subprocess timeout 60 s; MLflow's own retries took
4 min 10 s on the old code), not by a timing assertion; the measured figure is in the README/report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.rooted import point_stages_at

REPO = Path(__file__).resolve().parents[1]
START_RUN = ("from stages.common import main_wrapper; from stages import tracking; "
             "main_wrapper(lambda argv: print(tracking.start_run('dahash-x', 'r', {}, {'a': 1})))()")


def _stage_like(uri: str, code: str = START_RUN, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "MLFLOW_TRACKING_URI": uri}
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=60)  # hang guard: the old code waited minutes


@pytest.fixture
def silent_server():
    """A port that accepts TCP connections and never answers (a hung server)."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    srv.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_unreachable_server_is_one_error_line_naming_uri_and_fix(closed_port_url: str, silent_server: str,
                                                                 kind: str) -> None:
    uri = "http://" + (closed_port_url.split("/")[2] if kind == "refused" else silent_server)
    r = _stage_like(uri)
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"ERROR: the MLflow tracking server {uri} is unreachable")
    assert "unset MLFLOW_TRACKING_URI" in lines[0]


def test_read_only_store_is_one_line_naming_the_database(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    ok = _stage_like(f"sqlite:///{db}")
    assert ok.returncode == 0, ok.stderr  # creates the store and a run
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    # the same store, opened read-only (sqlite's URI form); MLflow 3.17 alone made a folder "file:<tmp_path>"
    # in the working directory for it (the repository root when run from there)
    r = _stage_like(f"sqlite:///file:{db}?mode=ro&uri=true", cwd=cwd)
    assert list(cwd.iterdir()) == []  # nothing created in the working directory
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0] == (f"ERROR: the MLflow store {db} is read-only: make it and its folder writable, or set "
                        "MLFLOW_TRACKING_URI to a writable store")


def test_missing_store_folder_is_one_line(tmp_path: Path) -> None:
    r = _stage_like(f"sqlite:///{tmp_path}/nope/mlflow.db")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert f"{tmp_path}/nope does not exist" in r.stderr


def test_full_disk_while_writing_outputs_is_one_line_naming_the_output(tmp_path: Path) -> None:
    code = ("import torch; from pathlib import Path; from stages.common import atomic_path, main_wrapper\n"
            "def main(argv):\n"
            f"    with atomic_path(Path({str(tmp_path / 'model.pt')!r})) as tmp:\n"
            "        torch.save({'w': torch.zeros(10000)}, '/dev/full')  # a full disk: ENOSPC on write\n"
            "main_wrapper(main)()")
    r = _stage_like("", code)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("ERROR: writing failed, the disk is probably full")
    assert f"while writing {tmp_path / 'model.pt'}: free some space, then rerun" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_checkpointing_is_one_line_naming_the_checkpoint(tmp_path: Path) -> None:
    code = ("import os; from pathlib import Path; import dahash.train.checkpoint as ck; "
            "from stages.common import main_wrapper\n"
            "ck.os.fdopen = lambda fd, mode: (os.close(fd), open('/dev/full', mode))[1]  # every write: ENOSPC\n"
            f"main_wrapper(lambda argv: ck.save_checkpoint(Path({str(tmp_path)!r}), 3, "
            "{'fingerprint': 'f', 'w': __import__('torch').zeros(100000)}))()")
    r = _stage_like("", code)
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith(f"ERROR: no space left on the device while writing {tmp_path / 'epoch-0003.pt'}")
    assert list(tmp_path.iterdir()) == []  # no temporary left


# ----------------------------------------------------------------------------- failure after the start
@pytest.fixture
def project(tmp_path: Path, monkeypatch):
    """The baseline-stage test's tiny project (custom dataset, 16-d features), with ROOT pointed at it."""
    import yaml

    import stages.train as train_stage
    from stages import common, tracking, tracking_store
    from tests.test_baseline_stage import make_project

    root = tmp_path / "proj"
    root.mkdir()
    params = make_project(root)
    params["train"].update(epochs=4, checkpoint_every=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    point_stages_at(monkeypatch, root)
    monkeypatch.setattr(tracking_store, "DEFAULT_DB", root / "mlflow.db")
    monkeypatch.setattr(tracking_store, "ARTIFACT_ROOT", root / "mlartifacts")
    monkeypatch.setattr(tracking, "PENDING_DIR", root / "logs" / "tracking-pending", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setattr(train_stage, "load_params", lambda: common.load_params(root / "params.yaml"))
    monkeypatch.setattr(train_stage, "selected_gamma", lambda params, task: 5000.0)
    monkeypatch.setattr(tracking, "_diverted", set(), raising=False)
    torch.set_num_threads(1)
    return root


def test_store_failing_after_the_start_loses_nothing_and_is_replayable(project: Path, monkeypatch, capsys) -> None:
    import stages.train as train_stage
    from stages import tracking

    calls = {"n": 0}

    def server_died(*args, **kwargs):
        calls["n"] += 1
        raise ConnectionError("HTTPConnectionPool: Max retries exceeded (Connection refused)")

    real_ops = dict(tracking._OPS)
    for op in ("log_history", "log_metrics", "finish_run", "end_run"):
        monkeypatch.setitem(tracking._OPS, op, server_died)
    train_stage.main(["--method", "dah", "--task", "src_tgt", "--seed", "0"])  # does not raise

    out = project / "models" / "custom" / "efficientnet_lite0" / "dah" / "src_tgt" / "seed0"
    assert sorted(p.name for p in out.iterdir()) == ["codes.npz", "history.csv", "model.pt", "run.json"]
    assert len(np.load(out / "codes.npz")["u_source"]) == 45
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    err = capsys.readouterr().err
    assert err.count("WARNING: MLflow logging failed") == 1 and f"logs/tracking-pending/{run_id}.jsonl" in err
    assert calls["n"] == 1  # later calls are kept, not retried against a dead store
    pending = project / "logs" / "tracking-pending" / f"{run_id}.jsonl"
    calls = [json.loads(line) for line in pending.read_text().splitlines()]
    assert [c["op"] for c in calls] == ["end_run"]  # the job's end is ONE call: history, metrics, close
    ended_ms = json.loads((out / "run.json").read_text())["ended_ms"]
    assert calls[0]["args"]["end_time"] == ended_ms

    monkeypatch.setattr(tracking, "_OPS", real_ops)  # the store works again
    assert tracking.replay() == 0
    assert not pending.exists()
    run = tracking.client().get_run(run_id)
    assert run.data.metrics["train_seconds"] > 0
    history = tracking.client().get_metric_history(run_id, "total")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    # replayed later, the run still ends when the training ended (its duration is the work's)
    assert run.info.status == "FINISHED" and run.info.end_time == ended_ms
