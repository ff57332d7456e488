"""The per-method loss of the fine-tuning loop (:func:`dahash.train.finetune.train_finetune`).

The loop owns everything a method shares with DAH (trunk, input recipe, K-per-class source batches plus
target batches, lr multipliers and schedule, checkpoints); an :class:`Objective` owns what differs: the
loss of one joint batch and whatever the loss itself learns or remembers. An objective is an
``nn.Module``, so that

* its parameters (e.g. DANN's domain classifier) are trained with the network: :meth:`Objective.param_groups`
  gives their SGD groups (new layers: ``config.new_lr_mult``, weight decay on weights);
* its parameters and buffers (e.g. DPSH's memory of every training item's output) are part of the run's
  checkpoint and fingerprint, so a resumed run continues bit-identically.

Implemented here: :class:`DAHObjective` (the paper's method). The comparison methods' objectives live with the
methods (:mod:`dahash.baselines.objectives`).

Step convention: :meth:`Objective.losses` returns the logged components (0-d tensors, names
:attr:`Objective.names`) and under ``"loss"`` the tensor that is backpropagated; :func:`objective_step`
checks every component is finite, backpropagates ``"loss"`` and steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dahash.train.head import LOSS_NAMES, batch_losses, checked_step

__all__ = ["Batch", "DAHObjective", "Objective", "objective_step"]


@dataclass
class Batch:
    """What an objective knows about one joint batch besides the network output.

    Attributes:
        n_source: ``ns``, the source rows at the top of the batch (the rest, if any, are target rows).
        ys: ``(ns,)`` int64 labels of the source rows (on the training device).
        source_index: ``(ns,)`` int64 indices of the source rows into the source set (on the device).
        epoch: 1-based epoch.
        progress: ``p`` in ``[0, 1)``: steps done before this one / all steps of the run.
        generator: the run's torch.Generator (e.g. MK-MMD's random halves); consumed in batch order.
        gate_open: whether the source rows are a class-ordered K-per-class batch (DAH's entropy gate).
    """

    n_source: int
    ys: Tensor
    source_index: Tensor
    epoch: int
    progress: float
    generator: torch.Generator
    gate_open: bool


class Objective(nn.Module):
    """A method's loss for the fine-tuning loop (module docstring).

    Subclasses set :attr:`method` (a short name, part of the checkpoint fingerprint), :attr:`names` (the
    logged components, ``"total"`` among them), :attr:`reads_target` (False: the target rows are not loaded
    nor fed to the network; the epoch length stays one pass over the target set, so the source batches are
    those of DAH with the same seed) and implement :meth:`losses`.
    """

    method: str = "objective"
    names: tuple[str, ...] = ("total",)
    reads_target: bool = True

    def losses(self, out: Any, batch: Batch) -> dict[str, Tensor]:
        """Components of one batch (0-d tensors, keys :attr:`names`) plus ``"loss"``, the tensor to
        backpropagate (attached to the graph)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The objective's settings as JSON-able values (enter the checkpoint fingerprint)."""
        return {"method": self.method}

    def param_groups(self, lr: float, weight_decay: float, new_mult: tuple[float, float],
                     bias_decay: float) -> list[dict[str, Any]]:
        """SGD groups of the objective's own parameters (new layers): ``new_mult`` (weight, bias), weight
        decay ``weight_decay`` on weights and ``bias_decay * weight_decay`` on biases; names
        ``"objective.<param name>"``. Empty for objectives without parameters."""
        groups = []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            is_bias = name.endswith("bias")
            mult = float(new_mult[1 if is_bias else 0])
            groups.append({"params": [param], "name": f"objective.{name}", "lr_mult": mult, "lr": lr * mult,
                           "weight_decay": float(weight_decay * (bias_decay if is_bias else 1.0))})
        return groups


class DAHObjective(Objective):
    """DAH (the paper): :func:`dahash.train.head.batch_losses` (hash + beta quantization + eta entropy
    [gated] + gamma MK-MMD on ``config.mmd_layers``), backpropagated as ``J / (2 ns)`` when
    ``config.divide_by_batch`` (MatConvNet's ``1/batchSize``), else ``J``. Components: ``hash``,
    ``quantization``, ``entropy``, ``mmd`` (unweighted) and ``total`` (weighted J)."""

    method = "dah"
    reads_target = True

    def __init__(self, config: Any, num_classes: int) -> None:
        super().__init__()
        self.config, self.num_classes = config, int(num_classes)
        self.names = LOSS_NAMES

    def losses(self, out: Any, batch: Batch) -> dict[str, Tensor]:
        terms = batch_losses(out, batch.n_source, batch.ys, self.num_classes, self.config, batch.generator,
                             batch.gate_open)
        total = terms["total"]
        terms["loss"] = total / (2 * batch.n_source) if self.config.divide_by_batch else total
        return terms


def objective_step(terms: Mapping[str, Tensor], names: tuple[str, ...], optimizer: torch.optim.Optimizer,
                   epoch: int, batch: int) -> list[float]:
    """One optimiser step: zero the gradients, backpropagate ``terms["loss"]``, check the components
    ``names`` are finite (:class:`dahash.train.head.NonFiniteLossError` names epoch, batch and component;
    the weights are then left unchanged) and step. Returns the components' values in ``names`` order."""
    return checked_step(terms, names, optimizer, epoch, batch)
