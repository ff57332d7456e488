"""Full fine-tuning (train.mode = finetune) for the train stage, and for the comparison methods of
``baselines.finetune`` (stages.baseline_finetune): trunk + head trained from images.

The paper's setting: every pretrained layer fine-tuned at the lower learning-rate multipliers
(``train.pretrained_lr_mult`` via DAHConfig), new layers at the higher ones, and the backbone's input
recipe (:mod:`dahash.nn.recipes`) with the moments of the TRAINING images (all source + all target images
of the task, labels unused, merged exactly from the moments stage's per-domain file): VGG-F subtracts
their mean (no std), full central square, bicubic, random location / aspect [2/3, 3/2] / flip /
brightness 0.1 x colour deviation; EfficientNet-Lite0 keeps its own (x - 127) / 128 and VGG-16 torchvision's
ImageNet mean/std (both at the 0.875 crop, same jitter); digits subtract the mean, no jitter. The images are read
from the decode-once image cache (stages.image_cache), never decoded here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dahash.data.image_cache import CachedImages
from dahash.nn.augment import ChannelMoments
from dahash.nn.model import DAHHead
from dahash.nn.recipes import input_recipe
from dahash.progress import label
from dahash.train.checkpoint import cpu_state_dict
from dahash.train.finetune import encode_images, train_finetune
from dahash.train.head import DAHConfig
from dahash.train.objectives import DAHObjective, Objective
from dahash.train.run_model import PRETRAINED_TRUNKS, fresh_trunk
from stages.paths import weights_file
from stages.runs import check_hidden_dims


def build_trunk(backbone: str, seed: int) -> tuple[torch.nn.Module, int, dict | None]:
    """(trunk, feature size, pretrained fc6/fc7 for the head or None): :func:`dahash.train.run_model.fresh_trunk`
    with the weights stage's file."""
    return fresh_trunk(backbone, weights_file(backbone) if backbone != "smallcnn" else None, seed)


@dataclass
class Trained:
    """A network fine-tuned by :func:`finetune_trained`: trunk + head, the run's history, and how to encode
    images with it (the recipe's evaluation transform)."""

    trunk: torch.nn.Module
    head: torch.nn.Module
    history: list[dict]
    resumed_epoch: int
    recipe: Any
    eval_tf: Any
    device: str
    channels_last: bool
    progress: bool | str = False  # the training's bar label: its encodings show a bar too

    def encode(self, images: CachedImages, output: str = "u") -> np.ndarray:
        """``(N, w)`` float32 ``output`` (``u``, ``fc6``, ``fc7``, ``fc8``) of ``images``."""
        desc = label(self.progress, "finetune")
        return encode_images(self.trunk, self.head, images, self.eval_tf, device=self.device,
                             channels_last=self.channels_last, output=output,
                             progress=False if desc is None else f"{desc}: encode {output}")

    def state_dict(self) -> dict:
        """model.pt's ``state_dict``: trunk, head (CPU tensors) and the evaluation normalisation."""
        recipe = self.recipe
        return {"trunk": cpu_state_dict(self.trunk), "head": cpu_state_dict(self.head),
                "normalisation": {"mean": list(recipe.mean), "std": list(recipe.std), "eval_crop": recipe.eval_crop,
                                  "interpolation": recipe.interpolation, "size": recipe.size}}


def finetune_trained(source: CachedImages, ys: np.ndarray, target: CachedImages, num_classes: int, config: DAHConfig,
                     *, backbone: str, moments: ChannelMoments, device: str, seed: int, num_workers: int, on_epoch,
                     checkpoint_dir: Path | None = None, checkpoint_every: int = 10,
                     make_head: Callable[[int, dict | None], torch.nn.Module] | None = None,
                     objective: Objective | None = None, progress: bool | str = False) -> Trained:
    """Train end to end (checkpointed into ``checkpoint_dir`` and resumed from it, if given). The images come from
    the decode-once image cache (:func:`stages.image_cache.open_cached`): loader workers gather crop bytes, the
    recipe's augmentation runs on ``device`` (:mod:`dahash.nn.device_augment`). ``moments``: of the task's source +
    target images (the recipe's mean and brightness jitter). ``make_head(feature size, pretrained fc6/fc7 or
    None)`` and ``objective``: a comparison method's (default: the DAH head and objective). ``progress``: bars over
    the epochs, batches and encoded images (:func:`dahash.train.finetune.train_finetune`)."""
    recipe = input_recipe(backbone, moments)
    pretrained, channels = PRETRAINED_TRUNKS[backbone], recipe.channels
    train_tf, eval_tf = recipe.train_transform(seed), recipe.eval_transform()
    trunk, feat_dim, head_init = build_trunk(backbone, seed)
    check_hidden_dims(head_init, config.hidden_dims, backbone)
    with torch.random.fork_rng(devices=[]):
        if make_head is None:
            head = DAHHead(feat_dim, config.hidden_dims, config.hash_bits, head_init,
                           generator=torch.Generator().manual_seed(seed), bn_momentum=config.bn_momentum)
        else:
            head = make_head(feat_dim, head_init)
    objective = DAHObjective(config, num_classes) if objective is None else objective
    channels_last = channels == 3  # faster convolutions on CPU (oneDNN) and GPU (cuDNN NHWC kernels)
    if str(device).startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels
    result = train_finetune(source, ys, target, num_classes, config, trunk=trunk, head=head, objective=objective,
                            trunk_pretrained=pretrained, train_transform=train_tf, device=device, seed=seed,
                            num_workers=num_workers, on_epoch=on_epoch, channels_last=channels_last,
                            checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, progress=progress)
    return Trained(result.trunk, result.head, result.history, result.resumed_epoch, recipe, eval_tf, device,
                   channels_last, progress)


def finetune_run(source: CachedImages, ys: np.ndarray, target: CachedImages, num_classes: int, config: DAHConfig, *,
                 backbone: str, moments: ChannelMoments, device: str, seed: int, num_workers: int, on_epoch,
                 checkpoint_dir: Path | None = None, checkpoint_every: int = 10,
                 encode_target: CachedImages | None = None,
                 progress: bool | str = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """DAH fine-tuned (:func:`finetune_trained`); return (u_source, u_target, {"state_dict": ..., "history": ...,
    "resumed_epoch": ...}). ``encode_target``: the target images ``u_target`` encodes (default: ``target``, the
    ones trained on; the pwcf protocol trains on all but its query images and encodes all)."""
    encode_target = target if encode_target is None else encode_target
    net = finetune_trained(source, ys, target, num_classes, config, backbone=backbone, moments=moments, device=device,
                           seed=seed, num_workers=num_workers, on_epoch=on_epoch, checkpoint_dir=checkpoint_dir,
                           checkpoint_every=checkpoint_every, progress=progress)
    us, ut = net.encode(source), net.encode(encode_target)
    return us, ut, {"state_dict": net.state_dict(), "history": net.history, "resumed_epoch": net.resumed_epoch}
