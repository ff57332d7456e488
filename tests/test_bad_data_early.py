"""Bad data is found by preprocess, not by training (issue 10 point 6)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from dahash.data.datasets import folder_dataset
from dahash.data.manifest import build_manifest
from stages.common import PARAMS_FILE, StageError
from stages.preprocess import check_source_classes, warn_small_classes
from tests.rooted import point_stages_at


@pytest.fixture
def tree(tmp_path: Path, make_image_tree):
    root = tmp_path / "raw"
    make_image_tree(root, ["day", "night"], ["car", "cat", "person"], n_per_class=3)
    return root


@pytest.fixture
def params() -> dict:
    p = copy.deepcopy(yaml.safe_load(PARAMS_FILE.read_text()))
    p["data"]["domains"] = ["day", "night"]
    p["tasks"] = {"D2N": {"source": "day", "target": "night"}}
    p["train"]["k_per_class"] = 2
    p["methods"] = {"dah": None}
    return p


def _manifest(root: Path):
    spec = folder_dataset(root, ["day", "night"])
    return build_manifest(root, spec), spec


def test_source_class_without_usable_images_stops_preprocess_naming_domain_and_class(tree, params) -> None:
    for f in (tree / "day" / "cat").iterdir():
        f.write_bytes(b"not an image")  # excluded by the manifest: "cannot decode"
    df, spec = _manifest(tree)
    with pytest.raises(StageError) as ei:
        check_source_classes(df, spec.classes, params)
    msg = str(ei.value)
    assert "source domain 'day'" in msg and "['cat']" in msg and "cannot decode" in msg


def test_empty_class_in_a_target_only_domain_is_not_fatal(tree, params) -> None:
    for f in (tree / "night" / "cat").iterdir():
        f.unlink()
    df, spec = _manifest(tree)
    assert check_source_classes(df, spec.classes, params) == []


def test_k_per_class_larger_than_smallest_source_class_warns_with_class_and_count(tree, params) -> None:
    (tree / "day" / "person" / "img_000.jpg").write_bytes(b"")  # 2 usable left
    (tree / "day" / "person" / "img_001.jpg").unlink()  # 1 usable left
    df, spec = _manifest(tree)
    assert check_source_classes(df, spec.classes, params) == [
        "k_per_class (methods ['dah']) = 2 but class 'person' of source domain 'day' has only 1 usable image(s): "
        "its batches repeat images; lower k_per_class to 1 or add images"]
    params["methods"]["dah_big"] = {"k_per_class": 1}
    params["train"]["k_per_class"] = 1
    assert check_source_classes(df, spec.classes, params) == []


def test_train_stage_warning(capsys) -> None:
    warn_small_classes(np.array([0, 0, 0, 1, 2, 2]), ("a", "b", "c"), 3, "amazon")
    err = capsys.readouterr().err
    assert err.startswith("WARNING: train.k_per_class = 3 but class 'b' of source domain 'amazon' has only 1")
    warn_small_classes(np.array([0, 1, 2]), ("a", "b", "c"), 1, "amazon")
    assert capsys.readouterr().err == ""


def test_preprocess_stage_stops_and_writes_nothing(tmp_path: Path, tree, params, monkeypatch, capsys) -> None:
    import stages.preprocess as pre
    from stages import common

    root = tmp_path / "proj"
    raw = root / "data" / "raw" / "custom"
    raw.parent.mkdir(parents=True)
    tree.rename(raw)
    for f in (raw / "day" / "car").iterdir():
        f.write_bytes(b"")
    params["data"].update(dataset="custom", mirror=str(raw))
    params["analysis"]["tasks"] = []
    params["baselines"].update(methods={}, finetune={})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    point_stages_at(monkeypatch, root)
    monkeypatch.setattr(pre, "load_params", lambda: common.load_params(root / "params.yaml"))
    with pytest.raises(SystemExit) as ei:
        pre.main([])
    assert ei.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: source domain 'day': class(es) ['car'] have no usable image (day/car/img_000.jpg:")
    assert not (root / "data" / "manifests").exists()
