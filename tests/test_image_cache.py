"""The decode-once image cache (dahash.data.image_cache) and the batch augmentation on the device that reads it
(dahash.nn.device_augment), against hand cases and the PIL reference path (dahash.nn.augment.TrainTransform)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from dahash.data.image_cache import (
    CachedImages,
    ImageCache,
    build_image_cache,
    cached_size,
)
from dahash.nn.augment import EvalTransform, TrainTransform, sample_crop_box
from dahash.nn.device_augment import CachedCrops, collate_crops, crops_to_batch, draw_eval, draw_train
from dahash.nn.recipes import cache_settings, cache_short_side, exif_orientation

ROOT = Path(__file__).resolve().parents[1]


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth colour image with some texture (what a resize must not alias)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    x = np.stack([xx * 255 / max(1, w - 1), yy * 255 / max(1, h - 1), 128 + 60 * np.sin(xx / 7.0 + yy / 11.0)], -1)
    x = x + rng.normal(0, 8, x.shape)
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    d = tmp_path_factory.mktemp("imgs")
    paths = []
    for i, (w, h) in enumerate([(900, 600), (300, 500), (200, 150), (1200, 700)]):
        p = d / f"im{i}.jpg" if i != 2 else d / f"im{i}.png"
        photo(w, h, i).save(p, quality=95)
        paths.append(p)
    return d, paths


# ------------------------------------------------------------------------------------------- short side S
def test_cache_side_is_the_smallest_at_which_no_vggf_crop_is_upsampled() -> None:
    """VGG-F: s = 1, A in [2/3, 3/2], eval crop 1: S = 224 / (2/3) = 336; EfficientNet-Lite0: 224 / (0.875 * 2/3) = 384.
    At S every crop of the authors' draw has both sides >= 224; at S - 1 the 3/2 crop of a square has 223."""
    assert cache_short_side(224, 1.0, (2 / 3, 3 / 2), 1.0) == 336
    assert cache_short_side(224, 0.875, (2 / 3, 3 / 2), 0.875) == 384
    assert cache_short_side(28, 1.0, (1.0, 1.0), 1.0) == 28
    assert cache_settings("vggf", "office_home") == (336, 3, False)
    assert cache_settings("efficientnet_lite0") == (384, 3, True)
    rng = np.random.default_rng(0)
    for w, h in [(336, 336), (504, 336), (336, 700), (1000, 336)]:
        for _ in range(300):
            x0, y0, x1, y1 = sample_crop_box(w, h, rng, aspect=(2 / 3, 3 / 2), scale=(1.0, 1.0))
            assert min(x1 - x0, y1 - y0) >= 224
    smallest = min(min(b[2] - b[0], b[3] - b[1]) for b in
                   (sample_crop_box(335, 335, rng, aspect=(2 / 3, 3 / 2), scale=(1.0, 1.0)) for _ in range(300)))
    assert smallest == 223


def test_cached_size_keeps_small_images_and_sets_the_shorter_side() -> None:
    assert cached_size(600, 900, 336) == (336, 504)
    assert cached_size(2686, 4384, 336) == (336, 548)  # Office-Home's largest: 4384 x 2686 -> round(548.4)
    assert cached_size(700, 300, 336) == (700, 300)  # shorter side 300 <= S: stored as decoded, never upsampled
    assert cached_size(400, 400, 336) == (336, 336)


# ------------------------------------------------------------------------------------------- build / read
def test_build_and_read_back_the_pixels(images, tmp_path: Path) -> None:
    _, paths = images
    names = [p.name for p in paths]
    build_image_cache(paths, names, tmp_path / "c", short_side=336, num_threads=2)
    cache = ImageCache(tmp_path / "c")
    assert len(cache) == 4 and cache.names == names and cache.short_side == 336
    assert cache.shapes.tolist() == [[336, 504], [500, 300], [150, 200], [336, 576]]
    assert cache.original.tolist() == [[600, 900], [500, 300], [150, 200], [700, 1200]]
    # the small PNG is stored exactly; a large JPEG as its Lanczos reduction (no draft: shorter side < 2 S)
    assert np.array_equal(cache[2], np.asarray(Image.open(paths[2]).convert("RGB")))
    ref = np.asarray(Image.open(paths[0]).convert("RGB").resize((504, 336), Image.Resampling.LANCZOS))
    assert np.array_equal(cache[0], ref)
    index = json.loads((tmp_path / "c" / "index.json").read_text())
    assert index["bytes"] == (tmp_path / "c" / "pixels.u8").stat().st_size == int(
        sum(h * w * 3 for h, w in index["shapes"]))
    # a reader's memory: the index plus a memory map, whatever the number of images
    assert isinstance(cache._pixels().base, np.memmap) and not cache._pixels().flags.owndata
    view = CachedImages.of(cache, [names[3], names[1]])
    assert len(view) == 2 and view[0][1] == 3 and view.ids()[1].endswith(names[1])
    with pytest.raises(ValueError, match="not in the cache"):
        cache.rows(["nope.jpg"])


def test_incomplete_or_truncated_cache_is_refused_naming_the_fix(images, tmp_path: Path) -> None:
    _, paths = images
    build_image_cache(paths[:2], ["a", "b"], tmp_path / "c", short_side=336)
    with open(tmp_path / "c" / "pixels.u8", "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(ValueError, match="dvc repro image_cache"):
        ImageCache(tmp_path / "c")
    (tmp_path / "d").mkdir()
    with pytest.raises(ValueError, match="not a complete image cache"):
        ImageCache(tmp_path / "d")
    with pytest.raises(OSError, match="bad.jpg"):
        (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
        build_image_cache([tmp_path / "bad.jpg"], ["x"], tmp_path / "e", short_side=336)


def test_exif_orientation_policy(tmp_path: Path) -> None:
    """A JPEG stored 300 x 200 with orientation 6 (rotate 90): the paper recipe (VGG-F, as the authors' reader)
    caches it as stored, the user's own images and other recipes upright."""
    img = photo(300, 200)
    exif = Image.Exif()
    exif[0x0112] = 6
    p = tmp_path / "sideways.jpg"
    img.save(p, exif=exif.tobytes(), quality=95)
    assert exif_orientation("vggf", "office_home") is False
    assert exif_orientation("vggf", "custom") is True and exif_orientation("efficientnet_lite0", "office31") is True
    build_image_cache([p], ["s"], tmp_path / "stored", short_side=336, exif=False)
    build_image_cache([p], ["s"], tmp_path / "upright", short_side=336, exif=True)
    assert ImageCache(tmp_path / "stored")[0].shape == (200, 300, 3)
    assert ImageCache(tmp_path / "upright")[0].shape == (300, 200, 3)
    assert ImageCache(tmp_path / "upright").original.tolist() == [[300, 200]]


# ------------------------------------------------------------------------------------------- device path
VGGF_LIKE = dict(mean=np.array([120.0, 110.0, 100.0]), std=1.0, aspect=(2 / 3, 3 / 2), scale=(1.0, 1.0),
                 brightness=np.diag([5.0, 4.0, 3.0]), interpolation="bicubic")


def test_device_batch_equals_the_pil_reference_on_the_same_draw(images, tmp_path: Path) -> None:
    """Images stored at full size (S above their sides): the device path's crop/resize/flip/brightness/mean of
    slot (e, b, j) against PIL's resize of the same box (TrainTransform's own kernel), within 1 grey level
    inside (PIL also reads pixels just outside the box; the device resizes the cut-out crop)."""
    _, paths = images
    build_image_cache(paths, [p.name for p in paths], tmp_path / "c", short_side=2000)
    cache = ImageCache(tmp_path / "c")
    t = TrainTransform(64, **VGGF_LIKE)
    ds = CachedCrops([CachedImages.of(cache)], t)
    keys = [(0, i, (5, 1, 2, i)) for i in range(4)]
    x = crops_to_batch(collate_crops([ds[k] for k in keys]), t, "cpu")
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32
    for i, key in enumerate(keys):
        pil = Image.fromarray(np.asarray(cache[i]))
        box, flip, shift = draw_train(pil.width, pil.height, t, np.random.default_rng(list(key[2])))
        ref = np.asarray(pil.crop(box).resize((64, 64), Image.Resampling.BICUBIC), np.float32)
        ref = ref[:, ::-1] if flip else ref
        ref = ref + shift - VGGF_LIKE["mean"]
        got = x[i].permute(1, 2, 0).numpy()
        assert np.abs(got - ref).max() <= 1.0 + 1e-4, i
        # TrainTransform.raw draws the same box, flip and shift from the same generator
        u8, shift_raw = t.raw(pil, np.random.default_rng(list(key[2])))
        assert np.array_equal(shift_raw.numpy(), shift)


def test_flip_brightness_and_eval_box(images, tmp_path: Path) -> None:
    _, paths = images
    build_image_cache(paths, [p.name for p in paths], tmp_path / "c", short_side=336)
    cache = ImageCache(tmp_path / "c")
    t = TrainTransform(32, **VGGF_LIKE)
    items = CachedImages.of(cache)
    ds = CachedCrops([items], t)
    crop, flip, shift = ds[(0, 0, (1, 2, 3, 4))]
    plain = crops_to_batch(collate_crops([(crop, False, np.zeros(3, np.float32))]), t, "cpu")
    both = crops_to_batch(collate_crops([(crop, True, shift)]), t, "cpu")
    assert not np.allclose(shift, 0) and not torch.equal(plain[0], plain[0].flip(-1))
    torch.testing.assert_close(both[0], plain[0].flip(-1) + torch.from_numpy(shift)[:, None, None], rtol=0, atol=1e-4)
    # eval: the centred square of side round(crop_fraction * min(W, H)), MatConvNet's cropCenter offsets
    assert draw_eval(504, 336, EvalTransform(224, crop_fraction=1.0)) == (84, 0, 420, 336)
    assert draw_eval(300, 500, EvalTransform(224, crop_fraction=0.875)) == (18, 118, 281, 381)  # side round(262.5) = 263
    e = EvalTransform(32, mean=VGGF_LIKE["mean"], crop_fraction=1.0, interpolation="bicubic")
    a = crops_to_batch(collate_crops([CachedCrops([items], e)[(0, 1, (0,))]]), e, "cpu")
    b = crops_to_batch(collate_crops([CachedCrops([items], e)[(0, 1, (9,))]]), e, "cpu")
    assert torch.equal(a, b)  # no randomness in evaluation


def test_channels_must_match_the_recipe(images, tmp_path: Path) -> None:
    _, paths = images
    build_image_cache(paths[:1], ["a"], tmp_path / "c", short_side=64, channels=1)
    with pytest.raises(ValueError, match="re-run the image_cache stage"):
        CachedCrops([CachedImages.of(ImageCache(tmp_path / "c"))], TrainTransform(32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run by benchmarks/gpu_check.sh)")
def test_cuda_batch_matches_cpu_within_one_grey_level(images, tmp_path: Path) -> None:
    _, paths = images
    build_image_cache(paths, [p.name for p in paths], tmp_path / "c", short_side=336)
    t = TrainTransform(224, **VGGF_LIKE)
    ds = CachedCrops([CachedImages.of(ImageCache(tmp_path / "c"))], t)
    batch = collate_crops([ds[(0, i, (0, 0, 0, i))] for i in range(4)])
    cpu, gpu = crops_to_batch(batch, t, "cpu"), crops_to_batch(batch, t, "cuda").cpu()
    assert (cpu - gpu).abs().max() <= 1.0 + 1e-4


# ------------------------------------------------------------------------------------------- the DAG
def test_the_stage_is_in_the_dag_with_what_rebuilds_it() -> None:
    """Rebuilt when the images (raw folder, manifest) or S change; training depends on it."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    cache = stages["image_cache"]["do"]
    assert {"data/raw/${data.dataset}", "data/manifests/${data.dataset}.parquet"} <= set(cache["deps"])
    assert "image_cache.short_side" in cache["params"] and "backbone.name" in cache["params"]
    assert cache["outs"] == ["data/image_cache/${data.dataset}/${backbone.name}/${item}"]
    assert "data/image_cache/${data.dataset}/${backbone.name}" in stages["train"]["deps"]


def test_fine_tuning_without_a_cache_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """image_cache.short_side: 0 (the head-mode presets) with a fine-tuned method: one line naming the fix."""
    import copy

    from stages.common import PARAMS_FILE, StageError, check_cross_keys, load_params
    from stages.preset import apply_preset

    target = tmp_path / "params.yaml"
    target.write_text(PARAMS_FILE.read_text())
    apply_preset("quickstart", [], target)
    params = load_params(target)
    assert params["image_cache"]["short_side"] == 0 and params["train"]["mode"] == "head"
    check_cross_keys(params)  # head mode reads features: no cache needed
    bad = copy.deepcopy(params)
    bad["methods"]["dah_ft"] = {"mode": "finetune"}
    with pytest.raises(StageError, match="image_cache.short_side: auto"):
        check_cross_keys(bad)
    apply_preset("paper", [], target)  # the paper preset turns the cache back on
    assert load_params(target)["image_cache"]["short_side"] == "auto"
