"""Deep domain-adaptation baselines of the DAH paper's Tables 2-3 on cached backbone features:
source-only deep network, DAN (Long et al., ICML 2015) and DANN (Ganin & Lempitsky, ICML 2015).

All three share the DAH head's shape: ``fc6 -> ReLU -> fc7 -> ReLU [-> bottleneck -> ReLU] ->
classifier`` (``C`` logits), trained on cached features with mini-batch SGD. With ``n_s``
labelled source items ``(x_s, y_s)`` and unlabelled target items ``x_t``:

* **source_only** ("Deep" in the paper): ``min CE(f(x_s), y_s)`` (softmax cross-entropy, mean).
* **DAN** (Long, Cao, Wang & Jordan 2015): the cross-entropy plus the multi-kernel MMD between the
  source and target representations of the task-specific layers::

      min  CE + mmd_weight * sum_{l in {fc6, fc7, [bottleneck], logits}} MMD_k^2(D_s^l, D_t^l)

  ``MMD_k^2`` is the linear-time unbiased estimate (Gretton et al. 2012) of
  :func:`dahash.train.losses.linear_mk_mmd` with ``reduction="mean"``: 17 Gaussian kernels with
  bandwidths ``2^-8 .. 2^8`` times the median heuristic. Simplification: equal kernel weights;
  DAN learns the kernel weights ``beta`` by maximising the test power (a QP), which is skipped.
* **DANN** / RevGrad (Ganin & Lempitsky 2015): a domain classifier ``G_d`` (``1024 -> 1024 -> 1``,
  ReLU, sigmoid output) reads the last hidden representation through a gradient reversal layer
  ``R_lambda`` (identity forward, ``-lambda * grad`` backward)::

      min_{theta_f, theta_y} max_{theta_d}  CE(G_y(G_f(x_s)), y_s) - BCE(G_d(G_f(x)), d)

  realised as one minimisation of ``CE + BCE(G_d(R_lambda(G_f(x))), d)`` with ``d = 1`` for
  source and ``0`` for target items. ``lambda_p = dann_weight * (2 / (1 + exp(-10 p)) - 1)``
  with ``p`` the training progress from 0 to 1 (the paper's schedule, ``dann_weight = 1``).

Training: every step draws ``batch_size`` source and (for DAN/DANN) ``batch_size`` target items;
each domain cycles through reshuffled permutations of its items from its own seeded numpy
Generator (so the source stream is identical for the three methods). One epoch is
``ceil(max(n_s, n_t) / batch_size)`` steps for every method. SGD with momentum 0.9 and weight
decay; with ``anneal_lr`` the learning rate follows Ganin's annealing
``lr_p = lr / (1 + 10 p)^0.75`` for all three methods (comparable schedules).

This module is the head mode (``baselines.methods``, the ``paper-head`` preset). The finetune mode
(``baselines.finetune``) trains the same head with the backbone end to end, as the papers
(:mod:`dahash.baselines.objectives`, with this
module's :class:`DeepDAModel`, :func:`grad_reverse` and :func:`dann_lambda`).
Simplifications of the head mode, stated explicitly: no dropout (as the DAH head); no per-layer learning-rate
multipliers; the backbone is frozen (features cached) while the original papers fine-tune it;
the DANN domain classifier sits on fc7 (or the bottleneck when ``bottleneck_dim`` is set).
Target labels are never an input of training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dahash.train.losses import linear_mk_mmd
from dahash.nn.model import DAHHead
from dahash.progress import loss_postfix, progress_for

__all__ = [
    "DeepDAModel",
    "DeepOutput",
    "GradientReversal",
    "METHODS",
    "annealed_lr",
    "dann_lambda",
    "features",
    "grad_reverse",
    "predict",
    "train_deep_baseline",
]

Method = Literal["source_only", "dan", "dann"]
METHODS: tuple[str, ...] = ("source_only", "dan", "dann")


# --------------------------------------------------------------------------------------------
# gradient reversal and schedules
# --------------------------------------------------------------------------------------------
class GradientReversal(torch.autograd.Function):
    """``R_lambda``: forward ``R(x) = x``; backward ``dR/dx = -lambda I`` (Ganin & Lempitsky, eq. 13)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, coeff: float) -> Tensor:  # noqa: D102
        ctx.coeff = float(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        return -ctx.coeff * grad_output, None


def grad_reverse(x: Tensor, coeff: float = 1.0) -> Tensor:
    """Apply :class:`GradientReversal` with coefficient ``coeff >= 0``; same shape as ``x``."""
    if not float(coeff) >= 0:
        raise ValueError(f"coeff must be >= 0, got {coeff}")
    return GradientReversal.apply(x, float(coeff))


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """DANN's adaptation factor ``2 / (1 + exp(-gamma p)) - 1``; 0 at ``p = 0``, -> 1 as ``p -> 1``."""
    if not 0.0 <= float(progress) <= 1.0:
        raise ValueError(f"progress must lie in [0, 1], got {progress}")
    return 2.0 / (1.0 + math.exp(-gamma * float(progress))) - 1.0


def annealed_lr(lr: float, progress: float, alpha: float = 10.0, beta: float = 0.75) -> float:
    """Ganin's annealing ``lr / (1 + alpha p)^beta``."""
    if not 0.0 <= float(progress) <= 1.0:
        raise ValueError(f"progress must lie in [0, 1], got {progress}")
    return float(lr) / (1.0 + alpha * float(progress)) ** beta


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------
@dataclass
class DeepOutput:
    """Intermediates for a batch of ``N`` items: ``fc6 (N, h1)``, ``fc7 (N, h2)`` (after ReLU),
    ``bottleneck (N, k)`` or None, ``logits (N, C)``."""

    fc6: Tensor
    fc7: Tensor
    bottleneck: Tensor | None
    logits: Tensor

    @property
    def last_hidden(self) -> Tensor:
        """The representation the classifier (and DANN's domain classifier) reads."""
        return self.fc7 if self.bottleneck is None else self.bottleneck

    @property
    def fc8(self) -> Tensor:
        """The last layer (logits, or DPSH's hash outputs), as :class:`dahash.nn.model.HeadOutput` names it."""
        return self.logits

    @property
    def u(self) -> Tensor:
        """The continuous codes of a hash head (DPSH: the linear fc8 outputs)."""
        return self.logits

    def mmd_layers(self) -> list[Tensor]:
        """DAN's adapted layers: fc6, fc7, [bottleneck], logits."""
        layers = [self.fc6, self.fc7]
        if self.bottleneck is not None:
            layers.append(self.bottleneck)
        return [*layers, self.logits]


class DeepDAModel(nn.Module):
    """``fc6 -> ReLU -> fc7 -> ReLU [-> bottleneck -> ReLU] -> classifier`` plus, for DANN, a
    domain classifier ``k -> 1024 -> 1024 -> 1`` (ReLU).

    Initialisation (from ``generator``): fc6/fc7 as :class:`dahash.nn.model.DAHHead` (Kaiming-normal,
    or the ``pretrained`` weights, keys ``fc6.weight``, ``fc6.bias``, ``fc7.weight``, ``fc7.bias``);
    bottleneck and domain hidden layers Kaiming-normal; classifier and domain output
    ``N(0, 0.01^2)``; biases 0.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden_dims: tuple[int, int] = (4096, 4096),
        *,
        bottleneck_dim: int | None = None,
        domain_hidden: Sequence[int] | None = None,
        pretrained: Mapping[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        trunk = DAHHead(in_dim, hidden_dims, hash_bits=1, pretrained=pretrained, generator=generator)
        self.in_dim, self.hidden_dims, self.hash_bits = trunk.in_dim, trunk.hidden_dims, int(num_classes)
        self.fc6, self.fc7 = trunk.fc6, trunk.fc7
        self.pretrained_layers = trunk.pretrained_layers
        width = trunk.hidden_dims[1]
        self.bottleneck: nn.Linear | None = None
        if bottleneck_dim is not None:
            self.bottleneck = nn.Linear(width, int(bottleneck_dim))
            _kaiming(self.bottleneck, generator)
            width = int(bottleneck_dim)
        self.classifier = nn.Linear(width, int(num_classes))
        _small_normal(self.classifier, generator)
        self.domain_classifier: nn.Sequential | None = None
        if domain_hidden is not None:
            layers: list[nn.Module] = []
            prev = width
            for h in domain_hidden:
                lin = nn.Linear(prev, int(h))
                _kaiming(lin, generator)
                layers += [lin, nn.ReLU()]
                prev = int(h)
            out = nn.Linear(prev, 1)
            _small_normal(out, generator)
            self.domain_classifier = nn.Sequential(*layers, out)

    def param_groups(self, base_lr: float, weight_decay: float, pretrained_mult: tuple[float, float] = (0.1, 0.2),
                     new_mult: tuple[float, float] = (1.0, 2.0), bn_mult: tuple[float, float] = (2.0, 1.0), *,
                     bias_decay: float = 0.0) -> list[dict]:
        """SGD groups as :meth:`dahash.nn.model.DAHHead.param_groups` (the fine-tuning loop's): fc6/fc7 at
        ``pretrained_mult`` when loaded from ``pretrained``, else ``new_mult``; bottleneck, classifier and domain
        classifier at ``new_mult``; weights with ``weight_decay``, biases with ``bias_decay * weight_decay``.
        (``bn_mult`` is accepted for the common signature: this head has no BatchNorm.)"""
        groups: list[dict] = []
        for name, param in self.named_parameters():
            layer, kind = name.split(".")[0], name.rsplit(".", 1)[-1]
            w_mult, b_mult = pretrained_mult if layer in self.pretrained_layers else new_mult
            is_bias = kind == "bias"
            mult = float(b_mult if is_bias else w_mult)
            groups.append({"params": [param], "name": name, "lr_mult": mult, "lr": base_lr * mult,
                           "weight_decay": float(weight_decay * (bias_decay if is_bias else 1.0))})
        return groups

    def forward(self, x: Tensor) -> DeepOutput:
        fc6 = torch.relu(self.fc6(x))
        fc7 = torch.relu(self.fc7(fc6))
        bott = torch.relu(self.bottleneck(fc7)) if self.bottleneck is not None else None
        logits = self.classifier(fc7 if bott is None else bott)
        return DeepOutput(fc6=fc6, fc7=fc7, bottleneck=bott, logits=logits)


def _kaiming(layer: nn.Linear, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
        layer.bias.zero_()


def _small_normal(layer: nn.Linear, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        nn.init.normal_(layer.weight, mean=0.0, std=0.01, generator=generator)
        layer.bias.zero_()


# --------------------------------------------------------------------------------------------
# data handling
# --------------------------------------------------------------------------------------------
def _as_matrix(x: Any, name: str, n_features: int | None = None) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array (N, f); got shape {a.shape}")
    if n_features is not None and a.shape[1] != n_features:
        raise ValueError(f"{name} must have {n_features} features; got {a.shape[1]}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _as_labels(y: Any, n: int, num_classes: int) -> np.ndarray:
    if isinstance(y, Tensor):
        y = y.detach().cpu().numpy()
    a = np.asarray(y)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"ys must have shape ({n},), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"ys must hold integer labels, got dtype {a.dtype}")
    if a.min() < 0 or a.max() >= num_classes:
        raise ValueError(f"ys must lie in [0, {num_classes - 1}], got [{a.min()}, {a.max()}]")
    return a.astype(np.int64)


class _Cycler:
    """Endless stream of index batches: consecutive reshuffled permutations of ``range(n)``."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng
        self.perm, self.pos = rng.permutation(n), 0

    def next(self, size: int) -> np.ndarray:
        out: list[np.ndarray] = []
        while size > 0:
            if self.pos == self.n:
                self.perm, self.pos = self.rng.permutation(self.n), 0
            take = min(size, self.n - self.pos)
            out.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            size -= take
        return np.concatenate(out)


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------
def _check_options(method: str, num_classes: int, hidden_dims: Sequence[int], **numbers: float) -> None:
    """Raise ValueError naming the first bad argument of :func:`train_deep_baseline`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes}")
    dims = tuple(int(h) for h in hidden_dims)
    if len(dims) != 2 or min(dims) < 1:
        raise ValueError(f"hidden_dims must be two positive ints, got {dims}")
    for name, minimum in (("epochs", 1), ("batch_size", 2), ("seed", 0)):
        value = numbers[name]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    if not float(numbers["lr"]) > 0:
        raise ValueError(f"lr must be > 0, got {numbers['lr']}")
    for name in ("mmd_weight", "dann_weight", "momentum", "weight_decay"):
        if not float(numbers[name]) >= 0:
            raise ValueError(f"{name} must be >= 0, got {numbers[name]}")


def _transfer_loss(method: str, model: DeepDAModel, out: Any, batch_size: int, mmd_gen: torch.Generator,
                   mmd_weight: float, coeff: float, domain_labels: Tensor) -> Tensor:
    """The adaptation term on a joint batch (``batch_size`` source rows, then as many target rows).

    DAN: ``mmd_weight * sum_l MMD^2_lin(a_l[:B], a_l[B:])`` over fc6/fc7/fc8 (:func:`linear_mk_mmd`, mean, odd
    rows dropped). DANN: ``BCE(D(GRL_coeff(h)), [1]*B + [0]*B)`` with the gradient reversed and scaled by ``coeff``.
    """
    if method == "dan":
        mmd = sum(linear_mk_mmd(a[:batch_size], a[batch_size:], reduction="mean", generator=mmd_gen, odd="drop")
                  for a in out.mmd_layers())
        return mmd_weight * mmd
    assert model.domain_classifier is not None
    d_logit = model.domain_classifier(grad_reverse(out.last_hidden, coeff)).squeeze(1)
    return F.binary_cross_entropy_with_logits(d_logit, domain_labels)


def _sgd_step(opt: torch.optim.Optimizer, cls: Tensor, transfer: Tensor | float, logits_s: Tensor, ys_s: Tensor,
              sums: dict[str, float]) -> None:
    """One SGD step on ``cls + transfer``; adds the step's losses and source-batch accuracy to ``sums``."""
    loss = cls + transfer
    opt.zero_grad()
    loss.backward()
    opt.step()
    sums["loss"] += float(loss.detach())
    sums["cls_loss"] += float(cls.detach())
    sums["transfer_loss"] += float(transfer.detach()) if isinstance(transfer, Tensor) else float(transfer)
    sums["correct"] += float((logits_s.detach().argmax(1) == ys_s).float().mean())


def train_deep_baseline(
    method: Method,
    xs: np.ndarray,
    ys: np.ndarray,
    xt: np.ndarray,
    num_classes: int,
    *,
    hidden_dims: tuple[int, int] = (4096, 4096),
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    mmd_weight: float = 1.0,
    dann_weight: float = 1.0,
    bottleneck_dim: int | None = None,
    domain_hidden: Sequence[int] = (1024, 1024),
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    anneal_lr: bool = True,
    pretrained: Mapping[str, Tensor] | None = None,
    progress: bool | str = False,
) -> tuple[DeepDAModel, dict[str, list[float]]]:
    """Train a source-only, DAN or DANN network on cached features (see the module docstring).

    Args:
        method: ``"source_only"``, ``"dan"`` or ``"dann"``. num_classes: ``C >= 2``.
        xs: ``(n_s, f)`` source features; ys: ``(n_s,)`` labels in ``[0, C)``; xt: ``(n_t, f)`` unlabelled target
            features (unused by ``source_only``).
        hidden_dims: widths of fc6 and fc7. bottleneck_dim: optional width between fc7 and the classifier.
        epochs: epochs of ``ceil(max(n_s, n_t) / batch_size)`` steps; batch_size: items per domain per step
            (``>= 2``; DAN's linear MMD pairs halves).
        lr, anneal_lr: base rate, ``lr / (1 + 10 p)^0.75`` when ``anneal_lr`` else constant; momentum,
            weight_decay: SGD settings.
        seed: seeds the initialisation, the batch streams and DAN's random halves. device: where it trains.
        mmd_weight: DAN's weight on the summed layer MMDs; dann_weight: DANN's maximum adaptation factor
            (times the lambda schedule); domain_hidden: DANN domain-classifier hidden widths.
        pretrained: optional fc6/fc7 weights (see :class:`DeepDAModel`).
        progress: a bar over the epochs (:mod:`dahash.progress`; postfix the epoch's losses): False none, True
            labelled with ``method``, or a string: the label. It changes no result.

    Returns:
        ``(model in eval mode on device, history)``, per-epoch lists ``"loss"``, ``"cls_loss"``,
        ``"transfer_loss"`` (summed MMD for DAN, domain BCE for DANN, 0 for source-only), ``"lambda"`` (DANN
        factor at the epoch's end, else 0), ``"lr"`` and ``"source_acc"`` (training-batch accuracy).
    """
    _check_options(method, num_classes, hidden_dims, epochs=epochs, batch_size=batch_size, seed=seed, lr=lr,
                   mmd_weight=mmd_weight, dann_weight=dann_weight, momentum=momentum, weight_decay=weight_decay)
    xs_np = _as_matrix(xs, "xs")
    xt_np = _as_matrix(xt, "xt", n_features=xs_np.shape[1])
    ys_np = _as_labels(ys, xs_np.shape[0], int(num_classes))
    hidden_dims = tuple(int(h) for h in hidden_dims)
    device = torch.device(device)

    init_gen = torch.Generator().manual_seed(int(seed))
    model = DeepDAModel(
        xs_np.shape[1], int(num_classes), hidden_dims, bottleneck_dim=bottleneck_dim,
        domain_hidden=domain_hidden if method == "dann" else None, pretrained=pretrained, generator=init_gen,
    ).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=float(lr), momentum=float(momentum), weight_decay=float(weight_decay))
    src_seq, tgt_seq = np.random.SeedSequence(int(seed)).spawn(2)
    src_stream = _Cycler(xs_np.shape[0], np.random.default_rng(src_seq))
    tgt_stream = _Cycler(xt_np.shape[0], np.random.default_rng(tgt_seq))
    mmd_gen = torch.Generator().manual_seed(int(seed) + 1)
    xs_t, ys_t, xt_t = (torch.as_tensor(a, device=device) for a in (xs_np, ys_np, xt_np))
    domain_labels = torch.cat([torch.ones(batch_size), torch.zeros(batch_size)]).to(device)

    steps_per_epoch = math.ceil(max(xs_np.shape[0], xt_np.shape[0]) / batch_size)
    total_steps = int(epochs) * steps_per_epoch
    history: dict[str, list[float]] = {k: [] for k in ("loss", "cls_loss", "transfer_loss", "lambda", "lr", "source_acc")}
    model.train()
    bar = progress_for(progress, method, range(int(epochs)), unit="epoch")
    for epoch in bar:
        sums = {"loss": 0.0, "cls_loss": 0.0, "transfer_loss": 0.0, "correct": 0.0}
        coeff, cur_lr = 0.0, float(lr)
        for step in range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch):
            done = step / total_steps  # training progress p in [0, 1)
            cur_lr = annealed_lr(lr, done) if anneal_lr else float(lr)
            for group in opt.param_groups:
                group["lr"] = cur_lr
            s_idx = torch.as_tensor(src_stream.next(batch_size), device=device)
            if method == "source_only":
                logits_s, transfer = model(xs_t[s_idx]).logits, torch.zeros((), device=device)
            else:
                t_idx = torch.as_tensor(tgt_stream.next(batch_size), device=device)
                out = model(torch.cat([xs_t[s_idx], xt_t[t_idx]]))
                logits_s = out.logits[:batch_size]
                if method == "dann":
                    coeff = float(dann_weight) * dann_lambda(done)
                transfer = _transfer_loss(method, model, out, batch_size, mmd_gen, float(mmd_weight), coeff,
                                          domain_labels)
            _sgd_step(opt, F.cross_entropy(logits_s, ys_t[s_idx]), transfer, logits_s, ys_t[s_idx], sums)
        record = {**{k: sums[k] / steps_per_epoch for k in ("loss", "cls_loss", "transfer_loss")}, "lambda": coeff,
                  "lr": cur_lr, "source_acc": sums["correct"] / steps_per_epoch}
        for key, value in record.items():
            history[key].append(value)
        bar.set_postfix_str(loss_postfix(record, ("loss", "cls_loss", "transfer_loss")), refresh=False)
    return model.eval(), history


# --------------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------------
def _forward_all(model: DeepDAModel, x: Any, batch_size: int) -> list[DeepOutput]:
    if not isinstance(model, DeepDAModel):
        raise ValueError(f"model must be a DeepDAModel, got {type(model).__name__}")
    x_np = _as_matrix(x, "x", n_features=model.fc6.in_features)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, x_np.shape[0], batch_size):
            outs.append(model(torch.as_tensor(x_np[start : start + batch_size], device=device)))
    model.train(was_training)
    return outs


def predict(model: DeepDAModel, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """Predicted labels ``argmax`` of the logits, ``(N,)`` int64."""
    return np.concatenate([o.logits.argmax(1).cpu().numpy() for o in _forward_all(model, x, batch_size)])


def features(model: DeepDAModel, x: np.ndarray, *, batch_size: int = 1024) -> np.ndarray:
    """fc7 features (after ReLU), ``(N, h2)`` float32 (for A-distance / t-SNE analyses)."""
    return np.concatenate([o.fc7.cpu().numpy() for o in _forward_all(model, x, batch_size)])
