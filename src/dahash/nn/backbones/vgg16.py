"""VGG-16 (Simonyan & Zisserman, ICLR 2015, configuration "D") with PyTorch's published ImageNet weights.

The weights are torchvision's ``IMAGENET1K_V1`` checkpoint, ``vgg16-397923af.pth`` (a plain state_dict,
read with ``torch.load(weights_only=True)``). :class:`VGG16` is a plain ``nn.Module`` with torchvision's
parameter names, so that file loads with ``strict=True`` and no key mapping; torchvision itself is not
needed. The layout (``features.<i>`` indices of the 13 convolutions, ``classifier.0/3/6``)::

    features   0 conv3-64   2 conv3-64   4 max   |  5 conv3-128  7 conv3-128  9 max
              10 conv3-256 12 conv3-256 14 conv3-256 16 max  |  17/19/21 conv3-512 23 max
              24/26/28 conv3-512 30 max      (odd indices 1, 3, ...: ReLU; no parameters)
    avgpool    AdaptiveAvgPool2d(7, 7)       (the identity on the 7 x 7 pool5 map of a 224 x 224 input)
    classifier 0 fc6 Linear(512*7*7 -> 4096) 1 ReLU 2 Dropout(0.5)
               3 fc7 Linear(4096 -> 4096)    4 ReLU 5 Dropout(0.5)
               6 fc8 Linear(4096 -> 1000)

Every convolution is 3 x 3, stride 1, zero padding 1 (keeps H x W); every max pool is 2 x 2, stride 2
(halves H x W): a 224 x 224 input gives pool5 = 512 x 7 x 7 = 25088 values, flattened in (C, H, W) order.

The module builds from the widths the state_dict holds (the 13 convolution widths, fc6/fc7 widths, number
of classes), so the tests use small synthetic state dicts of exactly this structure; the real file gives
the widths above.

How DAH uses it (fine-tune mode as VGG-F, :mod:`dahash.nn.backbones.vggf`):

* fine-tune mode: trunk = conv1_1 ... pool5 (:class:`VGG16Trunk`, 25088-d), and the DAH head's fc6/fc7
  start from ``classifier.0`` / ``classifier.3`` (:func:`vgg16_head_init`); only the hash layer is new;
* head mode: the 4096-d fc7 output (after ReLU, dropout off) is extracted once per image
  (:class:`VGG16Fc7`); the head's fc6/fc7 are then new layers on top of it (as EfficientNet-Lite0's 1280-d
  features). pool5 features would be 25088-d per image and an fc6 of 103 M parameters to train in head
  mode; fc7 keeps both small.

Input: RGB 224 x 224, ``(x / 255 - mean) / std`` with torchvision's ImageNet ``mean = (0.485, 0.456, 0.406)``,
``std = (0.229, 0.224, 0.225)`` (:data:`dahash.nn.recipes.IMAGENET_MEAN` / ``IMAGENET_STD``).
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_FILENAME = "vgg16-397923af.pth"

#: output channels of the 13 convolutions (torchvision's cfg "D"; "M" = 2 x 2 max pool)
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                    512, 512, 512, "M", 512, 512, 512, "M")
VGG16_WIDTHS: tuple[int, ...] = tuple(c for c in VGG16_CFG if c != "M")
#: ``features.<i>`` indices of the convolutions (a ReLU follows each one; pools have no parameters)
CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CLASSIFIER_INDICES: tuple[int, int, int] = (0, 3, 6)  # fc6, fc7, fc8
POOL_OUT = 7  # avgpool's output side

__all__ = ["VGG16", "VGG16Fc7", "VGG16Trunk", "VGG16_URL", "VGG16_FILENAME", "load_vgg16", "state_dict_widths",
           "vgg16_head_init", "vgg16_trunk_from_state"]


def _features(widths: Sequence[int]) -> nn.Sequential:
    """conv1_1 ... pool5 with torchvision's indices; ``widths`` = the 13 convolutions' output channels."""
    if len(widths) != len(CONV_INDICES) or min(widths) < 1:
        raise ValueError(f"VGG-16 has 13 convolutions with positive widths, got {list(widths)}")
    layers: list[nn.Module] = []
    it, c_in = iter(widths), 3
    for item in VGG16_CFG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            c_out = next(it)
            layers += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = c_out
    return nn.Sequential(*layers)


class VGG16(nn.Module):
    """torchvision's VGG-16 (module docstring), parameter names included.

    Args:
        widths: the 13 convolution widths (default the real network's).
        fc_dims: ``(fc6, fc7)`` widths; ``num_classes``: fc8's outputs. ``fc_dims=None``: no classifier
            (an empty ``classifier``; :meth:`pool5` still works).
    """

    def __init__(self, widths: Sequence[int] = VGG16_WIDTHS, fc_dims: tuple[int, int] | None = (4096, 4096),
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.widths = tuple(int(w) for w in widths)
        self.features = _features(self.widths)
        self.avgpool = nn.AdaptiveAvgPool2d((POOL_OUT, POOL_OUT))
        self.pool5_dim = self.widths[-1] * POOL_OUT * POOL_OUT
        if fc_dims is None:
            self.classifier = nn.Sequential()
        else:
            h6, h7 = (int(h) for h in fc_dims)
            self.classifier = nn.Sequential(
                nn.Linear(self.pool5_dim, h6), nn.ReLU(inplace=True), nn.Dropout(0.5),
                nn.Linear(h6, h7), nn.ReLU(inplace=True), nn.Dropout(0.5),
                nn.Linear(h7, int(num_classes)),
            )

    def pool5(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` -> ``(N, C5 * 7 * 7)``: conv stack, adaptive 7 x 7 average pool, flattened (C, H, W)."""
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def fc7(self, x: Tensor) -> Tensor:
        """``(N, 3, H, W)`` -> ``(N, h7)``: ``relu(fc7(dropout(relu(fc6(pool5)))))`` (dropout only in training)."""
        if len(self.classifier) == 0:
            raise ValueError("this VGG-16 has no classifier (fc6/fc7): it was built as a trunk")
        return self.classifier[:5](self.pool5(x))

    def forward(self, x: Tensor) -> Tensor:
        """ImageNet logits ``(N, num_classes)`` (softmax not applied), as torchvision's ``VGG.forward``."""
        return self.classifier(self.pool5(x))


class VGG16Trunk(nn.Module):
    """The fine-tuned part of VGG-16 in front of the DAH head: conv1_1 ... pool5 + the adaptive 7 x 7 pool.

    ``features`` holds torchvision's ``features.0 ... features.30`` (same parameter names) followed by the
    average pool at index 31 (no parameters), so :func:`dahash.train.finetune.trunk_features`, which calls
    ``trunk.features(x)`` and flattens, gives exactly :meth:`VGG16.pool5`: ``(N, 3, H, W) -> (N, C5 * 49)``.
    """

    def __init__(self, net: VGG16) -> None:
        super().__init__()
        self.features = nn.Sequential(*net.features, net.avgpool)
        self.feature_dim = net.pool5_dim

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.features(x), 1)


class VGG16Fc7(nn.Module):
    """Head-mode extractor: ``features(x)`` = :meth:`VGG16.fc7`, ``(N, 3, 224, 224) -> (N, 4096)``
    (the backbones' ``module.features`` protocol; ``VGG16.features`` itself is torchvision's conv stack)."""

    def __init__(self, net: VGG16) -> None:
        super().__init__()
        self.net = net
        self.feature_dim = int(net.classifier[3].out_features)

    def features(self, x: Tensor) -> Tensor:
        return self.net.fc7(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------
def expected_keys(with_classifier: bool = True) -> list[str]:
    """torchvision's VGG-16 state_dict keys in order (26 conv + 6 classifier entries)."""
    keys = [f"features.{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias")]
    if with_classifier:
        keys += [f"classifier.{i}.{p}" for i in CLASSIFIER_INDICES for p in ("weight", "bias")]
    return keys


def state_dict_widths(state: Mapping[str, Tensor], where: str = "state_dict"
                      ) -> tuple[tuple[int, ...], tuple[int, int] | None, int]:
    """``(conv widths, (fc6, fc7) or None, num_classes)`` read off a VGG-16 state_dict, after checking that
    it has exactly torchvision's keys (with or without the classifier) and consistent shapes.

    Raises:
        ValueError: missing/unexpected keys or inconsistent shapes; the message names ``where`` and the key.
    """
    keys = set(state)
    with_classifier = any(k.startswith("classifier.") for k in keys)
    want = set(expected_keys(with_classifier))
    if keys != want:
        missing, unexpected = sorted(want - keys), sorted(keys - want)
        raise ValueError(f"{where}: not a torchvision VGG-16 state_dict: missing keys {missing[:6]}"
                         f"{' ...' if len(missing) > 6 else ''}, unexpected keys {unexpected[:6]}"
                         f"{' ...' if len(unexpected) > 6 else ''}; use {VGG16_FILENAME} from {VGG16_URL}")

    def shape(key: str) -> tuple[int, ...]:
        value = state[key]
        if not isinstance(value, Tensor):
            raise ValueError(f"{where}: {key} is a {type(value).__name__}, not a tensor")
        return tuple(value.shape)

    widths: list[int] = []
    c_in = 3
    for i in CONV_INDICES:
        w, b = shape(f"features.{i}.weight"), shape(f"features.{i}.bias")
        if len(w) != 4 or w[1:] != (c_in, 3, 3) or b != (w[0],):
            raise ValueError(f"{where}: features.{i} has weight {w} and bias {b}; expected (C_out, {c_in}, 3, 3) "
                             f"and (C_out,)")
        widths.append(w[0])
        c_in = w[0]
    if not with_classifier:
        return tuple(widths), None, 0
    pool5 = c_in * POOL_OUT * POOL_OUT
    dims, d_in = [], pool5
    for i in CLASSIFIER_INDICES:
        w, b = shape(f"classifier.{i}.weight"), shape(f"classifier.{i}.bias")
        if len(w) != 2 or w[1] != d_in or b != (w[0],):
            raise ValueError(f"{where}: classifier.{i} has weight {w} and bias {b}; expected (D_out, {d_in}) and "
                             f"(D_out,)")
        dims.append(w[0])
        d_in = w[0]
    return tuple(widths), (dims[0], dims[1]), dims[2]


def _from_state(state: Mapping[str, Tensor], where: str) -> VGG16:
    """A :class:`VGG16` holding ``state``'s tensors (built on the meta device, then assigned: no random
    initialisation of 138 M parameters that would be overwritten)."""
    widths, fc_dims, num_classes = state_dict_widths(state, where)
    with torch.device("meta"):
        net = VGG16(widths, fc_dims, max(num_classes, 1))
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return net


def load_vgg16(path: str | Path) -> VGG16:
    """Read torchvision's ``vgg16-397923af.pth`` (or a state_dict of the same structure) into a
    :class:`VGG16` on the CPU, in eval mode, with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message says where the file comes from).
        ValueError: the file is not a plain state_dict of torchvision's VGG-16 layout (names the file and key).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG-16 weights not found at {path}. Run the pipeline's weights stage, or download {VGG16_URL} "
            f"by hand and put it in the manual folder (data.manual_dir, e.g. downloads/{VGG16_FILENAME}) or at "
            f"that path.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # objects other than tensors: refused (code could run)
        raise ValueError(f"{path}: refused, not a plain weights file (torch.load weights_only=True: "
                         f"{str(exc).splitlines()[-1] if str(exc) else exc!r}); use {VGG16_FILENAME} from "
                         f"{VGG16_URL}") from exc
    except (RuntimeError, EOFError, OSError) as exc:  # truncated or not a torch file at all
        raise ValueError(f"{path}: cannot be read as a torch weights file ({exc}); it is incomplete or another "
                         f"file: download {VGG16_URL} again") from exc
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: holds a {type(state).__name__}, not a state_dict; use {VGG16_FILENAME}")
    return _from_state(state, str(path)).eval()


def vgg16_trunk_from_state(state: Mapping[str, Tensor], where: str = "trunk state") -> VGG16Trunk:
    """A :class:`VGG16Trunk` from its own state_dict (``features.*`` keys only: a fine-tuned trunk)."""
    feats = {k: v for k, v in state.items() if k.startswith("features.")}
    return VGG16Trunk(_from_state(feats, where))


def vgg16_head_init(net: VGG16) -> dict[str, Tensor]:
    """Pretrained fc6/fc7 for the DAH head (copies, detached): ``{"fc6.weight": (h6, C5*49), "fc6.bias",
    "fc7.weight": (h7, h6), "fc7.bias"}`` = ``classifier.0`` and ``classifier.3`` (4096 x 25088, 4096 x 4096)."""
    if len(net.classifier) == 0:
        raise ValueError("this VGG-16 has no classifier: no pretrained fc6/fc7")
    out: dict[str, Tensor] = {}
    for key, idx in (("fc6", 0), ("fc7", 3)):
        layer: nn.Linear = net.classifier[idx]
        out[f"{key}.weight"] = layer.weight.detach().clone()
        out[f"{key}.bias"] = layer.bias.detach().clone()
    return out
