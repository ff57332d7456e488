"""Image preprocessing and batched feature extraction (real EfficientNet-Lite0 weights, tiny JPEGs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dahash.nn.backbones import build_backbone
from dahash.nn.extract import extract_features
from dahash.data.images import load_rgb
from dahash.nn.preprocess_image import center_crop, make_transform, resize_shorter_side
import stages.paths

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
    """Workers decode, the batches keep their order: rows are bit-identical to the in-process loader's."""
    a = extract_features(images, backbone, batch_size=2, num_workers=0, progress=False)
    b = extract_features(images, backbone, batch_size=2, num_workers=2, progress=False)
    np.testing.assert_array_equal(a, b)
    order = [5, 0, 3, 1, 4, 2]
    c = extract_features([images[i] for i in order], backbone, batch_size=2, num_workers=2, progress=False)
    np.testing.assert_array_equal(c, a[order])


def _previous_path(paths, backbone) -> np.ndarray:
    """The extraction as it was before the uint8 pipeline: the float32 transform per image, one forward each,
    the module in its default (contiguous) memory format."""
    with torch.inference_mode():
        return np.concatenate([backbone.module.eval().features(backbone.transform(load_rgb(p))[None]).numpy()
                               for p in paths])


def test_matches_the_previous_float32_path(images, backbone):
    feats = extract_features(images, backbone, batch_size=4, progress=False)
    np.testing.assert_allclose(feats, _previous_path(images, backbone), rtol=1e-5, atol=1e-5)
    # the module is left in its own memory format (contiguous weights)
    conv = next(p for p in backbone.module.parameters() if p.ndim == 4)
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("kind", ["imagetransform", "imagetransform_mean_image", "evaltransform_bicubic"])
def test_uint8_batches_normalised_on_device_are_bit_identical(images, kind):
    """The loader ships uint8 crops; ``normalize`` on the batch gives exactly ``transform(load_rgb(path))``."""
    from dahash.nn.augment import EvalTransform
    from dahash.nn.extract import ImageFileDataset
    from torch.utils.data import default_collate

    if kind == "imagetransform":
        t = make_transform(24, 127.0, 128.0, resize=28)
    elif kind == "imagetransform_mean_image":
        t = make_transform(24, np.random.default_rng(1).uniform(0, 255, (24, 24, 3)), 1.0, resize=24)
    else:
        t = EvalTransform(24, np.array([120.5, 115.25, 100.0]), np.array([1.0, 2.0, 3.0]), crop_fraction=1.0,
                          interpolation="bicubic")
    ds = ImageFileDataset(images, t)
    u8, shifts = default_collate([ds[i] for i in range(len(ds))])
    assert u8.dtype == torch.uint8 and u8.shape == (len(images), 3, 24, 24)
    expected = torch.stack([t(load_rgb(p)) for p in images])
    assert torch.equal(ds.normalize(u8, shifts), expected)


def test_streamed_npy_equals_in_memory_and_is_atomic(images, backbone, tmp_path):
    mem = extract_features(images, backbone, batch_size=4, progress=False)
    out = tmp_path / "features.npy"
    got = extract_features(images, backbone, batch_size=4, progress=False, out=out)
    assert isinstance(got, np.memmap) and not got.flags.writeable
    np.testing.assert_array_equal(np.load(out), mem)
    np.save(tmp_path / "saved.npy", mem)  # the same bytes as np.save (same header): same DVC hashes as before
    assert out.read_bytes() == (tmp_path / "saved.npy").read_bytes()
    (tmp_path / "saved.npy").unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npy"]  # no temporary left
    empty = extract_features([], backbone, progress=False, out=tmp_path / "empty.npy")
    assert np.load(tmp_path / "empty.npy").shape == (0, 1280) and empty.shape == (0, 1280)


def test_failed_streamed_extraction_keeps_the_old_file(images, backbone, tmp_path):
    out = tmp_path / "features.npy"
    np.save(out, np.ones((2, 2), np.float32))
    calls = {"n": 0}
    original = backbone.module.features

    def failing(x):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom in batch 2")
        return original(x)

    backbone.module.features = failing
    try:
        with pytest.raises(RuntimeError, match="boom"):
            extract_features(images, backbone, batch_size=2, progress=False, out=out)
    finally:
        del backbone.module.features
    np.testing.assert_array_equal(np.load(out), np.ones((2, 2), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.npy"]


def test_draft_side_and_auto_workers(monkeypatch):
    from dahash.nn.augment import EvalTransform
    from dahash.nn.extract import auto_workers, draft_side

    eff = make_transform(224, 127.0, 128.0, resize=256)
    assert draft_side(eff, None) is None and draft_side(eff, 0) is None
    assert draft_side(eff, 2) == 512.0  # 2 x the shorter side it resizes to
    vggf_like = EvalTransform(224, 0.0, crop_fraction=1.0, interpolation="bicubic")
    assert draft_side(vggf_like, 1.5) == 336.0  # 1.5 x the full square's side
    assert draft_side(EvalTransform(224, 0.0, crop_fraction=0.875), 1) == 256.0
    assert draft_side(EvalTransform(224, 0.0, crop_fraction=0.875, draft=True), None) == 256.0
    assert draft_side(lambda img: img, 2) is None  # unknown transform: full decode
    with pytest.raises(ValueError, match="draft must be >= 1"):
        draft_side(eff, 0.5)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert auto_workers("auto", "cpu") == 0 and auto_workers("auto", "cuda:0") == 14
    assert auto_workers(3, "cpu") == 3
    with pytest.raises(ValueError, match="num_workers"):
        auto_workers(-1, "cpu")


def test_draft_decoding_of_a_large_jpeg(backbone, tmp_path):
    """A JPEG >= 2 x the needed side is decoded at a DCT scale (the features move a little); a small one
    is untouched (bit-identical rows)."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    big = Image.fromarray(base).resize((1600, 1200), Image.Resampling.BICUBIC)  # smooth: JPEG-friendly
    big.save(tmp_path / "big.jpg", quality=92)
    big.resize((400, 300), Image.Resampling.BICUBIC).save(tmp_path / "small.jpg", quality=92)
    paths = [tmp_path / "big.jpg", tmp_path / "small.jpg"]
    from dahash.nn.extract import ImageFileDataset, draft_side
    from dahash.data.images import load_image

    assert load_image(paths[0], "RGB", min_side=draft_side(backbone.transform, 2)).size == (800, 600)
    full = extract_features(paths, backbone, batch_size=2, progress=False)
    drafted = extract_features(paths, backbone, batch_size=2, draft=2, progress=False)
    np.testing.assert_array_equal(drafted[1], full[1])
    assert not np.array_equal(drafted[0], full[0])
    rel = np.linalg.norm(drafted[0] - full[0]) / np.linalg.norm(full[0])
    assert rel < 0.1  # the tolerance measured on real Office-Caltech images (benchmarks/README.md): <= ~8 %
    pix_full = ImageFileDataset(paths[:1], backbone.transform)[0][0].int()
    pix_draft = ImageFileDataset(paths[:1], backbone.transform, 512.0)[0][0].int()
    assert (pix_full - pix_draft).abs().float().mean() < 2.0  # grey levels, on average


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


def test_extract_stage_streams_features_into_its_output(images, backbone, tmp_path, monkeypatch):
    """stages.extract with efficientnet_lite0, ``num_workers: auto`` and ``draft: 0``: features.npy (written
    batch by batch) equals the in-memory extraction; meta.json records the shape and the draft setting."""
    import json

    import pandas as pd

    import stages.extract as stage

    raw = tmp_path / "data" / "raw" / "toy"
    raw.mkdir(parents=True)
    names = []
    for p in images:
        (raw / p.name).write_bytes(p.read_bytes())
        names.append(p.name)
    out = tmp_path / "features" / "dom"
    params = {"data": {"dataset": "toy", "domains": ["dom"]}, "backbone": {"name": "efficientnet_lite0"},
              "extract": {"batch_size": 4, "num_workers": "auto", "device": "cpu", "draft": 0}}
    monkeypatch.setattr(stages.paths, "ROOT", tmp_path)
    monkeypatch.setattr(stage, "load_params", lambda: params)
    monkeypatch.setattr(stage, "domain_rows", lambda dataset, domain: pd.DataFrame({"path": names}))
    monkeypatch.setattr(stage, "features_dir", lambda dataset, name, domain: out)
    monkeypatch.setattr(stage, "weights_file", lambda name: None)
    stage.main(["--domain", "dom"])
    feats = np.load(out / "features.npy")
    np.testing.assert_array_equal(feats, extract_features(images, backbone, batch_size=4, progress=False))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["shape"] == [len(images), 1280] and meta["paths"] == names and meta["draft"] is None
    assert sorted(p.name for p in out.parent.iterdir()) == ["dom"]  # no temporary left beside it
