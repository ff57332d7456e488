"""What the train-like stages share: run arguments, the DAH config from params, the pretrained head."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from stages.paths import weights_file

if TYPE_CHECKING:  # torch and dahash.train.head (torch) are imported where used: `--help` stays fast
    import torch

    from dahash.train.head import DAHConfig


def dah_config(train: dict) -> DAHConfig:
    """DAHConfig from (method-resolved) ``train`` params; keys that are not DAH hyper-parameters are dropped."""
    from dahash.train.head import DAHConfig

    names = {f.name for f in dataclasses.fields(DAHConfig)}
    kwargs = {k: v for k, v in train.items() if k in names}
    kwargs["hidden_dims"] = tuple(train["hidden_dims"])
    return DAHConfig(**kwargs)


def pretrained_head(backbone: str, hidden_dims: list[int] | tuple[int, ...] | None = None
                    ) -> dict[str, torch.Tensor] | None:
    """VGG-F's fc6/fc7 (training starts at pool5 and fine-tunes them); None for backbones with new fc6/fc7.

    With ``hidden_dims`` (``train.hidden_dims``), checks that they are the weights' fc6/fc7 widths (4096, 4096
    for imagenet-vgg-f.mat) and says which values to set otherwise.
    """
    if backbone != "vggf":
        return None
    from dahash.nn.backbones import build_backbone

    head = build_backbone("vggf", weights=weights_file("vggf")).head_init
    check_hidden_dims(head, hidden_dims)
    return head


def check_hidden_dims(head: dict[str, torch.Tensor] | None, hidden_dims, backbone: str = "vggf") -> None:
    """``train.hidden_dims`` must equal the pretrained fc6/fc7 widths (they are loaded into the head)."""
    if head is None or hidden_dims is None:
        return
    widths = [int(head["fc6.weight"].shape[0]), int(head["fc7.weight"].shape[0])]
    if [int(h) for h in hidden_dims] != widths:
        from stages.common import StageError

        raise StageError(f"params.yaml: train.hidden_dims = {list(hidden_dims)}, but fc6/fc7 start from the "
                         f"pretrained {backbone} layers of {weights_file(backbone)}, which are {widths} wide: "
                         f"set train.hidden_dims: {widths}")


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
    import torch

    head = pretrained_head(backbone)
    if head is None:
        return arrays
    w6, b6, w7, b7 = (head[k].float() for k in ("fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"))
    with torch.no_grad():
        return tuple(torch.relu(torch.relu(torch.from_numpy(x).float() @ w6.T + b6) @ w7.T + b7).numpy()
                     for x in arrays)
