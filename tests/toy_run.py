"""A trained-looking run folder and a folder of labelled images, for the tests of `dahash encode/search/export`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dahash.nn.model import DAHHead


def head_run(root: Path, hidden: tuple[int, int] = (8, 8), bits: int = 16) -> Path:
    """``root/proj/models/toy/efficientnet_lite0/dah/A->B/seed0``: a head-mode run with a random DAH head on
    EfficientNet-Lite0's 1280-d features (seeded), as the train stage lays it out (model.pt, run.json)."""
    run = root / "proj" / "models" / "toy" / "efficientnet_lite0" / "dah" / "A->B" / "seed0"
    run.mkdir(parents=True)
    head = DAHHead(1280, hidden, bits, generator=torch.Generator().manual_seed(0)).eval()
    torch.save({"config": {"bn_momentum": 0.05}, "state_dict": head.state_dict()}, run / "model.pt")
    (run / "run.json").write_text(json.dumps({"mode": "head"}))
    return run


def labelled_images(folder: Path, per_class: int = 3) -> Path:
    """``folder/red/<i>.jpg`` and ``folder/blue/<i>.jpg``: noisy 64 x 48 images of two colours (seeded)."""
    rng = np.random.default_rng(0)
    for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            arr = np.clip(np.array(colour) + rng.normal(0, 40, (48, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(folder / label / f"{i}.jpg")
    return folder


def dahash_cli(*args: str, ok: bool = True, timeout: int = 300):
    """``python -m dahash.cli ARGS`` with this checkout on PYTHONPATH (one thread); asserts it succeeded (``ok``)
    or failed, and returns the completed process."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{repo / 'src'}{os.pathsep}{repo}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "dahash.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)
    assert (proc.returncode == 0) == ok, proc.stderr
    return proc
