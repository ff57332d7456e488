"""A params edit the stage refuses must not delete outputs DVC cannot restore (issue 10 point 7).

``dvc repro`` deletes a changed stage's outputs before running its cmd, unless they are ``persist: true``;
``cache: false`` outputs (the gamma sweep's per-gamma records, ...) are in no cache, so ``dvc checkout``
cannot bring them back. The stages validate params.yaml when their cmd starts, i.e. after that deletion.
Checked: every ``cache: false`` output of dvc.yaml is ``persist: true``, and, with the real DVC on a
one-stage project, that this is what keeps the file through a refused edit (and that without it DVC deletes it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _cache_false_entries(doc: dict) -> list[tuple[str, str, dict]]:
    out = []
    for name, stage in doc["stages"].items():
        body = stage.get("do", stage)
        for kind in ("outs", "metrics", "plots"):
            for entry in body.get(kind, []) or []:
                if isinstance(entry, dict):
                    for path, opts in entry.items():
                        if (opts or {}).get("cache") is False:
                            out.append((name, path, opts))
    return out


def test_every_uncached_output_of_the_pipeline_persists() -> None:
    entries = _cache_false_entries(yaml.safe_load((REPO / "dvc.yaml").read_text()))
    assert any("sweeps/gamma" in path for _, path, _ in entries), "the gamma sweep outputs are not cache: false?"
    missing = [f"{name}: {path}" for name, path, opts in entries if opts.get("persist") is not True]
    assert not missing, f"cache: false outputs DVC would delete before a (possibly refused) run: {missing}"


STAGE_CMD = textwrap.dedent("""
    import json, sys, yaml
    p = yaml.safe_load(open("params.yaml"))
    if p["sweep"]["epochs"] < 1:  # the stage's own validation, as stages.common.load_params does
        sys.exit("ERROR: params.yaml: sweep.epochs must be >= 1")
    json.dump({"epochs": p["sweep"]["epochs"]}, open("sweep.json", "w"))
""")


@pytest.mark.parametrize("persist", [True, False])
def test_dvc_keeps_a_persisted_uncached_output_through_a_refused_edit(tmp_path: Path, persist: bool) -> None:
    dvc = shutil.which("dvc")
    if dvc is None:
        pytest.skip("dvc is not installed")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    (tmp_path / "stage.py").write_text(STAGE_CMD)
    (tmp_path / "params.yaml").write_text("sweep:\n  epochs: 3\n")
    out = {"sweep.json": {"cache": False, **({"persist": True} if persist else {})}}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"sweep": {
        "cmd": f"{sys.executable} stage.py", "deps": ["stage.py"], "params": ["sweep.epochs"], "outs": [out]}}}))

    def dvc_run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([dvc, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert dvc_run("init", "--no-scm").returncode == 0
    first = dvc_run("repro")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "sweep.json").read_text() == '{"epochs": 3}'

    (tmp_path / "params.yaml").write_text("sweep:\n  epochs: -1\n")  # an edit the stage refuses
    refused = dvc_run("repro")
    assert refused.returncode != 0
    assert "sweep.epochs must be >= 1" in refused.stdout + refused.stderr
    if persist:
        assert (tmp_path / "sweep.json").read_text() == '{"epochs": 3}'
    else:  # control: without persist DVC deleted it before the cmd ran (what the pipeline did before)
        assert not (tmp_path / "sweep.json").exists()
