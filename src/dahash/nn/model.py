"""The DAH head on cached backbone features: fc6 -> relu6 -> fc7 -> relu7 -> hash-fc8 -> BN -> tanh.

Matches the authors' network from ``fc6`` on (examples/office/cnn_office_init.m): no dropout,
``hash-fc8`` initialised N(0, 0.01) with zero bias, BatchNorm before ``tanh``. When the cached
features are VGG-F's pool5 (9216-d) the pretrained fc6/fc7 are loaded through ``pretrained``.

``hidden_dims = ()`` gives the authors' digits head (examples/digit_da/cnn_digit_dah_init.m): no fc6/fc7, the
trunk's features (relu3 of the digits CNN) go straight into the hash layer (their fc4) -> BN -> tanh; then
``fc6`` and ``fc7`` of :class:`HeadOutput` are the head's input itself (where the authors' ``lmmd3`` sits).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["HeadOutput", "DAHHead", "PRETRAINABLE_KEYS"]

#: Keys ``DAHHead(pretrained=...)`` accepts.
PRETRAINABLE_KEYS: tuple[str, ...] = ("fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias")


@dataclass
class HeadOutput:
    """Every intermediate the DAH losses need, for a batch of ``N`` items.

    Attributes:
        fc6: ``(N, h1)`` relu6 output (after ReLU); the head's input when it has no hidden layers.
        fc7: ``(N, h2)`` relu7 output (after ReLU), the input of fc8; the head's input when it has no hidden
            layers (the digits CNN's relu3).
        fc8: ``(N, d)`` hash-fc8 output before BatchNorm (where the code applies MK-MMD).
        u: ``(N, d)`` ``tanh(BN(fc8))``, the continuous hash values in ``(-1, 1)``.
    """

    fc6: Tensor
    fc7: Tensor
    fc8: Tensor
    u: Tensor


class DAHHead(nn.Module):
    """fc6 + ReLU, fc7 + ReLU, hash-fc8, BatchNorm1d, tanh (or, with ``hidden_dims = ()``, hash-fc8, BN, tanh).

    Initialisation:
      * ``fc8``: weight ~ N(0, 0.01^2), bias 0 (the code's ``f = 1/100`` gaussian init);
      * ``fc6``/``fc7`` from ``pretrained`` when given (copied, layer marked pretrained),
        otherwise He/Kaiming-normal weights for ReLU (std ``sqrt(2 / fan_in)``) and zero bias
        (layer counts as new);
      * BatchNorm: weight 1, bias 0, eps 1e-5, running-statistics rate ``bn_momentum`` (0.05: the
        code's bnorm ``learningRate [2 1 0.05]``; PyTorch's default would be 0.1).

    Args:
        in_dim: feature dimension of the cached inputs (9216 for VGG-F pool5).
        hidden_dims: ``(h1, h2)`` widths of fc6 and fc7, or ``()``: no fc6/fc7 (the authors' digits head).
        hash_bits: ``d``.
        pretrained: optional mapping with any of ``fc6.weight (h1, in_dim)``, ``fc6.bias (h1,)``,
            ``fc7.weight (h2, h1)``, ``fc7.bias (h2,)``; a layer is loaded only with both its
            weight and bias.
        generator: optional torch.Generator for the random initialisation (reproducibility
            without touching the global RNG's use elsewhere).
        bn_momentum: the BatchNorm's running-statistics rate ``r``: ``running = (1 - r) running + r batch``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: tuple[int, int] = (4096, 4096),
        hash_bits: int = 64,
        pretrained: Mapping[str, Tensor] | None = None,
        *,
        generator: torch.Generator | None = None,
        bn_momentum: float = 0.05,
    ) -> None:
        super().__init__()
        if not 0.0 < float(bn_momentum) <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1], got {bn_momentum}")
        if int(in_dim) < 1:
            raise ValueError(f"in_dim must be >= 1, got {in_dim}")
        hidden_dims = tuple(int(h) for h in hidden_dims)
        if len(hidden_dims) not in (0, 2) or (hidden_dims and min(hidden_dims) < 1):
            raise ValueError(f"hidden_dims must be two positive ints or empty, got {hidden_dims}")
        if int(hash_bits) < 1:
            raise ValueError(f"hash_bits must be >= 1, got {hash_bits}")
        self.in_dim, self.hidden_dims, self.hash_bits = int(in_dim), hidden_dims, int(hash_bits)
        h1, h2 = hidden_dims or (self.in_dim, self.in_dim)
        #: widths of the HeadOutput fields
        self.widths: dict[str, int] = {"fc6": h1, "fc7": h2, "fc8": self.hash_bits, "u": self.hash_bits}
        self.layers: tuple[str, ...] = ("fc6", "fc7", "fc8") if hidden_dims else ("fc8",)
        if hidden_dims:
            self.fc6 = nn.Linear(self.in_dim, h1)
            self.fc7 = nn.Linear(h1, h2)
        self.fc8 = nn.Linear(h2, self.hash_bits)
        self.bn = nn.BatchNorm1d(self.hash_bits, momentum=float(bn_momentum))

        with torch.no_grad():
            for layer in (getattr(self, n) for n in self.layers[:-1]):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
                layer.bias.zero_()
            nn.init.normal_(self.fc8.weight, mean=0.0, std=0.01, generator=generator)
            self.fc8.bias.zero_()
        self.pretrained_layers: frozenset[str] = self._load_pretrained(pretrained)

    def _load_pretrained(self, pretrained: Mapping[str, Tensor] | None) -> frozenset[str]:
        if not pretrained:
            return frozenset()
        if not self.hidden_dims:
            raise ValueError("pretrained fc6/fc7 given, but this head has no fc6/fc7 (hidden_dims = ())")
        unknown = sorted(set(pretrained) - set(PRETRAINABLE_KEYS))
        if unknown:
            raise ValueError(f"unknown pretrained keys {unknown}; allowed: {list(PRETRAINABLE_KEYS)}")
        loaded: set[str] = set()
        for name in ("fc6", "fc7"):
            keys = (f"{name}.weight", f"{name}.bias")
            present = [k in pretrained for k in keys]
            if not any(present):
                continue
            if not all(present):
                raise ValueError(f"pretrained {name} needs both {keys[0]!r} and {keys[1]!r}")
            layer: nn.Linear = getattr(self, name)
            for key, param in zip(keys, (layer.weight, layer.bias)):
                value = torch.as_tensor(pretrained[key])
                if tuple(value.shape) != tuple(param.shape):
                    raise ValueError(
                        f"pretrained {key!r} has shape {tuple(value.shape)}, expected {tuple(param.shape)}"
                    )
                with torch.no_grad():
                    param.copy_(value.to(dtype=param.dtype))
            loaded.add(name)
        return frozenset(loaded)

    def forward(self, x: Tensor) -> HeadOutput:
        """``x (N, in_dim)`` -> :class:`HeadOutput`. In training mode BN uses the batch statistics
        (needs ``N >= 2``); in eval mode its running statistics."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"x must have shape (N, {self.in_dim}), got {tuple(x.shape)}")
        if self.hidden_dims:
            fc6 = torch.relu(self.fc6(x))
            fc7 = torch.relu(self.fc7(fc6))
        else:  # the authors' digits head: the trunk's (ReLU) features feed the hash layer directly
            fc6 = fc7 = x
        fc8 = self.fc8(fc7)
        u = torch.tanh(self.bn(fc8))
        return HeadOutput(fc6=fc6, fc7=fc7, fc8=fc8, u=u)

    def param_groups(
        self,
        base_lr: float,
        weight_decay: float,
        pretrained_mult: tuple[float, float] = (0.1, 0.2),
        new_mult: tuple[float, float] = (1.0, 2.0),
        bn_mult: tuple[float, float] = (2.0, 1.0),
        *,
        bias_decay: float = 0.0,
    ) -> list[dict]:
        """Parameter groups for ``torch.optim.SGD`` with MatConvNet-style lr multipliers.

        One group per parameter tensor, each ``{"params": [p], "name": "fc6.weight", "lr_mult": r,
        "lr": base_lr * r, "weight_decay": wd}``; a scheduler sets ``lr = lr_e * lr_mult``.

        * fc6/fc7: ``pretrained_mult`` (weight, bias) when loaded from ``pretrained``, else
          ``new_mult``; fc8: ``new_mult``. Weights get ``weight_decay``, biases
          ``bias_decay * weight_decay`` (0 by default: the code's ``weightDecay [wd 0]``).
        * BatchNorm scale/shift: ``bn_mult`` = (2, 1) and NO weight decay, as the code's bnorm
          layer (``learningRate [2 1 ...]``, ``weightDecay [0 0]``).
        """
        if base_lr <= 0:
            raise ValueError(f"base_lr must be > 0, got {base_lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if bias_decay < 0:
            raise ValueError(f"bias_decay must be >= 0, got {bias_decay}")
        for label, pair in (("pretrained_mult", pretrained_mult), ("new_mult", new_mult), ("bn_mult", bn_mult)):
            if len(pair) != 2 or min(pair) < 0:
                raise ValueError(f"{label} must be two non-negative numbers, got {pair}")
        groups: list[dict] = []

        def add(name: str, param: nn.Parameter, mult: float, wd: float) -> None:
            groups.append(
                {"params": [param], "name": name, "lr_mult": float(mult), "lr": base_lr * float(mult),
                 "weight_decay": float(wd)}
            )

        for layer_name in self.layers:
            layer: nn.Linear = getattr(self, layer_name)
            w_mult, b_mult = pretrained_mult if layer_name in self.pretrained_layers else new_mult
            add(f"{layer_name}.weight", layer.weight, w_mult, weight_decay)
            add(f"{layer_name}.bias", layer.bias, b_mult, weight_decay * bias_decay)
        add("bn.weight", self.bn.weight, bn_mult[0], 0.0)
        add("bn.bias", self.bn.bias, bn_mult[1], 0.0)
        return groups
