"""Image decoding shared by preprocessing and feature extraction.

Every image enters the pipeline through :func:`load_rgb`, so grayscale, palette, CMYK and
alpha images are all converted to 3-channel RGB in one place.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image


def load_rgb(path: str | Path) -> Image.Image:
    """Decode ``path`` fully and return it as an RGB image.

    Grayscale ("L", "I;16"), palette ("P"), CMYK and RGBA images are converted with PIL's
    ``Image.convert("RGB")`` (alpha is dropped, CMYK uses PIL's naive inverse transform).

    Raises:
        OSError / PIL.UnidentifiedImageError: the file cannot be decoded; the caller decides
        whether to exclude it (preprocessing lists it with the reason).
    """
    with Image.open(path) as img:
        img.load()
        return img.convert("RGB") if img.mode != "RGB" else img.copy()
