"""Image preprocessing and batched feature extraction (real EfficientNet-Lite0 weights, tiny JPEGs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dahash.backbones import build_backbone
from dahash.extract import extract_features
from dahash.images import load_rgb
from dahash.preprocess_image import center_crop, make_transform, resize_shorter_side

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Six small JPEG/PNG files: RGB of several sizes, grayscale (L), CMYK and an RGBA PNG."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []

    def noise(w: int, h: int, c: int) -> np.ndarray:
        base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, c), dtype=np.uint8)  # blocky, so JPEG keeps it
        return np.kron(base, np.ones((4, 4, 1), dtype=np.uint8))[:h, :w]

    for i, (w, h) in enumerate([(64, 48), (40, 70), (33, 33)]):
        Image.fromarray(noise(w, h, 3)).save(root / f"rgb{i}.jpg", quality=95)
        paths.append(root / f"rgb{i}.jpg")
    Image.fromarray(noise(50, 40, 1)[..., 0], mode="L").save(root / "gray.jpg")
    Image.fromarray(noise(45, 60, 4), mode="CMYK").save(root / "cmyk.jpg")
    Image.fromarray(noise(30, 30, 4), mode="RGBA").save(root / "alpha.png")
    paths += [root / "gray.jpg", root / "cmyk.jpg", root / "alpha.png"]
    return paths


# ---- preprocessing ----

def test_resize_shorter_side_and_center_crop():
    img = Image.new("RGB", (100, 50))
    assert resize_shorter_side(img, 32).size == (64, 32)
    assert resize_shorter_side(Image.new("RGB", (50, 101)), 32).size == (32, 65)
    assert resize_shorter_side(img, 32, keep_aspect=False).size == (32, 32)
    arr = np.arange(10 * 7, dtype=np.uint8).reshape(7, 10)  # H=7, W=10
    crop = np.asarray(center_crop(Image.fromarray(arr), 4))
    np.testing.assert_array_equal(crop, arr[1:5, 3:7])  # floor((7-4)/2) = 1, floor((10-4)/2) = 3
    with pytest.raises(ValueError, match="resize first"):
        center_crop(img, 64)


def test_make_transform_normalises_on_the_0_255_scale():
    img = Image.new("RGB", (90, 60), (255, 127, 0))
    x = make_transform(32, np.array([127.0, 127.0, 127.0]), 128.0, resize=40)(img)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    np.testing.assert_allclose(x[:, 10, 10].numpy(), [1.0, 0.0, -127 / 128], atol=1e-6)
    # a per-pixel mean image of another size is resized to the crop
    mean_img = np.zeros((64, 64, 3), np.float32)
    mean_img[..., 1] = 100.0
    y = make_transform(32, mean_img, resize=None)(img)
    np.testing.assert_allclose(y[:, 5, 5].numpy(), [255, 27, 0], atol=1e-3)


def test_make_transform_rejects_bad_arguments():
    with pytest.raises(ValueError, match="resize"):
        make_transform(224, np.zeros(3), resize=200)
    with pytest.raises(ValueError, match="center"):
        make_transform(224, np.zeros(3), crop="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mean"):
        make_transform(224, np.zeros((5, 5)))


# ---- extraction ----

def test_shape_order_and_batching(images, backbone):
    feats1 = extract_features(images, backbone, batch_size=1, progress=False)
    feats3 = extract_features(images, backbone, batch_size=3, progress=False)
    assert feats1.shape == (len(images), 1280) and feats1.dtype == np.float32
    assert np.isfinite(feats1).all()
    np.testing.assert_allclose(feats1, feats3, rtol=1e-5, atol=1e-5)
    # row i is image i: compare with a direct, one-image forward pass
    with torch.inference_mode():
        direct = backbone.module.features(backbone.transform(load_rgb(images[4]))[None]).numpy()[0]
    np.testing.assert_allclose(feats3[4], direct, rtol=1e-5, atol=1e-5)
    # permuting the input permutes the rows
    order = [5, 0, 3, 1, 4, 2]
    permuted = extract_features([images[i] for i in order], backbone, batch_size=4, progress=False)
    np.testing.assert_allclose(permuted, feats3[order], rtol=1e-5, atol=1e-5)
    # distinct images give distinct features
    assert np.linalg.norm(feats3[0] - feats3[1]) > 1e-2


def test_grayscale_and_cmyk_become_rgb(images, backbone):
    gray, cmyk = images[3], images[4]
    with Image.open(gray) as g, Image.open(cmyk) as c:
        assert (g.mode, c.mode) == ("L", "CMYK")
    x = backbone.transform(load_rgb(gray))
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x[0], x[1])  # grey: R = G = B
    torch.testing.assert_close(x[1], x[2])
    feats = extract_features([gray, cmyk], backbone, progress=False)
    assert feats.shape == (2, 1280) and np.isfinite(feats).all()


def test_restores_training_mode_and_handles_empty_input(images, backbone):
    backbone.module.train()
    try:
        extract_features(images[:2], backbone, batch_size=2, progress=False)
        assert backbone.module.training
    finally:
        backbone.module.eval()
    assert extract_features([], backbone, progress=False).shape == (0, 1280)


def test_missing_images_are_named(images, backbone, tmp_path):
    missing = tmp_path / "gone.jpg"
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        extract_features([images[0], missing], backbone, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        extract_features(images, backbone, batch_size=0, progress=False)


def test_dataloader_workers_give_the_same_rows(images, backbone):
    a = extract_features(images, backbone, batch_size=2, num_workers=0, progress=False)
    b = extract_features(images, backbone, batch_size=2, num_workers=2, progress=False)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")
def test_real_images_including_grayscale(backbone):
    root = DATA / "office-caltech-10" / "images"
    mugs = sorted((root / "dslr" / "mug").glob("*.jpg"))[:4]
    mice = sorted((root / "webcam" / "mouse").glob("*.jpg"))[:4]
    gray = root / "caltech10" / "laptop" / "127_0058.jpg"  # one of the 4 grayscale JPEGs
    with Image.open(gray) as g:
        assert g.mode == "L"
    feats = extract_features(mugs + mice + [gray], backbone, batch_size=3, progress=False,
                             desc="office-caltech")
    assert feats.shape == (9, 1280) and np.isfinite(feats).all()
    # same-class images are closer to each other than to the other class, on average
    f = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sim = f @ f.T
    within = (sim[:4, :4].sum() - 4 + sim[4:, 4:].sum() - 4) / 24
    between = sim[:4, 4:].mean()
    assert within > between
