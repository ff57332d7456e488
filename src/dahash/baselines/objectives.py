"""The comparison methods' losses for end-to-end fine-tuning (the pipeline's ``baselines.finetune``), one
:class:`~dahash.train.objectives.Objective` each, trained by the loop DAH fine-tunes with
(:func:`dahash.train.finetune.train_finetune`: same trunk, input recipe, K-per-class source batches, lr
multipliers and schedule). The head is a :class:`~dahash.baselines.deep.DeepDAModel`
``fc6 -> ReLU -> fc7 -> ReLU -> fc8`` whose ``fc8`` has ``C`` outputs (the classifiers) or ``d`` outputs
(DPSH's hash layer), fc6/fc7 starting from the backbone's pretrained ones where it has them (VGG-F).

With a batch of ``ns`` labelled source rows (first) and, for the methods that read the target, ``nt = ns``
target rows:

* **source_only** ("Deep" in the paper): ``CE = mean_i -log softmax(fc8_i)[y_i]`` on the source rows; the
  target is not read.
* **DAN** (Long et al. 2015): ``CE + mmd_weight * sum_{l in fc6, fc7, fc8} MMD_l`` with ``MMD_l`` the
  linear-time multi-kernel estimate of :func:`dahash.train.losses.linear_mk_mmd` between the source and target
  rows of layer ``l`` (``reduction = "mean"``: per tuple). Kernel weighting: the DAH kernel family
  ``k = (1/17) sum_{q = 2^-8 .. 2^8} exp(-q ||a - b||^2 / m)``, ``m`` the median heuristic, EQUAL weights
  ``beta_q = 1/17`` (DAN learns ``beta`` by a QP maximising the test power; not done here, nor by DAH).
* **DANN** (Ganin & Lempitsky 2015): ``CE + BCE(G_d(R_lambda(fc7)), d)`` with a domain classifier
  ``G_d`` (``h2 -> 1024 -> 1024 -> 1``, ReLU; its parameters belong to this objective and train at the new
  layers' rates), ``d = 1`` for source and ``0`` for target rows, ``R_lambda`` the gradient reversal layer
  (:func:`dahash.baselines.deep.grad_reverse`) and Ganin's schedule
  ``lambda_p = dann_weight * (2 / (1 + exp(-10 p)) - 1)``, ``p`` the training progress (steps done / all
  steps). Ganin's lr annealing is NOT used: the schedule is DAH's, as for every fine-tuned method.
* **DPSH** (Li et al. 2016), for NoDA (labelled source) and SuH (labelled target database part, the upper
  bound): :func:`dahash.baselines.dpsh.dpsh_batch_loss` on the fc8 outputs ``u`` with a memory ``U`` of every
  training item's latest output (a buffer of this objective, checkpointed), ``J_I / (m n)`` as the authors'
  update (``dzdw / (batch_size * N)``); the target is not read.

Loss scale: the cross-entropies and DPSH's loss are the per-item means of their papers' code (MatConvNet's
``1/batchSize``); DAH's own summed objective is divided by the batch size by the loop's DAH objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dahash.baselines.deep import DeepOutput, dann_lambda, grad_reverse
from dahash.baselines.dpsh import dpsh_batch_terms
from dahash.baselines.modes import FINETUNE_METHODS, FINETUNE_TRAIN_KEYS, OBJECTIVE_OPTIONS
from dahash.train.losses import DEFAULT_MMD_SCALES, linear_mk_mmd
from dahash.train.objectives import Batch, Objective

__all__ = ["ClassifierObjective", "DPSHObjective", "FINETUNE_METHODS", "FINETUNE_TRAIN_KEYS", "OBJECTIVE_OPTIONS",
           "make_objective"]


class ClassifierObjective(Objective):
    """Softmax classifiers: ``source_only``, ``dan`` or ``dann`` (module docstring).

    Args:
        method: ``"source_only"``, ``"dan"`` or ``"dann"``.
        feature_dim: width ``h2`` of fc7 (DANN's domain classifier input).
        mmd_weight: DAN's weight on the summed layer MMDs.
        dann_weight: DANN's maximum adaptation factor.
        domain_hidden: DANN's domain-classifier hidden widths.
        mmd_scales: the kernel scales ``q`` (default ``2^-8 .. 2^8``).
        mmd_odd: odd items per domain in the linear MMD (:func:`linear_mk_mmd`).
        generator: initialises the domain classifier (Kaiming-normal hidden layers, ``N(0, 0.01^2)`` output,
            zero biases, as :class:`~dahash.baselines.deep.DeepDAModel`).
    Components: ``cls`` (mean CE), ``mmd`` (DAN: the unweighted sum over fc6, fc7, fc8), ``domain`` (DANN:
    mean BCE), ``lambda`` (DANN: the batch's factor), ``total`` (what is backpropagated).
    """

    def __init__(self, method: str, feature_dim: int, *, mmd_weight: float = 1.0, dann_weight: float = 1.0,
                 domain_hidden: Sequence[int] = (1024, 1024), mmd_scales: Sequence[float] = DEFAULT_MMD_SCALES,
                 mmd_odd: str = "repeat", generator: torch.Generator | None = None) -> None:
        super().__init__()
        if method not in ("source_only", "dan", "dann"):
            raise ValueError(f"method must be source_only, dan or dann, got {method!r}")
        for name, value in (("mmd_weight", mmd_weight), ("dann_weight", dann_weight)):
            if not float(value) >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.method, self.reads_target = method, method != "source_only"
        self.names = {"source_only": ("cls", "total"), "dan": ("cls", "mmd", "total"),
                      "dann": ("cls", "domain", "lambda", "total")}[method]
        self.mmd_weight, self.dann_weight = float(mmd_weight), float(dann_weight)
        self.mmd_scales, self.mmd_odd = tuple(float(q) for q in mmd_scales), str(mmd_odd)
        self.domain_hidden = tuple(int(h) for h in domain_hidden)
        self.domain: nn.Sequential | None = None
        if method == "dann":
            self.domain = _mlp(int(feature_dim), self.domain_hidden, generator)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "mmd_weight": self.mmd_weight, "dann_weight": self.dann_weight,
                "domain_hidden": list(self.domain_hidden), "mmd_scales": list(self.mmd_scales), "mmd_odd": self.mmd_odd}

    def losses(self, out: DeepOutput, batch: Batch) -> dict[str, Tensor]:
        """``out``: the head's output on the joint batch (``(ns [+ ns], .)`` per layer)."""
        ns = batch.n_source
        cls = F.cross_entropy(out.logits[:ns], batch.ys)
        terms = {"cls": cls}
        total = cls
        if self.method == "dan":
            mmd = cls.new_zeros(())
            for layer in (out.fc6, out.fc7, out.logits):
                mmd = mmd + linear_mk_mmd(layer[:ns], layer[ns:], self.mmd_scales, "mean", batch.generator,
                                          odd=self.mmd_odd)
            terms["mmd"] = mmd
            total = total + self.mmd_weight * mmd
        elif self.method == "dann":
            assert self.domain is not None
            lam = self.dann_weight * dann_lambda(min(max(batch.progress, 0.0), 1.0))
            d_logit = self.domain(grad_reverse(out.fc7, lam)).squeeze(1)
            d = torch.cat([d_logit.new_ones(ns), d_logit.new_zeros(d_logit.shape[0] - ns)])
            domain = F.binary_cross_entropy_with_logits(d_logit, d)
            terms.update(domain=domain, **{"lambda": cls.new_tensor(lam)})
            total = total + domain
        terms["total"] = total
        terms["loss"] = total
        return terms


class DPSHObjective(Objective):
    """DPSH's pairwise loss with a memory of every training item's output (module docstring).

    Args:
        labels: ``(n,)`` integer labels of ALL training items (the source set for NoDA; the labelled target
            database part for SuH), in the order of the loop's source indices.
        bits: code length ``d`` (the head's fc8 width).
        eta: quantization weight.
        method: ``"noda"`` or ``"suh"`` (a name only: the loss is the same).
    Buffers: ``memory (n, d)`` (zeros at the start; a batch's rows are overwritten by its outputs before its
    loss) and ``labels (n,)``. Components: ``pair`` (``sum_{i in I, j} log(1 + e^Theta_ij) - s_ij Theta_ij``),
    ``quantization`` (``sum_{i in I} ||sgn(u_i) - u_i||^2``), ``total = (pair + eta quantization) / (m n)``.
    """

    reads_target = False
    names = ("pair", "quantization", "total")

    def __init__(self, labels: Sequence[int] | np.ndarray, bits: int, *, eta: float = 10.0, method: str = "noda") -> None:
        super().__init__()
        if method not in ("noda", "suh"):
            raise ValueError(f"method must be noda or suh, got {method!r}")
        if not float(eta) >= 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if y.dim() != 1 or y.numel() < 2:
            raise ValueError(f"labels must be 1-D with at least 2 items, got shape {tuple(y.shape)}")
        self.method, self.eta, self.bits = method, float(eta), int(bits)
        self.register_buffer("memory", torch.zeros(y.numel(), self.bits))
        self.register_buffer("labels", y)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "eta": self.eta, "bits": self.bits}

    def losses(self, out: DeepOutput, batch: Batch) -> dict[str, Tensor]:
        """``out.logits``: ``(m, d)`` outputs ``u`` of the batch's (source) rows."""
        u = out.logits[: batch.n_source]
        if u.shape[1] != self.bits:
            raise ValueError(f"the head's fc8 has {u.shape[1]} outputs but DPSH was built for {self.bits} bits")
        with torch.no_grad():
            self.memory[batch.source_index] = u.detach().to(self.memory.dtype)
        pair, quant = dpsh_batch_terms(u, batch.ys, self.memory, self.labels)
        total = (pair + self.eta * quant) / (u.shape[0] * self.memory.shape[0])
        return {"pair": pair, "quantization": quant, "total": total, "loss": total}


def _mlp(in_dim: int, hidden: Sequence[int], generator: torch.Generator | None) -> nn.Sequential:
    """``in_dim -> hidden... -> 1`` with ReLU; hidden layers Kaiming-normal, output ``N(0, 0.01^2)``, zero biases."""
    layers: list[nn.Module] = []
    prev = in_dim
    for h in hidden:
        lin = nn.Linear(prev, int(h))
        with torch.no_grad():
            nn.init.kaiming_normal_(lin.weight, nonlinearity="relu", generator=generator)
            lin.bias.zero_()
        layers += [lin, nn.ReLU()]
        prev = int(h)
    out = nn.Linear(prev, 1)
    with torch.no_grad():
        nn.init.normal_(out.weight, mean=0.0, std=0.01, generator=generator)
        out.bias.zero_()
    return nn.Sequential(*layers, out)


def make_objective(method: str, *, num_classes: int, bits: int, feature_dim: int, labels: np.ndarray | None = None,
                   generator: torch.Generator | None = None, mmd_scales: Sequence[float] = DEFAULT_MMD_SCALES,
                   mmd_odd: str = "repeat", **options: Any) -> tuple[Objective, int]:
    """``(objective, fc8 width)`` of comparison algorithm ``method`` (:data:`FINETUNE_METHODS`).

    ``options``: the method's own settings (``mmd_weight`` for DAN; ``dann_weight``, ``domain_hidden`` for
    DANN; ``eta`` for NoDA/SuH); others raise ValueError naming them. ``labels``: DPSH's training labels.
    """
    if method not in OBJECTIVE_OPTIONS:
        raise ValueError(f"{method!r} cannot be fine-tuned; these can: {', '.join(FINETUNE_METHODS)}")
    unknown = sorted(set(options) - OBJECTIVE_OPTIONS[method])
    if unknown:
        raise ValueError(f"{method} (fine-tuned): unknown option(s) {unknown}; accepted: "
                         f"{sorted(OBJECTIVE_OPTIONS[method])} and the train keys {sorted(FINETUNE_TRAIN_KEYS)}")
    if method in ("noda", "suh"):
        if labels is None:
            raise ValueError(f"{method} needs the labels of its training items")
        return DPSHObjective(labels, bits, method=method, **options), int(bits)
    return ClassifierObjective(method, feature_dim, generator=generator, mmd_scales=mmd_scales, mmd_odd=mmd_odd,
                               **options), int(num_classes)
