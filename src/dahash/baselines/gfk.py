"""Geodesic Flow Kernel (GFK; Gong, Shi, Sha & Grauman, CVPR 2012), written with numpy/scipy only.

Maths (paper section 3). Let ``Ps, Pt`` (``D x d``, orthonormal columns) span the ``d``-dim PCA
subspaces of the source and target, and ``Rs`` (``D x (D-d)``) the orthogonal complement of
``Ps``. With the (generalised) SVDs

    Ps^T Pt = U1 Gamma V^T,      Rs^T Pt = -U2 Sigma V^T,

``Gamma = diag(cos theta_i)``, ``Sigma = diag(sin theta_i)`` and ``theta_i`` the principal angles,
the geodesic on the Grassmannian from ``Ps`` (t = 0) to ``Pt`` (t = 1) is
``Phi(t) = Ps U1 Gamma(t) - Rs U2 Sigma(t)`` and the kernel is (the paper's closed form)

    G = [Ps U1, Rs U2] [[Lambda1, Lambda2], [Lambda2, Lambda3]] [Ps U1, Rs U2]^T,
    lambda1_i = 1 + sin(2 theta_i) / (2 theta_i),
    lambda2_i = (cos(2 theta_i) - 1) / (2 theta_i),
    lambda3_i = 1 - sin(2 theta_i) / (2 theta_i),

which equals ``2 int_0^1 Phi(t) Phi(t)^T dt`` (so ``G`` is symmetric PSD; the released GFK.m
carries an extra factor 1/2, which changes no nearest neighbour). The GFK similarity is
``x^T G y`` and the distance used for 1-NN is ``(x - y)^T G (x - y)``.

Computation without ``Rs`` (which is ``D x (D-d)``): ``Rs Rs^T = I - Ps Ps^T`` gives
``B := (I - Ps Ps^T) Pt V = -Rs U2 Sigma``, with orthogonal columns of norms ``sin theta_i``.
The angles are taken as ``theta_i = atan2(||B_i||, gamma_i)``, accurate for small and large
angles alike (``arccos`` alone loses half the digits near 0). With ``A := Ps U1``,

    G = A Lambda1 A^T + A S B^T + B S A^T + B F B^T,
    s_i = -lambda2_i / sin(theta_i) = sin(theta_i) / theta_i,
    f_i = lambda3_i / sin^2(theta_i) = (2 theta_i - sin 2 theta_i) / (2 theta_i sin^2 theta_i).

Numerically singular angles: ``lambda1..3`` and ``s, f`` are evaluated through their limits
(``theta -> 0``: ``lambda1 -> 2``, ``lambda2, lambda3 -> 0``, ``s -> 1``, ``f -> 2/3``; series used
for ``theta < 1e-3``), so identical or partly shared subspaces (``theta_i = 0``, ``U2`` column
undefined) give a finite, exact ``G`` instead of 0/0 (GFK.m instead clamps ``theta`` at 1e-20).

Classifier (stated): 1-NN with the GFK distance, source as the gallery, on the (preprocessed) raw
features, as in the paper's experiments. It is computed as Euclidean 1-NN after
``x -> x L`` with ``G = L L^T`` (``L`` is ``D x 2d``). Subspaces: PCA of each domain (mean-centred,
top-``d`` right singular vectors); the paper's subspace-disagreement measure for choosing ``d`` is
not implemented (simplification: ``d`` is a parameter).

Example::

    >>> rng = np.random.default_rng(0)
    >>> Xs, ys = rng.normal(size=(40, 8)), np.repeat([0, 1], 20)
    >>> Xt = rng.normal(size=(30, 8)) @ np.diag(np.linspace(1, 3, 8))
    >>> gfk = GFK(dim=3).fit(Xs, ys, Xt)
    >>> gfk.G_.shape, gfk.transform(Xt).shape, gfk.predict(Xt).shape
    ((8, 8), (30, 6), (30,))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dahash.baselines.source_only import check_domains, check_fitted, check_matrix, nearest_neighbour_predict

__all__ = ["GFK", "geodesic_flow", "geodesic_flow_kernel", "gfk_factor", "pca_subspace", "principal_angles"]

_SMALL_ANGLE = 1e-3


def pca_subspace(X: np.ndarray, dim: int) -> np.ndarray:
    """Orthonormal basis ``(D, dim)`` of the top-``dim`` PCA directions of ``X (N, D)`` (centred).

    Example: ``pca_subspace(np.c_[np.arange(5.), np.zeros(5)], 1)`` -> ``+-[[1], [0]]``.
    """
    X = check_matrix(X, "X", min_rows=2)
    limit = min(X.shape[0] - 1, X.shape[1])
    if not (isinstance(dim, (int, np.integer)) and 1 <= dim <= limit):
        raise ValueError(f"dim must be an integer in [1, min(N-1, D)] = [1, {limit}]; got {dim!r}")
    _, _, vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    return vt[:dim].T.copy()


def _check_basis(P: Any, name: str) -> np.ndarray:
    P = check_matrix(P, name)
    if P.shape[1] > P.shape[0]:
        raise ValueError(f"{name} must be (D, d) with d <= D; got shape {P.shape}")
    if not np.allclose(P.T @ P, np.eye(P.shape[1]), atol=1e-6):
        raise ValueError(f"{name} must have orthonormal columns")
    return P


def _angle_decomposition(
    Ps: np.ndarray, Pt: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(A, B, theta, rho)``: ``A = Ps U1``, ``B = (I - Ps Ps^T) Pt V``, the angles ``theta``
    (ascending) and ``rho_i = ||(gamma_i, ||B_i||)||`` (1 up to round-off)."""
    U1, gamma, Vt = np.linalg.svd(Ps.T @ Pt)
    V = Vt.T
    A = Ps @ U1
    PtV = Pt @ V
    B = PtV - Ps @ (Ps.T @ PtV)
    sigma = np.linalg.norm(B, axis=0)
    theta = np.arctan2(sigma, gamma)
    rho = np.hypot(sigma, gamma)  # = 1 in exact arithmetic
    return A, B, theta, rho


def principal_angles(Ps: Any, Pt: Any) -> np.ndarray:
    """Principal angles ``theta (d,)`` in ``[0, pi/2]``, ascending, between ``span(Ps)`` and ``span(Pt)``.

    Example: ``principal_angles(np.eye(3)[:, :1], np.eye(3)[:, 1:2])`` -> ``[pi/2]``.
    """
    Ps, Pt = _check_basis(Ps, "Ps"), _check_basis(Pt, "Pt")
    if Ps.shape != Pt.shape:
        raise ValueError(f"Ps and Pt must have the same shape; got {Ps.shape} and {Pt.shape}")
    return _angle_decomposition(Ps, Pt)[2]


def _lambda1(theta: np.ndarray) -> np.ndarray:
    """``1 + sin(2t)/(2t)`` (-> 2 at t = 0); ``np.sinc(x) = sin(pi x)/(pi x)``."""
    return 1.0 + np.sinc(2.0 * theta / np.pi)


def _s_coef(theta: np.ndarray) -> np.ndarray:
    """``-lambda2 / sin t = sin(t)/t`` (-> 1 at t = 0)."""
    return np.sinc(theta / np.pi)


def _f_coef(theta: np.ndarray) -> np.ndarray:
    """``lambda3 / sin^2 t = (2t - sin 2t) / (2t sin^2 t)`` (-> 2/3 + 4t^2/45 near 0)."""
    t = np.asarray(theta, dtype=np.float64)
    small = t < _SMALL_ANGLE
    ts = np.where(small, 1.0, t)  # dummy value where the series is used
    exact = (2.0 * ts - np.sin(2.0 * ts)) / (2.0 * ts * np.sin(ts) ** 2)
    return np.where(small, 2.0 / 3.0 + 4.0 * t**2 / 45.0, exact)


def gfk_factor(Ps: Any, Pt: Any) -> np.ndarray:
    """``L (D, 2d)`` with ``G = L L^T`` the geodesic flow kernel of ``span(Ps) -> span(Pt)``.

    ``G = M C M^T`` with ``M = [A, B]`` and the ``2d x 2d`` PSD core
    ``C = [[diag(lambda1), diag(s/rho)], [diag(s/rho), diag(f/rho^2)]]`` (module docstring);
    ``L = M C^{1/2}`` (symmetric square root, round-off negatives clipped to 0).
    """
    Ps, Pt = _check_basis(Ps, "Ps"), _check_basis(Pt, "Pt")
    if Ps.shape != Pt.shape:
        raise ValueError(f"Ps and Pt must have the same shape; got {Ps.shape} and {Pt.shape}")
    A, B, theta, rho = _angle_decomposition(Ps, Pt)
    d = theta.shape[0]
    C = np.zeros((2 * d, 2 * d))
    idx = np.arange(d)
    C[idx, idx] = _lambda1(theta)
    C[idx, d + idx] = C[d + idx, idx] = _s_coef(theta) / rho
    C[d + idx, d + idx] = _f_coef(theta) / rho**2
    w, Q = np.linalg.eigh(C)
    C_half = (Q * np.sqrt(np.clip(w, 0.0, None))) @ Q.T
    return np.hstack([A, B]) @ C_half


def geodesic_flow_kernel(Ps: Any, Pt: Any) -> np.ndarray:
    """The GFK ``G (D, D)`` (the paper's closed form), symmetric PSD. Shapes ``Ps, Pt (D, d)``.

    Example: for identical subspaces every ``theta = 0`` and ``G = 2 Ps Ps^T``.
    """
    L = gfk_factor(Ps, Pt)
    G = L @ L.T
    return 0.5 * (G + G.T)


def geodesic_flow(Ps: Any, Pt: Any, t: float) -> np.ndarray:
    """Point ``Phi(t) (D, d)`` of the geodesic, ``Phi(t) = Ps U1 Gamma(t) - Rs U2 Sigma(t)``.

    ``Phi(0)`` spans ``Ps``, ``Phi(1)`` spans ``Pt``; columns are orthonormal for every ``t``.
    (``-Rs U2 = B Sigma^{-1}``; columns with ``theta_i = 0`` have ``sin(t theta_i) = 0`` and drop.)
    """
    Ps, Pt = _check_basis(Ps, "Ps"), _check_basis(Pt, "Pt")
    if Ps.shape != Pt.shape:
        raise ValueError(f"Ps and Pt must have the same shape; got {Ps.shape} and {Pt.shape}")
    A, B, theta, _ = _angle_decomposition(Ps, Pt)
    sigma = np.linalg.norm(B, axis=0)
    B_unit = B / np.where(sigma > 1e-12, sigma, 1.0) * (sigma > 1e-12)
    return A * np.cos(t * theta) + B_unit * np.sin(t * theta)


class GFK:
    """Geodesic flow kernel between the ``dim``-dim PCA subspaces, then 1-NN (module docstring).

    Shapes: ``fit(Xs (ns, D), ys (ns,), Xt (nt, D))``; ``transform(X (n, D)) -> (n, 2 dim)`` (so that
    Euclidean distance there is the GFK distance); ``predict(X) -> (n,)``. After ``fit``: ``Ps_``,
    ``Pt_`` ``(D, dim)``, ``angles_ (dim,)``, ``L_ (D, 2 dim)``; property ``G_ (D, D)``.
    ``ys`` is used only by the 1-NN classifier.
    """

    def __init__(self, dim: int = 20) -> None:
        self.dim = dim

    def fit(self, Xs: Any, ys: Any, Xt: Any) -> GFK:
        """PCA subspaces of each domain -> ``G`` -> embedded source gallery for 1-NN."""
        Xs, ys, Xt = check_domains(Xs, ys, Xt)
        if not (isinstance(self.dim, (int, np.integer)) and self.dim >= 1):
            raise ValueError(f"dim must be a positive integer; got {self.dim!r}")
        limit = min(Xs.shape[0] - 1, Xt.shape[0] - 1, Xs.shape[1])
        if self.dim > limit:
            raise ValueError(f"dim={self.dim} exceeds min(ns-1, nt-1, D) = {limit}")
        self.n_features_in_ = Xs.shape[1]
        self.Ps_ = pca_subspace(Xs, int(self.dim))
        self.Pt_ = pca_subspace(Xt, int(self.dim))
        self.angles_ = _angle_decomposition(self.Ps_, self.Pt_)[2]
        self.L_ = gfk_factor(self.Ps_, self.Pt_)
        self.Zs_, self.ys_ = Xs @ self.L_, ys
        self.classes_ = np.unique(ys)
        return self

    @property
    def G_(self) -> np.ndarray:
        """The kernel ``G = L L^T (D, D)``."""
        check_fitted(self, "L_")
        G = self.L_ @ self.L_.T
        return 0.5 * (G + G.T)

    def transform(self, X: Any) -> np.ndarray:
        """``X L (n, 2 dim)``: ``||x L - y L||^2 = (x - y)^T G (x - y)``."""
        check_fitted(self, "L_")
        return check_matrix(X, "X", n_features=self.n_features_in_) @ self.L_

    def predict(self, Xt: Any) -> np.ndarray:
        """1-NN labels ``(n,)`` under the GFK distance, source as the gallery."""
        Z = self.transform(Xt)
        return nearest_neighbour_predict(self.Zs_, self.ys_, Z)
