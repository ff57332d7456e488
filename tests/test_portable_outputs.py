"""Preset edits fail cleanly and name params.yaml; versioned outputs hold no machine paths (issue 10 point 8)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stages import tracking
from stages.common import PARAMS_FILE, ROOT, StageError
from stages.preset import apply_preset
from tests.rooted import point_stages_at

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    target = tmp_path / "params.yaml"
    target.write_text(PARAMS_FILE.read_text())
    return target


@pytest.mark.parametrize("value", ["[1", "{a: 1", "'open", "a: b: c"])
def test_preset_set_with_broken_yaml_is_one_clean_error(params_file: Path, value: str) -> None:
    before = params_file.read_text()
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    r = subprocess.run([sys.executable, "-m", "stages.preset", "quickstart", "--set", f"train.lr_start={value}",
                        "--params", str(params_file)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("ERROR: --set train.lr_start: value") and "not valid YAML" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert params_file.read_text() == before
    assert sorted(p.name for p in params_file.parent.iterdir()) == ["params.yaml"]


def test_invalid_value_error_names_params_yaml_not_the_temp_file(params_file: Path) -> None:
    with pytest.raises(StageError) as ei:
        apply_preset("quickstart", ["train.epochs=-3"], params_file)
    msg = str(ei.value)
    assert msg.startswith(f"{params_file}: invalid params") and "train.epochs" in msg
    assert ".tmp" not in msg


def test_set_below_a_scalar_is_refused(params_file: Path) -> None:
    with pytest.raises(StageError, match="not a key of params.yaml"):
        apply_preset("quickstart", ["train.epochs.x=1"], params_file)


def test_broken_params_file_is_named(params_file: Path) -> None:
    params_file.write_text("train: [1\n")
    with pytest.raises(StageError, match=r"params\.yaml: not valid YAML"):
        apply_preset("quickstart", [], params_file)


@pytest.mark.parametrize(("uri", "expected"), [
    (None, "sqlite:///mlflow.db"),
    (f"sqlite:///{ROOT}/stores/x.db", "sqlite:///stores/x.db"),
    (f"sqlite:///{ROOT.parent}/elsewhere.db", "sqlite:///../elsewhere.db"),
    (f"file://{ROOT}/mlruns", "mlruns"),
    ("http://alice:s3cret@mlflow.example:5000/x", "http://mlflow.example:5000/x"),
    ("http://mlflow.example:5000", "http://mlflow.example:5000"),
    ("databricks", "databricks"),
])
def test_portable_tracking_uri(monkeypatch, uri, expected) -> None:
    if uri is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert tracking.portable_uri() == expected


def test_source_json_of_a_custom_mirror_is_relative(tmp_path: Path, monkeypatch, make_image_tree) -> None:
    """The download stage on a custom mirror: SOURCE.json names no path of this machine (not even the mirror's)."""
    import yaml

    import stages.download as dl
    from stages import common

    root = tmp_path / "proj"
    mirror = tmp_path / "my images"
    make_image_tree(mirror, ["day", "night"], ["car", "person"])
    params = yaml.safe_load(PARAMS_FILE.read_text())
    params["data"].update(dataset="custom", domains=["day", "night"], mirror=str(mirror))
    params["tasks"] = {"D_N": {"source": "day", "target": "night"}}
    params["analysis"]["tasks"] = []
    params["baselines"].update(methods={}, finetune={})
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    point_stages_at(monkeypatch, root)
    monkeypatch.setattr(dl, "load_params", lambda: common.load_params(root / "params.yaml"))
    dl.main([])
    text = (root / "data" / "raw" / "custom" / "SOURCE.json").read_text()
    assert json.loads(text)["kind"] == "mirror" and "my images" not in text  # content decides, not where it lies
    assert str(tmp_path) not in text
