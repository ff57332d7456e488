"""Input recipes (dahash.nn.recipes) against the authors' preprocessing, and exact moment merging."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dahash.nn.augment import channel_moments, merge_moments, moments_from_dict, moments_to_dict
from dahash.nn.recipes import input_recipe, moments_geometry


def _const(rgb: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> Image.Image:
    return Image.new("RGB", size, rgb)


def _photo(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A smooth colour image (gradients and a low-frequency wave) that differs with ``seed``."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [127 + 100 * np.sin(xx / (5 + seed + c) + yy / (7 + c)) for c in range(3)]
    return Image.fromarray(np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8))


def test_vggf_input_is_pixel_minus_training_rgb_mean_without_std() -> None:
    """cnn_office.m: averageImage = rgbMean is subtracted, nothing divided (VGG-F's filters expect 0..255)."""
    train_images = [_const((10, 100, 200)), _const((10, 100, 200), (30, 40))]
    moments = channel_moments(train_images, 224, interpolation="bicubic")
    assert moments.mean.tolist() == pytest.approx([10.0, 100.0, 200.0])
    recipe = input_recipe("vggf", moments)
    assert recipe.std == (1.0, 1.0, 1.0) and recipe.eval_crop == 1.0 and recipe.interpolation == "bicubic"
    pixel = np.array([50.0, 120.0, 7.0], np.float32)
    expected = torch.from_numpy((pixel - moments.mean).astype(np.float32))[:, None, None].expand(3, 224, 224)
    assert torch.allclose(recipe.eval_transform()(_const((50, 120, 7))), expected, atol=1e-4)
    # training: a random crop/flip of a constant image is the same constant (brightness is 0: the training
    # images have zero colour covariance)
    train_tf = recipe.train_transform(seed=3)
    for s in range(3):
        assert torch.allclose(train_tf(_const((50, 120, 7)), np.random.default_rng(s)), expected, atol=1e-4)


def test_vggf_eval_crop_is_the_full_central_square_bicubic() -> None:
    """getImageBatch: cropSize 1 (the whole central square), Interpolation bicubic, resized to 224."""
    img = _photo(1, (90, 60))
    moments = channel_moments([img], 224, interpolation="bicubic")
    out = input_recipe("vggf", moments).eval_transform()(img).numpy().transpose(1, 2, 0)
    ref = np.asarray(img.crop((15, 0, 75, 60)).resize((224, 224), Image.Resampling.BICUBIC), np.float32)
    core = (slice(12, -12), slice(12, -12))  # away from the border, where the filter support differs
    assert np.abs(out + moments.mean - ref)[core].max() < 1.5
    # the old 224/256 crop (or a bilinear resize) would differ
    inner = np.asarray(img.crop((19, 4, 71, 56)).resize((224, 224), Image.Resampling.BICUBIC), np.float32)
    assert np.abs(out + moments.mean - inner)[core].mean() > 5


def test_vggf_training_jitter_is_the_authors() -> None:
    moments = channel_moments([_photo(2), _photo(3)], 224, interpolation="bicubic")
    recipe = input_recipe("vggf", moments)
    assert recipe.train_scale == (1.0, 1.0) and recipe.train_aspect == pytest.approx((2 / 3, 1.5)) and recipe.flip
    # brightness = 0.1 x colour deviation, the square root of the training images' pixel covariance
    b = np.asarray(recipe.brightness)
    assert np.allclose(b @ b.T, 0.01 * moments.cov, atol=1e-6)


def test_efficientnet_keeps_the_normalisation_its_weights_were_trained_with() -> None:
    moments = channel_moments([_const((10, 100, 200))], 224)
    recipe = input_recipe("efficientnet_lite0", moments)
    x = recipe.eval_transform()(_const((255, 127, 0)))
    assert torch.allclose(x[:, 0, 0], torch.tensor([1.0, 0.0, -127 / 128]), atol=1e-6)
    x = recipe.train_transform()(_const((255, 127, 0)), np.random.default_rng(0))
    assert torch.allclose(x[:, 5, 5], torch.tensor([1.0, 0.0, -127 / 128]), atol=1e-6)
    assert recipe.eval_crop == 0.875


def test_digits_subtract_the_mean_and_never_jitter() -> None:
    """cnn_digit_da.m: averageImage = rgbMean; jitterLocation = jitterFlip = false; no aspect/brightness."""
    rng = np.random.default_rng(0)
    digits = [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L") for _ in range(3)]
    moments = channel_moments(digits, 28, channels=1)
    recipe = input_recipe("smallcnn", moments)
    train_tf, eval_tf = recipe.train_transform(), recipe.eval_transform()
    for img in digits:
        expected = torch.from_numpy(np.asarray(img, np.float32) - moments.mean[0])[None]
        assert torch.allclose(eval_tf(img), expected, atol=1e-4)
        for s in range(3):  # the same tensor whatever the random draws: no jitter at all
            assert torch.allclose(train_tf(img, np.random.default_rng(s)), expected, atol=1e-4)


def test_recipes_refuse_what_they_cannot_do() -> None:
    with pytest.raises(ValueError, match="moments"):
        input_recipe("vggf", None)
    with pytest.raises(ValueError, match="no image input"):
        moments_geometry("surf800")
    with pytest.raises(ValueError, match="channel"):
        input_recipe("smallcnn", channel_moments([_const((1, 2, 3))], 8))


def test_merged_domain_moments_equal_the_moments_of_the_union() -> None:
    a = [_photo(s, (50 + 7 * s, 40)) for s in range(3)]
    b = [_photo(10 + s, (30, 45 + s)) for s in range(4)]
    merged = merge_moments([channel_moments(a, 32), channel_moments(b, 32)])
    union = channel_moments(a + b, 32)
    assert np.allclose(merged.mean, union.mean, atol=1e-4) and np.allclose(merged.cov, union.cov, rtol=1e-6)
    assert merged.count == union.count and merged.images == 7
    back = moments_from_dict(moments_to_dict(merged))
    assert np.allclose(back.cov, merged.cov) and np.allclose(back.mean, merged.mean)
    threaded = channel_moments(a + b, 32, num_threads=3)
    assert np.allclose(threaded.cov, union.cov, rtol=1e-12) and np.allclose(threaded.mean, union.mean)


def test_draft_decoding_keeps_the_resolution_the_crop_needs(tmp_path) -> None:
    """A large JPEG decoded at a DCT scale: never below the crop's needs, and close to the full decode."""
    from dahash.nn.augment import load_image

    path = tmp_path / "big.jpg"
    _photo(4, (1600, 1200)).save(path, quality=95)
    full = load_image(path)
    drafted = load_image(path, min_side=300)
    assert full.size == (1600, 1200) and drafted.size == (400, 300)  # 1/4 scale: the smallest >= 300
    assert load_image(path, min_side=2000).size == (1600, 1200)     # never upscaled, never below the need
    moments = channel_moments([_photo(4)], 224, interpolation="bicubic")
    recipe = input_recipe("vggf", moments)
    a = recipe.eval_transform()(path)
    b = recipe.eval_transform(draft=True)(path)
    assert (a - b).abs().mean() < 2.0  # grey levels, on the 0..255 scale
    rng = lambda: np.random.default_rng(7)  # noqa: E731
    t_full, t_draft = recipe.train_transform()(path, rng()), recipe.train_transform(draft=True)(path, rng())
    assert (t_full - t_draft).abs().mean() < 2.0
    png = tmp_path / "big.png"  # only JPEGs have a draft mode
    _photo(4, (800, 600)).save(png)
    assert load_image(png, min_side=100).size == (800, 600)
