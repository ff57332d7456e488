"""A job SIGKILLed after writing its temporary output but before the rename leaves no lasting debris (issue 10.4).

The child process below writes a feature folder exactly as the extract stage does (stages.common.atomic_path:
features.npy + meta.json into the temporary folder) and is killed AT the rename: os.replace / Path.rename are
patched to SIGKILL the process when called on the temporary. The test checks the debris really is there, then
that the next run of the same write removes it and leaves the folder as a clean run would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    import numpy as np
    from stages.common import atomic_path, write_json

    out, value, kill = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    renames = 0
    def maybe_die(src):  # die when the N-th rename of the write starts (N = 1: before any rename)
        global renames
        if Path(src).parent == out.parent and kill != "no":
            renames += 1
            if renames == int(kill):
                os.kill(os.getpid(), signal.SIGKILL)
    real_replace, real_rename = os.replace, Path.rename
    def replace(src, dst, *a, **k):
        maybe_die(src)
        return real_replace(src, dst, *a, **k)
    def rename(self, target):
        maybe_die(self)
        return real_rename(self, target)
    os.replace, Path.rename = replace, rename
    with atomic_path(out) as tmp:
        tmp.mkdir()
        np.save(tmp / "features.npy", np.full((3, 2), value, np.float32))
        write_json(tmp / "meta.json", {"paths": ["a", "b", "c"]})
""")


def _run(out: Path, value: float, kill: int = 0) -> subprocess.CompletedProcess:
    """Write ``out`` (features all ``value``); ``kill=N``: SIGKILL when the N-th rename starts (0: no kill)."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    return subprocess.run([sys.executable, "-c", CHILD, str(out), str(value), str(kill or "no")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("had_output", "kill_at"), [(False, 1), (True, 1), (True, 2)],
                         ids=["first-run", "rerun-before-any-rename", "rerun-between-the-two-renames"])
def test_kill_before_rename_leaves_no_lasting_debris(tmp_path: Path, had_output: bool, kill_at: int) -> None:
    backbone = tmp_path / "features" / "office31" / "vggf"  # a tracked folder (dvc dep of train/evaluate)
    out = backbone / "amazon"
    if had_output:
        assert _run(out, 1.0).returncode == 0

    killed = _run(out, 2.0, kill=kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    debris = sorted(p.name for p in backbone.iterdir() if p.name != "amazon")
    assert debris and all(n.startswith(".amazon.") for n in debris), "the kill did not happen at the rename"
    assert any(n.endswith(".tmp") for n in debris), "the temporary output was not written before the kill"
    if had_output and kill_at == 1:  # the old output is intact
        np.testing.assert_array_equal(np.load(out / "features.npy"), np.full((3, 2), 1.0, np.float32))

    done = _run(out, 3.0)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in backbone.iterdir()) == ["amazon"]
    assert sorted(p.name for p in out.iterdir()) == ["features.npy", "meta.json"]
    np.testing.assert_array_equal(np.load(out / "features.npy"), np.full((3, 2), 3.0, np.float32))


def test_a_live_writers_temporary_is_never_swept(tmp_path: Path) -> None:
    from dahash.atomic import sweep_stale_temps

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".x.npy.pid{sleeper.pid}.abc123.tmp"
        live.write_text("being written")
        dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                  capture_output=True, text=True).stdout.strip()
        stale = tmp_path / f".x.npy.pid{dead_pid}.zz9.tmp"
        stale.write_text("left by a killed job")
        legacy = tmp_path / ".x.npy.k2j4h_9a.tmp"
        legacy.mkdir()
        other = tmp_path / ".x.npy.extra.pid1.a.tmp"  # another file's name: not ours to delete
        other.write_text("")
        assert sorted(p.name for p in sweep_stale_temps(tmp_path / "x.npy")) == sorted([stale.name, legacy.name])
        assert live.exists() and other.exists() and not stale.exists() and not legacy.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_manifest_and_library_atomic_writes_sweep_too(tmp_path: Path) -> None:
    from dahash.atomic import write_text_atomic

    (tmp_path / ".a.json.abcdefgh.tmp").write_text("old-style leftover")
    (tmp_path / ".a.json.pid999999999.q.tmp").write_text("leftover")
    write_text_atomic(tmp_path / "a.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_dvc_ignores_atomic_temporaries() -> None:
    """Until the rerun sweeps them, DVC does not hash the temporaries into a tracked folder."""
    from dvc.ignore import DvcIgnorePatterns

    patterns = DvcIgnorePatterns.from_file(str(REPO / ".dvcignore"), __import__("dvc.fs").fs.LocalFileSystem(),
                                           ".dvcignore")
    matches = patterns.matches
    assert matches(str(REPO / "data/features/x/vggf"), ".amazon.pid123.k2j4h_9a.tmp")
    assert matches(str(REPO / "data/features/x/vggf"), ".amazon.pid77.old")
    assert not matches(str(REPO / "data/features/x/vggf"), "amazon")
