"""A small LeNet-style CNN for 28 x 28 / 32 x 32 digit images, trained from scratch.

The trunk used for MNIST <-> USPS (the authors' ``examples/digit_da`` trains its digit network from
scratch; the layer sizes here are Caffe's LeNet, as in DAN/RevGrad/ADDA's digit experiments)::

    x (N, C, S, S)
      -> conv1 5x5, 20 ch -> ReLU -> maxpool 2x2/2      (N, 20, (S-4)/2, (S-4)/2)
      -> conv2 5x5, 50 ch -> ReLU -> maxpool 2x2/2      (N, 50, P, P), P = ((S-4)/2 - 4) // 2
      -> flatten (50 P^2) -> fc 50 P^2 -> feature_dim -> ReLU
      = features (N, feature_dim)

``P = 4`` for ``S = 28`` (800 inputs to the fc layer) and ``P = 5`` for ``S = 32`` (1250).
The DAH head (:class:`dahash.nn.model.DAHHead`) goes on top of ``features``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """conv(20, 5x5)-ReLU-maxpool, conv(50, 5x5)-ReLU-maxpool, fc -> ``feature_dim`` + ReLU.

    Initialisation: He/Kaiming-normal weights for ReLU (std ``sqrt(2 / fan_in)``), zero biases,
    drawn from ``generator`` when given (reproducible without the global RNG).

    Args:
        in_channels: 1 (grayscale digits) or 3.
        feature_dim: length of :meth:`features`' output (500 as in LeNet).
        input_size: side ``S`` of the square inputs, ``>= 16``; fixes the fc layer's input size.
        generator: optional ``torch.Generator`` for the initialisation.
    """

    def __init__(
        self,
        in_channels: int = 1,
        feature_dim: int = 500,
        input_size: int = 28,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if int(in_channels) < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if int(feature_dim) < 1:
            raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
        if int(input_size) < 16:
            raise ValueError(f"input_size must be >= 16 (two 5x5 convs and two 2x2 pools), got {input_size}")
        self.in_channels, self.feature_dim, self.input_size = int(in_channels), int(feature_dim), int(input_size)
        pooled = ((self.input_size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(self.in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc = nn.Linear(50 * pooled * pooled, self.feature_dim)
        with torch.no_grad():
            for layer in (self.conv1, self.conv2, self.fc):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
                layer.bias.zero_()

    def features(self, x: Tensor) -> Tensor:
        """``(N, in_channels, input_size, input_size)`` -> ``(N, feature_dim)`` (after the fc's ReLU)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != (self.input_size,) * 2:
            raise ValueError(
                f"SmallCNN expects (N, {self.in_channels}, {self.input_size}, {self.input_size}) inputs, "
                f"got {tuple(x.shape)}; build it with in_channels/input_size matching the images"
            )
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`features`."""
        return self.features(x)
