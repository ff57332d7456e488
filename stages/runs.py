"""What the train-like stages share: run arguments, the DAH config from params, the pretrained head."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from stages.weights import weights_file

if TYPE_CHECKING:  # torch and dahash.train (torch) are imported where used: `--help` stays fast
    import torch

    from dahash.train import DAHConfig


def dah_config(train: dict) -> DAHConfig:
    """DAHConfig from (method-resolved) ``train`` params; keys that are not DAH hyper-parameters are dropped."""
    from dahash.train import DAHConfig

    names = {f.name for f in dataclasses.fields(DAHConfig)}
    kwargs = {k: v for k, v in train.items() if k in names}
    kwargs["hidden_dims"] = tuple(train["hidden_dims"])
    return DAHConfig(**kwargs)


def pretrained_head(backbone: str) -> dict[str, torch.Tensor] | None:
    """VGG-F's fc6/fc7 (training starts at pool5 and fine-tunes them); None for backbones with new fc6/fc7."""
    if backbone != "vggf":
        return None
    from dahash.backbones import build_backbone

    return build_backbone("vggf", weights=weights_file("vggf")).head_init


def parse_run_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """--method, --task, --seed (shared by train and evaluate)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--method", required=True)
    ap.add_argument("--task", required=True)
    ap.add_argument("--seed", required=True, type=int)
    return ap.parse_args(argv)
