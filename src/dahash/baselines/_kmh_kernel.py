"""Numba version of K-means hashing's per-codeword objective ``E_j(c)`` and its gradient.

Same formula as :func:`dahash.baselines.kmh._center_cost_and_grad` (the numpy reference; the tests compare
the two): a KMH fit evaluates it about 100,000 times on ``(2^b, d)`` arrays of a few hundred numbers, where
numpy's per-call overhead (about 30 us) is most of the work and this loop takes about 2 us. The sums run in
a different order than numpy's, so values agree to rounding (relative 1e-15), not bit for bit.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_EPS = 1e-12


@nb.njit(cache=True, nogil=True)
def center_cost_and_grad(c: np.ndarray, j: int, sum_j: np.ndarray, counts: np.ndarray, n: int,
                         centers: np.ndarray, dh_j: np.ndarray, weight: float) -> tuple[float, np.ndarray]:
    """``E_j(c)`` (see ``dahash.baselines.kmh``) and its gradient w.r.t. ``c (d,)``; ``centers (k, d)``.

    E_j(c) = (n_j ||c||^2 - 2 c . S_j) / n + 2 w (n_j / n^2) sum_{i != j} n_i (||c - c_i|| - dh_j[i])^2
    """
    k, d = centers.shape
    nj = counts[j]
    cc = 0.0
    sc = 0.0
    for t in range(d):
        cc += c[t] * c[t]
        sc += sum_j[t] * c[t]
    grad = np.empty(d)
    for t in range(d):
        grad[t] = (2.0 * nj * c[t] - 2.0 * sum_j[t]) / n
    coef = 2.0 * weight * nj / (n * n)
    aff = 0.0
    g_aff = np.zeros(d)
    for i in range(k):
        e2 = 0.0
        for t in range(d):
            diff = c[t] - centers[i, t]
            e2 += diff * diff
        e = np.sqrt(e2)
        err = 0.0 if i == j else e - dh_j[i]
        aff += counts[i] * err * err
        w = counts[i] * 2.0 * err / max(e, _EPS)
        for t in range(d):
            g_aff[t] += w * (c[t] - centers[i, t])
    for t in range(d):
        grad[t] += coef * g_aff[t]
    return (nj * cc - 2.0 * sc) / n + coef * aff, grad


@nb.njit(cache=True, nogil=True)
def minimize_center(c0: np.ndarray, j: int, sum_j: np.ndarray, counts: np.ndarray, n: int, centers: np.ndarray,
                    dh_j: np.ndarray, weight: float, max_iter: int) -> tuple[np.ndarray, float, float]:
    """Minimise ``E_j`` from ``c0 (d,)`` by L-BFGS; returns ``(c, E_j(c), E_j(c0))``.

    The standard two-loop recursion (Nocedal & Wright, Alg. 7.4) with 10 correction pairs (scipy's ``maxcor``),
    the first step scaled to length 1 as L-BFGS-B does, a backtracking Armijo line search (sufficient decrease
    1e-4, safeguarded quadratic interpolation) and pairs with ``s . y <= 1e-10 y . y`` skipped. It stops as
    scipy's L-BFGS-B with its defaults would: ``max |g| <= 1e-5`` (``pgtol``), a relative decrease
    ``(E_k - E_{k+1}) / max(|E_k|, |E_{k+1}|, 1) <= 2.2e-9`` (``factr * eps``), or ``max_iter`` iterations.
    The path differs from scipy's (its line search is More-Thuente's), so the minimiser found can differ when
    ``E_j`` (not convex: the ``||c - c_i||`` terms) has several; hand-written because a call of
    ``scipy.optimize.minimize`` costs ~0.4 ms of Python overhead and a fit makes 12,800 of them.
    """
    m = 10
    d = c0.size
    x = c0.copy()
    f, g = center_cost_and_grad(x, j, sum_j, counts, n, centers, dh_j, weight)
    f_start = f
    S = np.zeros((m, d))
    Yv = np.zeros((m, d))
    rho = np.zeros(m)
    alpha = np.zeros(m)
    count = 0
    head = 0
    for it in range(max_iter):
        gmax = 0.0
        for t in range(d):
            gmax = max(gmax, abs(g[t]))
        if gmax <= 1e-5:
            break
        q = g.copy()
        for i in range(count):
            k = (head - 1 - i) % m
            a = 0.0
            for t in range(d):
                a += S[k, t] * q[t]
            a *= rho[k]
            alpha[k] = a
            for t in range(d):
                q[t] -= a * Yv[k, t]
        if count > 0:
            k = (head - 1) % m
            sy = 0.0
            yy = 0.0
            for t in range(d):
                sy += S[k, t] * Yv[k, t]
                yy += Yv[k, t] * Yv[k, t]
            gamma = sy / yy
        else:
            gn2 = 0.0
            for t in range(d):
                gn2 += g[t] * g[t]
            gamma = 1.0 / np.sqrt(gn2)  # first step of length 1
        for t in range(d):
            q[t] *= gamma
        for i in range(count - 1, -1, -1):
            k = (head - 1 - i) % m
            b = 0.0
            for t in range(d):
                b += Yv[k, t] * q[t]
            b *= rho[k]
            for t in range(d):
                q[t] += S[k, t] * (alpha[k] - b)
        gp = 0.0
        for t in range(d):
            q[t] = -q[t]
            gp += g[t] * q[t]
        if gp >= 0.0:  # not a descent direction: restart from the scaled steepest descent
            count = 0
            gn2 = 0.0
            for t in range(d):
                gn2 += g[t] * g[t]
            for t in range(d):
                q[t] = -g[t] / np.sqrt(gn2)
            gp = -np.sqrt(gn2)
        step = 1.0
        ok = False
        for _ in range(60):
            xn = x + step * q
            fn, gnew = center_cost_and_grad(xn, j, sum_j, counts, n, centers, dh_j, weight)
            if fn <= f + 1e-4 * step * gp:
                ok = True
                break
            denom = 2.0 * (fn - f - gp * step)
            new = -gp * step * step / denom if denom > 0 else 0.5 * step
            step = min(max(new, 0.1 * step), 0.5 * step)
        if not ok:
            break
        sy = 0.0
        yy = 0.0
        for t in range(d):
            S[head, t] = xn[t] - x[t]
            Yv[head, t] = gnew[t] - g[t]
            sy += S[head, t] * Yv[head, t]
            yy += Yv[head, t] * Yv[head, t]
        if sy > 1e-10 * yy:
            rho[head] = 1.0 / sy
            head = (head + 1) % m
            count = min(count + 1, m)
        decrease = (f - fn) / max(abs(f), abs(fn), 1.0)
        x, f, g = xn, fn, gnew
        if decrease <= 2.220446049250313e-09:
            break
    return x, f, f_start


@nb.njit(cache=True, nogil=True)
def update_centers(centers: np.ndarray, sums: np.ndarray, counts: np.ndarray, n: int, dh: np.ndarray,
                   weight: float, max_iter: int) -> None:
    """KMH's update step in place: codewords ``j = 0 .. k-1`` in turn, each to the :func:`minimize_center`
    result unless that is worse than where it started; empty cells keep their codeword."""
    for j in range(centers.shape[0]):
        if counts[j] == 0:
            continue
        c, f, f0 = minimize_center(centers[j].copy(), j, sums[j], counts, n, centers, dh[:, j].copy(), weight,
                                   max_iter)
        if f <= f0:
            centers[j] = c
