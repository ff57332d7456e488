"""One tool at a time on a project, and a quiet, quick Ctrl-C (the Snakefile's main process calls these).

* Two tools at once: a Snakemake run holds DVC's own repository lock (``.dvc/tmp/lock``, the lock every
  ``dvc repro`` / ``dvc exp run`` / ``dvc commit`` takes first) from its start to its end, so a DVC command
  started meanwhile refuses before touching anything, with DVC's one line "Unable to acquire lock" (or waits:
  ``dvc --wait-for-lock repro``). A Snakemake run started while DVC works (it holds that lock, or, between
  taking it, runs a stage's command: DVC's ``.dvc/tmp/rwlock`` names it) refuses with one line naming the DVC
  command and its pid (:func:`hold_dvc_lock`). Snakemake's jobs commit their stages without that lock,
  under the run's own commit lock (workflow.dvcdag.commit_stages).
* Ctrl-C: one line instead of a traceback per running job, the jobs told to stop (SIGTERM after a grace of
  :data:`GRACE_S` s for those deep in native code), and no wait for Snakemake's job-rate timer at the exit
  (:func:`cancel_timers`: a pending ``threading.Timer`` kept the interpreter alive up to the profile's
  ``max-jobs-per-timespan`` window, 60 s). Snakemake's full account stays in its log file.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from workflow.dvcdag import RUNNER_ENV

GRACE_S = 3.0  # after Ctrl-C, jobs still alive then get SIGTERM (Python answers SIGINT only between bytecodes)


class ProjectBusy(RuntimeError):
    """Another tool works on this project; the message is one line naming it and what to do."""


def dvc_lock_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / ".dvc" / "tmp" / "lock"


def holder(root: str | os.PathLike[str]) -> str:
    """Who holds DVC's lock, as ``dvc repro (pid 123)``, from the pid the lock file records."""
    try:
        pid = int(dvc_lock_path(root).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return "another process"
    try:
        import psutil

        cmd = psutil.Process(pid).cmdline()
    except Exception:  # noqa: BLE001 - gone, or not ours to inspect: the pid is what we know
        return f"a process (pid {pid})"
    words = [os.path.basename(w) for w in cmd[:4]]
    if "dvc" in words:
        words = words[words.index("dvc"):]
        return f"`{' '.join(words[:3])}` (pid {pid})"
    if any("snakemake" in w for w in words):
        return f"another snakemake (pid {pid})"
    return f"`{' '.join(words[:3])}` (pid {pid})"


def hold_dvc_lock(root: str | os.PathLike[str]) -> Any:
    """Take DVC's repository lock for the rest of this process (released when it exits, even when killed).

    Returns the lock (keep a reference). Sets :data:`RUNNER_ENV` to this pid, so the run's jobs (which inherit
    it) know the lock they find taken is their run's.

    Raises:
        ProjectBusy: DVC (or another Snakemake) holds it: one line naming the holder and what to do.
    """
    import zc.lockfile  # DVC's own lock backend (dvc.lock.Lock), flock on Linux

    path = dvc_lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = zc.lockfile.LockFile(str(path))
    except zc.lockfile.LockError:
        raise ProjectBusy(f"{holder(root)} is working on this project (it holds DVC's lock {path}): wait for it "
                          "to finish, or stop it, then rerun snakemake") from None
    busy = dvc_stage_commands(root)
    if busy:  # DVC releases its lock while a stage's command runs; its rwlock names the command meanwhile
        lock.close()
        pid, cmd = busy[0]
        words = cmd.split()
        cmd = " ".join([os.path.basename(words[0]), *words[1:]]) if words else "dvc"
        raise ProjectBusy(f"`{cmd}` (pid {pid}) is working on this project (it is running a stage): wait for it to "
                          "finish, or stop it, then rerun snakemake")
    os.environ[RUNNER_ENV] = str(os.getpid())
    return lock


def clear_stale_snakemake_locks(root: str | os.PathLike[str]) -> int:
    """Remove Snakemake's directory locks (``.snakemake/locks/``) a killed run left; returns how many.

    Called only by a run that holds DVC's lock (:func:`hold_dvc_lock`): every run of this project holds it for
    its whole life, so no other is alive, and without this a killed run's locks stop the next one until
    ``snakemake --unlock``."""
    locks = Path(root) / ".snakemake" / "locks"
    stale = list(locks.glob("*")) if locks.is_dir() else []
    for f in stale:
        f.unlink(missing_ok=True)
    return len(stale)


def dvc_stage_commands(root: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """(pid, command) of the live DVC processes running a stage now, from DVC's ``.dvc/tmp/rwlock`` (DVC keeps
    its repository lock only between stages; while a stage's command runs, this file records the command)."""
    import json

    import psutil

    try:
        data = json.loads((Path(root) / ".dvc" / "tmp" / "rwlock").read_text())
    except (OSError, ValueError):
        return []
    infos = [i for v in (data.get("write") or {}).values() for i in (v if isinstance(v, list) else [v])]
    infos += [i for v in (data.get("read") or {}).values() for i in (v if isinstance(v, list) else [v])]
    live = {(int(i["pid"]), str(i["cmd"])) for i in infos if isinstance(i, dict) and "pid" in i and "cmd" in i
            and psutil.pid_exists(int(i["pid"]))}
    return sorted(live)


def cancel_timers() -> None:
    """Cancel every pending ``threading.Timer`` (Snakemake's job-rate re-evaluation timers, which are not
    daemons: the interpreter waited for them at the exit, up to the profile's 60 s window)."""
    for t in threading.enumerate():
        if isinstance(t, threading.Timer):
            t.cancel()


class _Quiet(logging.Filter):
    """Drops Snakemake's records on the terminal after Ctrl-C (its log file keeps them)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: A003 - logging's name
        return False


def _stop_jobs_later(grace_s: float) -> None:
    """After ``grace_s`` s, SIGTERM the jobs still running (not a job's dvc.lock commit, which ignores it)."""
    try:
        import psutil
    except ImportError:
        return
    time.sleep(grace_s)
    for child in psutil.Process().children(recursive=True):
        try:
            if child.cmdline()[1:3] != ["-m", "workflow.dvcdag"]:  # a job's dvc.lock commit finishes its write
                child.terminate()
        except psutil.Error:
            pass


def install_interrupt_handler(logfiles: Callable[[], list[str]]) -> None:
    """On Ctrl-C: print one line, silence Snakemake on the terminal, stop the jobs; then Snakemake's own
    KeyboardInterrupt path cancels the run (it removes the unfinished jobs' outputs and its locks).
    ``logfiles``: Snakemake's log files (known once the run started), named in the line."""
    state = {"seen": False}

    def on_sigint(signum: int, frame: Any) -> None:
        if not state["seen"]:
            state["seen"] = True
            try:
                files = [os.path.relpath(f) for f in logfiles()]
            except Exception:  # noqa: BLE001 - the line matters more than the log's name
                files = []
            where = f"; Snakemake's log: {files[0]}" if files else ""
            print("snakemake: interrupted, stopping the running jobs; every finished job is recorded in dvc.lock "
                  f"(`dvc status` lists the rest){where}", file=sys.stderr, flush=True)
            for handler in logging.getLogger("snakemake.logging").handlers:
                if not isinstance(handler, logging.FileHandler):
                    handler.addFilter(_Quiet())
            threading.Thread(target=_stop_jobs_later, args=(GRACE_S,), daemon=True).start()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
