"""The authors' digits CNN (examples/digit_da/cnn_digit_dah_init.m) up to relu3, trained from scratch.

Layer list of ``cnn_digit_dah_init.m`` (MatConvNet filters are ``h x w x in x out``)::

    x (N, C, S, S)
      -> conv1 5x5x1x20,  stride 1, pad 0 -> relu1 -> pool1 max 2x2/2   (N, 20, (S-4)/2, (S-4)/2)
      -> conv2 5x5x20x50, stride 1, pad 0 -> relu2 -> pool2 max 2x2/2   (N, 50, P, P), P = ((S-4)/2 - 4) // 2
      -> fc3   PxPx5x500 on 50 channels  -> relu3                       (N, 500) = features
      [-> lmmd3 -> fc4 1x1x500xbits -> lmmd4 -> bn4 -> tanh: the DAH head, dahash.nn.model.DAHHead with
          hidden_dims = () and mmd_layers (fc7, fc8)]

``fc3``'s filters are 5 channels deep on a 50-channel input, which MatConvNet's ``vl_nnconv`` runs as a
**grouped convolution**: ``groups = 50 / 5 = 10``; output ``o`` (``500 / 10 = 50`` per group) of group
``g = o // 50`` sees only input channels ``5 g .. 5 g + 4``. ``torch.nn.Conv2d(50, 500, P, groups=10)`` has the
same semantics (group ``g`` = outputs ``50 g .. 50 g + 49``, inputs ``5 g .. 5 g + 4``). ``P = 4`` for ``S = 28``.

Initialisation as the digits code runs it: ``cnn_digit_da.m`` sets ``weightInitMethod = 'gaussian'``, so every
filter is ``randn * 0.01`` (``init_weight``: ``sc = 0.01 / opts.scale``, ``scale = 1``) after ``rng(0)``, biases
0; here drawn from ``generator`` (seeded by the caller). ``init_std=None`` gives He/Kaiming-normal instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DIGITS_FC3_GROUPS", "DIGITS_INIT_STD", "DIGITS_LAYERS", "SmallCNN"]

#: ``cnn_digit_dah_init.m``: fc3's filters are 5 deep on 50 channels -> 10 groups
DIGITS_FC3_GROUPS = 10
#: ``cnn_digit_da.m`` weightInitMethod 'gaussian': ``randn * 0.01``
DIGITS_INIT_STD = 0.01
#: the authors' layers up to relu3 (name, MatConvNet filter shape h x w x in x out or None, stride, pad)
DIGITS_LAYERS: tuple[tuple[str, tuple[int, int, int, int] | None], ...] = (
    ("conv1", (5, 5, 1, 20)), ("relu1", None), ("pool1", None),
    ("conv2", (5, 5, 20, 50)), ("relu2", None), ("pool2", None),
    ("fc3", (4, 4, 5, 500)), ("relu3", None),
)


class SmallCNN(nn.Module):
    """conv1(20, 5x5)-ReLU-maxpool, conv2(50, 5x5)-ReLU-maxpool, fc3 (PxP grouped conv -> ``feature_dim``)-ReLU.

    Args:
        in_channels: 1 (grayscale digits) or 3.
        feature_dim: fc3's outputs (500 as the authors'); a multiple of ``fc3_groups``.
        input_size: side ``S`` of the square inputs, ``>= 16``; fc3's kernel is the pooled size ``P``.
        fc3_groups: groups of fc3 (10: the authors'; 1 = a dense fc layer); must divide 50 and ``feature_dim``.
        init_std: Gaussian std of every weight (0.01: the authors'), or None for He/Kaiming-normal (ReLU).
        generator: optional ``torch.Generator`` for the initialisation (reproducible without the global RNG).
    """

    def __init__(
        self,
        in_channels: int = 1,
        feature_dim: int = 500,
        input_size: int = 28,
        *,
        fc3_groups: int = DIGITS_FC3_GROUPS,
        init_std: float | None = DIGITS_INIT_STD,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if int(in_channels) < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if int(feature_dim) < 1:
            raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
        if int(input_size) < 16:
            raise ValueError(f"input_size must be >= 16 (two 5x5 convs and two 2x2 pools), got {input_size}")
        if int(fc3_groups) < 1 or 50 % int(fc3_groups) or int(feature_dim) % int(fc3_groups):
            raise ValueError(f"fc3_groups must divide 50 and feature_dim = {feature_dim}, got {fc3_groups}")
        if init_std is not None and not float(init_std) > 0:
            raise ValueError(f"init_std must be > 0 or None, got {init_std}")
        self.in_channels, self.feature_dim, self.input_size = int(in_channels), int(feature_dim), int(input_size)
        self.fc3_groups = int(fc3_groups)
        pooled = ((self.input_size - 4) // 2 - 4) // 2
        self.conv1 = nn.Conv2d(self.in_channels, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc3 = nn.Conv2d(50, self.feature_dim, pooled, groups=self.fc3_groups)
        with torch.no_grad():
            for layer in (self.conv1, self.conv2, self.fc3):
                if init_std is None:
                    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
                else:
                    nn.init.normal_(layer.weight, mean=0.0, std=float(init_std), generator=generator)
                layer.bias.zero_()

    def features(self, x: Tensor) -> Tensor:
        """``(N, in_channels, input_size, input_size)`` -> ``(N, feature_dim)`` (relu3)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[2:]) != (self.input_size,) * 2:
            raise ValueError(
                f"SmallCNN expects (N, {self.in_channels}, {self.input_size}, {self.input_size}) inputs, "
                f"got {tuple(x.shape)}; build it with in_channels/input_size matching the images"
            )
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc3(x)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`features`."""
        return self.features(x)
