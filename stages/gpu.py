"""One GPU per job on a multi-GPU machine: a free GPU picked under a file lock, exported as CUDA_VISIBLE_DEVICES.

``snakemake --resources gpu=N`` only COUNTS: it runs at most N GPU jobs at once but does not say which
GPU each should use, so without this every job would land on GPU 0. Before torch initialises CUDA, a job
that will use the GPU calls :func:`claim_gpu`: it takes the first GPU whose lock file
(``.snakemake/gpu-slots/gpu<id>.lock``) it can lock without waiting, keeps that lock for the life of the
process (the OS releases it when the process ends, a crash or a SIGKILL included) and sets
``CUDA_VISIBLE_DEVICES=<id>``, so the job sees exactly one GPU as ``cuda:0``. With N = the number of GPUs
in ``--resources gpu=N`` a free GPU always exists; if all are taken (other programs) it waits.

The GPUs are those of ``CUDA_VISIBLE_DEVICES`` when the caller set it (e.g. a Slurm allocation), else
``nvidia-smi -L``'s list. One GPU or none: nothing is locked or changed.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from filelock import FileLock, Timeout

from stages.common import StageError
from stages.paths import ROOT

SLOT_DIR = Path(".snakemake") / "gpu-slots"
_held: list[FileLock] = []  # the claimed lock, kept alive as long as the process runs


def visible_gpus() -> list[str]:
    """GPU ids this process may use, without initialising CUDA: ``CUDA_VISIBLE_DEVICES`` (when set) or
    ``nvidia-smi -L`` (none when it is absent)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(x for x in out.splitlines() if x.startswith("GPU "))]


def claim_gpu(root: Path, *, poll_s: float = 2.0, timeout_s: float | None = None) -> str | None:
    """Claim one of :func:`visible_gpus` for this process and export it as ``CUDA_VISIBLE_DEVICES``.

    Returns the claimed id, or None when there is at most one GPU (nothing to choose) or a GPU was already
    claimed by this process. Must run before torch touches CUDA (``torch.cuda.is_available()`` included).

    Raises:
        TimeoutError: every GPU stayed locked for ``timeout_s`` seconds (None: wait for ever).
    """
    if _held:
        return None
    gpus = visible_gpus()
    if len(gpus) <= 1:
        return None
    slot_dir = Path(root) / SLOT_DIR
    slot_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    while True:
        for gpu in gpus:
            lock = FileLock(str(slot_dir / f"gpu{gpu}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            _held.append(lock)
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            return gpu
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"all GPUs {gpus} stayed busy for {timeout_s:.0f} s (locks in {slot_dir})")
        time.sleep(poll_s)


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; explicit names pass through.

    ``auto`` and ``cuda`` on a machine with several GPUs first claim one GPU for this job
    (:func:`stages.gpu.claim_gpu`: a file lock, then ``CUDA_VISIBLE_DEVICES``), so that parallel jobs
    spread over the GPUs instead of stacking on GPU 0.
    """
    if name in ("auto", "cuda"):
        gpu = claim_gpu(ROOT)
        if gpu is not None:
            print(f"using GPU {gpu} (CUDA_VISIBLE_DEVICES={gpu})", flush=True)
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StageError(f"device {name!r} requested in params.yaml but torch sees no CUDA device; use 'auto' or 'cpu'")
    return name
