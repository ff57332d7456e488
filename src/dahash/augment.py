"""Training augmentation and evaluation preprocessing for full fine-tuning (PIL + numpy + torch only).

The authors train with MatConvNet's image reader (``vl_imreadjpeg`` called with the options of
``cnn_imagenet_init``: ``jitterLocation``, ``jitterFlip``, ``jitterAspect = [2/3, 3/2]``,
``jitterBrightness = 0.1 * colorDeviation``; dah-reference.md: "random crop, flip, brightness, aspect
[2/3, 3/2]"). Its documented semantics, reproduced by :class:`TrainTransform` for an output of
``size x size`` pixels:

1. anisotropy ``A = W_crop / H_crop ~ U[a_lo, a_hi]`` (default ``[2/3, 3/2]``);
2. the largest crop of that aspect inside the ``W x H`` image, ``w* = min(W, A H)``, ``h* = w* / A``, is
   scaled by ``s ~ U[s_lo, s_hi]`` (``CropSize``, a fraction of the side): ``(w, h) = s (w*, h*)``, so
   ``w / h = A`` exactly (the box has real-valued corners; nothing is rounded);
3. its position is uniform over all placements inside the image (``x0 ~ U[0, W - w]``,
   ``y0 ~ U[0, H - h]``);
4. the box is resized to ``size x size`` with PIL's anti-aliased bilinear filter (MatConvNet's
   ``imresize``-equivalent bilinear; the kernels are not bit-identical);
5. with probability 1/2 the result is mirrored left-right (``flip=False`` for digits);
6. brightness: the colour shift ``B w``, ``w ~ N(0, I_C)``, is added to every pixel (0..255 scale);
   ``B`` is a scalar (``B = b I``) or a ``(C, C)`` matrix; MatConvNet uses ``B = 0.1 Sigma^(1/2)`` with
   ``Sigma`` the pixel covariance of the training images (:func:`brightness_from_covariance`);
7. ``y = (x + B w - mean) / std`` per channel, returned as float32 ``(C, size, size)``.

Default crop size: ``s = 224/256 = 0.875`` fixed (``cnn_imagenet_init``'s ``cropSize``, no scale
jitter); whether the DAH release overrides it is not known here, so ``scale`` is configurable.
:class:`EvalTransform` takes the centred square of side ``crop_fraction * min(W, H)`` (``0.875``:
"shorter side to 256, centre crop 224") and resizes it.

Normalisation statistics come from the TRAINING images (dah-reference.md), streamed by
:func:`channel_moments` / :func:`channel_stats`.

Randomness: every random draw of :class:`TrainTransform` comes from the ``numpy.random.Generator``
passed to the call (order: anisotropy, scale, x0, y0, flip, brightness), so a given generator state
gives a bit-identical tensor; :mod:`dahash.finetune` passes one generator per (epoch, batch, slot),
which makes training independent of the number of data-loading workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from dahash.images import load_image as decode_image
from dahash.images import to_8bit

__all__ = [
    "ImageInput",
    "ChannelMoments",
    "TrainTransform",
    "EvalTransform",
    "brightness_from_covariance",
    "center_box",
    "channel_moments",
    "channel_stats",
    "load_image",
    "sample_crop_box",
]

#: An image given as a file path or an already decoded PIL image.
ImageInput = Union[str, Path, Image.Image]

#: MatConvNet ``cnn_imagenet_init``'s ``jitterAspect``.
DEFAULT_ASPECT: tuple[float, float] = (2.0 / 3.0, 3.0 / 2.0)
#: ``cropSize = 224 / 256`` (no scale jitter).
DEFAULT_SCALE: tuple[float, float] = (0.875, 0.875)

Box = tuple[float, float, float, float]


def _mode(channels: int) -> str:
    if channels == 1:
        return "L"
    if channels == 3:
        return "RGB"
    raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels}")


def load_image(image: ImageInput, channels: int = 3) -> Image.Image:
    """A decoded PIL image in mode ``"L"`` (``channels=1``) or ``"RGB"`` (``channels=3``).

    A path is opened and fully decoded; a PIL image is converted when its mode differs (PIL's
    ``convert``: RGB -> L uses ITU-R 601-2 luma, L -> RGB repeats the channel).

    Raises:
        OSError: the file cannot be read or decoded (the message names it).
        TypeError: ``image`` is neither a path nor a PIL image.
    """
    mode = _mode(channels)
    if isinstance(image, Image.Image):
        image = to_8bit(image)  # 16-bit, alpha, ... decoded by dahash.images' rules
        return image if image.mode == mode else image.convert(mode)
    if not isinstance(image, (str, Path)):
        raise TypeError(f"an image must be a path or a PIL.Image.Image, got {type(image).__name__}")
    try:
        return decode_image(image, mode)  # upright (EXIF), every Pillow mode to 8-bit (dahash.images)
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot decode image {image}: {exc}; remove or replace the file") from exc


def _check_pair(name: str, pair: tuple[float, float], *, upper: float | None = None) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in pair)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a pair (lo, hi) of numbers, got {pair!r}") from exc
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0 or lo > hi or (upper is not None and hi > upper):
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must satisfy 0 < lo <= hi{bound}, got {pair!r}")
    return lo, hi


def sample_crop_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    *,
    aspect: tuple[float, float] = DEFAULT_ASPECT,
    scale: tuple[float, float] = DEFAULT_SCALE,
) -> Box:
    """A random crop box ``(x0, y0, x1, y1)`` (real-valued pixel coordinates) in a ``width x height`` image.

    ``A ~ U[aspect]``, ``w* = min(W, A H)``, ``h* = w* / A``, ``s ~ U[scale]``, ``(w, h) = s (w*, h*)``,
    ``x0 ~ U[0, W - w]``, ``y0 ~ U[0, H - h]``. Hence ``(x1 - x0) / (y1 - y0) = A`` lies in ``aspect``
    and the box lies inside the image. Draws 4 uniforms from ``rng`` (A, s, x0, y0, in that order).
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    a_lo, a_hi = _check_pair("aspect", aspect)
    s_lo, s_hi = _check_pair("scale", scale, upper=1.0)
    a = float(rng.uniform(a_lo, a_hi))
    s = float(rng.uniform(s_lo, s_hi))
    w_max = min(float(width), a * float(height))
    w, h = s * w_max, s * w_max / a
    x0 = float(rng.uniform(0.0, float(width) - w))
    y0 = float(rng.uniform(0.0, float(height) - h))
    return x0, y0, x0 + w, y0 + h


def center_box(width: int, height: int, crop_fraction: float = 1.0) -> Box:
    """The centred square of side ``crop_fraction * min(W, H)`` as ``(x0, y0, x1, y1)``."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    side = crop_fraction * min(width, height)
    x0, y0 = (width - side) / 2.0, (height - side) / 2.0
    return x0, y0, x0 + side, y0 + side


def _resize_box(img: Image.Image, box: Box, size: int) -> np.ndarray:
    """``img[box]`` resized to ``size x size`` (anti-aliased bilinear) as float32 ``(size, size, C)``."""
    out = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
    x = np.asarray(out, dtype=np.float32)
    return x[:, :, None] if x.ndim == 2 else x


def _norm_vectors(mean, std, channels: int) -> tuple[np.ndarray, np.ndarray]:
    m = np.broadcast_to(np.asarray(mean, dtype=np.float32), (channels,)).copy()
    s = np.broadcast_to(np.asarray(std, dtype=np.float32), (channels,)).copy()
    if not np.all(np.isfinite(m)) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(
            f"mean must be finite and std finite and > 0 per channel ({channels}); got mean {mean!r}, std {std!r} "
            f"(a constant training channel has std 0: pass std=1 for it)"
        )
    return m, s


def _to_tensor(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    y = (x - mean) / std  # (S, S, C)
    return torch.from_numpy(np.ascontiguousarray(y.transpose(2, 0, 1), dtype=np.float32))


@dataclass
class TrainTransform:
    """Random crop (aspect, scale, location), flip, brightness, resize, normalise (module docstring).

    ``transform(img, rng)`` -> float32 ``(channels, size, size)``; ``img`` a PIL image or a path.
    Picklable (DataLoader workers). Without ``rng`` a generator seeded with ``seed`` is created on
    the first call and reused (stateful; pass ``rng`` for reproducible, order-independent draws).

    Attributes:
        size: output side. mean, std: per-channel (or scalar) normalisation on the 0..255 scale.
        channels: 3 (RGB) or 1 (grayscale digits).
        aspect: ``(a_lo, a_hi)`` range of ``W_crop / H_crop``; ``(1, 1)`` for square crops.
        scale: ``(s_lo, s_hi)`` crop side as a fraction of the largest crop of that aspect, in (0, 1].
        flip: random horizontal mirroring (turn off for digits: mirrored digits are other glyphs).
        brightness: std ``b`` of an independent per-channel shift (``B = b I``) or a ``(C, C)``
            matrix ``B`` (0..255 scale); 0 disables it.
        seed: seed of the fallback generator.
    """

    size: int
    mean: np.ndarray | float = 0.0
    std: np.ndarray | float = 1.0
    channels: int = 3
    aspect: tuple[float, float] = DEFAULT_ASPECT
    scale: tuple[float, float] = DEFAULT_SCALE
    flip: bool = True
    brightness: float | np.ndarray = 0.0
    seed: int = 0

    takes_rng = True  # class attribute: dahash.finetune passes a generator per item

    def __post_init__(self) -> None:
        if int(self.size) < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        self.size = int(self.size)
        _mode(self.channels)
        self.mean, self.std = _norm_vectors(self.mean, self.std, self.channels)
        self.aspect = _check_pair("aspect", self.aspect)
        self.scale = _check_pair("scale", self.scale, upper=1.0)
        b = np.asarray(self.brightness, dtype=np.float64)
        if b.ndim == 0:
            b = float(b) * np.eye(self.channels)
        if b.shape != (self.channels, self.channels) or not np.all(np.isfinite(b)):
            raise ValueError(
                f"brightness must be a number or a ({self.channels}, {self.channels}) matrix, got shape {b.shape}"
            )
        self._b = b
        self._fallback: np.random.Generator | None = None

    def __call__(self, img: ImageInput, rng: np.random.Generator | None = None) -> torch.Tensor:
        if rng is None:
            if self._fallback is None:
                self._fallback = np.random.default_rng(self.seed)
            rng = self._fallback
        pil = load_image(img, self.channels)
        box = sample_crop_box(pil.width, pil.height, rng, aspect=self.aspect, scale=self.scale)
        x = _resize_box(pil, box, self.size)
        if bool(rng.random() < 0.5) and self.flip:
            x = x[:, ::-1, :]
        shift = self._b @ rng.standard_normal(self.channels)  # (C,)
        if np.any(shift):
            x = x + shift.astype(np.float32)
        return _to_tensor(x, self.mean, self.std)


@dataclass
class EvalTransform:
    """Centred square crop of side ``crop_fraction * min(W, H)``, resized to ``size``, normalised.

    ``transform(img[, rng])`` -> float32 ``(channels, size, size)`` (``rng`` is ignored; accepted so
    that both transforms share one call signature). ``crop_fraction=0.875`` equals "shorter side to
    ``size / 0.875``, centre crop ``size``"; use 1.0 for digits.
    """

    size: int
    mean: np.ndarray | float = 0.0
    std: np.ndarray | float = 1.0
    channels: int = 3
    crop_fraction: float = 0.875

    takes_rng = True

    def __post_init__(self) -> None:
        if int(self.size) < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")
        self.size = int(self.size)
        _mode(self.channels)
        self.mean, self.std = _norm_vectors(self.mean, self.std, self.channels)
        center_box(1, 1, self.crop_fraction)  # validates

    def __call__(self, img: ImageInput, rng: np.random.Generator | None = None) -> torch.Tensor:
        pil = load_image(img, self.channels)
        x = _resize_box(pil, center_box(pil.width, pil.height, self.crop_fraction), self.size)
        return _to_tensor(x, self.mean, self.std)


@dataclass
class ChannelMoments:
    """Pixel statistics of a set of images on the 0..255 scale.

    Attributes:
        mean: ``(C,)`` per-channel mean. std: ``(C,)`` population standard deviation (``sqrt(diag cov)``).
        cov: ``(C, C)`` population covariance of the pixel vectors. count: pixels per channel seen.
        images: number of images.
    """

    mean: np.ndarray
    std: np.ndarray
    cov: np.ndarray
    count: int
    images: int


def channel_moments(
    images: Iterable[ImageInput], size: int, *, channels: int = 3, crop_fraction: float = 1.0
) -> ChannelMoments:
    """Stream ``images`` once and return their per-channel pixel mean, std and covariance.

    Each image is decoded (:func:`load_image`), its centred square of side ``crop_fraction * min(W, H)``
    is resized to ``size x size`` (what the network sees without jitter), and its ``P = size^2``
    pixels ``x_p in R^C`` are merged into running moments with Chan et al.'s pairwise update (float64)::

        n = n_a + n_b,  d = mu_b - mu_a,  mu = mu_a + d n_b / n,
        M = M_a + M_b + d d^T n_a n_b / n,   cov = M / n   (population)

    so memory is O(C^2) whatever the number of images, and constant images give std exactly 0.

    Raises:
        ValueError: no images. OSError: an image cannot be decoded (named).
    """
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    _mode(channels)
    n, mu, m2, count = 0, np.zeros(channels), np.zeros((channels, channels)), 0
    for item in images:
        pil = load_image(item, channels)
        x = _resize_box(pil, center_box(pil.width, pil.height, crop_fraction), int(size))
        x = x.reshape(-1, channels).astype(np.float64)
        nb = x.shape[0]
        mu_b = x.mean(axis=0)
        d_b = x - mu_b
        m2_b = d_b.T @ d_b
        total = n + nb
        delta = mu_b - mu
        mu = mu + delta * (nb / total)
        m2 = m2 + m2_b + np.outer(delta, delta) * (n * nb / total)
        n = total
        count += 1
    if count == 0:
        raise ValueError("channel_moments needs at least one training image, got none")
    cov = m2 / n
    std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return ChannelMoments(mean=mu.astype(np.float32), std=std.astype(np.float32), cov=cov, count=n, images=count)


def channel_stats(
    images: Iterable[ImageInput], size: int, *, channels: int = 3, crop_fraction: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (C,), std (C,))`` float32 on the 0..255 scale, streamed over the TRAINING images
    (see :func:`channel_moments`). A constant channel has std 0; replace it by 1 before normalising."""
    m = channel_moments(images, size, channels=channels, crop_fraction=crop_fraction)
    return m.mean, m.std


def brightness_from_covariance(cov: np.ndarray, factor: float = 0.1) -> np.ndarray:
    """MatConvNet's ``jitterBrightness = factor * colorDeviation``: ``factor * Sigma^(1/2)``.

    ``Sigma^(1/2) = V diag(sqrt(max(lambda, 0))) V^T`` from the eigen-decomposition of the symmetric
    ``(C, C)`` covariance (:attr:`ChannelMoments.cov`).
    """
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"cov must be a square (C, C) matrix, got shape {c.shape}")
    lam, v = np.linalg.eigh((c + c.T) / 2.0)
    return float(factor) * (v * np.sqrt(np.clip(lam, 0.0, None))) @ v.T
