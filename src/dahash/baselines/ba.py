"""Binary Autoencoder (BA), Carreira-Perpinan & Raziperchikolaei, CVPR 2015 ("Hashing with binary
autoencoders"), trained with the method of auxiliary coordinates (MAC).

Model: a linear hash function (encoder) ``h(x) = sgn(W x + a)`` with ``L = bits`` outputs and a
linear decoder ``f(z) = A z + c``. The binary autoencoder objective is::

    E_BA(h, f) = sum_n ||x_n - f(h(x_n))||^2

MAC introduces auxiliary codes ``Z = (z_1 .. z_N)`` and the quadratic-penalty objective::

    E_Q(h, f, Z; mu) = sum_n ||x_n - f(z_n)||^2 + mu ||z_n - h(x_n)||^2,   z_n binary

minimised by alternation for an increasing schedule ``mu_0 < mu_1 < ...`` (paper, Algorithm 1):

* **h step** (encoder): ``L`` independent binary classifiers, bit ``l`` a linear SVM fitted to
  ``(X, Z[:, l])`` (a constant bit gives a constant classifier): the minimiser of liblinear's objective
  (``sklearn.svm.LinearSVC``'s defaults: squared hinge, L2, regularised intercept
  ``1/2 (||w||^2 + b^2) + C sum_n max(0, 1 - z_nl (w . x_n + b))^2``), found exactly by the batched finite
  Newton solver of :mod:`dahash.baselines._l2svm` warm-started from the current encoder (``svm_solver="newton"``,
  the default) or by ``LinearSVC`` itself, one bit at a time (``svm_solver="liblinear"``, the previous path,
  about 10x slower; the same objective to ~1e-8 relative: liblinear stops at its tolerance);
* **f step** (decoder): linear least squares ``min_{A, c} sum_n ||x_n - A z_n - c||^2``;
* **Z step**: for each point separately, ``min_z ||x_n - A z - c||^2 + mu ||z - h(x_n)||^2`` over
  binary ``z``: exact **enumeration** of the ``2^L`` codes when ``L <= max_enum_bits``; otherwise
  **alternating optimisation over bits** (each bit in turn set to its exact optimum given the
  others, sweeps until no bit changes), started from ``h(x_n)`` and from the truncated relaxed
  solution, keeping the better result;
* stop when ``Z = h(X)`` (the constraints hold), or after the last ``mu``.

Initialisation: ``Z`` = ITQ codes (the paper initialises from ITQ or truncated PCA).

Conventions and simplifications, stated explicitly:

* Codes are in ``{-1, +1}`` instead of the paper's ``{0, 1}``; with an affine decoder and encoder
  the two are equivalent (``z01 = (z + 1) / 2``), only ``mu`` is rescaled:
  ``||z - h||^2 = 4 * Hamming(z, h)`` here.
* The data are zero-centred at fit (mean stored), which does not change the model class.
* The relaxed solution for the Z-step start is the *unconstrained* least-squares minimiser
  ``(A^T A + mu I)^{-1} (A^T (x - c) + mu h)`` clipped to ``[-1, 1]`` and signed, not the paper's
  box-constrained QP solved by ADMM.
* ``mu`` schedule: ``mu_k = mu0 * growth^k`` for ``k < n_mu`` with ``mu0`` *relative to the data
  scale*: the absolute value is ``mu0 * mean_n ||x_n - mean||^2 / L`` (our choice, so that one
  default works for features of any scale; the paper tunes ``mu0`` and the factor per dataset).
* Model selection: after every iteration the encoder's codes ``h(X)`` get the exact
  least-squares decoder and the pair with the lowest ``E_BA`` over all iterates (including the
  ITQ initialisation) is returned. The paper instead returns the last iterate and early-stops on
  a validation set's retrieval precision; selecting on the *training* ``E_BA`` uses no labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dahash.baselines._l2svm import L2SVMProblem
from dahash.baselines.itq import ITQ, as_features, check_bits, check_positive_int, check_seed, sign_pm1

__all__ = ["BinaryAutoencoder", "fit_decoder", "reconstruction_error", "z_step"]


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
def fit_decoder(z: np.ndarray, xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f step: ``argmin_{A, c} ||xc - z A^T - c||_F^2`` for ``z (n, L)``, ``xc (n, D)``.

    Returns ``(A (D, L), c (D,))`` (minimum-norm solution when ``[z, 1]`` is rank deficient).
    """
    design = np.hstack([z, np.ones((z.shape[0], 1))])
    coef, *_ = np.linalg.lstsq(design, xc, rcond=None)
    return coef[:-1].T.copy(), coef[-1].copy()


def reconstruction_error(xc: np.ndarray, z: np.ndarray, A: np.ndarray, c: np.ndarray) -> float:
    """``sum_n ||xc_n - A z_n - c||^2``."""
    return float(np.sum((xc - z @ A.T - c) ** 2))


def _penalised_cost(xc: np.ndarray, z: np.ndarray, A: np.ndarray, c: np.ndarray, h: np.ndarray,
                    mu: float) -> np.ndarray:
    """Per-point ``||x - A z - c||^2 + mu ||z - h||^2``, ``(n,)``."""
    return np.sum((xc - z @ A.T - c) ** 2, axis=1) + mu * np.sum((z - h) ** 2, axis=1)


def _z_enumerate(xc: np.ndarray, A: np.ndarray, c: np.ndarray, h: np.ndarray, mu: float,
                 chunk: int = 4096) -> np.ndarray:
    """Exact Z step over all ``2^L`` codes. With ``r = x - c``:
    ``cost(z) = const - 2 z.(A^T r) + z^T (A^T A) z + mu ||z - h||^2``."""
    L = A.shape[1]
    idx = np.arange(2**L)[:, None]
    codes = np.where((idx >> np.arange(L)[None, :]) & 1, 1.0, -1.0)  # (K, L)
    quad = np.einsum("kl,lm,km->k", codes, A.T @ A, codes)  # (K,)
    out = np.empty_like(h)
    for s in range(0, xc.shape[0], chunk):
        proj = (xc[s : s + chunk] - c) @ A  # (m, L)
        hh = h[s : s + chunk]
        cost = -2.0 * proj @ codes.T + quad[None, :] + mu * (
            np.sum(hh**2, axis=1)[:, None] - 2.0 * hh @ codes.T + L
        )
        out[s : s + chunk] = codes[np.argmin(cost, axis=1)]
    return out


def _z_alternate(xc: np.ndarray, A: np.ndarray, c: np.ndarray, h: np.ndarray, mu: float,
                 z0: np.ndarray, max_sweeps: int) -> np.ndarray:
    """Coordinate descent over bits from ``z0``. For bit ``l`` with the others fixed and residual
    ``r = x - c - A z``, the optimum is ``z_l = sgn(a_l . r + ||a_l||^2 z_l + mu h_l)``. The
    products ``P = r A`` are kept up to date with the Gram matrix ``K = A^T A`` (O(n L) per bit)."""
    z = z0.copy()
    K = A.T @ A
    P = (xc - c - z @ A.T) @ A  # (n, L): a_m . r_n
    for _ in range(max_sweeps):
        changed = False
        for l in range(A.shape[1]):
            field = P[:, l] + K[l, l] * z[:, l] + mu * h[:, l]
            new = np.where(field >= 0, 1.0, -1.0)
            delta = new - z[:, l]
            moved = delta != 0
            if moved.any():
                changed = True
                P[moved] -= np.outer(delta[moved], K[l])
                z[moved, l] = new[moved]
        if not changed:
            break
    return z


def z_step(xc: np.ndarray, A: np.ndarray, c: np.ndarray, h: np.ndarray, mu: float, *,
           max_enum_bits: int = 10, max_sweeps: int = 50) -> np.ndarray:
    """MAC Z step: per point ``argmin_z ||x - A z - c||^2 + mu ||z - h||^2`` over ``z in {-1,+1}^L``.

    Exact enumeration when ``L <= max_enum_bits``; otherwise bitwise alternating optimisation from
    two starts (``h`` and the truncated relaxed solution), keeping the better per point.

    Args:
        xc: ``(n, D)`` centred data; A: ``(D, L)``; c: ``(D,)``; h: ``(n, L)`` encoder codes.

    Returns:
        ``(n, L)`` float64 in ``{-1, +1}``.
    """
    L = A.shape[1]
    if L <= max_enum_bits:
        return _z_enumerate(xc, A, c, h, mu)
    relaxed = np.linalg.solve(A.T @ A + mu * np.eye(L), (A.T @ (xc - c).T) + mu * h.T).T
    starts = [h, np.where(np.clip(relaxed, -1, 1) >= 0, 1.0, -1.0)]
    best, best_cost = None, None
    for z0 in starts:
        z = _z_alternate(xc, A, c, h, mu, z0, max_sweeps)
        cost = _penalised_cost(xc, z, A, c, h, mu)
        if best is None:
            best, best_cost = z, cost
        else:
            better = cost < best_cost
            best[better], best_cost[better] = z[better], cost[better]
    return best


@dataclass
class _LinearHash:
    """``h(x) = sgn(x W^T + a)`` on centred ``x``: ``W (L, D)``, ``a (L,)``."""

    W: np.ndarray
    a: np.ndarray

    def __call__(self, xc: np.ndarray) -> np.ndarray:
        return sign_pm1(xc @ self.W.T + self.a).astype(np.float64)


def _fit_encoder_newton(problem: L2SVMProblem, z: np.ndarray, start: _LinearHash, max_iter: int) -> _LinearHash:
    """h step by the batched finite Newton solver: the SVMs of all bits on ``problem``'s ``xc (n, D)`` and
    ``z (n, L)``, each started from ``start``'s hyperplane (scaled along its ray); a constant bit -> constant
    classifier (as :func:`_fit_encoder`)."""
    L, D = z.shape[1], problem.d
    W, a = np.zeros((L, D)), np.zeros(L)
    constant = np.all(z == z[:1], axis=0)
    a[constant] = z[0, constant]
    varying = np.flatnonzero(~constant)
    if varying.size:
        w0 = np.hstack([start.W, start.a[:, None]])[varying]
        wt, _ = problem.solve(z[:, varying].T, w0, max_iter=max_iter)
        W[varying], a[varying] = wt[:, :-1], wt[:, -1]
    return _LinearHash(W, a)


def _fit_encoder(xc: np.ndarray, z: np.ndarray, C: float, seed: int, max_iter: int) -> _LinearHash:
    """h step by ``sklearn.svm.LinearSVC`` (liblinear), one linear SVM per bit on ``(xc, z[:, l])``; a
    constant bit -> constant classifier. The previous path (``svm_solver="liblinear"``), kept as the oracle
    of the Newton solver's tests and the benchmark's reference."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    L, D = z.shape[1], xc.shape[1]
    W, a = np.zeros((L, D)), np.zeros(L)
    for l in range(L):
        target = z[:, l]
        if np.all(target == target[0]):
            a[l] = target[0]
            continue
        svm = LinearSVC(C=C, dual="auto", random_state=seed, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            svm.fit(xc, target)
        # classes_ are sorted [-1, +1]: decision > 0 means +1
        W[l], a[l] = svm.coef_[0], svm.intercept_[0]
    return _LinearHash(W, a)


# --------------------------------------------------------------------------------------------
# estimator
# --------------------------------------------------------------------------------------------
class BinaryAutoencoder:
    """BA trained by MAC (see the module docstring for the maths and the simplifications).

    Args:
        bits: code length ``L``.
        mu0: first penalty weight, relative to ``mean ||x - mean||^2 / L``.
        growth: factor between consecutive ``mu`` values (``> 1``).
        n_mu: number of ``mu`` values (MAC iterations) at most.
        svm_C: ``C`` of the per-bit linear SVMs.
        svm_max_iter: iteration cap per SVM (liblinear's epochs, or Newton steps: they converge in ~3-15).
        svm_solver: ``"newton"`` (batched exact solver, warm-started) or ``"liblinear"`` (``LinearSVC``).
        max_enum_bits: enumerate the Z step exactly up to this many bits.
        itq_iter: ITQ iterations of the initialisation.
        seed: seeds ITQ's rotation (and liblinear's coordinate order with ``svm_solver="liblinear"``; the
            Newton solver has no randomness).

    Attributes (after :meth:`fit`):
        mean_ ``(f,)``; W_ ``(L, f)``, b_ ``(L,)`` (codes ``sgn((x - mean_) W_^T + b_)``);
        decoder_ ``(A (f, L), c (f,))``; history_: list of dicts per iteration with ``mu``,
        ``e_q`` (E_Q after the Z step), ``e_ba`` (E_BA of the encoder with its least-squares
        decoder), ``z_equals_h``; init_error_: ``E_BA`` of the ITQ initialisation;
        train_error_: ``E_BA`` of the returned model; n_iter_: MAC iterations run.
    """

    def __init__(
        self,
        bits: int,
        *,
        mu0: float = 1e-3,
        growth: float = 2.0,
        n_mu: int = 12,
        svm_C: float = 1.0,
        svm_max_iter: int = 2000,
        svm_solver: str = "newton",
        max_enum_bits: int = 10,
        itq_iter: int = 50,
        seed: int = 0,
    ) -> None:
        self.bits = check_bits(bits)
        if not float(mu0) > 0:
            raise ValueError(f"mu0 must be > 0, got {mu0}")
        if not float(growth) > 1:
            raise ValueError(f"growth must be > 1, got {growth}")
        if not float(svm_C) > 0:
            raise ValueError(f"svm_C must be > 0, got {svm_C}")
        self.mu0, self.growth, self.svm_C = float(mu0), float(growth), float(svm_C)
        self.n_mu = check_positive_int(n_mu, "n_mu")
        self.svm_max_iter = check_positive_int(svm_max_iter, "svm_max_iter")
        if svm_solver not in ("newton", "liblinear"):
            raise ValueError(f"svm_solver must be 'newton' or 'liblinear', got {svm_solver!r}")
        self.svm_solver = svm_solver
        self.max_enum_bits = check_positive_int(max_enum_bits, "max_enum_bits", minimum=0)
        if self.max_enum_bits > 16:
            raise ValueError(f"max_enum_bits must be <= 16, got {max_enum_bits}")
        self.itq_iter = check_positive_int(itq_iter, "itq_iter", minimum=0)
        self.seed = check_seed(seed)

    def fit(self, X: np.ndarray, y: Any = None) -> BinaryAutoencoder:
        """MAC training on ``X (n, f)``; ``y`` is ignored (unsupervised).

        Runs with one BLAS thread: the Newton solver's many small (``|A| ~ 300``) factorisations and
        products only synchronise threads (measured on the shared 2-core machine: a 64-bit A->C fit took 50 s
        with 2 OpenBLAS threads vs 7.7 s with one), and the result does not depend on the thread count.
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(X)

    def _fit(self, X: np.ndarray) -> BinaryAutoencoder:
        x = as_features(X, "X", min_rows=2)
        self.mean_ = x.mean(axis=0)
        xc = x - self.mean_
        itq = ITQ(self.bits, n_iter=self.itq_iter, seed=self.seed).fit(x)
        # ITQ's hash is linear: sgn(xc @ P), P = W_pca R  ->  W = P^T, a = 0.
        enc = _LinearHash(itq.projection_.T.copy(), np.zeros(self.bits))
        z = enc(xc)
        A, c = fit_decoder(z, xc)
        best = (enc, (A, c), reconstruction_error(xc, z, A, c))
        self.init_error_ = best[2]
        scale = float(np.mean(np.sum(xc**2, axis=1))) / self.bits
        self.history_: list[dict[str, float]] = []
        self.n_iter_ = 0
        problem = L2SVMProblem(xc, self.svm_C) if self.svm_solver == "newton" else None
        for k in range(self.n_mu):
            mu = self.mu0 * scale * self.growth**k
            if problem is not None:  # h step
                enc = _fit_encoder_newton(problem, z, enc, self.svm_max_iter)
            else:
                enc = _fit_encoder(xc, z, self.svm_C, self.seed, self.svm_max_iter)
            A, c = fit_decoder(z, xc)  # f step
            hx = enc(xc)
            z = z_step(xc, A, c, hx, mu, max_enum_bits=self.max_enum_bits)  # Z step
            self.n_iter_ = k + 1
            A_h, c_h = fit_decoder(hx, xc)
            e_ba = reconstruction_error(xc, hx, A_h, c_h)
            done = bool(np.array_equal(z, hx))
            self.history_.append({
                "mu": mu,
                "e_q": float(np.sum(_penalised_cost(xc, z, A, c, hx, mu))),
                "e_ba": e_ba,
                "z_equals_h": float(done),
            })
            if e_ba < best[2]:
                best = (enc, (A_h, c_h), e_ba)
            if done:
                break
        enc, self.decoder_, self.train_error_ = best
        self.W_, self.b_ = enc.W, enc.a
        self.n_features_in_ = x.shape[1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "W_"):
            raise RuntimeError("BinaryAutoencoder is not fitted; call fit(X) first")

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes ``sgn((X - mean) W^T + b)``, ``(n, bits)`` float32 in ``{-1, +1}``."""
        self._check_fitted()
        x = as_features(X, "X", n_features=self.n_features_in_)
        return sign_pm1((x - self.mean_) @ self.W_.T + self.b_)

    def reconstruct(self, X: np.ndarray) -> np.ndarray:
        """``f(h(x)) + mean``, ``(n, f)``."""
        A, c = self.decoder_
        return self.encode(X).astype(np.float64) @ A.T + c + self.mean_
