"""Image -> tensor preprocessing for the backbones (PIL + numpy + torch, no torchvision).

Every backbone input goes through one recipe:

1. resize with bilinear interpolation so that the *shorter* side is ``resize`` pixels (aspect ratio
   kept), or, with ``keep_aspect=False``, to ``resize x resize`` (aspect ratio not kept);
2. crop the central ``image_size x image_size`` window;
3. ``x = (pixel - mean) / std`` on the 0..255 RGB scale, returned as a float32 tensor (3, H, W).

What the original tools do, and what we chose:

* MatConvNet's ``cnn_imagenet_get_batch`` (used for evaluation of the ImageNet models, and by DAH's
  data layer) resizes so that the image covers ``imageSize + border`` (``keepAspect``: the shorter side
  becomes ``imageSize + border``, e.g. 224 + 32 = 256), with ``imresize`` and the file's
  ``interpolation`` (bilinear for VGG-F), takes the centre crop at test time and subtracts
  ``averageImage`` (a per-pixel image or a per-channel mean). We do the same; MATLAB's ``imresize`` and
  PIL's ``Image.resize(BILINEAR)`` both anti-alias when shrinking, but their kernels are not bit-identical,
  so pixel values can differ by a grey level or so.
* TensorFlow's EfficientNet-Lite evaluation crops the centre ``224/(224+32)`` of the shorter side and
  resizes it to 224 with bicubic interpolation; up to the kernel this equals "shorter side to 256, centre
  crop 224", which we use, with bilinear interpolation, for every backbone.
* Crop offsets are ``floor((W - image_size) / 2)`` (MatConvNet's rule; torchvision rounds instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def resize_shorter_side(img: Image.Image, size: int, *, keep_aspect: bool = True) -> Image.Image:
    """Bilinear resize so that ``min(W, H) == size`` (or to ``size x size`` when ``keep_aspect=False``).

    The longer side becomes ``round(size * long / short)``, never below ``size``.
    """
    if size <= 0:
        raise ValueError(f"resize must be a positive number of pixels, got {size}")
    w, h = img.size
    if not keep_aspect:
        new = (size, size)
    elif w <= h:
        new = (size, max(size, round(h * size / w)))
    else:
        new = (max(size, round(w * size / h)), size)
    if new == (w, h):
        return img
    return img.resize(new, Image.Resampling.BILINEAR)


def center_crop(img: Image.Image, size: int) -> Image.Image:
    """The central ``size x size`` window, offsets ``floor((W - size)/2)``, ``floor((H - size)/2)``.

    Raises:
        ValueError: the image is smaller than ``size`` on either side.
    """
    w, h = img.size
    if w < size or h < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from a {w}x{h} image; resize first")
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def resize_mean_image(mean: np.ndarray, image_size: int) -> np.ndarray:
    """Bring a mean to shape (3,) or (image_size, image_size, 3), float32.

    A per-pixel mean image (H, W, 3) of another size is resized bilinearly (anti-aliased) to the crop size,
    as MatConvNet's ``imresize(averageImage, imageSize)`` would; (3,), (1, 3) and (1, 1, 3) are
    per-channel means.
    """
    m = np.asarray(mean, dtype=np.float32)
    if m.size == 3:
        return m.reshape(3)
    if m.ndim != 3 or m.shape[2] != 3:
        raise ValueError(f"mean must have shape (3,) or (H, W, 3), got {m.shape}")
    if m.shape[:2] == (image_size, image_size):
        return m
    t = torch.from_numpy(np.ascontiguousarray(m.transpose(2, 0, 1)))[None]
    t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False,
                      antialias=True)
    return t[0].numpy().transpose(1, 2, 0).copy()


@dataclass
class ImageTransform:
    """Callable PIL image -> float32 tensor (3, image_size, image_size); picklable for DataLoader workers.

    ``y[c, i, j] = (crop(resize(img))[i, j, c] - mean[(i, j,) c]) / std[c]`` with pixels on 0..255.
    Build it with :func:`make_transform`.
    """

    image_size: int
    mean: np.ndarray  # (3,) or (image_size, image_size, 3), float32, 0..255 scale
    std: np.ndarray  # (3,) float32
    resize: int
    keep_aspect: bool = True
    crop: Literal["center"] = field(default="center")

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if img.mode != "RGB":
            img = img.convert("RGB")
        img = center_crop(resize_shorter_side(img, self.resize, keep_aspect=self.keep_aspect),
                          self.image_size)
        x = np.asarray(img, dtype=np.float32)  # (H, W, 3), 0..255
        x = (x - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def make_transform(
    image_size: int,
    mean: np.ndarray | float,
    std: float | np.ndarray = 1.0,
    resize: int | None = None,
    crop: Literal["center"] = "center",
    *,
    keep_aspect: bool = True,
) -> ImageTransform:
    """Build the resize -> centre-crop -> normalise transform (see the module docstring).

    Args:
        image_size: side of the square crop fed to the network (224 for both backbones).
        mean: per-channel mean (3,) or per-pixel mean image (H, W, 3) on the 0..255 scale; a mean image
            of another size is resized to ``image_size`` once, here. A scalar is used for all channels.
        std: scalar or per-channel (3,) divisor on the 0..255 scale (1 for VGG-F, 128 for EfficientNet-Lite).
        resize: target of the shorter side before cropping; ``None`` means ``image_size`` (crop only the
            longer side). Must be ``>= image_size``.
        crop: only ``"center"`` (evaluation / feature extraction).
        keep_aspect: ``False`` resizes to ``resize x resize`` regardless of the aspect ratio
            (MatConvNet's ``keepAspect = false``).

    Returns:
        A picklable callable PIL image -> float32 tensor of shape (3, image_size, image_size).
    """
    if crop != "center":
        raise ValueError(f"crop must be 'center' (the only mode for extraction), got {crop!r}")
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    resize = image_size if resize is None else int(resize)
    if resize < image_size:
        raise ValueError(f"resize ({resize}) must be >= image_size ({image_size})")
    mean_arr = np.asarray(mean, dtype=np.float32)
    if mean_arr.ndim == 0:
        mean_arr = np.full(3, float(mean_arr), dtype=np.float32)
    std_arr = np.broadcast_to(np.asarray(std, dtype=np.float32), (3,)).copy()
    if np.any(std_arr <= 0):
        raise ValueError(f"std must be positive, got {std}")
    return ImageTransform(image_size=int(image_size), mean=resize_mean_image(mean_arr, image_size),
                          std=std_arr, resize=resize, keep_aspect=keep_aspect, crop=crop)
