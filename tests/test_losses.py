"""Tests of dahash.train.losses: hand-computed values (plain python loops), autograd vs gradcheck, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dahash.train.losses import (
    DEFAULT_MMD_SCALES,
    class_probabilities,
    hash_sign,
    is_class_ordered_k_batch,
    linear_mk_mmd,
    mk_gaussian_kernel,
    pairwise_hash_loss,
    quantization_loss,
    split_halves,
    target_entropy_loss,
)

F64 = torch.float64


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


# ----------------------------------------------------------------------------- hash_sign / quantization
def test_hash_sign_zero_is_plus_one() -> None:
    u = torch.tensor([[-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0]])
    assert hash_sign(u).tolist() == [[-1.0, 1.0, 1.0, 1.0, -1.0, 1.0]]
    assert hash_sign(u).dtype == u.dtype


def test_quantization_hand_case_and_sign_zero_gradient() -> None:
    u = torch.tensor([[0.0, -0.3], [0.7, -1.2]], dtype=F64, requires_grad=True)
    loss = quantization_loss(u)
    # sign = [[+1, -1], [+1, -1]]: (0-1)^2 + (-0.3+1)^2 + (0.7-1)^2 + (-1.2+1)^2
    assert loss.item() == pytest.approx(1.0 + 0.49 + 0.09 + 0.04)
    assert quantization_loss(u, reduction="mean").item() == pytest.approx(1.62 / 2)
    loss.backward()
    # d/du (u - sign(u))^2 with sign constant = 2 (u - sign(u)); at u = 0 this is 2 (0 - 1) = -2
    expected = [[2 * (0.0 - 1), 2 * (-0.3 + 1)], [2 * (0.7 - 1), 2 * (-1.2 + 1)]]
    assert torch.allclose(u.grad, torch.tensor(expected, dtype=F64))


def test_sign_zero_minus_one_changes_only_the_zeros() -> None:
    u = torch.tensor([[-2.0, -0.0, 0.0, 1e-30, -1e-30, 3.0]])
    assert hash_sign(u, sign_zero=-1.0).tolist() == [[-1.0, -1.0, -1.0, 1.0, -1.0, 1.0]]
    assert hash_sign(u, sign_zero=1.0).tolist() == hash_sign(u).tolist()
    with pytest.raises(ValueError, match="sign_zero"):
        hash_sign(u, sign_zero=0.0)


def test_quantization_sign_zero_moves_the_target_at_zero() -> None:
    u = torch.tensor([[0.0, -0.3], [0.7, 0.0]], dtype=F64, requires_grad=True)
    plus = quantization_loss(u)  # targets [[+1, -1], [+1, +1]]
    minus = quantization_loss(u, sign_zero=-1.0)  # targets [[-1, -1], [+1, -1]]
    # the zeros are at distance 1 from either target, so the VALUE is the same ...
    assert plus.item() == pytest.approx(minus.item()) == pytest.approx(1.0 + 0.49 + 0.09 + 1.0)
    (g_plus,) = torch.autograd.grad(plus, u)
    (g_minus,) = torch.autograd.grad(minus, u)
    # ... but the gradient 2 (u - sign(u)) at u = 0 flips: -2 (pushed up) vs +2 (pushed down)
    assert torch.allclose(g_plus, torch.tensor([[-2.0, 1.4], [-0.6, -2.0]], dtype=F64))
    assert torch.allclose(g_minus, torch.tensor([[2.0, 1.4], [-0.6, 2.0]], dtype=F64))
    u_off = torch.tensor([[0.5, -0.3]], dtype=F64)  # no zeros: no difference at all
    assert quantization_loss(u_off, sign_zero=-1.0).item() == quantization_loss(u_off).item()
    with pytest.raises(ValueError, match="sign_zero"):
        quantization_loss(u, sign_zero=2.0)


def test_quantization_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    u = torch.rand(4, 3, generator=g, dtype=F64) * 1.6 - 0.8
    u = torch.where(u.abs() < 0.1, u + 0.3, u).requires_grad_()  # keep away from sign(.)'s jump
    assert torch.autograd.gradcheck(lambda x: quantization_loss(x), (u,))
    assert torch.autograd.gradcheck(lambda x: quantization_loss(x, "mean"), (u,))


def test_quantization_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="2-D"):
        quantization_loss(torch.zeros(3))
    with pytest.raises(ValueError, match="reduction"):
        quantization_loss(torch.zeros(2, 2), reduction="max")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- pairwise hash loss
U3 = [[0.5, -1.0], [1.0, 0.25], [-0.5, 0.5]]
Y3 = [0, 0, 1]


def _hash_loss_loops(u, y, sw=10.0, scale=0.5) -> float:
    total = 0.0
    for i in range(len(u)):
        for j in range(len(u)):
            theta = scale * _dot(u[i], u[j])
            s = 1.0 if y[i] == y[j] else 0.0
            w = sw if s else 1.0
            total += w * (math.log(1.0 + math.exp(theta)) - s * theta)
    return total


def _hash_grad_loops(u, y, sw=10.0, scale=0.5, diagonal=False):
    n, d = len(u), len(u[0])
    grad = [[0.0] * d for _ in range(n)]
    for a in range(n):
        for j in range(n):
            if j == a and not diagonal:
                continue
            theta = scale * _dot(u[a], u[j])
            s = 1.0 if y[a] == y[j] else 0.0
            w = sw if s else 1.0
            coef = w * (_sigmoid(theta) - s) * scale
            for t in range(d):
                # theta_aj and theta_ja both depend on u_a: factor 2 (for j == a: d(u.u) = 2u)
                grad[a][t] += 2.0 * coef * u[j][t]
    return grad


def test_hash_loss_hand_case_value() -> None:
    u = torch.tensor(U3, dtype=F64)
    y = torch.tensor(Y3)
    assert pairwise_hash_loss(u, y).item() == pytest.approx(_hash_loss_loops(U3, Y3), rel=1e-12)
    assert pairwise_hash_loss(u, y, reduction="mean").item() == pytest.approx(_hash_loss_loops(U3, Y3) / 9)
    other = _hash_loss_loops(U3, Y3, sw=3.0, scale=1.0)
    assert pairwise_hash_loss(u, y, similar_weight=3.0, scale=1.0).item() == pytest.approx(other, rel=1e-12)


def test_hash_loss_diagonal_gets_no_gradient() -> None:
    u = torch.tensor(U3, dtype=F64, requires_grad=True)
    y = torch.tensor(Y3)
    pairwise_hash_loss(u, y).backward()
    expected = torch.tensor(_hash_grad_loops(U3, Y3, diagonal=False), dtype=F64)
    assert torch.allclose(u.grad, expected, atol=1e-12)
    # and it really differs from differentiating the diagonal too
    full = torch.tensor(_hash_grad_loops(U3, Y3, diagonal=True), dtype=F64)
    assert not torch.allclose(u.grad, full, atol=1e-3)
    u2 = torch.tensor(U3, dtype=F64, requires_grad=True)
    pairwise_hash_loss(u2, y, diagonal_grad=True).backward()
    assert torch.allclose(u2.grad, full, atol=1e-12)


def test_hash_loss_gradcheck_full_and_off_diagonal() -> None:
    g = torch.Generator().manual_seed(0)
    u = (torch.rand(5, 3, generator=g, dtype=F64) * 2 - 1).requires_grad_()
    y = torch.tensor([0, 1, 0, 2, 1])
    assert torch.autograd.gradcheck(lambda x: pairwise_hash_loss(x, y, diagonal_grad=True), (u,))
    # default: autograd equals the full derivative minus the diagonal terms' derivative
    # d/du_a [W_aa (softplus(s u_a.u_a) - s u_a.u_a)] = W_aa (sigmoid(theta_aa) - 1) 2 s u_a
    pairwise_hash_loss(u, y).backward()
    full = torch.autograd.functional.jacobian(lambda x: pairwise_hash_loss(x, y, diagonal_grad=True), u.detach())
    theta_aa = 0.5 * (u.detach() ** 2).sum(1, keepdim=True)
    diag = 10.0 * (torch.sigmoid(theta_aa) - 1) * 2 * 0.5 * u.detach()
    assert torch.allclose(u.grad, full - diag, atol=1e-12)


def test_hash_loss_is_numerically_stable() -> None:
    u = torch.tensor([[40.0, 0.0], [-40.0, 0.0]], requires_grad=True)  # theta = +-800
    loss = pairwise_hash_loss(u, torch.tensor([0, 1]))
    # (i,i): 10 (softplus(800) - 800) ~ 0; (0,1),(1,0): softplus(-800) ~ 0; naive log(1+exp) -> inf
    assert torch.isfinite(loss) and loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert torch.isfinite(u.grad).all()


def test_hash_loss_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"labels must have shape \(3,\)"):
        pairwise_hash_loss(torch.zeros(3, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="2-D"):
        pairwise_hash_loss(torch.zeros(3), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="integer"):
        pairwise_hash_loss(torch.zeros(2, 2), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction"):
        pairwise_hash_loss(torch.zeros(2, 2), torch.tensor([0, 1]), reduction="avg")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- entropy
def _probs_loops(ut, us, ys, C):
    out = []
    for t in ut:
        e = [math.exp(_dot(t, s)) for s in us]
        z = sum(e)
        out.append([sum(ek for ek, yk in zip(e, ys) if yk == j) / z for j in range(C)])
    return out


def test_class_probabilities_and_entropy_hand_case() -> None:
    ut = [[0.5, -0.5], [1.0, 1.0]]
    us = [[1.0, 0.0], [0.5, 0.5], [-1.0, 1.0]]
    ys = [0, 0, 1]
    p_ref = _probs_loops(ut, us, ys, 2)
    p = class_probabilities(torch.tensor(ut, dtype=F64), torch.tensor(us, dtype=F64), torch.tensor(ys), 2)
    assert p.shape == (2, 2)
    assert torch.allclose(p, torch.tensor(p_ref, dtype=F64), atol=1e-14)
    h_ref = -sum(pij * math.log(pij) for row in p_ref for pij in row)
    h = target_entropy_loss(torch.tensor(ut, dtype=F64), torch.tensor(us, dtype=F64), torch.tensor(ys), 2)
    assert h.item() == pytest.approx(h_ref, rel=1e-12)
    h_mean = target_entropy_loss(
        torch.tensor(ut, dtype=F64), torch.tensor(us, dtype=F64), torch.tensor(ys), 2, reduction="mean"
    )
    assert h_mean.item() == pytest.approx(h_ref / 2, rel=1e-12)


def test_entropy_uniform_is_m_log_c() -> None:
    m, C, k = 4, 3, 2
    us = torch.randn(C * k, 5, generator=torch.Generator().manual_seed(0))
    ys = torch.arange(C).repeat_interleave(k)
    h = target_entropy_loss(torch.zeros(m, 5), us, ys, C)
    assert h.item() == pytest.approx(m * math.log(C), rel=1e-6)


def test_entropy_confident_alignment_is_near_zero() -> None:
    C, k = 3, 2
    eye = torch.eye(C, dtype=F64) * 5.0
    us = eye.repeat_interleave(k, dim=0)  # k copies of 5 e_j per class
    ys = torch.arange(C).repeat_interleave(k)
    ut = eye[[0, 2, 1, 1]]
    h = target_entropy_loss(ut, us, ys, C)
    assert 0.0 <= h.item() < 1e-7
    p = class_probabilities(ut, us, ys, C)
    assert p.argmax(1).tolist() == [0, 2, 1, 1]


def test_entropy_gradcheck_both_inputs() -> None:
    g = torch.Generator().manual_seed(3)
    ut = (torch.rand(3, 4, generator=g, dtype=F64) * 2 - 1).requires_grad_()
    us = (torch.rand(6, 4, generator=g, dtype=F64) * 2 - 1).requires_grad_()
    ys = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.autograd.gradcheck(lambda a, b: target_entropy_loss(a, b, ys, 3), (ut, us))
    assert torch.autograd.gradcheck(lambda a, b: class_probabilities(a, b, ys, 3), (ut, us))


def test_entropy_class_without_source_items_has_finite_gradient() -> None:
    ut = torch.randn(2, 3, dtype=F64, requires_grad=True)
    us = torch.randn(4, 3, dtype=F64, requires_grad=True)
    ys = torch.tensor([0, 0, 1, 1])  # class 2 absent: p_i2 = 0
    p = class_probabilities(ut, us, ys, 3)
    assert torch.all(p[:, 2] == 0) and torch.allclose(p.sum(1), torch.ones(2, dtype=F64))
    h = target_entropy_loss(ut, us, ys, 3)
    h.backward()
    assert torch.isfinite(h) and torch.isfinite(ut.grad).all() and torch.isfinite(us.grad).all()


def test_entropy_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same number of bits"):
        class_probabilities(torch.zeros(2, 3), torch.zeros(4, 2), torch.tensor([0, 0, 1, 1]), 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        class_probabilities(torch.zeros(2, 2), torch.zeros(4, 2), torch.tensor([0, 0, 1, 2]), 2)
    with pytest.raises(ValueError, match="num_classes"):
        target_entropy_loss(torch.zeros(2, 2), torch.zeros(4, 2), torch.tensor([0, 0, 0, 0]), 0)


def test_is_class_ordered_k_batch() -> None:
    assert is_class_ordered_k_batch(torch.tensor([0, 0, 1, 1, 2, 2]), 3, 2)
    assert is_class_ordered_k_batch(np.array([0, 0, 1, 1, 2, 2]), 3, 2)
    assert not is_class_ordered_k_batch(torch.tensor([0, 1, 0, 1, 2, 2]), 3, 2)  # not class order
    assert not is_class_ordered_k_batch(torch.tensor([0, 0, 1, 1]), 3, 2)  # a class missing
    assert not is_class_ordered_k_batch(torch.tensor([0, 0, 0, 1, 1, 2]), 3, 2)  # unequal counts
    assert not is_class_ordered_k_batch([0, 0, 1, 1, 2, 2, 2], 3, 2)  # too long
    with pytest.raises(ValueError, match="k must be"):
        is_class_ordered_k_batch([0], 1, 0)


# ----------------------------------------------------------------------------- MK-MMD
def test_mk_gaussian_kernel_hand_case_and_gradcheck() -> None:
    a = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=F64)
    b = torch.tensor([[1.0, 1.0], [1.0, 2.0]], dtype=F64)
    k = mk_gaussian_kernel(a, b, 2.0, [1.0, 2.0])
    # ||a0-b0||^2 = 2: mean(exp(-(1/2) 2), exp(-(2/2) 2)); identical rows -> 1
    assert k.tolist() == pytest.approx([(math.exp(-1.0) + math.exp(-2.0)) / 2, 1.0])
    a = a.clone().requires_grad_()
    b = (b + 0.3).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: mk_gaussian_kernel(x, y, 1.7, [0.5, 1.0, 4.0]), (a, b))


def test_mk_gaussian_kernel_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        mk_gaussian_kernel(torch.zeros(2, 3), torch.zeros(3, 3), 1.0, [1.0])
    with pytest.raises(ValueError, match="bandwidth must be > 0"):
        mk_gaussian_kernel(torch.zeros(2, 3), torch.zeros(2, 3), 0.0, [1.0])
    with pytest.raises(ValueError, match="scales"):
        mk_gaussian_kernel(torch.zeros(2, 3), torch.zeros(2, 3), 1.0, [])


def _mmd_loops(xs, xt, s1, s2, t1, t2, scales):
    """Value and gradients (w.r.t. xs, xt) of the code's statistic, written like vl_nnlinearMmdLoss."""
    pairs = [(xs[i], xs[j]) for i, j in zip(s1, s2)] + [(xs[i], xt[j]) for i, j in zip(s1, t2)]
    pairs += [(xs[i], xt[j]) for i, j in zip(s2, t1)] + [(xt[i], xt[j]) for i, j in zip(t1, t2)]
    d2 = sorted(sum((p - q) ** 2 for p, q in zip(a, b)) for a, b in pairs)
    mid = len(d2) // 2
    m = (d2[mid - 1] + d2[mid]) / 2  # MATLAB median of an even count
    f = len(xs[0])
    gs = [[0.0] * f for _ in xs]
    gt = [[0.0] * f for _ in xt]
    total = 0.0
    terms = [(xs, s1, xs, s2, gs, gs, 1.0), (xs, s1, xt, t2, gs, gt, -1.0),
             (xs, s2, xt, t1, gs, gt, -1.0), (xt, t1, xt, t2, gt, gt, 1.0)]
    for A, ia, B, ib, gA, gB, sign in terms:
        for i, j in zip(ia, ib):
            dd = sum((p - q) ** 2 for p, q in zip(A[i], B[j]))
            kv = sum(math.exp(-(q / m) * dd) for q in scales) / len(scales)
            total += sign * kv
            dk = sum(math.exp(-(q / m) * dd) * (-q / m) for q in scales) / len(scales)  # d k / d dd
            for t in range(f):
                diff = 2.0 * (A[i][t] - B[j][t])
                gA[i][t] += sign * dk * diff
                gB[j][t] -= sign * dk * diff
    return total, gs, gt, m


def test_linear_mmd_hand_case_value_and_gradient() -> None:
    n, f = 5, 3  # odd n: h = 2, one item per domain is left out
    g = torch.Generator().manual_seed(11)
    xs = torch.rand(n, f, generator=g, dtype=F64)
    xt = torch.rand(n, f, generator=g, dtype=F64) + 0.5
    scales = [0.25, 1.0, 4.0]
    halves = torch.Generator().manual_seed(5)
    s1, s2 = split_halves(n, halves, "drop")
    t1, t2 = split_halves(n, halves, "drop")
    assert len(s1) == len(s2) == len(t1) == len(t2) == 2
    ref, gs, gt, _ = _mmd_loops(xs.tolist(), xt.tolist(), s1.tolist(), s2.tolist(), t1.tolist(), t2.tolist(), scales)
    a, b = xs.clone().requires_grad_(), xt.clone().requires_grad_()
    val = linear_mk_mmd(a, b, scales, generator=torch.Generator().manual_seed(5), odd="drop")
    assert val.item() == pytest.approx(ref, rel=1e-12)
    val.backward()
    # autograd treats the median bandwidth as a constant, exactly like the code's hand-written backward
    assert torch.allclose(a.grad, torch.tensor(gs, dtype=F64), atol=1e-12)
    assert torch.allclose(b.grad, torch.tensor(gt, dtype=F64), atol=1e-12)
    mean = linear_mk_mmd(xs, xt, scales, reduction="mean", generator=torch.Generator().manual_seed(5), odd="drop")
    assert mean.item() == pytest.approx(ref / 2, rel=1e-12)


def _mmd_code_port_odd(xs, xt, s_perm, t_perm, scales):
    """vl_nnlinearMmdLoss for an odd n, column by column: ns1 = ceil(n/2), Us2/Ut2 get a copy of their
    last column appended, every column gets its gradient, then the copy's gradient column is deleted
    (``gradUs2(:, end) = []``). Returns (value, grad xs, grad xt)."""
    n = len(s_perm)
    h1 = (n + 1) // 2
    sidx1, sidx2 = s_perm[:h1], s_perm[h1:] + s_perm[-1:]
    tidx1, tidx2 = t_perm[:h1], t_perm[h1:] + t_perm[-1:]
    live2 = [True] * (h1 - 1) + [False]  # the appended copy gets no gradient
    us1, us2 = [xs[i] for i in sidx1], [xs[i] for i in sidx2]
    ut1, ut2 = [xt[i] for i in tidx1], [xt[i] for i in tidx2]
    d = lambda a, b: sum((p - q) ** 2 for p, q in zip(a, b))  # noqa: E731
    kd = [[d(a, b) for a, b in zip(A, B)] for A, B in ((us1, us2), (us1, ut2), (us2, ut1), (ut1, ut2))]
    flat = sorted(v for col in kd for v in col)
    mid = len(flat) // 2
    m = (flat[mid - 1] + flat[mid]) / 2 if len(flat) % 2 == 0 else flat[mid]
    f = len(xs[0])
    gs = [[0.0] * f for _ in xs]
    gt = [[0.0] * f for _ in xt]
    total = 0.0
    blocks = [((us1, sidx1, gs, [True] * h1), (us2, sidx2, gs, live2), 1.0),
              ((us1, sidx1, gs, [True] * h1), (ut2, tidx2, gt, live2), -1.0),
              ((us2, sidx2, gs, live2), (ut1, tidx1, gt, [True] * h1), -1.0),
              ((ut1, tidx1, gt, [True] * h1), (ut2, tidx2, gt, live2), 1.0)]
    for (A, ia, gA, la), (B, ib, gB, lb), sign in blocks:
        for c in range(h1):
            dd = d(A[c], B[c])
            total += sign * sum(math.exp(-(q / m) * dd) for q in scales) / len(scales)
            dk = sum(math.exp(-(q / m) * dd) * (-q / m) for q in scales) / len(scales)
            for t in range(f):
                diff = 2.0 * (A[c][t] - B[c][t])
                if la[c]:
                    gA[ia[c]][t] += sign * dk * diff
                if lb[c]:
                    gB[ib[c]][t] -= sign * dk * diff
    return total, gs, gt


def test_linear_mmd_odd_n_repeats_the_last_item_as_the_authors_code() -> None:
    n, f = 7, 3
    g = torch.Generator().manual_seed(3)
    xs = torch.rand(n, f, generator=g, dtype=F64)
    xt = torch.rand(n, f, generator=g, dtype=F64) + 0.3
    scales = [0.5, 1.0, 2.0]
    perms = torch.Generator().manual_seed(8)
    s_perm = torch.randperm(n, generator=perms).tolist()
    t_perm = torch.randperm(n, generator=perms).tolist()
    ref, gs, gt = _mmd_code_port_odd(xs.tolist(), xt.tolist(), s_perm, t_perm, scales)
    a, b = xs.clone().requires_grad_(), xt.clone().requires_grad_()
    val = linear_mk_mmd(a, b, scales, generator=torch.Generator().manual_seed(8))  # default: odd="repeat"
    assert val.item() == pytest.approx(ref, rel=1e-12)
    val.backward()
    assert torch.allclose(a.grad, torch.tensor(gs, dtype=F64), atol=1e-12)
    assert torch.allclose(b.grad, torch.tensor(gt, dtype=F64), atol=1e-12)
    # 4 tuples of ceil(7/2) = 4 items; the "drop" rule uses 3 and gives another value
    s1, s2 = split_halves(n, torch.Generator().manual_seed(8), "repeat")
    assert len(s1) == len(s2) == 4 and s2[-1] == s2[-2]
    dropped = linear_mk_mmd(xs, xt, scales, generator=torch.Generator().manual_seed(8), odd="drop")
    assert dropped.item() != pytest.approx(ref, rel=1e-6)
    # even n: both rules are the same statistic
    even_s, even_t = xs[:6], xt[:6]
    r = linear_mk_mmd(even_s, even_t, scales, generator=torch.Generator().manual_seed(2), odd="repeat")
    d_ = linear_mk_mmd(even_s, even_t, scales, generator=torch.Generator().manual_seed(2), odd="drop")
    assert r.item() == d_.item()
    with pytest.raises(ValueError, match="odd must be"):
        split_halves(5, None, "pad")


def test_linear_mmd_bandwidth_is_constant_for_the_gradient() -> None:
    n, f = 8, 4
    g = torch.Generator().manual_seed(2)
    xs = torch.randn(n, f, generator=g, dtype=F64)
    xt = torch.randn(n, f, generator=g, dtype=F64) + 1.0
    halves = torch.Generator().manual_seed(9)
    s1, s2 = split_halves(n, halves)
    t1, t2 = split_halves(n, halves)
    _, _, _, m = _mmd_loops(xs.tolist(), xt.tolist(), s1.tolist(), s2.tolist(), t1.tolist(), t2.tolist(), [1.0])
    grads = []
    for bw in (None, m):
        a, b = xs.clone().requires_grad_(), xt.clone().requires_grad_()
        linear_mk_mmd(a, b, generator=torch.Generator().manual_seed(9), bandwidth=bw).backward()
        grads.append((a.grad, b.grad))
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-13)
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-13)
    # differentiating through the median would change the gradient: check it is not what we got
    a, b = xs.clone().requires_grad_(), xt.clone().requires_grad_()
    s1, s2, t1, t2 = (i.tolist() for i in (s1, s2, t1, t2))
    pairs = [(a[s1], a[s2]), (a[s1], b[t2]), (a[s2], b[t1]), (b[t1], b[t2])]
    d2 = torch.cat([((p - q) ** 2).sum(1) for p, q in pairs])
    m_live = torch.quantile(d2, 0.5)
    ks = [mk_gaussian_kernel(p, q, m_live, DEFAULT_MMD_SCALES) for p, q in pairs]
    (ks[0] - ks[1] - ks[2] + ks[3]).sum().backward()
    assert not torch.allclose(grads[0][0], a.grad, atol=1e-6)


def test_linear_mmd_gradcheck_with_fixed_halves_and_bandwidth() -> None:
    g = torch.Generator().manual_seed(4)
    xs = torch.randn(6, 3, generator=g, dtype=F64).requires_grad_()
    xt = (torch.randn(6, 3, generator=g, dtype=F64) + 0.5).requires_grad_()

    def fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return linear_mk_mmd(a, b, generator=torch.Generator().manual_seed(7), bandwidth=3.0)

    assert torch.autograd.gradcheck(fn, (xs, xt))


def test_linear_mmd_same_distribution_near_zero_shifted_positive() -> None:
    g = torch.Generator().manual_seed(0)
    n, f = 4000, 5
    xs = torch.randn(n, f, generator=g, dtype=F64)
    xt_same = torch.randn(n, f, generator=g, dtype=F64)
    xt_shift = torch.randn(n, f, generator=g, dtype=F64) + 1.0
    same = linear_mk_mmd(xs, xt_same, reduction="mean", generator=torch.Generator().manual_seed(1)).item()
    shifted = linear_mk_mmd(xs, xt_shift, reduction="mean", generator=torch.Generator().manual_seed(1)).item()
    assert abs(same) < 0.015  # seeds 0-9 give |same| <= 0.005
    assert shifted > 0.05  # ~0.07 for a shift of 1 per coordinate, 10x the null spread


def test_linear_mmd_can_be_negative() -> None:
    g = torch.Generator().manual_seed(0)
    values = []
    for seed in range(20):
        xs = torch.randn(6, 2, generator=g)
        xt = torch.randn(6, 2, generator=g)
        values.append(linear_mk_mmd(xs, xt, generator=torch.Generator().manual_seed(seed)).item())
    assert min(values) < 0 < max(values)


def test_linear_mmd_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"x_s \(4, 3\).*x_t \(5, 3\)"):
        linear_mk_mmd(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        linear_mk_mmd(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="reduction"):
        linear_mk_mmd(torch.zeros(4, 3), torch.zeros(4, 3), reduction="none")  # type: ignore[arg-type]


def test_linear_mmd_identical_points_gives_zero_not_nan() -> None:
    x = torch.ones(4, 3, requires_grad=True)
    val = linear_mk_mmd(x, torch.ones(4, 3))
    val.backward()
    assert val.item() == 0.0 and torch.isfinite(x.grad).all()
