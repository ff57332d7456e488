"""The DAH objective: supervised hash loss, quantization, target entropy and linear-time MK-MMD.

All functions are pure torch, differentiable with autograd, device-agnostic (they run wherever the
input tensors live) and follow the authors' MatConvNet code (``hash_entropy_loss.m``,
``vl_nnlinearMmdLoss.m``) by default; see ``docs`` / ``shared/docs/dah-reference.md``.

Notation: ``u`` is a batch of continuous hash outputs (rows are items, ``d`` bits), ``n`` source
items, ``m`` target items, ``C`` classes. ``reduction="sum"`` is the code's behaviour (every term
is summed, never averaged); ``reduction="mean"`` divides by the natural count of each term, stated
in each docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

Reduction = Literal["sum", "mean"]

__all__ = [
    "DEFAULT_MMD_SCALES",
    "class_probabilities",
    "hash_sign",
    "is_class_ordered_k_batch",
    "linear_mk_mmd",
    "median_bandwidth",
    "mk_gaussian_kernel",
    "pairwise_hash_loss",
    "quantization_loss",
    "split_halves",
    "stable_softplus",
    "target_entropy_loss",
]

#: The code's 17 kernel scales q = 2^-8, ..., 2^8 (``Q = 2.^(-8:8)``).
DEFAULT_MMD_SCALES: tuple[float, ...] = tuple(2.0**e for e in range(-8, 9))


# ----------------------------------------------------------------------------- validation helpers
def _check_reduction(reduction: str) -> None:
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def _check_matrix(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (items, features), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")


def _check_labels(name: str, labels: Tensor, n: int, num_classes: int | None = None) -> None:
    if not isinstance(labels, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if num_classes is not None and n > 0:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} must lie in [0, {num_classes - 1}] (num_classes={num_classes}), "
                f"got values in [{lo}, {hi}]"
            )


# ----------------------------------------------------------------------------- hash loss
def _check_sign_zero(sign_zero: float) -> float:
    value = float(sign_zero)
    if value not in (1.0, -1.0):
        raise ValueError(f"sign_zero must be +1.0 or -1.0, got {sign_zero!r}")
    return value


def hash_sign(u: Tensor, *, sign_zero: float = 1.0) -> Tensor:
    """Elementwise sign with ``sign(0) = sign_zero``; same shape, dtype and device as ``u``.

    ``h = +1 if u > 0, -1 if u < 0, sign_zero if u == 0`` (both zeros, ``+0.0`` and ``-0.0``).
    ``sign_zero=+1.0`` (default, the authors' quantization target) is ``h = +1 iff u >= 0``;
    ``sign_zero=-1.0`` is ``h = +1 iff u > 0`` (the ``U > 0`` rule of the authors' ``calcMap``).
    torch.sign would give 0 at 0. Not differentiable: the result carries no graph.

    Raises:
        ValueError: ``sign_zero`` not +1.0 or -1.0.
    """
    zero = _check_sign_zero(sign_zero)
    one = torch.ones((), dtype=u.dtype, device=u.device)
    u = u.detach()
    positive = u >= 0 if zero > 0 else u > 0
    return torch.where(positive, one, -one)


def stable_softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` computed as ``max(x, 0) + log1p(exp(-|x|))``: exact, never overflows."""
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))


def pairwise_hash_loss(
    u: Tensor,
    labels: Tensor,
    similar_weight: float = 10.0,
    scale: float = 0.5,
    reduction: Reduction = "sum",
    *,
    diagonal_grad: bool = False,
) -> Tensor:
    """Supervised pairwise hash loss over ALL ``n x n`` pairs of the batch (paper eq. 4/5, code).

    With ``theta_ij = scale * u_i . u_j``, ``S_ij = 1[y_i == y_j]`` and
    ``W_ij = similar_weight if S_ij else 1``::

        L = sum_{i,j} W_ij * (log(1 + exp(theta_ij)) - S_ij * theta_ij)

    ``log(1 + exp(.))`` is :func:`stable_softplus`. The diagonal ``i == j`` terms are part of the
    value but, as in the authors' code, get no gradient (``diagonal_grad=False``): the per-pair
    loss matrix is assembled with ``torch.where(eye, L.detach(), L)``, so the diagonal entries are
    detached constants. ``diagonal_grad=True`` differentiates every term (plain reading).

    The gradient (default) is ``dL/du_a = 2 * scale * sum_{j != a} W_aj (sigmoid(theta_aj) - S_aj) u_j``.

    Args:
        u: ``(n, d)`` continuous hash outputs.
        labels: ``(n,)`` integer class labels.
        similar_weight: weight of same-class pairs (the paper's "S in {0, 10}").
        scale: factor on the inner product (0.5 in the paper and code).
        reduction: ``"sum"`` (code) or ``"mean"`` (divide by the ``n * n`` pairs).

    Returns:
        0-d tensor.
    """
    _check_matrix("u", u)
    _check_labels("labels", labels, u.shape[0])
    _check_reduction(reduction)
    if similar_weight <= 0:
        raise ValueError(f"similar_weight must be > 0, got {similar_weight}")
    n = u.shape[0]
    if n == 0:
        raise ValueError("pairwise_hash_loss needs at least one item, got u of shape (0, d)")
    labels = labels.to(u.device)
    theta = scale * (u @ u.T)  # (n, n)
    same = labels[:, None] == labels[None, :]  # (n, n) bool
    s = same.to(u.dtype)
    w = torch.where(same, torch.as_tensor(similar_weight, dtype=u.dtype, device=u.device),
                    torch.ones((), dtype=u.dtype, device=u.device))
    per_pair = w * (stable_softplus(theta) - s * theta)  # (n, n)
    if not diagonal_grad:
        eye = torch.eye(n, dtype=torch.bool, device=u.device)
        per_pair = torch.where(eye, per_pair.detach(), per_pair)
    total = per_pair.sum()
    return total / (n * n) if reduction == "mean" else total


def quantization_loss(u: Tensor, reduction: Reduction = "sum", *, sign_zero: float = 1.0) -> Tensor:
    """Quantization loss ``Q = sum_i ||u_i - sign(u_i)||^2`` with ``sign(u)`` a constant.

    ``sign`` is :func:`hash_sign` with ``sign(0) = sign_zero`` (+1 in the authors' code, the
    default; -1 selectable). Gradient ``dQ/du = 2 (u - sign(u))``, so at ``u = 0`` it is
    ``-2 sign_zero``. ``u`` is ``(n, d)``; ``reduction="mean"`` divides by the ``n`` items (sum
    over bits, mean over items). Returns a 0-d tensor.
    """
    if not isinstance(u, Tensor) or not u.is_floating_point():
        raise ValueError("u must be a floating-point torch.Tensor")
    if u.dim() != 2:
        raise ValueError(f"u must be 2-D (items, bits), got shape {tuple(u.shape)}")
    _check_reduction(reduction)
    total = (u - hash_sign(u, sign_zero=sign_zero)).pow(2).sum()
    if reduction == "mean":
        if u.shape[0] == 0:
            raise ValueError("quantization_loss(reduction='mean') needs at least one item")
        return total / u.shape[0]
    return total


# ----------------------------------------------------------------------------- entropy loss
def class_probabilities(
    u_t: Tensor, u_s: Tensor, source_labels: Tensor, num_classes: int
) -> Tensor:
    """Target class probabilities of eq. 6 (code variant: no 0.5 factor).

    ``a_ik = softmax_k(u_t_i . u_s_k)`` over ALL ``n`` source items, then
    ``p_ij = sum_{k : y_k = j} a_ik``, i.e. ``P = softmax(U_t U_s^T, dim=1) @ onehot(y_s)``.
    Rows sum to 1; a class with no source item gets probability 0.

    Args:
        u_t: ``(m, d)`` target outputs. u_s: ``(n, d)`` source outputs.
        source_labels: ``(n,)`` integer labels in ``[0, num_classes)``.

    Returns:
        ``(m, C)`` tensor, differentiable w.r.t. ``u_t`` and ``u_s``.
    """
    _check_matrix("u_t", u_t)
    _check_matrix("u_s", u_s)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if u_t.shape[1] != u_s.shape[1]:
        raise ValueError(
            f"u_t and u_s must have the same number of bits, got {tuple(u_t.shape)} and "
            f"{tuple(u_s.shape)}"
        )
    if u_s.shape[0] == 0:
        raise ValueError("class_probabilities needs at least one source item")
    _check_labels("source_labels", source_labels, u_s.shape[0], num_classes)
    attn = torch.softmax(u_t @ u_s.T, dim=1)  # (m, n)
    onehot = torch.nn.functional.one_hot(source_labels.to(u_s.device), num_classes).to(attn.dtype)
    return attn @ onehot  # (m, C)


def target_entropy_loss(
    u_t: Tensor,
    u_s: Tensor,
    source_labels: Tensor,
    num_classes: int,
    reduction: Reduction = "sum",
) -> Tensor:
    """Target entropy loss of eq. 7: ``H = - sum_i sum_j p_ij log p_ij`` with ``p`` from
    :func:`class_probabilities`.

    Summed over the ``m`` targets (code); ``reduction="mean"`` divides by ``m`` (the paper's
    ``1/n_t``). ``0 log 0`` is taken as 0 with zero gradient (double ``torch.where`` so that no
    ``nan`` reaches the backward pass). The gradient flows into both ``u_t`` and ``u_s``.
    Bounds: ``0 <= H <= m log C``.
    """
    _check_reduction(reduction)
    p = class_probabilities(u_t, u_s, source_labels, num_classes)  # (m, C)
    positive = p > 0
    p_safe = torch.where(positive, p, torch.ones_like(p))
    plogp = torch.where(positive, p * torch.log(p_safe), torch.zeros_like(p))
    total = -plogp.sum()
    if reduction == "mean":
        if u_t.shape[0] == 0:
            raise ValueError("target_entropy_loss(reduction='mean') needs at least one target item")
        return total / u_t.shape[0]
    return total


def is_class_ordered_k_batch(labels: Tensor | np.ndarray | Sequence[int], num_classes: int, k: int) -> bool:
    """The code's entropy gate: True iff ``labels == [0]*k + [1]*k + ... + [C-1]*k`` exactly.

    ``labels`` are the source labels of a batch (torch tensor, numpy array or sequence).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if isinstance(labels, Tensor):
        arr = labels.detach().cpu().numpy()
    else:
        arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != num_classes * k:
        return False
    expected = np.repeat(np.arange(num_classes), k)
    return bool(np.array_equal(arr, expected))


# ----------------------------------------------------------------------------- MK-MMD
def mk_gaussian_kernel(
    a: Tensor, b: Tensor, bandwidth: float | Tensor, scales: Sequence[float]
) -> Tensor:
    """Paired multi-kernel Gaussian values ``k(a_i, b_i)``, equal kernel weights.

    ``k(a_i, b_i) = (1/|Q|) sum_{q in scales} exp(-(q / m) * ||a_i - b_i||^2)`` with ``m`` the
    ``bandwidth`` (a positive number or 0-d tensor; a tensor is used as given, so detach it
    yourself if it should be a constant).

    Args:
        a, b: ``(n, f)`` paired rows.
    Returns:
        ``(n,)`` kernel values in ``(0, 1]``.
    """
    _check_matrix("a", a)
    _check_matrix("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    q = torch.as_tensor(list(scales), dtype=a.dtype, device=a.device)
    if q.dim() != 1 or q.numel() == 0:
        raise ValueError("scales must be a non-empty sequence of numbers")
    if bool((q <= 0).any()):
        raise ValueError(f"scales must all be > 0, got {list(scales)}")
    m = torch.as_tensor(bandwidth, dtype=a.dtype, device=a.device)
    if m.dim() != 0:
        raise ValueError(f"bandwidth must be a scalar, got shape {tuple(m.shape)}")
    if not bool(m > 0):
        raise ValueError(f"bandwidth must be > 0, got {float(m)}")
    return _mk_kernel(a, b, m, q)


def _mk_kernel(a: Tensor, b: Tensor, m: Tensor, q: Tensor) -> Tensor:
    """Unchecked core of :func:`mk_gaussian_kernel` (``q`` a 1-D tensor, ``m`` a 0-d tensor);
    no host sync, so nan inputs propagate instead of raising."""
    d2 = (a - b).pow(2).sum(dim=1)  # (n,)
    return torch.exp(-(q[None, :] / m) * d2[:, None]).mean(dim=1)


def split_halves(
    n: int, generator: torch.Generator | None = None, odd: str = "drop"
) -> tuple[Tensor, Tensor]:
    """Random halves of ``range(n)``, ``perm = torch.randperm(n, generator)``.

    * ``odd="drop"``: ``(perm[:h], perm[h:2h])`` with ``h = n // 2`` (an odd last item is left out);
    * ``odd="repeat"`` (the authors' ``vl_nnlinearMmdLoss``): ``h1 = ceil(n/2)``, the halves are
      ``perm[:h1]`` and ``perm[h1:]`` padded with its own last index when ``n`` is odd, so both have
      ``h1`` items. (Even ``n``: both rules give the same halves.)

    The permutation is drawn on the generator's device (CPU when ``generator`` is None).
    """
    if n < 2:
        raise ValueError(f"need at least 2 items to split into halves, got {n}")
    if odd not in ("drop", "repeat"):
        raise ValueError(f"odd must be 'drop' or 'repeat', got {odd!r}")
    device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(n, generator=generator, device=device)
    if odd == "repeat" and n % 2 == 1:
        h1 = (n + 1) // 2
        second = perm[h1:]
        return perm[:h1], torch.cat([second, second[-1:]])
    h = n // 2
    return perm[:h], perm[h : 2 * h]


def median_bandwidth(d2: Tensor) -> Tensor:
    """MATLAB ``median`` of squared distances (mean of the two middle values for an even count),
    computed without gradient; clamped below at the dtype's machine epsilon so it is always > 0
    (all-zero distances give every kernel value 1)."""
    with torch.no_grad():
        med = torch.quantile(d2.detach().flatten(), 0.5)
        return med.clamp_min(torch.finfo(d2.dtype).eps)


def _second_half(x: Tensor, idx: Tensor, n: int) -> Tensor:
    """``x[idx]``; when ``idx`` repeats its last index (odd ``n``, ``odd="repeat"``) that copy is
    detached, as the code drops its gradient."""
    rows = x[idx]
    if n % 2 == 1 and idx.numel() * 2 > n:
        rows = torch.cat([rows[:-1], rows[-1:].detach()])
    return rows


def linear_mk_mmd(
    x_s: Tensor,
    x_t: Tensor,
    scales: Sequence[float] | Tensor = DEFAULT_MMD_SCALES,
    reduction: Reduction = "sum",
    generator: torch.Generator | None = None,
    *,
    bandwidth: float | Tensor | None = None,
    odd: str = "repeat",
) -> Tensor:
    """Linear-time MK-MMD estimate (Gretton et al. 2012) as in the authors' ``vl_nnlinearMmdLoss``.

    Random halves (:func:`split_halves`, source permutation drawn first, then target, both from
    ``generator``): ``s1, s2`` of the source rows and ``t1, t2`` of the target rows, each of size
    ``h = n // 2``. With ``k`` = :func:`mk_gaussian_kernel`::

        M = sum_{i<h} k(s1_i, s2_i) - k(s1_i, t2_i) - k(s2_i, t1_i) + k(t1_i, t2_i)

    Bandwidth ``m`` (when ``bandwidth`` is None) = median of the ``4h`` squared distances of the
    four paired sets, computed under ``torch.no_grad()`` (a constant for the gradient, as in the
    code's hand-written backward). Equal weights over the kernels.

    The estimate is unbiased but NOT non-negative: with equal distributions it fluctuates around
    0 and can be negative, so minimising it can push it below zero.

    Odd ``n`` (``odd``, see :func:`split_halves`): ``"repeat"`` is the code's rule: ``s1``/``t1`` get
    ``ceil(n/2)`` items and ``s2``/``t2`` repeat their last item to match; the repeated copy enters
    the value and the bandwidth but is DETACHED (the code deletes the copy's gradient column), so the
    repeated item is differentiated once, through its own tuple. ``"drop"`` leaves the odd last item
    of the permutation out (``h = floor(n/2)`` tuples). Even ``n``: identical.

    Args:
        x_s, x_t: ``(n, f)`` source and target features (same ``n``).
        scales: kernel scales ``q`` (default ``2^-8 .. 2^8``).
        reduction: ``"sum"`` (code) or ``"mean"`` (divide by the ``h`` tuples).
        generator: torch.Generator for the halves (reproducibility).
        bandwidth: fixed ``m`` instead of the median heuristic.
        odd: ``"repeat"`` (authors' code, default) or ``"drop"``: what to do with an odd ``n``.

    Returns:
        0-d tensor (may be negative; nan when the inputs hold nan, no error is raised here so that
        the caller can report which loss went non-finite).
    """
    _check_matrix("x_s", x_s)
    _check_matrix("x_t", x_t)
    _check_reduction(reduction)
    if x_s.shape != x_t.shape:
        raise ValueError(
            f"linear_mk_mmd needs source and target of equal shape, got x_s {tuple(x_s.shape)} "
            f"and x_t {tuple(x_t.shape)}"
        )
    n = x_s.shape[0]
    if n < 2:
        raise ValueError(f"linear_mk_mmd needs at least 2 items per domain, got {n}")
    if isinstance(scales, Tensor):
        scales = scales.detach().cpu().tolist()
    scales = [float(q) for q in scales]
    if not scales or min(scales) <= 0:
        raise ValueError(f"scales must be a non-empty sequence of numbers > 0, got {scales}")
    q = torch.tensor(scales, dtype=x_s.dtype, device=x_s.device)
    s1, s2 = split_halves(n, generator, odd)
    t1, t2 = split_halves(n, generator, odd)
    s1, s2, t1, t2 = (i.to(x_s.device) for i in (s1, s2, t1, t2))
    xs2, xt2 = _second_half(x_s, s2, n), _second_half(x_t, t2, n)
    pairs = ((x_s[s1], xs2), (x_s[s1], xt2), (xs2, x_t[t1]), (x_t[t1], xt2))
    if bandwidth is None:
        with torch.no_grad():
            d2 = torch.cat([(a - b).pow(2).sum(dim=1) for a, b in pairs])
            m = median_bandwidth(d2)
    else:
        if not isinstance(bandwidth, Tensor) and not float(bandwidth) > 0:
            raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
        m = torch.as_tensor(bandwidth, dtype=x_s.dtype, device=x_s.device).detach()
    k1, k2, k3, k4 = (_mk_kernel(a, b, m, q) for a, b in pairs)
    total = (k1 - k2 - k3 + k4).sum()
    return total / s1.numel() if reduction == "mean" else total

