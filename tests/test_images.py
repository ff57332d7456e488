"""dahash.data.images: every Pillow mode decodes to the right 8-bit pixels (or is refused with a reason), upright.

Issue 10 point 2: one test per mode (1, L, LA, P, PA, I, I;16, F, RGB, RGBA, CMYK, YCbCr, LAB, HSV) and EXIF
orientation. Expected pixels are computed by hand from the mode's definition (or, for LAB, by LittleCMS via
ImageCms, which does not share Pillow's conversion code). Modes no file format can store (PA, HSV) are built
in memory and go through :func:`dahash.data.images.to_8bit`, the same function the file path uses.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from dahash.data.images import UnsupportedImage, load_image, load_rgb, to_8bit


def _save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    assert Image.open(path).mode == img.mode, "the fixture did not store the mode under test"
    return path


def _rgb(path_or_img) -> np.ndarray:
    img = load_rgb(path_or_img) if isinstance(path_or_img, Path) else to_8bit(path_or_img).convert("RGB")
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def _gray3(v) -> np.ndarray:
    v = np.asarray(v, int)
    return np.stack([v, v, v], axis=-1)


def test_mode_1(tmp_path: Path) -> None:
    bits = np.array([[0, 1], [1, 0]], bool)
    f = _save(Image.fromarray(bits), tmp_path / "a.png")
    np.testing.assert_array_equal(_rgb(f), _gray3(bits * 255))


def test_mode_L(tmp_path: Path) -> None:
    a = np.array([[0, 17], [128, 255]], np.uint8)
    f = _save(Image.fromarray(a, "L"), tmp_path / "a.png")
    np.testing.assert_array_equal(_rgb(f), _gray3(a))
    assert load_image(f, "native").mode == "L"


def test_mode_LA_composites_onto_white(tmp_path: Path) -> None:
    la = np.array([[[10, 0], [10, 255]], [[10, 128], [200, 0]]], np.uint8)  # (L, alpha)
    f = _save(Image.fromarray(la, "LA"), tmp_path / "a.png")
    lum, alpha = la[..., 0].astype(int), la[..., 1].astype(int)
    expected = np.rint((lum * alpha + 255 * (255 - alpha)) / 255)
    np.testing.assert_allclose(_rgb(f), _gray3(expected), atol=1)
    assert _rgb(f)[0, 0, 0] == 255  # fully transparent: white, not the stored grey 10


def test_mode_P(tmp_path: Path) -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 255, 0, 0, 12, 34, 56] + [0] * (256 * 3 - 9))
    img.putdata([1, 2])
    f = _save(img, tmp_path / "a.png")
    np.testing.assert_array_equal(_rgb(f), [[[255, 0, 0], [12, 34, 56]]])


def test_mode_P_with_transparent_index(tmp_path: Path) -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.putdata([0, 1])
    f = _save(img, tmp_path / "a.png", transparency=0)
    np.testing.assert_array_equal(_rgb(f), [[[255, 255, 255], [255, 0, 0]]])


def test_mode_PA_composites_onto_white() -> None:
    img = Image.new("PA", (2, 1))
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.putdata([(1, 255), (1, 0)])
    np.testing.assert_array_equal(_rgb(img), [[[255, 0, 0], [255, 255, 255]]])


def test_mode_I_16bit_values_scale_to_8bit(tmp_path: Path) -> None:
    a = np.array([[0, 257 * 100], [65535, 32768]], np.int32)
    f = _save(Image.fromarray(a, "I"), tmp_path / "a.tif")
    np.testing.assert_array_equal(_rgb(f), _gray3(np.rint(a * 255 / 65535)))


def test_mode_I_out_of_16bit_range_is_refused(tmp_path: Path) -> None:
    f = _save(Image.fromarray(np.array([[0, 70000]], np.int32), "I"), tmp_path / "a.tif")
    with pytest.raises(UnsupportedImage, match="outside 0..65535"):
        load_rgb(f)


def test_mode_I16_is_not_white(tmp_path: Path) -> None:
    """A 16-bit grayscale PNG: Image.convert('RGB') clips every value > 255 to 255 (an all-white image)."""
    a = np.array([[0, 257 * 100, 65535], [1000, 30000, 50000]], np.uint16)
    f = _save(Image.fromarray(a), tmp_path / "a.png")
    assert Image.open(f).mode == "I;16"
    np.testing.assert_array_equal(_rgb(f), _gray3(np.rint(a.astype(float) * 255 / 65535)))


def test_mode_F_is_refused_with_a_reason(tmp_path: Path) -> None:
    f = _save(Image.fromarray(np.array([[0.0, 0.5]], np.float32), "F"), tmp_path / "a.tif")
    with pytest.raises(UnsupportedImage, match="mode F"):
        load_rgb(f)


def test_mode_RGB(tmp_path: Path) -> None:
    a = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    f = _save(Image.fromarray(a, "RGB"), tmp_path / "a.png")
    np.testing.assert_array_equal(_rgb(f), a)


def test_mode_RGBA_composites_onto_white(tmp_path: Path) -> None:
    a = np.array([[[200, 10, 30, 255], [200, 10, 30, 0], [0, 0, 0, 51]]], np.uint8)
    f = _save(Image.fromarray(a, "RGBA"), tmp_path / "a.png")
    alpha = a[..., 3:].astype(int)
    expected = np.rint((a[..., :3] * alpha + 255 * (255 - alpha)) / 255)
    np.testing.assert_allclose(_rgb(f), expected, atol=1)


def test_mode_CMYK(tmp_path: Path) -> None:
    a = np.array([[[0, 0, 0, 0], [0, 255, 255, 0], [0, 0, 0, 255], [100, 50, 0, 20]]], np.uint8)
    f = _save(Image.fromarray(a, "CMYK"), tmp_path / "a.tif")
    c, k = a[..., :3].astype(int), a[..., 3:].astype(int)
    expected = np.rint((255 - c) * (255 - k) / 255)  # R = 255 (1 - C)(1 - K): no ICC colour management
    np.testing.assert_allclose(_rgb(f), expected, atol=1)


def test_mode_YCbCr(tmp_path: Path) -> None:
    a = np.array([[[128, 128, 128], [76, 85, 255], [150, 44, 21], [29, 255, 107]]], np.uint8)
    f = _save(Image.fromarray(a, "YCbCr"), tmp_path / "a.tif")
    y, cb, cr = (a[..., i].astype(float) for i in range(3))
    expected = np.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                         y + 1.772 * (cb - 128)], axis=-1)  # JFIF (BT.601 full range)
    np.testing.assert_allclose(_rgb(f), np.clip(np.rint(expected), 0, 255), atol=2)


def test_mode_LAB(tmp_path: Path) -> None:
    # bytes as TIFF CIELab stores them: L* * 255/100, then a*, b* as signed int8 (80 -> 80, -28 -> 228)
    a = np.array([[[255, 0, 0], [0, 0, 0], [136, 80, 67], [200, 228, 160]]], np.uint8)
    f = _save(Image.fromarray(a, "LAB"), tmp_path / "a.tif")
    t = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    expected = np.asarray(ImageCms.applyTransform(Image.fromarray(a, "LAB"), t)).astype(int)
    np.testing.assert_allclose(_rgb(f), expected, atol=2)
    assert _rgb(f)[0, 0].min() >= 250 and _rgb(f)[0, 1].max() <= 5  # L*=100 white, L*=0 black
    assert _rgb(f)[0, 2, 0] > 240 and _rgb(f)[0, 2, 1:].max() < 20  # sRGB red


def test_mode_HSV() -> None:
    hsv = np.array([[[0, 255, 255], [85, 255, 255], [170, 255, 255], [30, 100, 200]]], np.uint8)
    expected = [[np.rint(np.array(colorsys.hsv_to_rgb(*(p / 255.0))) * 255) for p in hsv[0].astype(float)]]
    np.testing.assert_allclose(_rgb(Image.fromarray(hsv, "HSV")), expected, atol=2)


def _asymmetric(h: int = 40, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 60)], axis=-1).astype(np.uint8)


@pytest.mark.parametrize(("orientation", "display"), [
    (3, lambda a: np.rot90(a, 2)),
    (6, lambda a: np.rot90(a, -1)),  # stored sideways: rotate 90 degrees clockwise to display
    (8, lambda a: np.rot90(a, 1)),
    (2, lambda a: a[:, ::-1]),
])
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int, display) -> None:
    stored = _asymmetric()
    exif = Image.Exif()
    exif[0x0112] = orientation
    f = tmp_path / "a.jpg"
    Image.fromarray(stored).save(f, exif=exif, quality=95)
    raw = np.asarray(Image.open(f).convert("RGB")).astype(int)  # the stored pixels, as JPEG decoded them
    got = _rgb(f)
    assert got.shape == display(raw).shape
    np.testing.assert_array_equal(got, display(raw))


def test_manifest_reports_upright_size_and_excludes_float_images(tmp_path: Path) -> None:
    from dahash.data.datasets import DatasetSpec
    from dahash.data.manifest import build_manifest

    d = tmp_path / "dom" / "cls"
    d.mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(_asymmetric(40, 64)).save(d / "rot.jpg", exif=exif)
    Image.fromarray(np.array([[0, 65535]], np.uint16)).save(d / "g16.png")
    Image.fromarray(np.zeros((2, 2), np.float32), "F").save(d / "float.tif")
    spec = DatasetSpec(name="t", domains=("dom",), classes=("cls",), archive=None, domain_dirs={"dom": "dom"},
                       homepage="", citation="", tree_sha256=None)
    df = build_manifest(tmp_path, spec).set_index("path")
    assert (df.loc["dom/cls/rot.jpg", "width"], df.loc["dom/cls/rot.jpg", "height"]) == (40, 64)
    assert df.loc["dom/cls/g16.png", "status"] == "ok" and df.loc["dom/cls/g16.png", "mode"] == "I;16"
    assert df.loc["dom/cls/float.tif", "status"] == "excluded"
    assert "mode F" in df.loc["dom/cls/float.tif", "reason"]


def test_training_decoders_share_the_rules(tmp_path: Path) -> None:
    """augment.load_image (fine-tune augmentation) and finetune's loader decode a 16-bit PNG like load_rgb."""
    from dahash.nn.augment import load_image as augment_load
    from dahash.train.inputs import _open_native

    a = np.array([[0, 257 * 100, 65535]], np.uint16)
    f = tmp_path / "a.png"
    Image.fromarray(a).save(f)
    expected = np.rint(a.astype(float) * 255 / 65535)
    np.testing.assert_array_equal(np.asarray(augment_load(f, 1)), expected)
    np.testing.assert_array_equal(np.asarray(augment_load(Image.open(f), 3))[..., 0], expected)
    np.testing.assert_array_equal(np.asarray(_open_native(f).convert("L")), expected)
