"""A run's end, whatever it is, keeps DVC's record of every finished job; one tool at a time (issues 27, 23.3).

One tiny project (DAH only, one task, one seed: mirror_state, download, weights, preprocess, moments, 2 x extract,
..., then a training made long, its evaluation and the report) in a temp git repo. Every Snakemake there is stopped while its
training runs, after the six jobs before it finished:

* killed (SIGKILL to Snakemake and its jobs): `dvc status` lists only the three unfinished stages (the end-of-run
  commit never came: before, dvc.lock did not even exist); the next run starts without `--unlock`;
* Ctrl-C (SIGINT to the terminal's process group): Snakemake ends within seconds, printing one line (before: a
  traceback per job and up to 60 s waiting for its job-rate timer), and `dvc status` still lists only those three;
* two tools at once: `dvc repro` beside a running Snakemake refuses at once, and Snakemake started beside a
  running `dvc repro` refuses with one line naming it (before: both trained the same stage at the same time).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from test_pipeline import TASKS, _env, dvc_stale, run, tiny_project

pytestmark = pytest.mark.pipeline

UNFINISHED = {"train@dah-d1_d2-0", "evaluate@dah", "report"}
SNAKEMAKE = ["snakemake", "--cores", "1", "--resources", "gpu=1"]


@dataclass
class Started:
    proc: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def start(proj: Path, cmd: list[str], log: Path) -> Started:
    """``cmd`` in its own process group with SIGINT at its default (as a terminal's foreground job)."""
    fh = open(log, "w")  # noqa: SIM115 - the child writes it; closed with the process
    proc = subprocess.Popen(cmd, cwd=proj, env=_env(proj), stdout=fh, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return Started(proc, log)


def wait_for(started: Started, pattern: str, timeout: float = 900) -> None:
    """Until ``pattern`` appears in the output (then 3 s more: the job is under way)."""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, started.text()):
        if started.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} never came:\n{started.text()[-4000:]}")
        time.sleep(0.5)
    time.sleep(3)


def stop(started: Started, sig: int) -> float:
    """Send ``sig`` to the process group; seconds until its leader exited. Then waits (up to 120 s, SIGKILL
    after 60 s) until no process of the group is left, so that no job of this run is still writing when the
    next test starts its own (the leader may exit before a job it told to stop)."""
    t0 = time.monotonic()
    try:
        os.killpg(started.proc.pid, sig)
    except ProcessLookupError:  # the whole group has already ended
        pass
    started.proc.wait(timeout=300)
    seconds = time.monotonic() - t0
    deadline = time.monotonic() + 120
    while True:
        try:
            os.killpg(started.proc.pid, signal.SIGKILL if time.monotonic() > deadline - 60 else 0)
        except ProcessLookupError:
            return seconds
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of group {started.proc.pid} still alive 120 s after the signal")
        time.sleep(0.2)


def dvc_status(proj: Path) -> set[str]:
    """`dvc status`'s stale stages (not mirror_state, listed on every call as "always changed")."""
    return dvc_stale(proj)


@dataclass(frozen=True)
class Killed:
    proj: Path
    status: set[str]  # `dvc status` right after the kill


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Killed:
    """The project after its first Snakemake run was killed (SIGKILL) during the training."""
    base = tmp_path_factory.mktemp("guard")
    proj, params = tiny_project(base, per_class=3)
    params["train"].update(hash_bits=16, hidden_dims=[16, 16], k_per_class=2, epochs=100000, gamma=5.0, seeds=[0],
                           checkpoint_every=1000)  # a training that is still running when each test stops it
    params.update(methods={"dah": {}}, baselines={"seed": 0, "methods": {}, "finetune": {}},
                  tasks={"d1_d2": TASKS["d1_d2"]},
                  analysis={"tasks": [], "max_points": 100})
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "guard test"]):
        run(proj, *cmd)
    first = start(proj, SNAKEMAKE, base / "first.log")
    wait_for(first, r"rule train__dah_d1_d2_0")
    stop(first, signal.SIGKILL)
    return Killed(proj, dvc_status(proj))


def test_killed_run_keeps_every_finished_job_in_dvc_lock(killed: Killed) -> None:
    assert killed.status == UNFINISHED, killed.status
    lock = yaml.safe_load((killed.proj / "dvc.lock").read_text())
    code = "from workflow.dvcdag import load_stages; print(' '.join(s.name for s in load_stages('.')))"
    everything = set(run(killed.proj, sys.executable, "-c", code).stdout.split())  # mirror_state, ..., report
    assert len(everything - UNFINISHED) >= 6 and set(lock["stages"]) == everything - UNFINISHED


def test_ctrl_c_ends_within_seconds_with_one_line(killed: Killed, tmp_path: Path) -> None:
    proj = killed.proj
    again = start(proj, SNAKEMAKE, tmp_path / "again.log")  # no `--unlock` needed after the kill
    wait_for(again, r"rule train__dah_d1_d2_0")
    before = len(again.text())
    seconds = stop(again, signal.SIGINT)
    tail = again.text()[before:]
    said = [line for line in tail[tail.find("snakemake: interrupted"):].splitlines() if line.strip()]
    print(f"Ctrl-C to exit: {seconds:.1f} s; said: {said}")
    assert seconds < 20, (seconds, tail)
    assert "snakemake: interrupted" in tail and len(said) == 1, tail  # nothing after that one line
    assert "Traceback" not in tail and "Error" not in tail, tail
    assert "dvc status" in said[0]
    assert dvc_status(proj) == UNFINISHED


def test_dvc_refuses_beside_a_running_snakemake_and_snakemake_beside_dvc(killed: Killed, tmp_path: Path) -> None:
    proj = killed.proj
    smk = start(proj, SNAKEMAKE, tmp_path / "smk.log")
    try:
        wait_for(smk, r"rule train__dah_d1_d2_0")
        dvc = run(proj, "dvc", "repro", check=False)
        assert smk.proc.poll() is None, f"snakemake ended before the check:\n{smk.text()[-3000:]}"
        assert dvc.returncode != 0, dvc.stdout + dvc.stderr
        assert "Unable to acquire lock" in dvc.stderr and "Running stage" not in dvc.stdout, dvc.stdout + dvc.stderr
    finally:
        stop(smk, signal.SIGINT)

    repro = start(proj, ["dvc", "repro"], tmp_path / "dvc.log")
    try:
        wait_for(repro, r"Running stage 'train@dah-d1_d2-0'")
        res = run(proj, *SNAKEMAKE, check=False)
        errors = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("ERROR")]
        assert res.returncode != 0
        assert len(errors) == 1 and "dvc repro" in errors[0] and "is working on this project" in errors[0], errors
        assert "rule train" not in res.stdout + res.stderr
    finally:
        stop(repro, signal.SIGINT)
    assert dvc_status(proj) == UNFINISHED


def test_sigterm_to_snakemake_then_a_failed_job_keeps_the_record(killed: Killed, tmp_path: Path) -> None:
    """`kill <snakemake's pid>` (SIGTERM to the main process, as `kill` or a batch system sends it): Snakemake's
    graceful stop, it starts no new job and exits when the running one ends; here that job then fails (its
    process terminated, as a batch system's time limit does to a job). Snakemake exits, nothing after the failed
    job ran, and `dvc status` lists only the unfinished stages (the finished ones stay recorded)."""
    import psutil

    proj = killed.proj
    smk = start(proj, SNAKEMAKE, tmp_path / "term.log")
    try:
        wait_for(smk, r"rule train__dah_d1_d2_0")
        trainings = [p for p in psutil.Process(smk.proc.pid).children(recursive=True)
                     if "stages.train" in " ".join(p.cmdline())]
        assert trainings, "no training process under snakemake"
        os.kill(smk.proc.pid, signal.SIGTERM)
        wait_for(smk, r"Will exit after finishing currently running jobs", timeout=60)
        assert smk.proc.poll() is None  # graceful: it waits for the running training
        for p in trainings:
            p.terminate()
        smk.proc.wait(timeout=120)
    finally:
        stop(smk, signal.SIGKILL)  # whatever is left of the run
    assert smk.proc.returncode != 0
    assert "rule evaluate" not in smk.text() and "rule report" not in smk.text()
    assert dvc_status(proj) == UNFINISHED
