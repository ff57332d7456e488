"""Full fine-tuning (train.mode = finetune) for the train stage: trunk + head trained from images.

The paper's setting: every pretrained layer fine-tuned at the lower learning-rate multipliers
(``train.pretrained_lr_mult`` via DAHConfig), new layers at the higher ones, training augmentation
(random crop with aspect ratio in [2/3, 3/2], flip, brightness) and normalisation statistics computed
from the TRAINING images (all source + all target images, labels unused). Digits use a small CNN
trained from scratch, grayscale, no flips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dahash.augment import EvalTransform, TrainTransform, brightness_from_covariance, channel_moments
from dahash.finetune import encode_images, train_dah_finetune
from dahash.model import DAHHead
from dahash.train import DAHConfig
from stages.weights import weights_file

#: backbone -> (input size, channels, pretrained trunk, horizontal flips)
TRUNKS = {"efficientnet_lite0": (224, 3, True, True), "vggf": (224, 3, True, True), "smallcnn": (28, 1, False, False)}


def build_trunk(backbone: str, seed: int) -> tuple[torch.nn.Module, int, dict | None]:
    """(trunk, feature size, pretrained fc6/fc7 for the head or None)."""
    if backbone == "smallcnn":
        from dahash.backbones.smallcnn import SmallCNN

        trunk = SmallCNN(in_channels=1, feature_dim=500, input_size=28, generator=torch.Generator().manual_seed(seed))
        return trunk, 500, None
    from dahash.backbones import build_backbone

    bb = build_backbone(backbone, weights=weights_file(backbone))
    return bb.module, bb.feature_dim, bb.head_init


def finetune_run(source: list[Path], ys: np.ndarray, target: list[Path], num_classes: int, config: DAHConfig, *,
                 backbone: str, device: str, seed: int, num_workers: int, on_epoch, checkpoint_dir: Path | None = None,
                 checkpoint_every: int = 10) -> tuple[np.ndarray, np.ndarray, dict]:
    """Train end to end (checkpointed into ``checkpoint_dir`` and resumed from it, if given); return
    (u_source, u_target, {"state_dict": ..., "history": ..., "resumed_epoch": ...})."""
    if backbone == "smallcnn":  # digits: decode the small images once; no file is opened per item per epoch
        from dahash.digits import decode_images

        source, target = decode_images(source), decode_images(target)
    size, channels, pretrained, flip = TRUNKS[backbone]
    moments = channel_moments(source + target, size, channels=channels)
    std = np.where(moments.std > 0, moments.std, 1.0)
    brightness = brightness_from_covariance(moments.cov, 0.1) if channels == 3 else 0.0
    train_tf = TrainTransform(size, moments.mean, std, channels=channels, flip=flip, brightness=brightness, seed=seed)
    eval_tf = EvalTransform(size, moments.mean, std, channels=channels, crop_fraction=0.875 if channels == 3 else 1.0)
    trunk, feat_dim, head_init = build_trunk(backbone, seed)
    with torch.random.fork_rng(devices=[]):
        head = DAHHead(feat_dim, config.hidden_dims, config.hash_bits, head_init,
                       generator=torch.Generator().manual_seed(seed))
    channels_last = channels == 3 and device == "cpu"
    result = train_dah_finetune(source, ys, target, num_classes, config, trunk=trunk, head=head,
                                trunk_pretrained=pretrained, train_transform=train_tf, device=device, seed=seed,
                                num_workers=num_workers, on_epoch=on_epoch, channels_last=channels_last,
                                checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every)
    us = encode_images(result.trunk, result.head, source, eval_tf, device=device, channels_last=channels_last)
    ut = encode_images(result.trunk, result.head, target, eval_tf, device=device, channels_last=channels_last)
    state = {"trunk": result.trunk.state_dict(), "head": result.head.state_dict(),
             "normalisation": {"mean": moments.mean.tolist(), "std": std.tolist()}}
    return us, ut, {"state_dict": state, "history": result.history, "resumed_epoch": result.resumed_epoch}
