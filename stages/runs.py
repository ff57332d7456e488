"""What the train-like stages share: run arguments, the DAH config from params, the pretrained head."""

from __future__ import annotations

import argparse
import dataclasses

import torch

from dahash.train import DAHConfig
from stages.weights import weights_file


def dah_config(train: dict) -> DAHConfig:
    """DAHConfig from (method-resolved) ``train`` params; keys that are not DAH hyper-parameters are dropped."""
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


def penultimate_features(backbone: str, *arrays):
    """The backbone's penultimate (fc7-level) features of cached inputs, for shallow/hashing baselines and analysis.

    VGG-F caches pool5 (training starts there): relu(fc7(relu(fc6(x)))) with the pretrained layers gives the
    paper's "Deep (VGG-F) fc7" features, ``(n, 4096)``. Other backbones cache their penultimate features already.
    """
    head = pretrained_head(backbone)
    if head is None:
        return arrays
    w6, b6, w7, b7 = (head[k].float() for k in ("fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"))
    with torch.no_grad():
        return tuple(torch.relu(torch.relu(torch.from_numpy(x).float() @ w6.T + b6) @ w7.T + b7).numpy()
                     for x in arrays)
