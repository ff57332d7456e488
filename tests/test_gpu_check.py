"""The prepared GPU check runs end to end on the CPU (--dry), so that it cannot rot between GPU sessions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_produces_every_figure(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(["bash", str(REPO_ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path), "--dry"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    assert out["dry"] is True and out["env"]["device"] == "cpu"
    assert out["cuda_tests"]["returncode"] == 0 and (tmp_path / "cuda_tests.log").exists()
    assert out["head_steps"]["ms_per_step"] > 0 and out["head_steps"]["batch"] == 130
    for layout in ("contiguous", "channels_last", "channels_last_no_benchmark"):
        assert out["finetune_steps"][layout]["images_per_s"] > 0
    rates = {k: v for k, v in out["loader"].items() if k.startswith("workers")}
    assert set(rates) == {"workers0", "workers2"} and all(v["images_per_s"] > 0 for v in rates.values())
    assert out["loader"]["today_per_core"]["images_per_s"] > 0
    both = out["together"]
    assert both["batch"] == 130 and both["images_per_s"] > 0 and both["paper_task_minutes_max"] > 0
    assert "SUMMARY together" in res.stdout and "SUMMARY loader alone" in res.stdout
    task = out["standin_task"]
    assert task["steps"] >= 1 and task["train_images_per_s"] > 0 and 0.0 <= task["standin_accuracy"] <= 1.0
    assert 0.0 <= task["standin_map"] <= 1.0 and task["images_per_domain"] == 130
