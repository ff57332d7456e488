"""VGG-16 backbone (dahash.nn.backbones.vgg16): torchvision's layout written down independently, a reference
forward in plain torch.nn.functional on small synthetic state dicts of the same structure, the head-mode
(fc7) and fine-tune (pool5 + pretrained fc6/fc7) uses, its input recipe, its export, and the checksummed
download of vgg16-397923af.pth from a local HTTP server."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dahash.nn.backbones import BACKBONE_NAMES, build_backbone, vgg16_finetune_parts
from dahash.nn.backbones.vgg16 import (VGG16, VGG16_FILENAME, VGG16_URL, VGG16Trunk, load_vgg16,
                                    vgg16_trunk_from_state)
import stages.paths

# torchvision.models.vgg16() state_dict, in order (torchvision/models/vgg.py, cfg "D": 64, 64, M, 128, 128, M,
# 256 x 3, M, 512 x 3, M, 512 x 3, M; classifier Linear(512*7*7, 4096), ReLU, Dropout, Linear(4096, 4096),
# ReLU, Dropout, Linear(4096, 1000)). Written out by hand, not derived from the module under test.
TORCHVISION_VGG16 = [
    ("features.0.weight", (64, 3, 3, 3)), ("features.0.bias", (64,)),
    ("features.2.weight", (64, 64, 3, 3)), ("features.2.bias", (64,)),
    ("features.5.weight", (128, 64, 3, 3)), ("features.5.bias", (128,)),
    ("features.7.weight", (128, 128, 3, 3)), ("features.7.bias", (128,)),
    ("features.10.weight", (256, 128, 3, 3)), ("features.10.bias", (256,)),
    ("features.12.weight", (256, 256, 3, 3)), ("features.12.bias", (256,)),
    ("features.14.weight", (256, 256, 3, 3)), ("features.14.bias", (256,)),
    ("features.17.weight", (512, 256, 3, 3)), ("features.17.bias", (512,)),
    ("features.19.weight", (512, 512, 3, 3)), ("features.19.bias", (512,)),
    ("features.21.weight", (512, 512, 3, 3)), ("features.21.bias", (512,)),
    ("features.24.weight", (512, 512, 3, 3)), ("features.24.bias", (512,)),
    ("features.26.weight", (512, 512, 3, 3)), ("features.26.bias", (512,)),
    ("features.28.weight", (512, 512, 3, 3)), ("features.28.bias", (512,)),
    ("classifier.0.weight", (4096, 25088)), ("classifier.0.bias", (4096,)),
    ("classifier.3.weight", (4096, 4096)), ("classifier.3.bias", (4096,)),
    ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,)),
]
TORCHVISION_VGG16_PARAMS = 138_357_544  # torchvision's documented num_params for VGG16_Weights.IMAGENET1K_V1

# a small network of the same structure: 13 convs (torchvision's indices), fc6/fc7/fc8
CONV_IDX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
POOL_AFTER = {2, 7, 14, 21, 28}  # a 2 x 2 max pool follows these convolutions
WIDTHS = [4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8]
FC6, FC7, CLASSES = 16, 12, 5
POOL5 = 8 * 7 * 7


def synthetic_state(seed: int = 0, *, classifier: bool = True) -> dict[str, torch.Tensor]:
    """Random tensors with torchvision's keys and the small widths above (He-scaled, so activations stay O(1))."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    c_in = 3
    for idx, c_out in zip(CONV_IDX, WIDTHS):
        state[f"features.{idx}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=g) * (2 / (9 * c_in)) ** 0.5
        state[f"features.{idx}.bias"] = torch.randn(c_out, generator=g) * 0.1
        c_in = c_out
    if classifier:
        d_in = POOL5
        for idx, d_out in zip((0, 3, 6), (FC6, FC7, CLASSES)):
            state[f"classifier.{idx}.weight"] = torch.randn(d_out, d_in, generator=g) * (2 / d_in) ** 0.5
            state[f"classifier.{idx}.bias"] = torch.randn(d_out, generator=g) * 0.1
            d_in = d_out
    return state


def reference(state: dict[str, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """VGG-16's forward with torch.nn.functional only: pool5 (flattened after the adaptive 7 x 7 average
    pool), fc7 (after ReLU; dropout is off at test time) and the logits."""
    for idx in CONV_IDX:
        x = F.relu(F.conv2d(x, state[f"features.{idx}.weight"], state[f"features.{idx}.bias"], padding=1))
        if idx in POOL_AFTER:
            x = F.max_pool2d(x, 2, 2)
    pool5 = F.adaptive_avg_pool2d(x, 7).flatten(1)
    fc6 = F.relu(F.linear(pool5, state["classifier.0.weight"], state["classifier.0.bias"]))
    fc7 = F.relu(F.linear(fc6, state["classifier.3.weight"], state["classifier.3.bias"]))
    return {"pool5": pool5, "fc7": fc7, "logits": F.linear(fc7, state["classifier.6.weight"],
                                                            state["classifier.6.bias"])}


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    path = tmp_path / "w" / VGG16_FILENAME
    path.parent.mkdir()
    torch.save(synthetic_state(), path)
    return path


def _images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        p = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------
def test_layout_is_torchvisions_vgg16() -> None:
    """Default widths: exactly torchvision's keys, order and shapes, 138,357,544 parameters, and the shapes of
    a 224 x 224 forward (computed on the meta device: no memory, no arithmetic)."""
    with torch.device("meta"):
        net = VGG16()
        x = torch.empty(2, 3, 224, 224)
        pool5, fc7, logits = net.pool5(x), net.fc7(x), net(x)
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == TORCHVISION_VGG16
    assert sum(p.numel() for p in net.parameters()) == TORCHVISION_VGG16_PARAMS
    assert pool5.shape == (2, 25088) and fc7.shape == (2, 4096) and logits.shape == (2, 1000)
    pools = [i for i, m in enumerate(net.features) if isinstance(m, torch.nn.MaxPool2d)]
    assert pools == [4, 9, 16, 23, 30] and len(net.features) == 31
    assert all(isinstance(net.features[i + 1], torch.nn.ReLU) for i in CONV_IDX)
    assert [type(m).__name__ for m in net.classifier] == ["Linear", "ReLU", "Dropout"] * 2 + ["Linear"]


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("side", [32, 56])
def test_forward_matches_functional_reference(tmp_path: Path, legacy: bool, side: int) -> None:
    """Loaded with torch.load(weights_only=True) from the zip and the legacy (2017, like the real file)
    serialisation; 32 x 32 gives a 1 x 1 pool5 map that the adaptive pool spreads to 7 x 7, as torchvision."""
    state = synthetic_state(1)
    path = tmp_path / "w.pth"
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    net = load_vgg16(path)
    assert not net.training and net.widths == tuple(WIDTHS)
    x = torch.randn(3, 3, side, side, generator=torch.Generator().manual_seed(2))
    ref = reference(state, x)
    with torch.no_grad():
        torch.testing.assert_close(net.pool5(x), ref["pool5"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net.fc7(x), ref["fc7"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(net(x), ref["logits"], rtol=1e-5, atol=1e-5)
    assert ref["fc7"].abs().max() > 0.1  # a non-trivial check


def test_bad_files_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / VGG16_FILENAME
    with pytest.raises(FileNotFoundError, match=re.escape(VGG16_URL)) as ei:
        load_vgg16(missing)
    assert str(missing) in str(ei.value)

    state = synthetic_state()
    del state["classifier.6.bias"]
    p = tmp_path / "a.pth"
    torch.save(state, p)
    with pytest.raises(ValueError, match=r"a\.pth.*missing keys \['classifier\.6\.bias'\]"):
        load_vgg16(p)

    state = synthetic_state()
    state["features.3.weight"] = state.pop("features.2.weight")  # off by one index
    torch.save(state, p)
    with pytest.raises(ValueError, match=r"features\.2\.weight.*features\.3\.weight"):
        load_vgg16(p)

    state = synthetic_state()
    state["classifier.0.weight"] = torch.zeros(FC6, POOL5 + 1)
    torch.save(state, p)
    with pytest.raises(ValueError, match=r"classifier\.0 has weight \(16, 393\)"):
        load_vgg16(p)

    p.write_bytes(b"<html>404</html>")
    with pytest.raises(ValueError, match="a.pth.*download"):
        load_vgg16(p)


class _Payload:
    """Pickled into a file: torch.load(weights_only=True) must refuse it instead of running code."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil.pth"
    torch.save({"features.0.weight": _Payload()}, p)
    with pytest.raises(ValueError, match="refused, not a plain weights file"):
        load_vgg16(p)


# ---------------------------------------------------------------------------------------------
# head mode: fc7 features; fine-tune mode: pool5 trunk + pretrained fc6/fc7
# ---------------------------------------------------------------------------------------------
def test_head_mode_backbone_extracts_fc7(weights_file: Path, tmp_path: Path) -> None:
    from dahash.nn.extract import extract_features
    from dahash.nn.recipes import input_recipe

    assert "vgg16" in BACKBONE_NAMES
    bb = build_backbone("vgg16", weights=weights_file)
    assert bb.feature_dim == FC7 and bb.head_init is None
    paths = _images(tmp_path / "imgs", [(300, 260), (260, 300), (224, 224)])
    feats = extract_features(paths, bb, batch_size=2, progress=False)
    tf = input_recipe("vgg16").eval_transform()
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p in paths])
    want = reference(synthetic_state(), x)["fc7"].numpy()
    assert feats.shape == (3, FC7)
    np.testing.assert_allclose(feats, want, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="vgg16-397923af.pth"):
        build_backbone("vgg16")


def test_finetune_parts_and_learning_rates(weights_file: Path) -> None:
    """Trunk = conv1_1..pool5 under torchvision's key names; fc6/fc7 = classifier.0/3 in the DAH head; every
    pretrained layer at pretrained_lr_mult, only the hash layer at new_lr_mult (VGG-F's rule)."""
    from dahash.train.finetune import finetune_param_groups, trunk_features
    from dahash.nn.model import DAHHead
    from dahash.train.head import DAHConfig

    trunk, dim, head_init = vgg16_finetune_parts(weights_file)
    state = synthetic_state()
    assert dim == POOL5 and isinstance(trunk, VGG16Trunk)
    assert list(trunk.state_dict()) == [k for k in state if k.startswith("features.")]
    torch.testing.assert_close(head_init["fc6.weight"], state["classifier.0.weight"])
    torch.testing.assert_close(head_init["fc7.bias"], state["classifier.3.bias"])
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(trunk_features(trunk, x), reference(state, x)["pool5"], rtol=1e-5, atol=1e-5)
        small = x[:, :, :40, :40]  # any input size: the adaptive pool is part of the trunk
        torch.testing.assert_close(trunk_features(trunk, small), reference(state, small)["pool5"],
                                   rtol=1e-5, atol=1e-5)

    config = DAHConfig(hidden_dims=(FC6, FC7), hash_bits=8)
    head = DAHHead(dim, (FC6, FC7), 8, head_init)
    assert head.pretrained_layers == {"fc6", "fc7"}
    groups = {g["name"]: g["lr_mult"] for g in finetune_param_groups(trunk, head, config, trunk_pretrained=True)}
    assert groups["trunk.features.0.weight"] == config.pretrained_lr_mult[0]
    assert groups["trunk.features.28.bias"] == config.pretrained_lr_mult[1]
    assert groups["head.fc6.weight"] == config.pretrained_lr_mult[0]
    assert groups["head.fc8.weight"] == config.new_lr_mult[0]
    assert len([n for n in groups if n.startswith("trunk.")]) == 26


def test_stage_finetune_builds_the_vgg16_trunk(weights_file: Path, monkeypatch) -> None:
    import stages.finetune as sf
    from stages.common import StageError
    from stages.runs import check_hidden_dims

    monkeypatch.setattr(sf, "weights_file", lambda name: weights_file)
    trunk, dim, head_init = sf.build_trunk("vgg16", seed=0)
    assert isinstance(trunk, VGG16Trunk) and dim == POOL5 and head_init["fc6.weight"].shape == (FC6, POOL5)
    assert sf.PRETRAINED_TRUNKS["vgg16"] is True
    with pytest.raises(StageError, match=r"pretrained vgg16 layers.*set train.hidden_dims: \[16, 12\]"):
        check_hidden_dims(head_init, [4096, 4096], "vgg16")


def test_one_finetune_epoch_changes_the_trunk(weights_file: Path, tmp_path: Path) -> None:
    from dahash.train.finetune import train_dah_finetune
    from dahash.nn.model import DAHHead
    from dahash.nn.recipes import input_recipe
    from dahash.train.head import DAHConfig

    trunk, dim, head_init = vgg16_finetune_parts(weights_file)
    before = trunk.features[0].weight.detach().clone()
    head = DAHHead(dim, (FC6, FC7), 8, head_init, generator=torch.Generator().manual_seed(0))
    src = _images(tmp_path / "s", [(60, 50)] * 4)
    tgt = _images(tmp_path / "t", [(50, 60)] * 4)
    config = DAHConfig(hidden_dims=(FC6, FC7), hash_bits=8, epochs=1, k_per_class=1, lr_start=1e-2, lr_end=1e-2)
    res = train_dah_finetune(src, [0, 1, 0, 1], tgt, 2, config, trunk=trunk, head=head, trunk_pretrained=True,
                             train_transform=input_recipe("vgg16").train_transform(0))
    assert np.isfinite(res.history[0]["total"])
    assert not torch.equal(before, trunk.features[0].weight.detach())


# ---------------------------------------------------------------------------------------------
# input recipe
# ---------------------------------------------------------------------------------------------
def test_recipe_is_torchvisions_imagenet_normalisation_and_crop() -> None:
    from dahash.nn.recipes import input_recipe, moments_geometry

    recipe = input_recipe("vgg16")  # fixed normalisation: no moments needed
    assert moments_geometry("vgg16") == (224, 3, "bilinear")
    assert recipe.size == 224 and recipe.eval_crop == 0.875 and recipe.interpolation == "bilinear"
    assert recipe.train_scale == (0.875, 0.875) and recipe.flip
    x = recipe.eval_transform()(Image.new("RGB", (300, 200), (255, 127, 0)))
    want = torch.tensor([(1.0 - 0.485) / 0.229, (127 / 255 - 0.456) / 0.224, (0.0 - 0.406) / 0.225])
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x[:, 100, 100], want, rtol=0, atol=1e-5)
    # geometry: torchvision's Resize(256) + CenterCrop(224) on a smooth photo, compared in grey levels away
    # from the border (crop-then-resize vs resize-then-crop: sub-pixel offsets, a grey level or so)
    w, h = 320, 240
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = Image.fromarray(np.clip(np.stack([127 + 100 * np.sin(xx / (25 + c) + yy / (28 + c)) for c in range(3)],
                                           -1), 0, 255).astype(np.uint8))
    resized = img.resize((round(w * 256 / h), 256), Image.Resampling.BILINEAR)
    left, top = (resized.width - 224) // 2, (resized.height - 224) // 2
    ref = np.asarray(resized.crop((left, top, left + 224, top + 224)), np.float32)
    got = recipe.eval_transform()(img).numpy().transpose(1, 2, 0) * np.array(recipe.std) + np.array(recipe.mean)
    np.testing.assert_allclose(recipe.mean, [123.675, 116.28, 103.53])
    np.testing.assert_allclose(recipe.std, [58.395, 57.12, 57.375])
    core = (slice(8, -8), slice(8, -8))
    assert np.abs(got - ref)[core].mean() < 1.5 and np.abs(got - ref)[core].max() < 4.5
    full_square = np.asarray(img.crop((40, 0, 280, 240)).resize((224, 224), Image.Resampling.BILINEAR), np.float32)
    assert np.abs(got - full_square)[core].mean() > 10  # VGG-F's full-square crop would differ


# ---------------------------------------------------------------------------------------------
# export (dahash encode / search)
# ---------------------------------------------------------------------------------------------
def _run_dir(tmp: Path, state: dict, mode: str) -> Path:
    d = tmp / "proj" / "models" / "toy" / "vgg16" / "dah" / "A->B" / "seed0"
    d.mkdir(parents=True)
    torch.save({"config": {"bn_momentum": 0.05}, "state_dict": state}, d / "model.pt")
    (d / "run.json").write_text(json.dumps({"mode": mode}))
    return d


def _head(in_dim: int) -> "torch.nn.Module":
    from dahash.nn.model import DAHHead

    head = DAHHead(in_dim, (8, 8), 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        head.bn.running_mean.uniform_(-0.1, 0.1)
        head.bn.running_var.uniform_(0.5, 2.0)
    return head.eval()


def test_export_head_mode_equals_extract_then_head(tmp_path: Path) -> None:
    from dahash.codes.export import Encoder, derive_export
    from dahash.nn.extract import extract_features
    from dahash.train.head import encode

    head = _head(FC7)
    d = _run_dir(tmp_path, head.state_dict(), "head")
    wfile = tmp_path / "proj" / "data" / "weights" / "vgg16" / VGG16_FILENAME
    wfile.parent.mkdir(parents=True)
    torch.save(synthetic_state(), wfile)
    paths = _images(tmp_path / "imgs", [(280, 250), (250, 280)])
    export = derive_export(d)
    assert export["weights"]["sha256"] == hashlib.sha256(wfile.read_bytes()).hexdigest()
    got = Encoder(export).encode(paths).u
    feats = extract_features(paths, build_backbone("vgg16", weights=wfile), progress=False)
    np.testing.assert_allclose(got, encode(head, torch.from_numpy(feats)), rtol=0, atol=1e-5)


def test_export_finetune_mode_needs_no_pretrained_file(tmp_path: Path) -> None:
    from dahash.codes.export import Encoder, derive_export, load_export, save_export
    from dahash.train.finetune import encode_images
    from dahash.nn.recipes import input_recipe

    trunk = vgg16_trunk_from_state(synthetic_state(4, classifier=False)).eval()
    head = _head(POOL5)
    recipe = input_recipe("vgg16")
    norm = {"mean": list(recipe.mean), "std": list(recipe.std), "eval_crop": recipe.eval_crop,
            "interpolation": recipe.interpolation, "size": recipe.size}
    d = _run_dir(tmp_path, {"trunk": trunk.state_dict(), "head": head.state_dict(), "normalisation": norm},
                 "finetune")
    out = save_export(derive_export(d), tmp_path / "m.pt")  # no data/weights/vgg16 anywhere
    paths = _images(tmp_path / "imgs", [(240, 230), (230, 240), (224, 224)])
    got = Encoder(load_export(out)).encode(paths, batch_size=2).u
    want = encode_images(trunk, head, paths, recipe.eval_transform(draft=True))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# download: pooch + sha256, manual placement (a local HTTP server stands in for download.pytorch.org)
# ---------------------------------------------------------------------------------------------
def test_registered_file_is_pytorchs_with_its_full_sha256() -> None:
    from dahash.data.datasets import get_weights

    remote = get_weights("vgg16")
    assert remote.url == VGG16_URL == "https://download.pytorch.org/models/vgg16-397923af.pth"
    assert remote.filename == VGG16_FILENAME
    prefix = re.fullmatch(r"vgg16-([0-9a-f]{8})\.pth", remote.filename).group(1)  # torchvision's check_hash
    assert remote.hash_alg == "sha256" and len(remote.hash_hex) == 64 and remote.hash_hex.startswith(prefix)


@pytest.fixture
def served(http_server, tmp_path: Path, monkeypatch) -> dict:
    """The registry entry pointed at the local server, serving a synthetic file under the real name, with
    that file's sha256 in place of the real one."""
    from dahash.data import datasets

    path = tmp_path / "src.pth"
    torch.save(synthetic_state(5), path)
    body = path.read_bytes()
    url = http_server.add(VGG16_FILENAME, body)
    remote = dataclasses.replace(datasets.WEIGHTS["vgg16"], url=url,
                                 known_hash="sha256:" + hashlib.sha256(body).hexdigest(), size=len(body))
    monkeypatch.setitem(datasets.WEIGHTS, "vgg16", remote)
    manual = tmp_path / "downloads"
    manual.mkdir()
    return {"server": http_server, "body": body, "dest": tmp_path / "data" / "weights" / "vgg16",
            "manual": manual}


def test_download_checks_the_sha256_and_loads(served) -> None:
    from dahash.data.download import fetch_weights

    got = fetch_weights("vgg16", served["dest"], manual_dir=served["manual"], progress=False)
    assert got == served["dest"] / VGG16_FILENAME and got.read_bytes() == served["body"]
    assert sorted(p.name for p in served["dest"].iterdir()) == [VGG16_FILENAME]  # no partial download left
    torch.testing.assert_close(load_vgg16(got).classifier[3].weight, synthetic_state(5)["classifier.3.weight"])
    # cached: a second call does not download again
    fetch_weights("vgg16", served["dest"], manual_dir=served["manual"], progress=False)
    assert served["server"].hits["/" + VGG16_FILENAME] == 1


def test_corrupted_download_fails_and_writes_nothing(served) -> None:
    from dahash.data.download import DownloadError, fetch_weights

    bad = bytearray(served["body"])
    bad[len(bad) // 2] ^= 0xFF  # one flipped byte
    served["server"].add(VGG16_FILENAME, bytes(bad))
    with pytest.raises(DownloadError) as ei:
        fetch_weights("vgg16", served["dest"], manual_dir=served["manual"], progress=False)
    msg = str(ei.value)
    assert "failed its sha256 checksum" in msg and VGG16_FILENAME in msg
    assert str(served["manual"] / VGG16_FILENAME) in msg  # what to do: where to put the file by hand
    assert not served["dest"].exists() or list(served["dest"].iterdir()) == []


def test_manual_placement_is_checked(served, closed_port_url, monkeypatch) -> None:
    from dahash.data import datasets
    from dahash.data.download import ManualCopyError, fetch_weights

    monkeypatch.setitem(datasets.WEIGHTS, "vgg16", dataclasses.replace(datasets.WEIGHTS["vgg16"],
                                                                       url=closed_port_url))
    placed = served["manual"] / VGG16_FILENAME
    placed.write_bytes(served["body"][:-10])  # an incomplete copy
    with pytest.raises(ManualCopyError, match=re.escape(str(placed)) + ".*sha256"):
        fetch_weights("vgg16", served["dest"], manual_dir=served["manual"], progress=False)
    assert placed.read_bytes() == served["body"][:-10]  # the user's file is never touched
    placed.write_bytes(served["body"])
    got = fetch_weights("vgg16", served["dest"], manual_dir=served["manual"], progress=False)
    assert got.read_bytes() == served["body"] and served["server"].hits["/" + VGG16_FILENAME] == 0


def test_weights_stage_offline_uses_the_checked_manual_copy(served, tmp_path: Path, monkeypatch, capsys) -> None:
    """`python -m stages.weights` with backbone.name = vgg16 and DAHASH_OFFLINE=1: the copy placed by hand
    is checked and lands at data/weights/vgg16/; a wrong copy stops the stage with the file named and
    nothing written."""
    import stages.weights as sw

    monkeypatch.setenv("DAHASH_OFFLINE", "1")
    root = tmp_path / "proj"
    monkeypatch.setattr(stages.paths, "ROOT", root)
    monkeypatch.setattr(sw, "load_params", lambda: {"backbone": {"name": "vgg16"},
                                                    "data": {"manual_dir": str(served["manual"])}})
    placed = served["manual"] / VGG16_FILENAME
    placed.write_bytes(served["body"][:100])
    with pytest.raises(SystemExit):
        sw.main([])
    err = capsys.readouterr().err
    assert str(placed) in err and "sha256" in err and "Replace it" in err
    assert not (root / "data" / "weights" / "vgg16").exists()
    placed.write_bytes(served["body"])
    sw.main([])
    out = root / "data" / "weights" / "vgg16" / VGG16_FILENAME
    assert out.read_bytes() == served["body"] and served["server"].hits["/" + VGG16_FILENAME] == 0
    assert sw.weights_file("vgg16") == out
