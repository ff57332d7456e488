"""Training augmentation and evaluation preprocessing for full fine-tuning (PIL + numpy + torch only).

The authors train with MatConvNet's image reader (``vl_imreadjpeg`` called by their ``getImageBatch.m`` with the
options of ``cnn_office_init.m``: ``jitterLocation``, ``jitterFlip``, ``jitterAspect = [2/3, 3/2]``,
``jitterBrightness = 0.1 * colorDeviation``, ``cropSize = 1``, ``'Interpolation', 'bicubic'``, output 224 x 224).
Its semantics (``matlab/src/vl_imreadjpeg.cu`` of MatConvNet beta23 as shipped in hemanthdv/da-hash), reproduced
by :func:`sample_crop_box` for an output of ``size x size`` pixels from a ``W x H`` image:

1. anisotropy ``A = W_crop / H_crop`` LOG-uniform in ``[a_lo, a_hi]`` (default ``[2/3, 3/2]``): the reader's
   ``A = exp(z (log a_lo - log a_hi) + log a_hi)``, ``z ~ U[0, 1]``;
2. the largest crop of that aspect inside the image, ``w* = min(W, A H)``, ``h* = w* / A``, scaled by
   ``s = sqrt(z' (s_lo^2 - s_hi^2) + s_hi^2)`` (``CropSize = [s_lo, s_hi]``; the area is uniform), then rounded to
   whole pixels: ``w = min(round(s w*), W)``, ``h = min(round(s h*), H)``;
3. the integer offset uniform over every placement, ``x0 ~ U{0, ..., W - w}``, ``y0 ~ U{0, ..., H - h}``;
4. the box resized to ``size x size`` with the recipe's anti-aliased filter (bicubic for VGG-F; PIL here,
   MatConvNet's own kernels there: not bit-identical);
5. with probability 1/2 the result is mirrored left-right (``flip=False`` for digits);
6. brightness: the colour shift ``B w``, ``w ~ N(0, I_C)``, added to every pixel (0..255 scale); ``B`` is a scalar
   (``B = b I``) or a ``(C, C)`` matrix; MatConvNet uses ``B = 0.1 Sigma^(1/2)`` with ``Sigma`` the pixel
   covariance of the training images (:func:`brightness_from_covariance`). (The reader's loop computes
   ``shift_i = w_i sum_j B_ij``, which equals ``B w`` only for a diagonal ``B``; the project keeps ``B w``,
   docs/fidelity.md.)
7. ``y = (x + B w - mean) / std`` per channel, returned as float32 ``(C, size, size)``.

The crop size is therefore ``s = 1`` for the paper's VGG-F recipe (``cropSize = 224 / 224``; the ImageNet
default ``224 / 256 = 0.875`` is kept by the EfficientNet-Lite0 and VGG-16 recipes, :mod:`dahash.nn.recipes`).
:class:`EvalTransform` takes the centred square of side ``crop_fraction * min(W, H)`` and resizes it.

The same draws drive the fine-tuning input path on the cached images (:mod:`dahash.nn.device_augment`): the box
is drawn on the cached image's size, and cropping, resizing, flipping and the brightness shift run on whole
batches on the training device. :class:`TrainTransform` (decode a file, crop and resize with PIL) stays the
reference implementation (benchmarks/fidelity_cache.py compares the two).

Normalisation statistics come from the TRAINING images (dah-reference.md), streamed by
:func:`channel_moments` / :func:`channel_stats`.

Randomness: every random draw of :class:`TrainTransform` comes from the ``numpy.random.Generator``
passed to the call (order: anisotropy, scale, x0, y0, flip, brightness), so a given generator state
gives a bit-identical tensor; :mod:`dahash.train.finetune` passes one generator per (epoch, batch, slot),
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

from dahash.data.images import load_image as decode_image
from dahash.progress import progress_for
from dahash.data.images import to_8bit

__all__ = [
    "ImageInput",
    "ChannelMoments",
    "TrainTransform",
    "EvalTransform",
    "brightness_from_covariance",
    "center_box",
    "channel_moments",
    "channel_stats",
    "merge_moments",
    "normalize_batch",
    "moments_from_dict",
    "moments_to_dict",
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


def load_image(image: ImageInput, channels: int = 3, *, min_side: float | None = None,
               exif: bool = True) -> Image.Image:
    """A decoded PIL image in mode ``"L"`` (``channels=1``) or ``"RGB"`` (``channels=3``).

    A path is opened and fully decoded; a PIL image is converted when its mode differs (PIL's
    ``convert``: RGB -> L uses ITU-R 601-2 luma, L -> RGB repeats the channel).

    ``min_side`` (draft decoding): a JPEG whose shorter side exceeds ``min_side`` is decoded at the
    largest 1/2, 1/4 or 1/8 DCT scale that keeps its shorter side ``>= min_side`` (Pillow's
    ``Image.draft``): several times faster for large photos, and never below the resolution the crop
    needs; the pixels differ slightly from a full decode followed by the same resize. Other formats
    are decoded fully.

    Raises:
        OSError: the file cannot be read or decoded (the message names it).
        TypeError: ``image`` is neither a path nor a PIL image.
    """
    mode = _mode(channels)
    if isinstance(image, Image.Image):
        image = to_8bit(image)  # 16-bit, alpha, ... decoded by dahash.data.images' rules
        return image if image.mode == mode else image.convert(mode)
    if not isinstance(image, (str, Path)):
        raise TypeError(f"an image must be a path or a PIL.Image.Image, got {type(image).__name__}")
    try:
        return decode_image(image, mode, min_side=min_side, exif=exif)  # every mode to 8-bit (dahash.data.images)
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
    """A random crop box ``(x0, y0, x1, y1)`` of whole pixels in a ``width x height`` image, as MatConvNet's
    ``vl_imreadjpeg`` draws it (module docstring, steps 1-3).

    ``A = exp(z (log a_lo - log a_hi) + log a_hi)`` (log-uniform), ``w* = min(W, A H)``, ``h* = w* / A``,
    ``s = sqrt(z' (s_lo^2 - s_hi^2) + s_hi^2)``, ``w = clip(round(s w*), 1, W)``, ``h = clip(round(s h*), 1, H)``,
    ``x0 ~ U{0..W-w}``, ``y0 ~ U{0..H-h}``. Draws, in order: ``z``, ``z'`` (``rng.random()``), ``x0``, ``y0``
    (``rng.integers``). The box lies inside the image; ``(x1 - x0) / (y1 - y0)`` is ``A`` up to the rounding.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    a_lo, a_hi = _check_pair("aspect", aspect)
    s_lo, s_hi = _check_pair("scale", scale, upper=1.0)
    a = math.exp(float(rng.random()) * (math.log(a_lo) - math.log(a_hi)) + math.log(a_hi))
    s = math.sqrt(float(rng.random()) * (s_lo * s_lo - s_hi * s_hi) + s_hi * s_hi)
    w_max = min(float(width), a * float(height))
    w = min(max(1, math.floor(s * w_max + 0.5)), width)  # C's round(): half away from zero
    h = min(max(1, math.floor(s * w_max / a + 0.5)), height)
    x0 = int(rng.integers(0, width - w + 1))
    y0 = int(rng.integers(0, height - h + 1))
    return float(x0), float(y0), float(x0 + w), float(y0 + h)


def center_box(width: int, height: int, crop_fraction: float = 1.0) -> Box:
    """The centred square of side ``crop_fraction * min(W, H)`` as ``(x0, y0, x1, y1)``."""
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction}")
    side = crop_fraction * min(width, height)
    x0, y0 = (width - side) / 2.0, (height - side) / 2.0
    return x0, y0, x0 + side, y0 + side


#: PIL resampling filters by name (``interpolation`` of the transforms).
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def _check_interpolation(interpolation: str) -> str:
    if interpolation not in _RESAMPLE:
        raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {interpolation!r}")
    return interpolation


def _resize_u8(img: Image.Image, box: Box, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """``img[box]`` resized to ``size x size`` (PIL's anti-aliased ``interpolation`` filter) as uint8
    ``(size, size, C)`` (what PIL produces for "L"/"RGB" images)."""
    x = np.array(img.resize((size, size), _RESAMPLE[interpolation], box=box))  # a writable copy
    return x[:, :, None] if x.ndim == 2 else x


def _resize_box(img: Image.Image, box: Box, size: int, interpolation: str = "bilinear") -> np.ndarray:
    """:func:`_resize_u8` as float32 ``(size, size, C)``."""
    return _resize_u8(img, box, size, interpolation).astype(np.float32)


def normalize_batch(images: torch.Tensor, shifts: torch.Tensor, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """``(x + shift - mean) / std`` on the device of ``images``: uint8 ``(N, C, S, S)`` batches and float32
    ``(N, C)`` brightness shifts from :meth:`TrainTransform.raw` / :meth:`EvalTransform.raw` -> float32
    ``(N, C, S, S)``. Bit-identical to the transforms' own float path (the same float32 operations in
    the same order), so decoding workers ship 4x fewer bytes and the arithmetic runs where the batch goes."""
    m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    x = images.to(torch.float32) + shifts.to(device=images.device, dtype=torch.float32)[:, :, None, None]
    return (x - m) / s


def _norm_vectors(mean, std, channels: int) -> tuple[np.ndarray, np.ndarray]:
    m = np.broadcast_to(np.asarray(mean, dtype=np.float32), (channels,)).copy()
    s = np.broadcast_to(np.asarray(std, dtype=np.float32), (channels,)).copy()
    if not np.all(np.isfinite(m)) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(
            f"mean must be finite and std finite and > 0 per channel ({channels}); got mean {mean!r}, std {std!r} "
            f"(a constant training channel has std 0: pass std=1 for it)"
        )
    return m, s


def _check_common(size: int, channels: int, mean, std) -> tuple[int, np.ndarray, np.ndarray]:
    """The output side ``size >= 1``, the channel mode and the per-channel mean/std vectors of a transform."""
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    _mode(channels)
    return (int(size), *_norm_vectors(mean, std, channels))


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
        interpolation: ``"bilinear"`` or ``"bicubic"`` (the authors' ``vl_imreadjpeg`` reads bicubic).
        exif: apply EXIF orientation when decoding a file (False: the authors' reader, which ignores it).
        draft: decode JPEGs at the smallest DCT scale the crop still needs (:func:`load_image`'s
            ``min_side`` = ``size / (s_lo min(1, a_lo, 1/a_hi))``, the shortest side a crop box can have
            relative to the image's shorter side), so no crop is ever upsampled more than without it.
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
    interpolation: str = "bilinear"
    draft: bool = False
    exif: bool = True

    takes_rng = True  # class attribute: dahash.train.finetune passes a generator per item

    def __post_init__(self) -> None:
        self.size, self.mean, self.std = _check_common(self.size, self.channels, self.mean, self.std)
        self.aspect = _check_pair("aspect", self.aspect)
        self.scale = _check_pair("scale", self.scale, upper=1.0)
        _check_interpolation(self.interpolation)
        b = np.asarray(self.brightness, dtype=np.float64)
        if b.ndim == 0:
            b = float(b) * np.eye(self.channels)
        if b.shape != (self.channels, self.channels) or not np.all(np.isfinite(b)):
            raise ValueError(
                f"brightness must be a number or a ({self.channels}, {self.channels}) matrix, got shape {b.shape}"
            )
        self._b = b
        self._fallback: np.random.Generator | None = None

    def _min_side(self) -> float | None:
        if not self.draft:
            return None
        return self.size / (self.scale[0] * min(1.0, self.aspect[0], 1.0 / self.aspect[1]))

    def raw(self, img: ImageInput, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The random crop/resize/flip as uint8 ``(C, size, size)`` and the brightness shift float32 ``(C,)``;
        :func:`normalize_batch` finishes the job (on the training device). Same draws as ``__call__``."""
        if rng is None:
            if self._fallback is None:
                self._fallback = np.random.default_rng(self.seed)
            rng = self._fallback
        pil = load_image(img, self.channels, min_side=self._min_side(), exif=self.exif)
        box = sample_crop_box(pil.width, pil.height, rng, aspect=self.aspect, scale=self.scale)
        x = _resize_u8(pil, box, self.size, self.interpolation)
        if bool(rng.random() < 0.5) and self.flip:
            x = x[:, ::-1, :]
        shift = (self._b @ rng.standard_normal(self.channels)).astype(np.float32)  # (C,)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), torch.from_numpy(shift)

    def __call__(self, img: ImageInput, rng: np.random.Generator | None = None) -> torch.Tensor:
        u8, shift = self.raw(img, rng)
        return normalize_batch(u8[None], shift[None], self.mean, self.std)[0]


@dataclass
class EvalTransform:
    """Centred square crop of side ``crop_fraction * min(W, H)``, resized to ``size``, normalised.

    ``transform(img[, rng])`` -> float32 ``(channels, size, size)`` (``rng`` is ignored; accepted so
    that both transforms share one call signature). ``crop_fraction=0.875`` equals "shorter side to
    ``size / 0.875``, centre crop ``size``"; 1.0 (the full central square) is the authors' VGG-F
    and digits setting (``cropSize = 1``).
    """

    size: int
    mean: np.ndarray | float = 0.0
    std: np.ndarray | float = 1.0
    channels: int = 3
    crop_fraction: float = 0.875
    interpolation: str = "bilinear"
    draft: bool = False
    exif: bool = True

    takes_rng = True

    def __post_init__(self) -> None:
        self.size, self.mean, self.std = _check_common(self.size, self.channels, self.mean, self.std)
        center_box(1, 1, self.crop_fraction)  # validates
        _check_interpolation(self.interpolation)

    def raw(self, img: ImageInput, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The centred crop resized, uint8 ``(C, size, size)``, and a zero shift ``(C,)`` (see
        :meth:`TrainTransform.raw`). With ``draft``, JPEGs are decoded at the smallest DCT scale whose
        shorter side is still ``>= size / crop_fraction``."""
        pil = load_image(img, self.channels, min_side=self.size / self.crop_fraction if self.draft else None,
                         exif=self.exif)
        x = _resize_u8(pil, center_box(pil.width, pil.height, self.crop_fraction), self.size, self.interpolation)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), torch.zeros(self.channels)

    def __call__(self, img: ImageInput, rng: np.random.Generator | None = None) -> torch.Tensor:
        u8, shift = self.raw(img, rng)
        return normalize_batch(u8[None], shift[None], self.mean, self.std)[0]


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


def _image_moments(item: ImageInput, size: int, channels: int, crop_fraction: float,
                   interpolation: str, exif: bool = True) -> tuple[int, np.ndarray, np.ndarray]:
    """``(P, mu (C,), M (C, C))`` of one image's ``P = size^2`` pixels (float64; ``M`` the scatter)."""
    pil = load_image(item, channels, exif=exif)
    x = _resize_box(pil, center_box(pil.width, pil.height, crop_fraction), int(size), interpolation)
    x = x.reshape(-1, channels).astype(np.float64)
    mu = x.mean(axis=0)
    d = x - mu
    return x.shape[0], mu, d.T @ d


def _merge(n_a: int, mu_a: np.ndarray, m_a: np.ndarray, n_b: int, mu_b: np.ndarray,
           m_b: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Chan et al.'s pairwise update of (count, mean, scatter)."""
    n = n_a + n_b
    if n == 0:
        return 0, mu_a, m_a
    delta = mu_b - mu_a
    return n, mu_a + delta * (n_b / n), m_a + m_b + np.outer(delta, delta) * (n_a * n_b / n)


def channel_moments(
    images: Iterable[ImageInput], size: int, *, channels: int = 3, crop_fraction: float = 1.0,
    interpolation: str = "bilinear", num_threads: int = 1, exif: bool = True, progress: bool | str = False,
) -> ChannelMoments:
    """Stream ``images`` once and return their per-channel pixel mean, std and covariance.

    Each image is decoded (:func:`load_image`), its centred square of side ``crop_fraction * min(W, H)``
    is resized to ``size x size`` with ``interpolation`` (what the network sees without jitter; the
    authors' ``getImageStats`` reads the full central square, bicubic, at 224), and its ``P = size^2``
    pixels ``x_p in R^C`` are merged, in the order of ``images``, into running moments with Chan et
    al.'s pairwise update (float64)::

        n = n_a + n_b,  d = mu_b - mu_a,  mu = mu_a + d n_b / n,
        M = M_a + M_b + d d^T n_a n_b / n,   cov = M / n   (population)

    so memory is O(C^2) whatever the number of images, and constant images give std exactly 0.
    ``num_threads > 1`` decodes that many images at once (PIL releases the GIL while decoding and
    resizing); the merge order, hence the result, is the same. ``exif``: the recipe's EXIF policy
    (:func:`dahash.nn.recipes.exif_orientation`). ``progress``: a bar over the images (:mod:`dahash.progress`;
    False, True or its label).

    Raises:
        ValueError: no images. OSError: an image cannot be decoded (named).
    """
    if int(size) < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    _mode(channels)
    _check_interpolation(interpolation)
    n, mu, m2, count = 0, np.zeros(channels), np.zeros((channels, channels)), 0

    def one(item: ImageInput) -> tuple[int, np.ndarray, np.ndarray]:
        return _image_moments(item, int(size), channels, crop_fraction, interpolation, exif)

    if int(num_threads) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(int(num_threads)) as pool:
            parts = pool.map(one, images)
            for nb, mu_b, m_b in progress_for(progress, "moments", parts, total=_length(images), unit="img"):
                n, mu, m2 = _merge(n, mu, m2, nb, mu_b, m_b)
                count += 1
    else:
        for item in progress_for(progress, "moments", images, total=_length(images), unit="img"):
            n, mu, m2 = _merge(n, mu, m2, *one(item))
            count += 1
    if count == 0:
        raise ValueError("channel_moments needs at least one training image, got none")
    return _finish(n, mu, m2, count)


def _length(items: Iterable) -> int | None:
    """``len(items)``, or None for an iterator (a bar then counts without a total)."""
    return len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]


def _finish(n: int, mu: np.ndarray, m2: np.ndarray, images: int) -> ChannelMoments:
    cov = m2 / n
    std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    return ChannelMoments(mean=mu.astype(np.float32), std=std.astype(np.float32), cov=cov, count=n, images=images)


def merge_moments(parts: Iterable[ChannelMoments]) -> ChannelMoments:
    """Moments of the union of disjoint image sets from each set's moments (exact: Chan's update on
    ``(count, mean, count * cov)``), e.g. a task's source + target domains from per-domain moments.

    Raises:
        ValueError: no parts, or parts with different channel counts.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("merge_moments needs at least one ChannelMoments")
    c = parts[0].cov.shape[0]
    if any(p.cov.shape != (c, c) for p in parts):
        raise ValueError(f"cannot merge moments with different channel counts: {[p.cov.shape[0] for p in parts]}")
    n, mu, m2, images = 0, np.zeros(c), np.zeros((c, c)), 0
    for p in parts:
        n, mu, m2 = _merge(n, mu, m2, int(p.count), np.asarray(p.mean, np.float64),
                           np.asarray(p.cov, np.float64) * int(p.count))
        images += int(p.images)
    return _finish(n, mu, m2, images)


def moments_to_dict(m: ChannelMoments) -> dict:
    """JSON-ready form ``{"mean": [C], "cov": [[C x C]], "count": pixels, "images": n}`` (0..255 scale)."""
    return {"mean": [float(v) for v in np.asarray(m.mean, np.float64)],
            "cov": np.asarray(m.cov, np.float64).tolist(), "count": int(m.count), "images": int(m.images)}


def moments_from_dict(d: dict) -> ChannelMoments:
    """Inverse of :func:`moments_to_dict`.

    Raises:
        ValueError: a key is missing or the shapes disagree (names the key).
    """
    try:
        mean = np.asarray(d["mean"], np.float64)
        cov = np.asarray(d["cov"], np.float64)
        count, images = int(d["count"]), int(d["images"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"moments need keys mean, cov, count, images: {exc}") from exc
    if mean.ndim != 1 or cov.shape != (mean.size, mean.size) or count < 1:
        raise ValueError(f"moments: mean {mean.shape} and cov {cov.shape} disagree, or count {count} < 1")
    return _finish(count, mean, cov * count, images)


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
