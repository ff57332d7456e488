"""Many L2-regularised squared-hinge linear SVMs on the same data, solved exactly by finite Newton.

The objective is liblinear's (``sklearn.svm.LinearSVC`` defaults: ``loss="squared_hinge"``, ``penalty="l2"``,
``fit_intercept=True``, ``intercept_scaling=1``: the intercept is the weight of a constant feature 1 and is
regularised like the others). For one problem with labels ``y in {-1, +1}^n`` and augmented points
``x~_i = [x_i, 1]``, ``w~ = [w, b]``::

    P(w~) = 1/2 ||w~||^2 + C sum_i max(0, 1 - y_i x~_i . w~)^2

``P`` is strictly convex and C^1 with a piecewise-quadratic form, so the finite Newton method (Mangasarian 2002;
Keerthi & DeCoste 2005, JMLR 6) reaches its minimiser exactly: with the active set ``A = {i : y_i f_i < 1}``
(``f = X~ w~``) fixed, ``P`` is the quadratic ``1/2 ||w~||^2 + C ||y_A - X~_A w~||^2`` whose minimiser is::

    w~_A = 2C (I + 2C X~_A^T X~_A)^{-1} X~_A^T y_A = X~_A^T (K_AA + I / (2C))^{-1} y_A,   K = X~ X~^T

(feature form, ``(d+1)^2`` system, or sample form, ``|A|^2`` system: the second identity is Woodbury's). Each
iteration moves from the current ``w~`` towards ``w~_A`` with an exact line search on the segment (``P`` along it
is a convex piecewise quadratic: its derivative is piecewise linear and is zeroed by sorting its breakpoints), and
stops when a full step lands on a point whose active set is ``A`` again: there the gradient
``w~ - 2C X~_A^T (y_A - f_A)`` is exactly zero (up to rounding), i.e. the global minimiser.

Why hand-written: BA's encoder step fits ``L`` such SVMs (one per bit) on the same ``X`` at every MAC iteration.
liblinear (through scikit-learn) fits them one at a time from scratch (~0.05-0.25 s each on 1,123 x 1,280
features); here the Gram matrix (or ``X~^T X~``) is shared by all bits and all MAC iterations, the first Newton
step of a cold start is one factorisation for all bits, and later MAC iterations warm-start from the previous
weights, so each bit needs a few small (``|A| ~ 300``) Cholesky solves. The result is the same minimiser
(``tests/test_hashing_baselines.py`` compares objective values and codes with ``LinearSVC``).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["L2SVMProblem", "primal_objective"]

# Stop when a Newton step changes w~ by less than this, relatively (a point with y_i f_i = 1 up to rounding can
# flip the active set back and forth without moving w~).
_REL_STEP = 1e-12
# The sample form costs |A|^3 / 3 per Newton point, the feature form |A| (d + 1)^2 + (d + 1)^3 / 3, and |A| (the
# points inside the margin) is usually well below d; so the sample form up to this many points even when n > d + 1
# (its Gram matrix: 8 n^2 bytes, 200 MB here). Measured, synthetic 4,357 x 1,280, 8 bits from a cold start:
# feature form 2.2 s per bit, sample form 1.0 s per bit including its Gram matrix (LinearSVC: 9 s per bit).
_SAMPLE_FORM_MAX_N = 5000


def primal_objective(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, C: float) -> float:
    """``P(w, b) = 1/2 (||w||^2 + b^2) + C sum_i max(0, 1 - y_i (x_i . w + b))^2`` for ``X (n, d)``."""
    margin = np.maximum(0.0, 1.0 - y * (X @ w + b))
    return float(0.5 * (w @ w + b * b) + C * np.sum(margin**2))


def _exact_line_search(f: np.ndarray, delta: np.ndarray, y: np.ndarray, r0: float, r1: float, C: float) -> float:
    """Minimiser ``t >= 0`` of ``phi(t) = P(w~ + t d)`` along a descent direction ``d``.

    ``phi'(t) = r0 + t r1 - 2C sum_{i: m_i(t) > 0} s_i m_i(t)`` with ``m_i(t) = 1 - y_i f_i - t s_i``,
    ``s_i = y_i delta_i`` (``delta = X~ d``), ``r0 = w~ . d``, ``r1 = ||d||^2``. ``phi'`` is continuous,
    non-decreasing and linear between the breakpoints ``t_i = m_i(0) / s_i``; it is evaluated at the sorted
    positive breakpoints and zeroed in the interval where it changes sign.
    """
    m = 1.0 - y * f
    s = y * delta
    active = (m > 0) | ((m == 0) & (s < 0))
    a = r0 - 2.0 * C * np.sum(s[active] * m[active])  # phi'(t) = a + b t on the first interval
    b = r1 + 2.0 * C * np.sum(s[active] ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        tb = np.where(s != 0, m / s, np.inf)
    cross = np.flatnonzero((tb > 0) & np.isfinite(tb))
    # at t_i: a point with s_i > 0 leaves the active set (if it was in), s_i < 0 enters (if it was out)
    cross = cross[active[cross] == (s[cross] > 0)]
    order = cross[np.argsort(tb[cross], kind="stable")]
    sign = np.where(s[order] > 0, -1.0, 1.0)
    da = sign * (-2.0 * C * s[order] * m[order])
    db = sign * (2.0 * C * s[order] ** 2)
    if a >= 0:  # not a descent direction (only through rounding next to the minimiser): stay
        return 0.0
    a_k = np.concatenate([[a], a + np.cumsum(da)])  # coefficients on interval k (k = 0 .. len(order))
    b_k = np.concatenate([[b], b + np.cumsum(db)])
    ends = tb[order]
    at_ends = a_k[:-1] + b_k[:-1] * ends  # phi' at each breakpoint (continuous)
    k = int(np.argmax(at_ends >= 0)) if np.any(at_ends >= 0) else len(order)
    return float(-a_k[k] / b_k[k]) if b_k[k] > 0 else float(ends[k - 1] if k else 0.0)


class L2SVMProblem:
    """``L`` squared-hinge SVMs sharing ``X (n, d)``; Newton systems in the cheaper of two forms.

    The iterates are the augmented weights ``w~ = [w, b] (d + 1,)`` and their outputs ``f = X~ w~ (n,)``.
    Sample form (``n <= d + 1``): ``K = X~ X~^T (n, n)`` is computed once and a Newton point costs an ``|A|``
    Cholesky factorisation; feature form (``n > d + 1``): ``X~^T X~_A`` and a ``(d + 1)`` factorisation.
    """

    def __init__(self, X: np.ndarray, C: float, form: str = "auto") -> None:
        x = np.asarray(X, dtype=np.float64)
        self.n, self.d = x.shape
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C}")
        if form not in ("auto", "sample", "feature"):
            raise ValueError(f"form must be 'auto', 'sample' or 'feature', got {form!r}")
        self.C = float(C)
        self.xt = np.hstack([x, np.ones((self.n, 1))])  # X~ (n, d + 1), intercept_scaling = 1
        self.sample_form = form == "sample" or (form == "auto" and self.n <= max(self.d + 1, _SAMPLE_FORM_MAX_N))
        self.gram = self.xt @ self.xt.T if self.sample_form else None

    def _newton_point(self, active: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Minimiser of the quadratic piece with active set ``active (n,) bool`` for labels ``y (n,)``:
        ``(w~ (d + 1,), f = X~ w~ (n,))``. In the sample form ``f_A = K_AA theta_A = y_A - theta_A / (2C)``
        comes free from the system itself; only the inactive points need ``K[~A, A] theta_A``."""
        reg = 0.5 / self.C
        idx = np.flatnonzero(active)
        if not idx.size:
            return np.zeros(self.d + 1), np.zeros(self.n)
        if self.sample_form:
            rows = self.gram[idx]  # (|A|, n): whole rows are cheap to gather (K is symmetric)
            mat = np.take(rows, idx, axis=1)
            mat[np.diag_indices_from(mat)] += reg
            theta = scipy.linalg.cho_solve(scipy.linalg.cho_factor(mat, lower=True, check_finite=False), y[idx],
                                           check_finite=False)
            f = theta @ rows
            f[idx] = y[idx] - reg * theta  # the same values up to rounding, exact for the system solved
            return theta @ self.xt[idx], f
        xa = self.xt[idx]
        mat = xa.T @ xa
        mat[np.diag_indices_from(mat)] += reg
        w = scipy.linalg.cho_solve(scipy.linalg.cho_factor(mat, lower=True, check_finite=False), y[idx] @ xa,
                                   check_finite=False)
        return w, self.xt @ w

    def _all_active_points(self, Y: np.ndarray) -> np.ndarray:
        """Newton points with every point active (the first Newton step from ``w~ = 0``) for all ``Y (L, n)``
        with one factorisation: ``(L, d + 1)``."""
        reg = 0.5 / self.C
        if self.sample_form:
            mat = self.gram.copy()
            mat[np.diag_indices_from(mat)] += reg
            return scipy.linalg.cho_solve(scipy.linalg.cho_factor(mat, lower=True), Y.T).T @ self.xt
        mat = self.xt.T @ self.xt
        mat[np.diag_indices_from(mat)] += reg
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(mat, lower=True), self.xt.T @ Y.T).T

    def solve(self, Y: np.ndarray, W0: np.ndarray | None = None, max_iter: int = 100
              ) -> tuple[np.ndarray, np.ndarray]:
        """Minimise ``P`` for each row of ``Y (L, n)`` in ``{-1, +1}``.

        Args:
            Y: labels, one problem per row.
            W0: ``(L, d + 1)`` starting directions ``[w, b]`` (e.g. the previous solution, or any linear
                hash function of these labels); each is first scaled by the exact line search along its ray
                from 0. Default: start at 0, whose first Newton step (every point active) is shared by all.
            max_iter: Newton iterations per problem at most.

        Returns:
            ``(W~ (L, d + 1), n_iter (L,))``: weights ``W~[:, :-1]``, intercepts ``W~[:, -1]``;
            ``n_iter[l] == max_iter`` means problem ``l`` stopped before convergence.
        """
        Y = np.asarray(Y, dtype=np.float64)
        L = Y.shape[0]
        out = np.zeros((L, self.d + 1))
        n_iter = np.zeros(L, dtype=np.int64)
        first = self._all_active_points(Y) if W0 is None else None
        if W0 is not None:
            W0 = np.asarray(W0, dtype=np.float64)
            F0 = W0 @ self.xt.T  # (L, n): all the rays' outputs in one product
        for l in range(L):
            y = Y[l]
            w, f = np.zeros(self.d + 1), np.zeros(self.n)
            if W0 is not None and np.any(W0[l]):  # scale the start along its ray: exact line search from 0
                t = _exact_line_search(f, F0[l], y, 0.0, float(W0[l] @ W0[l]), self.C)
                w, f = t * W0[l], t * F0[l]
            for it in range(max_iter):
                active = y * f < 1.0
                if first is not None and it == 0:
                    target = first[l]
                    f_target = self.xt @ target
                else:
                    target, f_target = self._newton_point(active, y)
                step, delta = target - w, f_target - f
                r1 = float(step @ step)  # ||change of w~||^2
                n_iter[l] = it + 1
                if r1 <= _REL_STEP**2 * float(target @ target):
                    w, f = target, f_target  # no longer moves (ties y_i f_i = 1 may flip A forever)
                    break
                t = _exact_line_search(f, delta, y, float(w @ step), r1, self.C)
                if t == 0.0:  # no descent left along the Newton direction: the minimiser up to rounding
                    break
                if t >= 1.0 - 1e-12:  # a full step: the Newton point itself
                    w, f = target, f_target
                    if np.array_equal(y * f < 1.0, active):  # consistent active set: the global minimiser
                        break
                else:
                    w, f = w + t * step, f + t * delta
            out[l] = w
        return out, n_iter
