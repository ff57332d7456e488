"""Training augmentation / evaluation preprocessing (dahash.nn.augment)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from dahash.nn.augment import (
    EvalTransform,
    TrainTransform,
    brightness_from_covariance,
    center_box,
    channel_moments,
    channel_stats,
    sample_crop_box,
)


def gradient_image(w: int = 24, h: int = 24) -> Image.Image:
    """RGB image, red rising left -> right, green rising top -> bottom: no mirror symmetry."""
    x = np.zeros((h, w, 3), dtype=np.uint8)
    x[:, :, 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    x[:, :, 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    x[:, :, 2] = 77
    return Image.fromarray(x, "RGB")


@pytest.mark.parametrize("size", [(200, 100), (100, 200), (64, 64), (31, 500)])
def test_crop_aspect_ratio_and_containment_over_many_draws(size):
    w, h = size
    rng = np.random.default_rng(1)
    ratios = []
    for _ in range(2000):
        x0, y0, x1, y1 = sample_crop_box(w, h, rng, aspect=(2 / 3, 3 / 2), scale=(0.5, 1.0))
        assert 0.0 <= x0 < x1 <= w and 0.0 <= y0 < y1 <= h
        assert all(float(v).is_integer() for v in (x0, y0, x1, y1))  # whole pixels, as vl_imreadjpeg
        ratios.append((x1 - x0) / (y1 - y0))
        # the aspect is within the range up to rounding each side to a whole pixel
        bw, bh = x1 - x0, y1 - y0
        assert (bw - 0.5) / (bh + 0.5) <= 3 / 2 + 1e-9 and (bw + 0.5) / (bh - 0.5) >= 2 / 3 - 1e-9
    ratios = np.array(ratios)
    # the whole range is used, not just a point
    assert ratios.min() < 0.7 and ratios.max() > 1.45


def test_crop_aspect_is_log_uniform_as_the_authors_reader() -> None:
    """vl_imreadjpeg.cu: A = exp(z (log lo - log hi) + log hi). On a large square image with s = 1 the box is
    (min(1, A) n, min(1, 1/A) n), so A = w / h up to rounding; log-uniform on [2/3, 3/2] puts half the draws
    below 1 (uniform would put (1 - 2/3) / (3/2 - 2/3) = 0.4 there) and log A is uniform."""
    rng = np.random.default_rng(7)
    n = 2000
    logs = []
    for _ in range(4000):
        x0, y0, x1, y1 = sample_crop_box(n, n, rng, aspect=(2 / 3, 3 / 2), scale=(1.0, 1.0))
        logs.append(np.log((x1 - x0) / (y1 - y0)))
    logs = np.array(logs)
    assert abs(np.mean(logs < 0) - 0.5) < 0.03
    # quartiles of a uniform log A on [log 2/3, log 3/2]: -0.2027, 0, 0.2027 (+- rounding and sampling)
    assert np.quantile(logs, [0.25, 0.5, 0.75]) == pytest.approx([-np.log(1.5) / 2, 0.0, np.log(1.5) / 2], abs=0.02)


def test_crop_size_is_area_uniform_and_rounded_as_the_authors_reader() -> None:
    """s = sqrt(z (lo^2 - hi^2) + hi^2): the crop AREA fraction s^2 is uniform on [lo^2, hi^2]."""
    rng = np.random.default_rng(3)
    areas = []
    for _ in range(4000):
        x0, y0, x1, y1 = sample_crop_box(1000, 1000, rng, aspect=(1.0, 1.0), scale=(0.5, 1.0))
        assert x1 - x0 == y1 - y0
        areas.append(((x1 - x0) / 1000) ** 2)
    assert np.mean(areas) == pytest.approx((0.25 + 1.0) / 2, abs=0.01)  # a uniform side would give 0.583
    # one hand case: 300 x 120, A = 1, s = 0.5 -> round(0.5 * 120) = 60 pixels
    x0, y0, x1, y1 = sample_crop_box(300, 120, np.random.default_rng(0), aspect=(1.0, 1.0), scale=(0.5, 0.5))
    assert (x1 - x0, y1 - y0) == (60.0, 60.0)


def test_crop_scale_is_fraction_of_largest_box_of_that_aspect():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x0, y0, x1, y1 = sample_crop_box(300, 120, rng, aspect=(1.0, 1.0), scale=(0.5, 0.5))
        assert x1 - x0 == pytest.approx(60.0) and y1 - y0 == pytest.approx(60.0)
        x0, y0, x1, y1 = sample_crop_box(300, 120, rng, aspect=(1.0, 1.0), scale=(1.0, 1.0))
        assert (x1 - x0, y1 - y0) == pytest.approx((120.0, 120.0)) and y0 == pytest.approx(0.0)


def test_center_box_and_eval_transform_crop():
    assert center_box(200, 100, 0.5) == (75.0, 25.0, 125.0, 75.0)
    img = gradient_image(40, 20)
    t = EvalTransform(10, mean=0.0, std=1.0, crop_fraction=1.0)(img)
    assert t.shape == (3, 10, 10) and t.dtype == torch.float32
    # the centred 20x20 square of the red ramp: from ~ 10/39*255 to ~ 29/39*255
    assert 50 < float(t[0, :, 0].mean()) < 90 and 170 < float(t[0, :, -1].mean()) < 210


def test_flip_really_flips_and_can_be_disabled():
    img = gradient_image()
    kw = dict(mean=(10.0, 20.0, 30.0), std=(2.0, 3.0, 4.0), aspect=(1.0, 1.0), scale=(1.0, 1.0), brightness=0.0)
    ref = EvalTransform(24, mean=kw["mean"], std=kw["std"], crop_fraction=1.0)(img)
    mirrored = torch.flip(ref, dims=[2])
    assert not torch.equal(ref, mirrored)
    on, off = TrainTransform(24, flip=True, **kw), TrainTransform(24, flip=False, **kw)
    seen = {"plain": 0, "flipped": 0}
    for seed in range(40):
        y = on(img, np.random.default_rng(seed))
        if torch.equal(y, ref):
            seen["plain"] += 1
        else:
            assert torch.equal(y, mirrored)
            seen["flipped"] += 1
        assert torch.equal(off(img, np.random.default_rng(seed)), ref)
    assert seen["plain"] > 5 and seen["flipped"] > 5


def test_seeded_determinism_and_rng_dependence(tmp_path):
    img = gradient_image(50, 37)
    path = tmp_path / "g.png"
    img.save(path)
    t = TrainTransform(16, mean=127.0, std=64.0, scale=(0.6, 1.0), brightness=8.0)
    a = t(img, np.random.default_rng(123))
    b = t(path, np.random.default_rng(123))  # a path decodes to the same pixels (PNG is lossless)
    assert torch.equal(a, b)
    assert not torch.equal(a, t(img, np.random.default_rng(124)))
    # fallback generator: two fresh transforms with the same seed give the same sequence
    t1, t2 = pickle.loads(pickle.dumps(t)), pickle.loads(pickle.dumps(t))
    assert all(torch.equal(t1(img), t2(img)) for _ in range(3))


def test_brightness_shift_is_one_colour_offset_per_image():
    img = Image.new("RGB", (12, 12), (100, 100, 100))
    t = TrainTransform(8, mean=0.0, std=1.0, brightness=10.0, flip=False)
    shifts = []
    for seed in range(300):
        y = t(img, np.random.default_rng(seed))
        per_channel = y.reshape(3, -1)
        assert torch.allclose(per_channel, per_channel[:, :1].expand_as(per_channel), atol=1e-4)
        shifts.append(per_channel[:, 0].numpy() - 100.0)
    shifts = np.array(shifts)
    assert np.all(np.abs(shifts.mean(axis=0)) < 2.5)
    assert np.all(np.abs(shifts.std(axis=0) - 10.0) < 2.0)


def test_grayscale_transform_gives_one_channel():
    img = Image.fromarray(np.arange(28 * 28, dtype=np.uint8).reshape(28, 28) % 251, "L")
    y = TrainTransform(28, mean=33.0, std=70.0, channels=1, flip=False, aspect=(1, 1), scale=(1, 1))(
        img, np.random.default_rng(0))
    assert y.shape == (1, 28, 28)
    expect = (np.asarray(img, dtype=np.float32) - 33.0) / 70.0
    np.testing.assert_allclose(y[0].numpy(), expect, atol=1e-5)  # identity crop: pixels unchanged


def test_channel_stats_of_constant_images(tmp_path):
    a = Image.new("RGB", (10, 7), (10, 20, 30))
    b = tmp_path / "b.png"
    Image.new("RGB", (5, 9), (50, 60, 70)).save(b)
    mean, std = channel_stats(iter([a, b]), 8)  # a generator: streamed once
    np.testing.assert_array_equal(mean, np.array([30, 40, 50], dtype=np.float32))
    np.testing.assert_allclose(std, [20.0, 20.0, 20.0], rtol=1e-6)
    mean1, std1 = channel_stats([a], 4)
    np.testing.assert_array_equal(mean1, [10, 20, 30])
    np.testing.assert_array_equal(std1, [0.0, 0.0, 0.0])
    m = channel_moments([Image.new("L", (6, 6), 200)], 6, channels=1)
    assert m.mean.shape == (1,) and float(m.mean[0]) == 200.0 and float(m.std[0]) == 0.0 and m.count == 36


def test_channel_moments_match_direct_computation():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(5)]
    m = channel_moments((Image.fromarray(x) for x in arrays), 16)
    allpix = np.concatenate([x.reshape(-1, 3) for x in arrays]).astype(np.float64)
    np.testing.assert_allclose(m.mean, allpix.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(m.cov, np.cov(allpix.T, bias=True), rtol=1e-9)
    np.testing.assert_allclose(m.std, allpix.std(axis=0), rtol=1e-6)
    b = brightness_from_covariance(m.cov, 0.1)
    np.testing.assert_allclose(b @ b, 0.01 * m.cov, rtol=1e-8, atol=1e-8)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="std"):
        EvalTransform(8, mean=0.0, std=0.0)
    with pytest.raises(ValueError, match="channels"):
        TrainTransform(8, channels=2)
    with pytest.raises(ValueError, match="aspect"):
        TrainTransform(8, aspect=(1.5, 0.5))
    with pytest.raises(ValueError, match="at least one"):
        channel_stats([], 8)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(OSError, match="broken.jpg"):
        EvalTransform(8)(bad)


def test_full_size_crops_never_leave_the_image() -> None:
    """scale = 1 (the authors' cropSize): the largest box of the drawn aspect fits exactly, rounding included."""
    from dahash.nn.augment import sample_crop_box

    rng = np.random.default_rng(0)
    for width, height in ((3000, 2000), (1152, 864), (333, 501), (28, 28)):
        for _ in range(500):
            x0, y0, x1, y1 = sample_crop_box(width, height, rng, aspect=(2 / 3, 1.5), scale=(1.0, 1.0))
            assert 0.0 <= x0 <= x1 <= width and 0.0 <= y0 <= y1 <= height
            assert max(x1 - x0 - width, y1 - y0 - height) <= 0 and min(x1 - x0, y1 - y0) > 0
