"""Transfer Component Analysis (TCA; Pan, Tsang, Kwok & Yang, IEEE TNN 22(2), 2011), unsupervised.

Maths (paper section IV, "unsupervised TCA"). Stack the ``n = ns + nt`` samples of both domains,
``X = [Xs; Xt]``, and form the kernel matrix ``K = k(X, X)`` (``n x n``). The empirical MMD between
the domains after an embedding ``Z = K W`` (``W`` is ``n x m``) is ``tr(W^T K L K W)`` with the MMD
matrix ``L = e e^T``, ``e_i = 1/ns`` for source rows and ``-1/nt`` for target rows (so
``L_ij = 1/ns^2``, ``1/nt^2`` within a domain and ``-1/(ns nt)`` across). TCA solves

    min_W  tr(W^T K L K W) + mu tr(W^T W)    s.t.  W^T K H K W = I_m,

``H = I_n - (1/n) 1 1^T`` the centring matrix (the constraint keeps the embedding's variance). The
solution's columns are the ``m`` leading eigenvectors of ``(K L K + mu I)^{-1} K H K``; here we
solve the equivalent symmetric-definite generalised eigenproblem

    K H K w = lambda (K L K + mu I) w

with :func:`scipy.linalg.eigh` (``K L K + mu I`` is positive definite for ``mu > 0``) and keep the
``m = dim`` largest ``lambda``. Out-of-sample points are embedded with the same ``W``:
``z(x) = k(x, X) W`` (the paper's learned kernel is ``K~ = K W W^T K``).

Classifier (stated, as the paper leaves it to the application): 1-nearest-neighbour in the
embedding, source as the gallery, the protocol of the JDA/GFK papers' Office-Caltech benchmarks
(which is where the DAH paper's TCA numbers come from).

Optional normalisation (``normalize=True``, off by default for TCA since it is not in the TCA
paper): every input row is scaled to unit L2 norm before the kernel, and every embedded row before
1-NN, as in Long et al.'s released TCA/JDA MATLAB code.

Kernels: ``"linear"`` ``k(x, y) = x.y``; ``"rbf"`` ``k(x, y) = exp(-gamma ||x - y||^2)`` with
``gamma=None`` meaning ``1 / median ||x_i - x_j||^2`` over the fitted samples (median heuristic; the
paper does not fix a bandwidth). With a linear kernel ``K H K`` has rank at most ``d``, so use
``dim <= d``.

Example::

    >>> rng = np.random.default_rng(0)
    >>> Xs, ys = rng.normal(size=(40, 5)), np.repeat([0, 1], 20)
    >>> Xt = rng.normal(size=(30, 5)) + 3.0
    >>> tca = TCA(dim=3, mu=1.0).fit(Xs, ys, Xt)
    >>> tca.transform(Xt).shape, tca.predict(Xt).shape
    ((30, 3), (30,))
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.linalg

from dahash.baselines.source_only import (
    check_domains,
    check_fitted,
    check_matrix,
    nearest_neighbour_predict,
)

__all__ = ["TCA", "kernel_matrix", "mmd_matrix_factor", "rbf_median_gamma", "transfer_components"]

Kernel = Literal["linear", "rbf"]
_KERNELS: tuple[str, ...] = ("linear", "rbf")


def _squared_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``D_ij = ||a_i - b_j||^2`` (clipped at 0), ``(na, d), (nb, d) -> (na, nb)``."""
    d2 = np.einsum("ij,ij->i", A, A)[:, None] + np.einsum("ij,ij->i", B, B)[None, :] - 2.0 * (A @ B.T)
    return np.maximum(d2, 0.0)


def rbf_median_gamma(X: np.ndarray, *, max_samples: int = 2000, seed: int = 0) -> float:
    """Median heuristic ``gamma = 1 / median_{i<j} ||x_i - x_j||^2`` (on at most ``max_samples`` rows).

    Example: ``rbf_median_gamma(np.array([[0.], [1.], [3.]]))`` -> ``1/4`` (distances 1, 4, 9).
    """
    X = check_matrix(X, "X", min_rows=2)
    if X.shape[0] > max_samples:
        X = X[np.random.default_rng(seed).choice(X.shape[0], max_samples, replace=False)]
    d2 = _squared_distances(X, X)[np.triu_indices(X.shape[0], k=1)]
    med = float(np.median(d2))
    if med <= 0.0:
        raise ValueError("X: median pairwise distance is 0; cannot set an RBF bandwidth")
    return 1.0 / med


def kernel_matrix(A: np.ndarray, B: np.ndarray, kernel: str, gamma: float | None = None) -> np.ndarray:
    """``K_ij = k(a_i, b_j)``: ``"linear"`` ``a.b``; ``"rbf"`` ``exp(-gamma ||a - b||^2)``.

    Shapes ``(na, d), (nb, d) -> (na, nb)``. Example:
    ``kernel_matrix(np.eye(2), np.eye(2), "linear")`` -> ``I_2``.
    """
    if kernel == "linear":
        return A @ B.T
    if kernel == "rbf":
        if gamma is None or not gamma > 0:
            raise ValueError(f"gamma must be a positive number for the rbf kernel; got {gamma!r}")
        return np.exp(-gamma * _squared_distances(A, B))
    raise ValueError(f"kernel must be one of {_KERNELS}; got {kernel!r}")


def mmd_matrix_factor(ns: int, nt: int) -> np.ndarray:
    """``e`` with ``L = e e^T`` the TCA MMD matrix: ``e = [1/ns]*ns ++ [-1/nt]*nt``, shape ``(n,)``.

    ``e^T K e = ||mean phi(xs) - mean phi(xt)||^2`` is the (biased) empirical MMD^2.
    Example: ``mmd_matrix_factor(1, 2)`` -> ``[1, -0.5, -0.5]``.
    """
    if ns < 1 or nt < 1:
        raise ValueError(f"ns and nt must be >= 1; got ns={ns}, nt={nt}")
    return np.r_[np.full(ns, 1.0 / ns), np.full(nt, -1.0 / nt)]


def transfer_components(K: np.ndarray, E: np.ndarray, mu: float, dim: int) -> np.ndarray:
    """Solve ``K H K w = lambda (K M K + mu I) w`` for the ``dim`` largest ``lambda``.

    ``M = E E^T`` is given by its factor ``E (n, r)`` (TCA: ``r = 1``, ``E = e``; JDA: one column
    per MMD term), so ``K M K = (K E)(K E)^T`` costs ``O(n^2 r)``. ``H = I - 11^T / n``, hence
    ``K H K = K K - (K 1)(K 1)^T / n``. Returns ``W (n, dim)``, columns ordered by decreasing
    ``lambda`` and normalised as ``W^T (K M K + mu I) W = I`` (scipy's convention).
    """
    n = K.shape[0]
    if not (isinstance(dim, (int, np.integer)) and 1 <= dim <= n):
        raise ValueError(f"dim must be an integer in [1, n={n}]; got {dim!r}")
    if not (np.isfinite(mu) and mu > 0):
        raise ValueError(f"mu must be a positive finite number; got {mu!r}")
    k1 = K.sum(axis=1)
    KHK = K @ K - np.outer(k1, k1) / n
    KE = K @ E.reshape(n, -1)
    B = KE @ KE.T
    B[np.diag_indices(n)] += mu
    # Symmetrise against round-off so eigh's symmetric-definite driver sees exact symmetry.
    KHK = 0.5 * (KHK + KHK.T)
    B = 0.5 * (B + B.T)
    _, W = scipy.linalg.eigh(KHK, B, subset_by_index=[n - dim, n - 1])
    return W[:, ::-1]


def _row_normalise(Z: np.ndarray) -> np.ndarray:
    """Scale every row to unit L2 norm (rows of norm 0 stay 0)."""
    norms = np.linalg.norm(Z, axis=1, keepdims=True)
    return Z / np.where(norms > 0.0, norms, 1.0)


class TCA:
    """Unsupervised Transfer Component Analysis followed by 1-NN (see the module docstring).

    Parameters: ``dim`` (``m``, embedding size), ``mu`` (trade-off ``mu tr(W^T W)``), ``kernel``
    (``"linear"`` | ``"rbf"``), ``gamma`` (rbf bandwidth; ``None`` = median heuristic),
    ``normalize`` (unit-L2 rows before the kernel and after the embedding, Long et al.'s code).
    Defaults (``dim=100, mu=1``, linear kernel, no normalisation) are the setting of the JDA
    paper's TCA column on Office-Caltech-10 SURF, which they reproduce (e.g. A->C 37.8%).

    Shapes: ``fit(Xs (ns, d), ys (ns,), Xt (nt, d))``; ``transform(X (n, d)) -> (n, dim)``;
    ``predict(X (n, d)) -> (n,)``. ``ys`` is used only by the 1-NN classifier. Attributes after
    ``fit``: ``W_ (ns+nt, dim)``, ``Zs_ (ns, dim)``, ``Zt_ (nt, dim)``, ``gamma_``.
    """

    def __init__(self, dim: int = 100, mu: float = 1.0, kernel: Kernel = "linear", *,
                 gamma: float | None = None, normalize: bool = False) -> None:
        self.dim = dim
        self.mu = mu
        self.kernel = kernel
        self.gamma = gamma
        self.normalize = normalize

    def _check_params(self) -> None:
        if self.kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {_KERNELS}; got {self.kernel!r}")
        if not (isinstance(self.dim, (int, np.integer)) and self.dim >= 1):
            raise ValueError(f"dim must be a positive integer; got {self.dim!r}")
        if not (isinstance(self.mu, (int, float)) and np.isfinite(self.mu) and self.mu > 0):
            raise ValueError(f"mu must be a positive finite number; got {self.mu!r}")
        if self.gamma is not None and not (isinstance(self.gamma, (int, float)) and self.gamma > 0):
            raise ValueError(f"gamma must be a positive number or None; got {self.gamma!r}")

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        return _row_normalise(X) if self.normalize else X

    def _embed(self, X: np.ndarray) -> np.ndarray:
        Z = kernel_matrix(X, self.X_fit_, self.kernel, self.gamma_) @ self.W_
        return _row_normalise(Z) if self.normalize else Z

    def _fit_kernel(self, Xs: np.ndarray, Xt: np.ndarray) -> np.ndarray:
        """Store the stacked (prepared) training data and return ``K (n, n)``."""
        X = self._prepare(np.vstack([Xs, Xt]))
        self.X_fit_ = X
        self.n_features_in_ = Xs.shape[1]
        self.gamma_ = None
        if self.kernel == "rbf":
            self.gamma_ = float(self.gamma) if self.gamma is not None else rbf_median_gamma(X)
        if self.dim > X.shape[0]:
            raise ValueError(f"dim={self.dim} exceeds the number of samples ns + nt = {X.shape[0]}")
        return kernel_matrix(X, X, self.kernel, self.gamma_)

    def fit(self, Xs: Any, ys: Any, Xt: Any) -> TCA:
        """Learn ``W`` from ``Xs`` and ``Xt`` (unsupervised); keep ``(Zs, ys)`` for 1-NN."""
        self._check_params()
        Xs, ys, Xt = check_domains(Xs, ys, Xt)
        K = self._fit_kernel(Xs, Xt)
        ns = Xs.shape[0]
        self.W_ = transfer_components(K, mmd_matrix_factor(ns, Xt.shape[0]), float(self.mu), int(self.dim))
        Z = K @ self.W_
        if self.normalize:
            Z = _row_normalise(Z)
        self.Zs_, self.Zt_, self.ys_ = Z[:ns], Z[ns:], ys
        self.classes_ = np.unique(ys)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Embed ``X (n, d)`` -> ``(n, dim)``: ``z = k(x, X_fit) W`` (then unit rows if normalize)."""
        check_fitted(self, "W_")
        X = check_matrix(X, "X", n_features=self.n_features_in_)
        return self._embed(self._prepare(X))

    def predict(self, Xt: Any) -> np.ndarray:
        """1-NN labels ``(n,)`` of ``Xt (n, d)`` against the embedded labelled source."""
        Z = self.transform(Xt)
        return nearest_neighbour_predict(self.Zs_, self.ys_, Z)
