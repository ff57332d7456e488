"""Files a user can be handed (model.pt via dvc pull, checkpoints, feature arrays) are never unpickled with code.

Issue 10 point 1: a crafted model.pt whose pickle calls a function (here: one that creates a marker file)
must be refused with a clear error, and the function must NOT run.
"""

from __future__ import annotations

import ast
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this calls ``os.system("touch <marker>")``: what a hostile model.pt would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _evil_file(path: Path, marker: Path, wrap: dict | None = None) -> Path:
    torch.save({**(wrap or {}), "state_dict": {"fc6.weight": torch.zeros(2, 2)}, "config": _Payload(marker)}, path)
    return path


def test_the_payload_really_runs_when_unpickled_unsafely(tmp_path: Path) -> None:
    """Control: the crafted file does execute under weights_only=False, so the refusal tests below mean something."""
    marker = tmp_path / "pwned"
    f = _evil_file(tmp_path / "model.pt", marker)
    torch.load(f, weights_only=False)
    assert marker.exists()


def test_analysis_refuses_a_model_file_with_a_pickle_payload(tmp_path: Path) -> None:
    from stages.analysis import dah_fc7
    from stages.common import StageError

    marker = tmp_path / "pwned"
    _evil_file(tmp_path / "model.pt", marker)
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(StageError, match=r"model\.pt: refused, not a plain weights file"):
        dah_fc7(tmp_path, x, x)
    assert not marker.exists(), "the pickle payload ran"


def test_analysis_reads_a_real_model_file(tmp_path: Path) -> None:
    """The train stage's model.pt (config dict + state_dict) loads under weights_only=True."""
    from dahash.nn.model import DAHHead
    from dahash.train.head import DAHConfig
    from stages.analysis import dah_fc7
    from stages.train import write_outputs

    config = DAHConfig(hidden_dims=(6, 5), hash_bits=4)
    head = DAHHead(3, (6, 5), hash_bits=4).eval()
    out = tmp_path / "run"
    z = np.zeros((2, 4), np.float32)
    write_outputs(out, head.state_dict(), [{"epoch": 1, "total": 0.0}], config, z, z, {"run_id": "x"})
    xs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    fs, ft = dah_fc7(out, xs, xs[:2])
    with torch.no_grad():
        expected = head(torch.from_numpy(xs)).fc7.numpy()
    np.testing.assert_allclose(fs, expected, rtol=1e-6)
    assert ft.shape == (2, 5)


def test_checkpoint_with_a_pickle_payload_is_set_aside_not_run(tmp_path: Path) -> None:
    from dahash.train.checkpoint import checkpoint_path, load_latest_checkpoint

    marker = tmp_path / "pwned"
    ckdir = tmp_path / "ck"
    ckdir.mkdir()
    _evil_file(checkpoint_path(ckdir, 3), marker, {"format": 1, "epoch": 3, "fingerprint": "f"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert load_latest_checkpoint(ckdir, "f") is None
    assert not marker.exists()


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call ``<x>.<name>(...)`` in src/ and stages/."""
    out = []
    for py in [*(REPO / "src").rglob("*.py"), *(REPO / "stages").rglob("*.py")]:
        for node in ast.walk(ast.parse(py.read_text(), str(py))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == name:
                out.append((py, node))
    return out


def test_every_torch_load_is_weights_only() -> None:
    loads = [(p, c) for p, c in _calls("load") if isinstance(c.func.value, ast.Name) and c.func.value.id == "torch"]
    assert loads, "no torch.load found: the scan is broken"
    bad = [f"{p.relative_to(REPO)}:{c.lineno}" for p, c in loads
           if not any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                      for k in c.keywords)]
    assert not bad, f"torch.load without weights_only=True at {bad}"


def test_no_numpy_load_allows_pickles() -> None:
    loads = [(p, c) for p, c in _calls("load") if isinstance(c.func.value, ast.Name) and c.func.value.id == "np"]
    assert loads
    bad = [f"{p.relative_to(REPO)}:{c.lineno}" for p, c in loads
           if any(k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                  for k in c.keywords)]
    assert not bad, f"np.load with allow_pickle at {bad}"
