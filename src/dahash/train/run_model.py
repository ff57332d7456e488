"""A trained run folder's network: the one place that knows how to read model.pt and rebuild the network.

A run of the train stage, ``models/<dataset>/<backbone>/<method>/<task>/seed<S>/``, holds ``model.pt``:
``{"config": dict (DAHConfig fields), "state_dict": ...}``. Head mode: ``state_dict`` is the DAH head's
(fc6, fc7, fc8, BN over fc8). Fine-tune mode: ``{"trunk": {...}, "head": {...}, "normalisation": {"mean",
"std", "eval_crop", "interpolation", "size"}}``. The network maps an image ``x`` (fine-tune) or a feature
``f = trunk_pretrained(T(x))`` (head) to ``u = tanh(BN(fc8(relu(fc7(relu(fc6(f)))))))``.

Used by the train stage (:func:`fresh_trunk`: the starting point of fine-tuning), the analysis stage (fc7 of a
trained DAH model) and the model export (:mod:`dahash.codes.export`). Files are read with
``torch.load(weights_only=True)``: model.pt is a DVC output people exchange (``dvc push``/``dvc pull``), and a
file whose pickle would call anything but tensor and container constructors is refused, never run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where used
    import torch
    from torch import nn

__all__ = ["PRETRAINED_TRUNKS", "ModelFileError", "fresh_trunk", "head_from_state",
           "read_model_file", "trained_trunk"]


#: backbones trained from ImageNet weights (lower lr multipliers, frozen BatchNorm statistics)
PRETRAINED_TRUNKS: dict[str, bool] = {"efficientnet_lite0": True, "vggf": True, "vgg16": True, "smallcnn": False}


class ModelFileError(ValueError):
    """A model.pt that cannot be used: missing, refused (not plain weights) or not laid out as the train stage's.
    ``kind`` is ``"missing"``, ``"refused"`` or ``"layout"``; the message names the file and the fix."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def read_model_file(path: str | Path) -> dict[str, Any]:
    """A model.pt of the train stage, ``{"config": dict, "state_dict": {...}}``, read with ``weights_only=True``.

    Raises:
        ModelFileError: missing file (kind ``missing``), a pickle that is not plain weights (``refused``),
            or a dict without ``state_dict`` and ``config`` (``layout``).
    """
    import pickle

    import torch

    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise ModelFileError(f"{path}: not found; run the train stage first (dvc repro)", "missing") from exc
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: refused, not a plain weights file ({first}); it may have been tampered "
                             "with: delete it and retrain (dvc repro), never load it with weights_only=False",
                             "refused") from exc
    if not isinstance(saved, dict) or not {"state_dict", "config"} <= set(saved):
        raise ModelFileError(f"{path}: not a model.pt of the train stage (no state_dict/config); delete it and "
                             "retrain", "layout")
    return saved


def fresh_trunk(backbone: str, weights: str | Path | None, seed: int) -> tuple[nn.Module, int, dict | None]:
    """The trunk fine-tuning starts from: ``(trunk, feature size, pretrained fc6/fc7 for the head or None)``.

    smallcnn: a seeded random SmallCNN (28 x 28 grey input, 500 features); vgg16: conv1_1..pool5 (fc6/fc7 live
    on in the DAH head); vggf and efficientnet_lite0: the backbone from ``weights`` (VGG-F's own classifier
    removed, its fc6/fc7 handed to the head).
    """
    import torch

    if backbone == "smallcnn":
        from dahash.nn.backbones.smallcnn import SmallCNN

        trunk = SmallCNN(in_channels=1, feature_dim=500, input_size=28, generator=torch.Generator().manual_seed(seed))
        return trunk, 500, None
    if backbone == "vgg16":  # conv1_1..pool5 trained; fc6/fc7 (classifier.0/3) live on in the DAH head
        from dahash.nn.backbones import vgg16_finetune_parts

        return vgg16_finetune_parts(weights)
    from dahash.nn.backbones import build_backbone

    bb = build_backbone(backbone, weights=weights)
    if backbone == "vggf":  # fc6/fc7 live on in the DAH head (head_init); VGG-F's own classifier is never used
        bb.module.head = torch.nn.Sequential()
    return bb.module, bb.feature_dim, bb.head_init


def trained_trunk(backbone: str, trunk_state: dict[str, torch.Tensor] | None, weights: str | Path | None, *,
                  feature_dim: int = 500, input_size: int = 28, where: str = "the trunk state") -> nn.Module:
    """A trunk with trained (fine-tune mode) or pretrained (head mode, ``trunk_state`` None) weights, eval mode.

    ``weights``: the pretrained file; needed by vggf always (its layout is built from it) and by head mode;
    a fine-tuned efficientnet_lite0 / vgg16 trunk is rebuilt from ``trunk_state`` alone. vggf's classifier is
    removed (fc6/fc7 live in the DAH head); head-mode vgg16 ends at fc7 (the extracted features).
    ``feature_dim``/``input_size``: smallcnn's; ``where``: how errors name the state.

    Raises:
        ValueError: a ``trunk_state`` that lacks entries of the backbone.
    """
    from torch import nn

    if backbone == "smallcnn":
        from dahash.nn.backbones.smallcnn import SmallCNN

        trunk: nn.Module = SmallCNN(in_channels=1, feature_dim=feature_dim, input_size=input_size)
    elif backbone == "efficientnet_lite0" and weights is None:
        from dahash.nn.backbones.efficientnet_lite import EfficientNetLite0

        trunk = EfficientNetLite0()
    elif backbone == "vgg16" and weights is None:  # fine-tuned: conv1_1..pool5 from its own state
        from dahash.nn.backbones.vgg16 import vgg16_trunk_from_state

        trunk = vgg16_trunk_from_state(trunk_state, where)
    else:
        from dahash.nn.backbones import build_backbone

        trunk = build_backbone(backbone, weights=weights).module
        if backbone == "vggf":
            trunk.head = nn.Sequential()  # as fresh_trunk: fc6/fc7 live in the DAH head
    if trunk_state is not None:
        missing, _ = trunk.load_state_dict(trunk_state, strict=False)
        if missing:
            raise ValueError(f"{where} lacks {missing[:5]} for backbone {backbone!r}")
    return trunk.eval()


def head_from_state(head_state: dict[str, torch.Tensor], *, bn_momentum: float = 0.05) -> nn.Module:
    """The DAH head (eval mode) whose sizes are read off its state: ``in_dim = fc6.weight.shape[1]``,
    hidden dims ``(fc6.weight.shape[0], fc7.weight.shape[0])``, ``hash_bits = fc8.weight.shape[0]``.

    Raises:
        KeyError: no fc6/fc7/fc8 weights in the state.
    """
    from dahash.nn.model import DAHHead

    fc6, fc7, fc8 = (head_state[f"{n}.weight"] for n in ("fc6", "fc7", "fc8"))
    head = DAHHead(int(fc6.shape[1]), (int(fc6.shape[0]), int(fc7.shape[0])), int(fc8.shape[0]),
                   bn_momentum=bn_momentum)
    head.load_state_dict(head_state, strict=True)
    return head.eval()
