"""Iterative Quantization (ITQ), Gong & Lazebnik, CVPR 2011 / TPAMI 2013, plus shared helpers.

ITQ (the paper's PCA-ITQ, unsupervised):

1. Zero-centre the data: ``Xc = X - mean`` (``X`` is ``(n, f)``).
2. PCA to ``c = bits`` dimensions: ``V = Xc W`` with ``W (f, c)`` the top-``c`` eigenvectors of the
   covariance ``Xc^T Xc / n``.
3. Find binary codes ``B in {-1, +1}^{n x c}`` and an orthogonal rotation ``R (c, c)`` minimising the
   quantization loss ``Q(B, R) = ||B - V R||_F^2`` by alternating, ``n_iter = 50`` times:

   * fix ``R``: ``B = sgn(V R)`` (optimal for every entry);
   * fix ``B``: orthogonal Procrustes. With the SVD ``B^T V = S Omega S_hat^T`` (``c x c``),
     ``R = S_hat S^T`` maximises ``tr(B R^T V^T)``, i.e. minimises ``Q``.

   Both steps are exact minimisers of ``Q`` over one block, so ``Q`` never increases.
   ``R`` is initialised as a random orthogonal matrix (QR of a standard normal matrix, seeded).
4. Encoding of new data: ``b(x) = sgn((x - mean) W R)``.

Convention: ``sgn(0) = +1`` (the authors' code sets a bit to 1 where the projection is ``>= 0``);
codes are returned as ``float32`` in ``{-1, +1}``.

The helpers at the top (:func:`as_features`, :func:`sign_pm1`, :func:`pca_top`, ...) are shared
by the other hashing baselines of this package.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg

__all__ = ["ITQ", "as_features", "check_bits", "check_positive_int", "check_seed", "pca_top", "sign_pm1"]


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
def as_features(x: Any, name: str, *, n_features: int | None = None, min_rows: int = 1) -> np.ndarray:
    """Return ``x`` as a finite float64 ``(N, d)`` array (``N >= min_rows``, ``d >= 1``, ``d == n_features``
    when given) or raise ``ValueError`` naming ``name``; the one input check of every baseline (the shallow
    ones import it as ``source_only.check_matrix``).

    Torch tensors are accepted (detached and moved to the CPU).
    Example: ``as_features([[1, 2], [3, 4]], "Xs").shape == (2, 2)``.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric 2-D array; {exc}") from exc
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, d); got shape {a.shape}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} row(s); got {a.shape[0]}")
    if a.shape[1] < 1:
        raise ValueError(f"{name} must have at least one feature column; got shape {a.shape}")
    if n_features is not None and a.shape[1] != n_features:
        raise ValueError(f"{name} has {a.shape[1]} features but the model was fitted with {n_features}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``int(value)`` if it is an integer ``>= minimum``, else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_bits(bits: Any) -> int:
    """Validate a code length (``>= 1``)."""
    return check_positive_int(bits, "bits")


def check_seed(seed: Any) -> int:
    """Validate a seed (a non-negative integer)."""
    return check_positive_int(seed, "seed", minimum=0)


def sign_pm1(a: np.ndarray) -> np.ndarray:
    """Elementwise sign with ``sgn(0) = +1``, as ``float32`` in ``{-1, +1}``; same shape as ``a``."""
    return np.where(np.asarray(a) >= 0, 1.0, -1.0).astype(np.float32)


def pca_top(xc: np.ndarray, k: int, driver: str = "evr") -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` principal directions of already-centred data.

    Eigen-decomposition of the covariance ``C = xc^T xc / n`` (``f x f``), largest eigenvalues
    first. Each eigenvector's sign is fixed so that its largest-magnitude entry is positive (a
    deterministic convention; eigenvectors are only defined up to sign).

    Args:
        xc: ``(n, f)`` centred data.
        k: number of components, ``1 <= k <= f``.
        driver: ``"evr"``: LAPACK ``syevr`` on the index subset of the top ``k`` (few components);
            ``"evd"``: the full divide-and-conquer ``syevd``, faster when ``k`` is close to ``f``.

    Returns:
        ``(components (f, k), eigenvalues (k,))``, eigenvalues descending.
    """
    n, f = xc.shape
    if not 1 <= k <= f:
        raise ValueError(f"k must lie in [1, {f}] (the feature dimension), got {k}")
    cov = (xc.T @ xc) / n
    if driver == "evd":
        vals, vecs = scipy.linalg.eigh(cov, driver="evd")
        vals, vecs = vals[f - k:], vecs[:, f - k:]
        order = np.arange(k)[::-1]  # ascending from eigh: reversed
    else:
        vals, vecs = scipy.linalg.eigh(cov, subset_by_index=[f - k, f - 1])
        order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    flip = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(k)])
    flip[flip == 0] = 1.0
    return vecs * flip, np.clip(vals, 0.0, None)


def random_rotation(c: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``(c, c)`` orthogonal matrix: Q of the QR decomposition of a standard normal matrix
    (signs fixed by ``diag(R) > 0``, so it is Haar-distributed)."""
    q, r = np.linalg.qr(rng.standard_normal((c, c)))
    d = np.sign(np.diag(r))
    d[d == 0] = 1.0
    return q * d


def procrustes_rotation(b: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``argmin_{R orthogonal} ||b - v R||_F^2`` for ``b, v (n, c)``: with the SVD
    ``v^T b = U S Wt``, ``R = U Wt`` (the paper's ``B^T V = S Omega S_hat^T``, ``R = S_hat S^T``)."""
    u, _, wt = np.linalg.svd(v.T @ b)
    return u @ wt


# --------------------------------------------------------------------------------------------
# ITQ
# --------------------------------------------------------------------------------------------
class ITQ:
    """PCA-ITQ hashing (unsupervised).

    Args:
        bits: code length ``c`` (``<= min(n, f)`` at fit time).
        n_iter: number of alternating ``(B, R)`` iterations (50 in the paper).
        seed: seed of the numpy Generator drawing the initial rotation.

    Attributes (after :meth:`fit`):
        mean_: ``(f,)`` training mean.
        components_: ``(f, c)`` PCA projection ``W``.
        rotation_: ``(c, c)`` orthogonal ``R``.
        projection_: ``(f, c)`` ``W R`` (codes are ``sgn((x - mean_) @ projection_)``).
        loss_history_: ``(2 * n_iter + 1,)`` quantization loss ``||B - V R||_F^2``: the first entry
            after the initial ``B`` step, then after every ``R`` step and every following ``B``
            step (non-increasing).
    """

    def __init__(self, bits: int, *, n_iter: int = 50, seed: int = 0) -> None:
        self.bits = check_bits(bits)
        self.n_iter = check_positive_int(n_iter, "n_iter", minimum=0)
        self.seed = check_seed(seed)

    def fit(self, X: np.ndarray, y: Any = None) -> ITQ:
        """Learn mean, PCA and rotation from ``X (n, f)``; ``y`` is ignored (unsupervised)."""
        x = as_features(X, "X", min_rows=2)
        n, f = x.shape
        if self.bits > min(n, f):
            raise ValueError(f"bits={self.bits} exceeds min(n, f)={min(n, f)} of X {x.shape}")
        rng = np.random.default_rng(self.seed)
        self.mean_ = x.mean(axis=0)
        xc = x - self.mean_
        self.components_, self.explained_variance_ = pca_top(xc, self.bits)
        v = xc @ self.components_  # (n, c)
        r = random_rotation(self.bits, rng)
        b = sign_pm1(v @ r).astype(np.float64)
        history = [float(np.sum((b - v @ r) ** 2))]
        for _ in range(self.n_iter):
            r = procrustes_rotation(b, v)
            history.append(float(np.sum((b - v @ r) ** 2)))
            b = sign_pm1(v @ r).astype(np.float64)
            history.append(float(np.sum((b - v @ r) ** 2)))
        self.rotation_ = r
        self.projection_ = self.components_ @ r
        self.loss_history_ = np.asarray(history)
        self.n_features_in_ = f
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "projection_"):
            raise RuntimeError("ITQ is not fitted; call fit(X) first")

    def project(self, X: np.ndarray) -> np.ndarray:
        """Continuous rotated PCA projections ``(X - mean) W R``, ``(n, bits)`` float64."""
        self._check_fitted()
        x = as_features(X, "X", n_features=self.n_features_in_)
        return (x - self.mean_) @ self.projection_

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes ``sgn((X - mean) W R)`` as ``(n, bits)`` float32 in ``{-1, +1}``."""
        return sign_pm1(self.project(X))
