"""Input recipes: how an image becomes a network input, per backbone (one place for every choice).

A recipe fixes the input side ``size``, the channels, the per-channel normalisation
``y = (x - mean) / std`` on the 0..255 scale, the evaluation crop (the centred square of side
``eval_crop * min(W, H)``), the resampling filter and the training jitter. The same recipe feeds
head-mode feature extraction, fine-tuning and encoding, so a backbone never sees two preprocessings.

============== =========================================== ========================================
backbone       normalisation                               geometry
============== =========================================== ========================================
``vggf``       ``x - rgbMean``, NO std division: the        full central square (``cropSize = 1``),
               per-channel mean of the TRAINING images      bicubic to 224; training: random
               (authors' ``cnn_office.m``:                  location, aspect ``[2/3, 3/2]``, flip,
               ``averageImage = rgbMean``), which the       brightness ``0.1 x colour deviation``
               pretrained filters expect on 0..255 inputs   (``cnn_office_init.m``, ``getImageBatch.m``)
``efficientnet (x - 127) / 128``: the normalisation its     shorter side to 256, centre 224 (0.875),
_lite0``       ImageNet weights were trained with           bilinear, as its pretraining's evaluation;
                                                            training: the authors' jitter at 0.875
``vgg16``      ``(x / 255 - m) / s`` with torchvision's     shorter side to 256, centre 224 (0.875),
               ImageNet ``m = (0.485, 0.456, 0.406)``,      bilinear: torchvision's evaluation of
               ``s = (0.229, 0.224, 0.225)``: what its      these weights; training: the authors'
               weights were trained with                    jitter at 0.875, as EfficientNet-Lite0
``smallcnn``   ``x - mean`` of the training images, no std  the whole 28 x 28 digit; no jitter at all
               (authors' ``cnn_digit_da.m``)                (``jitterLocation/Flip = false``)
============== =========================================== ========================================

VGG-16's training jitter is the project's (the authors' MatConvNet reader: random location, aspect
[2/3, 3/2], flip, brightness 0.1 x colour deviation) at the 0.875 crop of its evaluation, not torchvision's
ImageNet ``RandomResizedCrop`` (scale 0.08-1): one augmentation style for every RGB backbone, and the same
crop scale at training and evaluation (docs/fidelity.md).

EXIF orientation (:func:`exif_orientation`): the paper's recipe (``vggf`` on a published dataset) reads the pixels
as stored, as the authors' MatConvNet reader does (it ignores the EXIF orientation tag); every other recipe, and
any recipe on the user's own images (``data.dataset: custom``), turns a camera JPEG stored sideways upright.

Image cache (:meth:`InputRecipe.cache_side`): fine-tuning reads images decoded once and downsized to the shorter
side ``S = max(size / (s_lo min(1, a_lo, 1 / a_hi)), size / eval_crop)`` (VGG-F 336, EfficientNet-Lite0 and
VGG-16 384, SmallCNN 28), the smallest at which no training crop and not the eval crop is upsampled
(:mod:`dahash.data.image_cache`).

"Training images" are the task's source + target images (transductive, labels unused). Head mode caches
one feature file per DOMAIN, shared by every task, so it uses the mean over all images of the dataset's
domains instead of the task's (a documented deviation, see docs/fidelity.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dahash.nn.augment import ChannelMoments, EvalTransform, TrainTransform, brightness_from_covariance

__all__ = ["InputRecipe", "RECIPE_BACKBONES", "cache_settings", "cache_short_side", "exif_orientation", "input_recipe",
           "moments_geometry"]

#: backbones with an input recipe (surf800 has no image input).
RECIPE_BACKBONES: tuple[str, ...] = ("vggf", "efficientnet_lite0", "vgg16", "smallcnn")

#: torchvision's ImageNet mean and std on the 0..1 scale (VGG-16's pretraining)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: backbones whose normalisation is fixed by their pretraining (moments only feed the brightness jitter)
_FIXED_NORMALISATION = ("efficientnet_lite0", "vgg16")

_GEOMETRY = {  # backbone -> (size, channels, interpolation used for the moments and the network input)
    "vggf": (224, 3, "bicubic"),
    "efficientnet_lite0": (224, 3, "bilinear"),
    "vgg16": (224, 3, "bilinear"),
    "smallcnn": (28, 1, "bilinear"),
}


def cache_short_side(size: int, scale_lo: float, aspect: tuple[float, float], eval_crop: float) -> int:
    """The smallest ``S`` at which no training crop and not the eval crop is upsampled
    (:mod:`dahash.data.image_cache`, docs/fidelity.md):
    ``ceil(max(size / (scale_lo min(1, a_lo, 1 / a_hi)), size / eval_crop) - 1e-9)``.

    >>> cache_short_side(224, 1.0, (2 / 3, 3 / 2), 1.0)   # VGG-F, the paper recipe
    336
    >>> cache_short_side(224, 0.875, (2 / 3, 3 / 2), 0.875)  # EfficientNet-Lite0, VGG-16
    384
    """
    a_lo, a_hi = aspect
    if not (size >= 1 and 0 < scale_lo <= 1 and 0 < a_lo <= a_hi and 0 < eval_crop <= 1):
        raise ValueError(f"bad recipe geometry: size {size}, scale_lo {scale_lo}, aspect {aspect}, eval_crop {eval_crop}")
    need = max(size / (scale_lo * min(1.0, a_lo, 1.0 / a_hi)), size / eval_crop)
    return int(math.ceil(need - 1e-9))


@dataclass(frozen=True)
class InputRecipe:
    """How images become ``(channels, size, size)`` float32 inputs (module docstring).

    Attributes:
        size, channels: input side and 1 (grayscale) or 3 (RGB).
        mean, std: ``(C,)`` normalisation on the 0..255 scale.
        eval_crop: side of the centred evaluation square as a fraction of the shorter side.
        interpolation: ``"bicubic"`` or ``"bilinear"``.
        train_scale, train_aspect: crop-size and anisotropy ranges of the training jitter.
        flip: random left-right flips in training.
        brightness: ``(C, C)`` brightness-jitter matrix ``B`` (0 = none).
        exif: apply EXIF orientation when decoding (:func:`exif_orientation`).
    """

    size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    eval_crop: float
    interpolation: str
    train_scale: tuple[float, float]
    train_aspect: tuple[float, float]
    flip: bool
    brightness: np.ndarray | float
    exif: bool = True

    def cache_side(self) -> int:
        """Shorter side ``S`` of the decode-once image cache for this recipe (module docstring)."""
        return cache_short_side(self.size, self.train_scale[0], self.train_aspect, self.eval_crop)

    def eval_transform(self, *, draft: bool = False) -> EvalTransform:
        """Deterministic centred crop -> resize -> normalise (extraction, encoding); ``draft``: JPEG draft
        decoding at the resolution the crop needs (:func:`dahash.nn.augment.load_image`)."""
        return EvalTransform(self.size, np.asarray(self.mean), np.asarray(self.std), channels=self.channels,
                             crop_fraction=self.eval_crop, interpolation=self.interpolation, draft=draft,
                             exif=self.exif)

    def train_transform(self, seed: int = 0, *, draft: bool = False) -> TrainTransform:
        """Random crop (scale, aspect, location), flip, brightness, resize, normalise (fine-tuning)."""
        return TrainTransform(self.size, np.asarray(self.mean), np.asarray(self.std), channels=self.channels,
                              aspect=self.train_aspect, scale=self.train_scale, flip=self.flip,
                              brightness=self.brightness, seed=seed, interpolation=self.interpolation, draft=draft,
                              exif=self.exif)


def moments_geometry(backbone: str) -> tuple[int, int, str]:
    """``(size, channels, interpolation)`` at which the training images' moments are computed for
    ``backbone`` (the full central square, as the authors' ``getImageStats``).

    Raises:
        ValueError: a backbone without image input (names the valid ones).
    """
    if backbone not in _GEOMETRY:
        raise ValueError(f"backbone {backbone!r} has no image input recipe; valid: {', '.join(RECIPE_BACKBONES)}")
    return _GEOMETRY[backbone]


def exif_orientation(backbone: str, dataset: str | None = None) -> bool:
    """Whether images are turned upright by their EXIF orientation tag for ``backbone`` on ``dataset``: False
    for the paper's recipe (``vggf``), as the authors' reader; True for the other recipes and for the user's
    own images (``dataset == "custom"``) whatever the backbone."""
    return dataset == "custom" or backbone != "vggf"


def cache_settings(backbone: str, dataset: str | None = None) -> tuple[int, int, bool]:
    """``(S, channels, exif)`` of ``backbone``'s decode-once image cache: :meth:`InputRecipe.cache_side`, the
    channels and :func:`exif_orientation` (geometry only: no moments needed)."""
    size, channels, _ = moments_geometry(backbone)
    unit = ChannelMoments(np.zeros(channels, np.float32), np.ones(channels, np.float32), np.eye(channels), 1, 1)
    recipe = input_recipe(backbone, unit, dataset=dataset)
    return recipe.cache_side(), channels, recipe.exif


def input_recipe(backbone: str, moments: ChannelMoments | None = None, *, dataset: str | None = None) -> InputRecipe:
    """The recipe of ``backbone`` (module docstring's table).

    Args:
        backbone: one of :data:`RECIPE_BACKBONES`.
        moments: pixel moments of the training images (:func:`dahash.nn.augment.channel_moments` at
            :func:`moments_geometry`): the mean for ``vggf``/``smallcnn``, the covariance for the
            brightness jitter of RGB backbones. Required except for ``efficientnet_lite0`` and ``vgg16``
            (fixed normalisation; without moments their training has no brightness jitter).
        dataset: ``data.dataset``, for the EXIF policy (:func:`exif_orientation`).

    Raises:
        ValueError: unknown backbone, missing moments, or moments of the wrong channel count.
    """
    size, channels, interpolation = moments_geometry(backbone)
    if moments is not None and np.asarray(moments.mean).shape != (channels,):
        raise ValueError(f"{backbone} needs moments of {channels} channel(s), got mean of shape "
                         f"{np.asarray(moments.mean).shape}")
    if moments is None and backbone not in _FIXED_NORMALISATION:
        raise ValueError(f"the {backbone} input recipe subtracts the training images' mean: pass their moments")
    brightness = brightness_from_covariance(moments.cov, 0.1) if (moments is not None and channels == 3) else 0.0
    exif = exif_orientation(backbone, dataset)
    if backbone == "vggf":
        return InputRecipe(size, channels, tuple(float(v) for v in moments.mean), (1.0,) * channels, 1.0,
                           interpolation, (1.0, 1.0), (2.0 / 3.0, 1.5), True, brightness, exif)
    if backbone == "efficientnet_lite0":
        return InputRecipe(size, channels, (127.0,) * 3, (128.0,) * 3, 0.875, interpolation, (0.875, 0.875),
                           (2.0 / 3.0, 1.5), True, brightness, exif)
    if backbone == "vgg16":
        return InputRecipe(size, channels, tuple(255.0 * m for m in IMAGENET_MEAN),
                           tuple(255.0 * s for s in IMAGENET_STD), 0.875, interpolation, (0.875, 0.875),
                           (2.0 / 3.0, 1.5), True, brightness, exif)
    return InputRecipe(size, channels, tuple(float(v) for v in moments.mean), (1.0,) * channels, 1.0,
                       interpolation, (1.0, 1.0), (1.0, 1.0), False, 0.0, exif)
