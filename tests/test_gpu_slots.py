"""Parallel GPU jobs on a multi-GPU machine get different GPUs (faked devices: CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import os, sys, time
from pathlib import Path
import stages.gpu as g
assert Path(g.__file__).resolve().parent == Path(sys.argv[2]).resolve() / "stages", g.__file__
gpu = g.claim_gpu(Path(sys.argv[1]), poll_s=0.05, timeout_s=60)
print(gpu, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(float(sys.argv[3]))
"""


def _start(tmp_path: Path, hold_s: float, gpus: str) -> subprocess.Popen:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpus, "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{REPO_ROOT}"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(REPO_ROOT), str(hold_s)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_gpu_jobs_get_different_devices(tmp_path: Path) -> None:
    procs = [_start(tmp_path, 3.0, "4,7") for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    claimed = sorted(o[0].split()[0] for o in outs)
    assert claimed == ["4", "7"]  # one each, and each sees only its own GPU
    assert sorted(o[0].split()[1] for o in outs) == ["4", "7"]


def test_a_third_job_waits_for_a_free_gpu(tmp_path: Path) -> None:
    first = [_start(tmp_path, 4.0, "0,1") for _ in range(2)]
    time.sleep(1.5)  # both GPUs held now (a hang guard below, not a timing assertion)
    third = _start(tmp_path, 0.0, "0,1")
    out3 = third.communicate(timeout=120)[0]
    outs = [p.communicate(timeout=120)[0] for p in first]
    assert third.returncode == 0 and out3.split()[0] in ("0", "1")
    assert sorted(o.split()[0] for o in outs) == ["0", "1"]


def test_one_gpu_or_none_changes_nothing(tmp_path: Path) -> None:
    out = _start(tmp_path, 0.0, "3").communicate(timeout=60)[0]
    assert out.split() == ["None", "3"]
    assert not (tmp_path / ".snakemake" / "gpu-slots").exists()
