"""Image decoding shared by preprocessing, feature extraction and fine-tuning.

Every image enters the pipeline through :func:`load_image` (or :func:`load_rgb`), so every mode Pillow
can open is turned into 8-bit ``L`` or ``RGB`` pixels in one place, by these rules:

==================== ==================================================================================
mode(s)              decoded as
==================== ==================================================================================
RGB, L               as stored
1                    L: 0 -> 0, 1 -> 255
I;16, I;16B/L/N      L: ``round(v * 255 / 65535)`` (16-bit samples; ``convert`` would clip them to 255)
I                    L: the same 16-bit rule (Pillow's mode for 16-bit PGM); values outside 0..65535
                     have no defined 8-bit mapping: :class:`UnsupportedImage`
F                    :class:`UnsupportedImage` (32-bit float: no defined range)
LA, La, PA, RGBA,    alpha composited onto white: ``c' = (c * a + 255 * (255 - a)) / 255``
RGBa, P + trans.     (a transparent pixel's stored colour is arbitrary; dropping alpha would expose it)
P                    its palette colours
CMYK                 Pillow's conversion ``R = (255 - C)(255 - K) / 255`` (no ICC colour management)
YCbCr                JPEG (JFIF, BT.601 full range) to RGB
LAB                  CIE L*a*b* (D50; a*, b* signed bytes as TIFF stores them) to sRGB, as ImageCms does
HSV                  Pillow's HSV -> RGB
==================== ==================================================================================

EXIF orientation (tags 2-8) is applied first (:func:`PIL.ImageOps.exif_transpose`), so a camera JPEG
stored sideways is used upright; the decoded size is the upright size. ``exif=False`` keeps the stored pixel
order instead (the authors' MatConvNet reader ignores the tag; the recipe decides, :func:`dahash.nn.recipes.exif_orientation`).
"""

from __future__ import annotations

import math

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

__all__ = ["UnsupportedImage", "load_image", "load_rgb", "to_8bit"]

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_ALPHA = ("LA", "La", "PA", "RGBA", "RGBa")


class UnsupportedImage(ValueError):
    """A file Pillow decodes but whose pixels have no defined 8-bit meaning (message says what to do)."""


def _composite_on_white(img: Image.Image) -> Image.Image:
    """RGBA -> RGB with ``c' = (c a + 255 (255 - a)) / 255`` (Pillow's alpha_composite, rounded)."""
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")


def to_8bit(img: Image.Image) -> Image.Image:
    """``img`` (already loaded, any Pillow mode) as 8-bit ``L`` (single-channel sources) or ``RGB`` (see the
    module table). Orientation is NOT applied here (:func:`load_image` does it).

    Raises:
        UnsupportedImage: mode ``F``, or ``I`` with values outside 0..65535.
    """
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in _SIXTEEN_BIT or mode == "I":
        a = np.asarray(img)
        if a.dtype.kind not in "ui":
            a = np.asarray(img.convert("I"))
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise UnsupportedImage(f"{mode} image with values {int(a.min())}..{int(a.max())} outside 0..65535 "
                                   "(no defined 8-bit mapping); save it as an 8-bit or 16-bit PNG")
        return Image.fromarray(np.rint(a.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8), "L")
    if mode == "F":
        raise UnsupportedImage("32-bit float image (mode F): its pixel range is undefined; save it as an "
                               "8-bit or 16-bit PNG/JPEG")
    if mode in ("LA", "La"):
        return _composite_on_white(img.convert("LA").convert("RGBA")).convert("L")
    if mode in _ALPHA or (mode == "P" and "transparency" in img.info):
        return _composite_on_white(img)
    return img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, RGBX, ...


def load_image(path: str | Path, mode: str = "RGB", *, min_side: float | None = None,
               exif: bool = True) -> Image.Image:
    """Decode ``path`` fully, upright (EXIF orientation; ``exif=False``: as stored), as an 8-bit image in ``mode``.

    ``min_side`` (draft decoding): a JPEG whose shorter side exceeds ``min_side`` is decoded at the largest
    1/2, 1/4 or 1/8 DCT scale that keeps its shorter side ``>= min_side`` (Pillow's ``Image.draft``).

    Args:
        path: an image file.
        mode: ``"RGB"`` (3 channels; grey sources repeat their channel), ``"L"`` (ITU-R 601-2 luma of
            colour sources) or ``"native"`` (``L`` for single-channel sources, ``RGB`` otherwise).

    Raises:
        OSError / PIL.UnidentifiedImageError: the file cannot be decoded.
        UnsupportedImage: decodable, but no defined 8-bit pixels (mode F, ...).
        The caller decides whether to exclude the file (preprocessing lists it with the reason).
    """
    with Image.open(path) as img:
        if min_side is not None and img.format == "JPEG" and min(img.size) > min_side:
            r = float(min_side) / min(img.size)
            img.draft(img.mode if img.mode in ("RGB", "L", "CMYK") else None,
                      (math.ceil(img.size[0] * r), math.ceil(img.size[1] * r)))
        img.load()
        upright = ImageOps.exif_transpose(img) if exif else img
        out = to_8bit(upright)
        out = out if out is not img else img.copy()
    if mode == "native" or out.mode == mode:
        return out
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB', 'L' or 'native', got {mode!r}")
    return out.convert(mode)


def load_rgb(path: str | Path) -> Image.Image:
    """``load_image(path, "RGB")``: the decoded, upright image as 8-bit RGB (see the module table)."""
    return load_image(path, "RGB")
