"""Training loop of DAH on cached features (the authors' ``cnn_train_dah.m`` without the backbone).

Batch: ``k*C`` source items (k per class, class order; :class:`~dahash.train.sampler.KPerClassSampler`)
followed by as many target items; one epoch = one pass over the shuffled target set
(:func:`~dahash.train.sampler.target_batches`). Both halves go through the head in ONE forward pass, so
BatchNorm statistics are over the joint batch, as in the code. Per batch::

    J = hash(U_s) + beta * (quant(U_s) + quant(U_t)) + eta * H(U_t, U_s) [gated]
        + gamma * sum_{l in mmd_layers} MMD_lin(l_s, l_t)

SGD with momentum and weight decay; the learning rate of epoch ``e`` is
``logspace(log10(lr_start), log10(lr_end), epochs)[e]`` times each group's ``lr_mult``.
Target labels are never seen. With ``checkpoint_dir`` the run is checkpointed every
``checkpoint_every`` epochs and resumed from its newest checkpoint (:mod:`dahash.train.checkpoint`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from dahash.progress import label, loss_postfix
from dahash.progress import progress as progress_bar
from dahash.train.checkpoint import (capture_rng_state, checkpoint_progress, cpu_state_dict, load_latest_checkpoint,
                                     restore_rng_state, run_fingerprint, save_checkpoint)
from dahash.train.losses import (
    is_class_ordered_k_batch,
    linear_mk_mmd,
    pairwise_hash_loss,
    quantization_loss,
    target_entropy_loss,
)
from dahash.nn.model import DAHHead, HeadOutput
from dahash.train.sampler import KPerClassSampler, target_batches

__all__ = [
    "DAHConfig",
    "DAHResult",
    "LOSS_NAMES",
    "NonFiniteLossError",
    "batch_losses",
    "encode",
    "lr_schedule",
    "checked_step",
    "sgd_step",
    "train_dah",
]

MMD_LAYER_NAMES: tuple[str, ...] = ("fc6", "fc7", "fc8", "u")
HISTORY_KEYS: tuple[str, ...] = ("epoch", "lr", "hash", "quantization", "entropy", "mmd", "total")
#: How many ``epoch-XXXX.pt`` files :func:`train_dah` keeps in ``checkpoint_dir``.
CHECKPOINTS_KEPT: int = 2


class NonFiniteLossError(FloatingPointError):
    """A loss component became nan/inf; ``epoch`` (1-based) and ``component`` say where."""

    def __init__(self, epoch: int, batch: int, component: str, value: float) -> None:
        super().__init__(f"non-finite {component} loss ({value}) at epoch {epoch}, batch {batch}")
        self.epoch, self.batch, self.component, self.value = epoch, batch, component, value


def _pair(name: str, value, *, positive: bool = False) -> tuple[float, float]:
    try:
        out = tuple(float(v) for v in value)
    except TypeError as exc:
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from exc
    if len(out) != 2 or any(not math.isfinite(v) for v in out) or min(out) < 0 or (positive and min(out) <= 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be two finite numbers {bound}, got {value!r}")
    return out  # type: ignore[return-value]


@dataclass
class DAHConfig:
    """Hyper-parameters of :func:`train_dah`; defaults are the authors' Office settings.

    Loss weights: ``beta`` quantization (source and target), ``eta`` entropy, ``gamma`` MK-MMD
    (scaled to the SUMMED statistic, hence 5e3). ``mmd_scale_exponents=(lo, hi)`` gives the
    kernel scales ``2^lo .. 2^hi``. ``bn_lr_mult``: (scale, shift) multipliers of the BatchNorm
    parameters (no weight decay on them).

    Where the paper and the authors' code differ, the default is the code's behaviour and the
    paper's reading is selectable (``shared/docs/dah-reference.md``):

    ================== =================================== ================================= =========
    field              paper                               authors' code                     default
    ================== =================================== ================================= =========
    reduction          ``"mean"`` for the entropy (eq. 7,  ``"sum"``: every term summed      ``"sum"``
                       ``1/n_t``); sums in eq. 5
    hash_scale         ``1`` (``sigma(u.u)``, eq. 3-5)     ``0.5``                           ``0.5``
    similar_weight     "S_ij in {0, 10}" (ambiguous;       ``10``: weight W on like pairs,   ``10``
                       ``1`` = unweighted eq. 5)           1 on unlike pairs
    sign_zero          ``sgn(.)``, value at 0 unstated;    ``+1.0`` (``u >= 0``); its        ``+1.0``
                       ``-1.0`` = the ``u > 0`` rule       ``calcMap`` uses ``U > 0``
    entropy_gate       ``False`` (eq. 7 always)            ``True``: entropy only on         ``True``
                                                           k-per-class, class-ordered
                                                           source batches
    hash_diagonal_grad ``True`` (eq. 5 differentiated      ``False``: i == j pairs in the    ``False``
                       as written)                         value, no gradient
    divide_by_batch    ``False`` (gradient of J)           ``True``: MatConvNet divides by   ``True``
                                                           the batch size ``2kC``
    gamma              chosen by a domain classifier       ``5e3``                           ``5e3``
                       (sec. 5.2, :mod:`dahash.train.gamma`)
    eta                ``1`` (``0`` = DAH-e)               ``1``                             ``1``
    bias_decay         not stated                          ``0``: ``weightDecay [wd 0]``,    ``0``
                                                           no decay on biases
    bn_momentum        not stated                          ``0.05``: bnorm ``learningRate    ``0.05``
                                                           [2 1 0.05]`` (moments rate)
    mmd_odd            not stated                          ``"repeat"``: an odd half is      ``"repeat"``
                                                           padded with its last item
    ================== =================================== ================================= =========

    * The authors' digits code (``examples/digit_da``) differs from the Office code above:
      ``hidden_dims = ()`` (no fc6/fc7: the digits CNN's 500-d relu3 feeds the hash layer), ``mmd_layers =
      ("fc7", "fc8")`` (their ``lmmd3`` on relu3 = the head's input, ``lmmd4`` on fc4 = fc8), ``new_lr_mult = (1, 1)``
      and ``bias_decay = 1`` (their conv layers set no ``learningRate``/``weightDecay``, so MatConvNet's defaults
      ``[1 1]`` apply: biases at the weights' rate and decayed): :data:`dahash.data.digits.DIGITS_SETTINGS`.
    * ``sign_zero``: value of ``sign(0)`` in the quantization target ``||u - sign(u)||^2``
      (:func:`~dahash.train.losses.quantization_loss`); +1.0 or -1.0 only.
    * ``entropy_gate``: with the k-per-class sampler the gate is always open; kept for fidelity.
    * ``hash_diagonal_grad``: passed as ``diagonal_grad`` to
      :func:`~dahash.train.losses.pairwise_hash_loss`.
    * ``divide_by_batch`` (not in the paper): backpropagate ``J / (2 k C)`` (the joint batch size)
      instead of ``J``, which is what MatConvNet's stock ``cnn_train`` does to every gradient
      (``-1/batchSize * dzdw``). The logged losses are never divided.
    * ``bias_decay``: factor applied to ``weight_decay`` for every bias (conv/linear layers of the
      trunk and the head); ``0`` as the code (``weightDecay [wd 0]``), ``1`` = decay biases like weights.
    * ``bn_momentum``: rate of the running-statistics update of the head's BatchNorm (and of a trunk
      trained from scratch): ``running = (1 - r) running + r batch``; the code's moments rate 0.05
      (PyTorch's own default is 0.1).
    * ``mmd_odd``: linear MK-MMD with an odd number of items per domain
      (:func:`~dahash.train.losses.linear_mk_mmd`): ``"repeat"`` (code) or ``"drop"``. Office-Home's
      ``K C = 325`` and Office-31's 155 are odd, so this matters for the paper's batches.
    * ``eta = 0`` is the paper's DAH-e variant: the entropy term is then not computed at all (its
      logged value is 0).
    """

    hash_bits: int = 64
    hidden_dims: tuple[int, int] = (4096, 4096)
    k_per_class: int = 5
    epochs: int = 300
    lr_start: float = 1e-4
    lr_end: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    similar_weight: float = 10.0
    hash_scale: float = 0.5
    beta: float = 1.0
    eta: float = 1.0
    gamma: float = 5e3
    mmd_layers: tuple[str, ...] = ("fc6", "fc7", "fc8")
    mmd_scale_exponents: tuple[int, int] = (-8, 8)
    reduction: Literal["sum", "mean"] = "sum"
    entropy_gate: bool = True
    sign_zero: float = 1.0
    hash_diagonal_grad: bool = False
    pretrained_lr_mult: tuple[float, float] = (0.1, 0.2)
    new_lr_mult: tuple[float, float] = (1.0, 2.0)
    bn_lr_mult: tuple[float, float] = (2.0, 1.0)
    divide_by_batch: bool = True
    bias_decay: float = 0.0
    bn_momentum: float = 0.05
    mmd_odd: Literal["repeat", "drop"] = "repeat"

    def __post_init__(self) -> None:
        for name in ("hash_bits", "k_per_class", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
            setattr(self, name, int(value))
        try:
            dims = tuple(int(h) for h in self.hidden_dims)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"hidden_dims must be two positive ints, got {self.hidden_dims!r}") from exc
        if len(dims) not in (0, 2) or (dims and min(dims) < 1):
            raise ValueError(f"hidden_dims must be two positive ints (or empty: no fc6/fc7), got {self.hidden_dims!r}")
        self.hidden_dims = dims  # type: ignore[assignment]
        for name in ("lr_start", "lr_end", "similar_weight", "hash_scale"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0, got {getattr(self, name)!r}")
            setattr(self, name, value)
        for name in ("weight_decay", "beta", "eta", "gamma", "bias_decay"):
            value = float(getattr(self, name))
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)!r}")
            setattr(self, name, value)
        bn_momentum = float(self.bn_momentum)
        if not 0.0 < bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.bn_momentum!r}")
        self.bn_momentum = bn_momentum
        if self.mmd_odd not in ("repeat", "drop"):
            raise ValueError(f"mmd_odd must be 'repeat' or 'drop', got {self.mmd_odd!r}")
        momentum = float(self.momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        self.momentum = momentum
        if isinstance(self.mmd_layers, str):
            raise ValueError(f"mmd_layers must be a sequence of layer names, got the string {self.mmd_layers!r}")
        layers = tuple(self.mmd_layers)
        bad = [name for name in layers if name not in MMD_LAYER_NAMES]
        if bad or len(set(layers)) != len(layers):
            raise ValueError(f"mmd_layers must be distinct names from {MMD_LAYER_NAMES}, got {self.mmd_layers!r}")
        if not self.hidden_dims and {"fc6", "fc7"} <= set(layers):
            raise ValueError(f"mmd_layers {layers!r}: with hidden_dims = () fc6 and fc7 are one tensor (the head's "
                             "input); name it once (the digits preset: mmd_layers [fc7, fc8])")
        self.mmd_layers = layers
        try:
            lo, hi = (int(e) for e in self.mmd_scale_exponents)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"mmd_scale_exponents must be two ints (lo, hi), got {self.mmd_scale_exponents!r}"
            ) from exc
        if lo > hi:
            raise ValueError(f"mmd_scale_exponents must have lo <= hi, got {self.mmd_scale_exponents!r}")
        self.mmd_scale_exponents = (lo, hi)
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        try:
            sign_zero = float(self.sign_zero)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sign_zero must be +1.0 or -1.0, got {self.sign_zero!r}") from exc
        if isinstance(self.sign_zero, bool) or sign_zero not in (1.0, -1.0):
            raise ValueError(f"sign_zero must be +1.0 or -1.0, got {self.sign_zero!r}")
        self.sign_zero = sign_zero
        for name in ("entropy_gate", "hash_diagonal_grad", "divide_by_batch"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("pretrained_lr_mult", "new_lr_mult", "bn_lr_mult"):
            setattr(self, name, _pair(name, getattr(self, name)))

    @property
    def mmd_scales(self) -> tuple[float, ...]:
        """Kernel scales ``q = 2^lo, ..., 2^hi``."""
        lo, hi = self.mmd_scale_exponents
        return tuple(2.0**e for e in range(lo, hi + 1))


@dataclass
class DAHResult:
    """Trained head (on the training device, train mode) and one record per epoch.

    Each record: ``epoch`` (1-based), ``lr`` (schedule value before multipliers), and the means over
    the epoch's batches of the UNWEIGHTED components ``hash``, ``quantization`` (source + target),
    ``entropy`` (0 for gated-out batches), ``mmd`` (sum over ``mmd_layers``) and the weighted
    ``total`` J. ``resumed_epoch``: epochs restored from a checkpoint (0 for a fresh run).
    """

    model: DAHHead
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_epoch: int = 0


def make_sgd(groups: list[dict[str, Any]], lr: float, momentum: float) -> torch.optim.SGD:
    """``torch.optim.SGD(groups, lr, momentum)``, fused (one kernel over every parameter) where this torch has it.

    The update is the same, p <- p - lr_g (m v + g + wd_g p) per group, element for element (checked bit-identical
    with the per-tensor loop on the DAH head, tests/test_train_sgd.py); the fused kernel reads and writes each
    parameter, gradient and momentum buffer once instead of three times: the step of the Office-Caltech head
    (2.4 M parameters, one thread) costs 1.0 ms instead of 2.8 ms. Falls back to the default implementation where
    fused SGD is not available (torch < 2.4 on the CPU, other devices).
    """
    try:
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def lr_schedule(lr_start: float, lr_end: float, epochs: int) -> np.ndarray:
    """``(epochs,)`` per-epoch rates ``logspace(log10(lr_start), log10(lr_end), epochs)``."""
    if lr_start <= 0 or lr_end <= 0 or epochs < 1:
        raise ValueError(f"need lr_start > 0, lr_end > 0, epochs >= 1; got {lr_start}, {lr_end}, {epochs}")
    return np.logspace(math.log10(lr_start), math.log10(lr_end), epochs)


def _validate_data(xs: Tensor, ys: Tensor, xt: Tensor, num_classes: int) -> None:
    for name, x in (("xs", xs), ("xt", xt)):
        if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
            raise ValueError(f"{name} must be a 2-D floating-point tensor, got {getattr(x, 'shape', type(x))}")
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"xs and xt must have the same feature dimension, got {tuple(xs.shape)} and {tuple(xt.shape)}")
    if not isinstance(ys, Tensor) or ys.dim() != 1 or ys.shape[0] != xs.shape[0]:
        raise ValueError(f"ys must have shape ({xs.shape[0]},), got {getattr(ys, 'shape', type(ys))}")
    if ys.is_floating_point() or ys.dtype == torch.bool:
        raise ValueError(f"ys must be an integer tensor, got dtype {ys.dtype}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if xt.shape[0] < 1:
        raise ValueError("xt must hold at least one target item")


def batch_losses(
    out: HeadOutput,
    n_source: int,
    ys: Tensor,
    num_classes: int,
    config: DAHConfig,
    generator: torch.Generator,
    gate_open: bool,
) -> dict[str, Tensor]:
    """Loss components of ONE joint batch (``n_source`` source rows first, then the target rows).

    With ``U_s = out.u[:n_source]`` ``(ns, d)``, ``U_t = out.u[n_source:]`` ``(nt, d)`` and the
    layers ``l`` in ``config.mmd_layers`` (each ``(ns + nt, h_l)``)::

        hash         = pairwise_hash_loss(U_s, ys)                       (supervised, source pairs)
        quantization = ||U_s - sign(U_s)||^2 + ||U_t - sign(U_t)||^2      (constant sign, sign(0) = sign_zero)
        entropy      = H(U_t, U_s, ys)   if gate_open and eta > 0, else 0 (not even computed)
        mmd          = sum_l MMD_lin(l[:ns], l[ns:])                      (draws halves from ``generator``)
        total        = hash + beta * quantization + eta * entropy + gamma * mmd

    Args:
        out: the head's output on the joint batch.
        n_source: number of source rows ``ns`` at the top of the batch.
        ys: ``(ns,)`` integer labels of the source rows.
        num_classes: number of classes ``C``.
        config: weights and paper-vs-code options (``reduction``, ``hash_scale``, ``similar_weight``,
            ``sign_zero``, ``hash_diagonal_grad``).
        generator: torch RNG for the MK-MMD random halves (advanced once per MMD layer).
        gate_open: whether the entropy term applies to this batch (see ``DAHConfig.entropy_gate``).

    Returns:
        0-d tensors under the keys ``hash``, ``quantization``, ``entropy``, ``mmd`` (the UNWEIGHTED
        components) and ``total`` (the weighted J, still attached to the graph; not divided by the
        batch size -- :func:`train_dah` does that when ``config.divide_by_batch``).
    """
    ns = int(n_source)
    if not 1 <= ns < out.u.shape[0]:
        raise ValueError(f"n_source must be in [1, {out.u.shape[0] - 1}], got {n_source!r}")
    u_s, u_t = out.u[:ns], out.u[ns:]
    hash_term = pairwise_hash_loss(
        u_s, ys, config.similar_weight, config.hash_scale, config.reduction,
        diagonal_grad=config.hash_diagonal_grad,
    )
    quant = quantization_loss(u_s, config.reduction, sign_zero=config.sign_zero) + quantization_loss(
        u_t, config.reduction, sign_zero=config.sign_zero
    )
    if gate_open and config.eta > 0:
        entropy = target_entropy_loss(u_t, u_s, ys, num_classes, config.reduction)
    else:  # gated out, or DAH-e (eta = 0): not computed at all
        entropy = u_s.new_zeros(())
    mmd = u_s.new_zeros(())
    for name in config.mmd_layers:
        layer = getattr(out, name)
        mmd = mmd + linear_mk_mmd(layer[:ns], layer[ns:], config.mmd_scales, config.reduction, generator,
                                  odd=config.mmd_odd)
    total = hash_term + config.beta * quant
    if config.eta > 0:
        total = total + config.eta * entropy
    total = total + config.gamma * mmd
    return {"hash": hash_term, "quantization": quant, "entropy": entropy, "mmd": mmd, "total": total}


def _fingerprint(
    xs: Tensor, ys: Tensor, xt: Tensor, num_classes: int, config: DAHConfig, seed: int,
    pretrained: Mapping[str, Tensor] | None,
) -> str:
    """:func:`~dahash.train.checkpoint.run_fingerprint` of a :func:`train_dah` call: the config as JSON,
    the seed, ``num_classes``, and the bytes of the float32 ``xs``/``xt``, int64 ``ys`` and any
    ``pretrained`` weights (what training actually consumes)."""
    arrays: dict[str, Tensor] = {
        "xs": xs.detach().to(dtype=torch.float32), "ys": ys.detach().long(), "xt": xt.detach().to(dtype=torch.float32),
    }
    for key, value in (pretrained or {}).items():
        arrays[f"pretrained.{key}"] = torch.as_tensor(value).detach().to(dtype=torch.float32)
    return run_fingerprint(dataclasses.asdict(config), seed, arrays, {"num_classes": int(num_classes)})


def _capture_state(
    model: DAHHead, optimizer: torch.optim.Optimizer, generator: torch.Generator, rng: np.random.Generator,
    sampler: KPerClassSampler, history: list[dict[str, float]], fingerprint: str,
) -> dict:
    """Everything that determines the rest of a run, in ``torch.load(weights_only=True)``-safe types."""
    return {
        "fingerprint": fingerprint,
        "model": cpu_state_dict(model),
        "optimizer": optimizer.state_dict(),
        **capture_rng_state(generator, rng, sampler),
        "history": [dict(h) for h in history],
    }


def _restore_state(
    ckpt: dict, model: DAHHead, optimizer: torch.optim.Optimizer, generator: torch.Generator,
    rng: np.random.Generator, sampler: KPerClassSampler, epochs: int,
) -> tuple[int, list[dict[str, float]]]:
    """Load a :func:`_capture_state` payload in place; returns ``(completed epochs, history)``."""
    epoch, history = checkpoint_progress(ckpt, epochs)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng_state(ckpt, generator, rng, sampler)
    return epoch, history


#: The loss components of one batch, in the order :func:`sgd_step` returns them.
LOSS_NAMES: tuple[str, ...] = ("hash", "quantization", "entropy", "mmd", "total")


def sgd_step(terms: Mapping[str, Tensor], optimizer: torch.optim.Optimizer, config: DAHConfig, n_source: int,
             epoch: int, batch: int) -> list[float]:
    """One optimiser step on a batch's :func:`batch_losses`, shared by head mode and fine-tuning.

    Checks every component is finite (:class:`NonFiniteLossError` names epoch, batch and component),
    backpropagates ``J`` or, with ``config.divide_by_batch``, ``J / (2 n_source)`` (MatConvNet's
    ``1/batchSize`` on gradients; weight decay is not divided), and steps. Returns the unweighted
    component values in :data:`LOSS_NAMES` order (for the epoch means).
    """
    loss = terms["total"] / (2 * n_source) if config.divide_by_batch else terms["total"]
    return checked_step({**terms, "loss": loss}, LOSS_NAMES, optimizer, epoch, batch)


def checked_step(terms: Mapping[str, Tensor], names: tuple[str, ...], optimizer: torch.optim.Optimizer,
                 epoch: int, batch: int) -> list[float]:
    """One optimiser step: zero the gradients, backpropagate ``terms["loss"]``, check the components ``names``
    are finite (:class:`NonFiniteLossError` names epoch, batch and component; the weights are then left
    unchanged) and step. Returns the components' values in ``names`` order (float32)."""
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    # one device->host transfer per step, after the backward pass is queued (on a GPU the host waits here,
    # not before the backward); a non-finite value stops before the weights change
    values = torch.stack([terms[n].detach().float() for n in names]).cpu().tolist()
    for name, value in zip(names, values):
        if not math.isfinite(value):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(epoch, batch, name, value)
    optimizer.step()
    return values


def _train_epoch(model: DAHHead, optimizer: torch.optim.Optimizer, sampler: KPerClassSampler,
                 data: tuple[Tensor, Tensor, np.ndarray, Tensor], num_classes: int, config: DAHConfig,
                 generator: torch.Generator, rng: np.random.Generator, epoch: int, lr: float) -> dict[str, float]:
    """One epoch of :func:`train_dah` at learning rate ``lr`` (times each group's ``lr_mult``): every target item
    once in shuffled batches, each beside the sampler's next K-per-class source batch (``batch_ns`` items); one SGD
    step per batch. ``data``: (source features ``(ns, f)`` and labels ``(ns,)`` on the device, the labels as numpy,
    target features ``(nt, f)`` on the device). Returns the epoch's record ``{"epoch", "lr", <loss>: batch mean}``.
    """
    xs_d, ys_d, ys_np, xt_d = data
    device = xs_d.device
    batch_ns = sampler.batch_size
    for group in optimizer.param_groups:
        group["lr"] = lr * group["lr_mult"]
    sums = np.zeros(len(LOSS_NAMES))
    t_batches = target_batches(xt_d.shape[0], batch_ns, rng)
    for b_idx, t_idx in enumerate(t_batches, start=1):
        s_np = sampler.next_batch()
        gate_open = (not config.entropy_gate) or is_class_ordered_k_batch(
            ys_np[s_np], num_classes, config.k_per_class
        )
        s_idx = torch.from_numpy(s_np).to(device)
        t_idx_d = torch.from_numpy(t_idx).to(device)
        out = model(torch.cat([xs_d[s_idx], xt_d[t_idx_d]]))
        terms = batch_losses(out, batch_ns, ys_d[s_idx], num_classes, config, generator, gate_open)
        sums += sgd_step(terms, optimizer, config, batch_ns, epoch, b_idx)
    means = sums / len(t_batches)
    record: dict[str, float] = {"epoch": epoch, "lr": lr}  # epoch: int, 1-based
    record.update({name: float(v) for name, v in zip(LOSS_NAMES, means)})
    return record


def train_dah(
    xs: Tensor,
    ys: Tensor,
    xt: Tensor,
    num_classes: int,
    config: DAHConfig,
    *,
    device: str | torch.device = "cpu",
    seed: int = 0,
    pretrained: Mapping[str, Tensor] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int = 10,
    progress: bool | str = False,
) -> DAHResult:
    """Train a :class:`~dahash.nn.model.DAHHead` on source features/labels and unlabeled target features.

    Args:
        xs: ``(ns, f)`` source features. ys: ``(ns,)`` labels in ``[0, num_classes)``, every class
            present. xt: ``(nt, f)`` target features (no labels, ever). Features are cast to float32.
        config: hyper-parameters. device: where the head and the data live.
        seed: the only source of randomness: ``torch.Generator().manual_seed(seed)`` (init, MMD
            halves) and ``np.random.default_rng(seed)`` (batches). The global torch RNG is neither
            used nor advanced. Same seed on CPU -> bit-identical history and weights.
        pretrained: fc6/fc7 weights for :class:`DAHHead` (those layers then get ``pretrained_lr_mult``).
        on_epoch: called with each epoch's history record, after that epoch's checkpoint (if any)
            is saved; only for the epochs trained by THIS call (not for epochs restored from a
            checkpoint).
        checkpoint_dir: folder of this run's checkpoints (:mod:`dahash.train.checkpoint`), or None for
            none. After every ``checkpoint_every``-th epoch and after the last one (never mid-epoch)
            ``epoch-XXXX.pt`` is saved atomically with the model and optimizer state, the torch and
            numpy generator states, the sampler's permutations and cursors, the history, the epoch
            and the run's fingerprint (config, seed, data; see :func:`_fingerprint`); the last 2
            are kept. On start the newest readable checkpoint with the same fingerprint is resumed
            (an unreadable newest file is set aside and the previous one used). On CPU a resumed run
            ends bit-identical (history and state_dict) to an uninterrupted one.
        checkpoint_every: epochs between checkpoints, ``>= 1``.
        progress: a bar over the epochs (:mod:`dahash.progress`; from the resumed epoch, postfix the epoch's
            losses): False none, True labelled "train", or a string: the label. It changes no result.

    Raises:
        ValueError: bad shapes/labels, a class without source items, ``checkpoint_every < 1``, or a
            checkpoint in ``checkpoint_dir`` from a run with another fingerprint.
        NonFiniteLossError: a loss component became nan/inf (names epoch, batch and component).
    """
    if not isinstance(config, DAHConfig):
        raise ValueError(f"config must be a DAHConfig, got {type(config).__name__}")
    _validate_data(xs, ys, xt, num_classes)
    if (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, (int, np.integer))
            or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be an int >= 1, got {checkpoint_every!r}")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(int(seed))
    rng = np.random.default_rng(int(seed))

    with torch.random.fork_rng(devices=[]):  # nn.Linear's default init would advance the global RNG
        model = DAHHead(xs.shape[1], config.hidden_dims, config.hash_bits, pretrained, generator=generator,
                        bn_momentum=config.bn_momentum)
    model.to(device)
    xs_d = xs.detach().to(device=device, dtype=torch.float32)
    xt_d = xt.detach().to(device=device, dtype=torch.float32)
    ys_cpu = ys.detach().cpu().long()
    ys_d = ys_cpu.to(device)

    ys_np = ys_cpu.numpy()
    sampler = KPerClassSampler(ys_np, num_classes, config.k_per_class, rng)
    groups = model.param_groups(
        config.lr_start, config.weight_decay, config.pretrained_lr_mult, config.new_lr_mult, config.bn_lr_mult,
        bias_decay=config.bias_decay,
    )
    optimizer = make_sgd(groups, config.lr_start, config.momentum)
    schedule = lr_schedule(config.lr_start, config.lr_end, config.epochs)

    history: list[dict[str, float]] = []
    start_epoch, fingerprint = 0, ""
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        fingerprint = _fingerprint(xs, ys, xt, num_classes, config, int(seed), pretrained)
        ckpt = load_latest_checkpoint(checkpoint_dir, fingerprint)
        if ckpt is not None:
            start_epoch, history = _restore_state(ckpt, model, optimizer, generator, rng, sampler, config.epochs)

    model.train()
    desc = label(progress, "train")
    with progress_bar(total=config.epochs, initial=start_epoch, desc=desc, unit="epoch",
                      enabled=desc is not None) as bar:
        for epoch_idx in range(start_epoch, config.epochs):
            epoch = epoch_idx + 1
            record = _train_epoch(model, optimizer, sampler, (xs_d, ys_d, ys_np, xt_d), num_classes, config,
                                  generator, rng, epoch, float(schedule[epoch_idx]))
            history.append(record)
            if checkpoint_dir is not None and (epoch % int(checkpoint_every) == 0 or epoch == config.epochs):
                state = _capture_state(model, optimizer, generator, rng, sampler, history, fingerprint)
                save_checkpoint(checkpoint_dir, epoch, state, keep=CHECKPOINTS_KEPT)
            if on_epoch is not None:
                on_epoch(dict(record))
            bar.set_postfix_str(loss_postfix(record, LOSS_NAMES), refresh=False)
            bar.update()
    return DAHResult(model=model, history=history, resumed_epoch=start_epoch)


def encode(
    model: DAHHead, x: Tensor, *, batch_size: int = 1024, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Continuous hash outputs ``u = tanh(BN(fc8))`` of ``x (N, f)`` in eval mode (BN running
    statistics), as a float32 ``(N, d)`` array. Moves ``model`` to ``device`` in place; its
    train/eval mode is restored afterwards. Binary codes are ``u >= 0`` (:func:`~dahash.train.losses.hash_sign`).
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != model.in_dim:
        raise ValueError(f"x must have shape (N, {model.in_dim}), got {getattr(x, 'shape', type(x))}")
    device = torch.device(device)
    was_training = model.training
    model.to(device)
    model.eval()
    chunks: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], int(batch_size)):
                xb = x[start : start + int(batch_size)].to(device=device, dtype=torch.float32)
                chunks.append(model(xb).u.float().cpu().numpy())
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, model.hash_bits), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
