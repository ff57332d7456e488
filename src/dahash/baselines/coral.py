"""CORrelation ALignment (CORAL; Sun, Feng & Saenko, "Return of Frustratingly Easy Domain
Adaptation", AAAI 2016).

Maths (paper Algorithm 1). With ``Cs = cov(Xs) + eps I`` and ``Ct = cov(Xt) + eps I``
(``d x d``, ``eps = 1`` as in the paper: "adding an identity matrix"),

    Xs* = Xs Cs^{-1/2} Ct^{1/2}        (whiten the source, then re-colour it with the target)

minimises ``||C_hat_s - Ct||_F^2`` over linear maps of the source (paper section 3), so
``cov(Xs*) ~ Ct`` (exactly ``Ct`` up to the ``eps`` regulariser). The target is left unchanged.
Matrix powers ``C^{+-1/2}`` are computed from :func:`numpy.linalg.eigh` (``C`` is symmetric PD).

``transform(X)`` applies the source map ``X -> X Cs^{-1/2} Ct^{1/2}`` (it is meant for
source-domain data). ``predict(Xt)`` classifies target data as they are.

Classifier (stated, as in the paper's Office experiments): a linear SVM
(:class:`sklearn.svm.LinearSVC`, LIBLINEAR's default dual solver, ``C = 1``) trained on
``(Xs*, ys)``. Simplification: ``C`` is fixed. The MATLAB ``CORAL_SVM.m`` evaluation code in
circulation (inherited from Subspace Alignment's) instead picks ``C`` in ``{1e-3, ..., 1e4}`` by
2-fold cross-validation on the source with LIBSVM on the linear kernel. The paper's
features are already normalised per domain (z-score, see :func:`dahash.data.surf.surf_preprocess`);
CORAL itself does not centre the data.

Example::

    >>> rng = np.random.default_rng(0)
    >>> Xs, ys = rng.normal(size=(200, 3)), np.repeat([0, 1], 100)
    >>> Xt = rng.normal(size=(300, 3)) * [1.0, 5.0, 10.0]
    >>> coral = CORAL(eps=1e-9).fit(Xs, ys, Xt)
    >>> bool(np.allclose(np.cov(coral.transform(Xs), rowvar=False), np.cov(Xt, rowvar=False)))
    True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dahash.baselines.source_only import (
    check_domains,
    check_fitted,
    check_matrix,
    make_linear_svm,
)

__all__ = ["CORAL", "coral_transform_matrix", "symmetric_matrix_power"]


def symmetric_matrix_power(C: np.ndarray, power: float) -> np.ndarray:
    """``C^power`` for a symmetric positive-definite ``C (d, d)`` via ``C = Q diag(w) Q^T``.

    Raises ``ValueError`` if ``C`` is not (numerically) positive definite.
    Example: ``symmetric_matrix_power(np.diag([4., 9.]), -0.5)`` -> ``diag(1/2, 1/3)``.
    """
    C = 0.5 * (C + C.T)
    w, Q = np.linalg.eigh(C)
    if w.min() <= 0.0:
        raise ValueError(f"C must be positive definite; smallest eigenvalue {w.min():.3g}")
    return (Q * w**power) @ Q.T


def coral_transform_matrix(Xs: Any, Xt: Any, eps: float = 1.0) -> np.ndarray:
    """``A = (cov(Xs) + eps I)^{-1/2} (cov(Xt) + eps I)^{1/2}``, shape ``(d, d)``.

    ``cov`` is the unbiased sample covariance (``np.cov``, as MATLAB's ``cov``). Source data are
    mapped by ``Xs @ A``.
    """
    Xs = check_matrix(Xs, "Xs", min_rows=2)
    Xt = check_matrix(Xt, "Xt", min_rows=2)
    if Xt.shape[1] != Xs.shape[1]:
        raise ValueError(f"Xt has {Xt.shape[1]} features but Xs has {Xs.shape[1]}; they must match")
    if not (isinstance(eps, (int, float)) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number; got {eps!r}")
    d = Xs.shape[1]
    Cs = np.atleast_2d(np.cov(Xs, rowvar=False)) + eps * np.eye(d)
    Ct = np.atleast_2d(np.cov(Xt, rowvar=False)) + eps * np.eye(d)
    return symmetric_matrix_power(Cs, -0.5) @ symmetric_matrix_power(Ct, 0.5)


class CORAL:
    """CORAL source re-colouring followed by a linear SVM trained on the re-coloured source.

    Parameters: ``eps`` (covariance regulariser, paper: 1), ``C`` (SVM cost, 1), ``seed``.
    Shapes: ``fit(Xs (ns, d), ys (ns,), Xt (nt, d))``; ``transform(X (n, d)) -> (n, d)`` (source
    map); ``predict(Xt (n, d)) -> (n,)``. After ``fit``: ``A_ (d, d)``, ``svm_``.
    """

    def __init__(self, eps: float = 1.0, *, C: float = 1.0, seed: int = 0) -> None:
        self.eps = eps
        self.C = C
        self.seed = seed

    def fit(self, Xs: Any, ys: Any, Xt: Any) -> CORAL:
        """Compute ``A`` from both domains' covariances; train ``LinearSVC`` on ``(Xs A, ys)``."""
        Xs, ys, Xt = check_domains(Xs, ys, Xt)
        if Xs.shape[0] < 2 or Xt.shape[0] < 2:
            raise ValueError("Xs and Xt need at least 2 rows each to estimate covariances")
        self.n_features_in_ = Xs.shape[1]
        self.A_ = coral_transform_matrix(Xs, Xt, self.eps)
        self.svm_ = make_linear_svm(self.C, seed=self.seed).fit(Xs @ self.A_, ys)
        self.classes_ = self.svm_.classes_
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Source map ``X Cs^{-1/2} Ct^{1/2}``: ``(n, d) -> (n, d)``."""
        check_fitted(self, "A_")
        return check_matrix(X, "X", n_features=self.n_features_in_) @ self.A_

    def predict(self, Xt: Any) -> np.ndarray:
        """Labels ``(n,)`` of target data ``Xt (n, d)`` (unchanged) from the SVM."""
        check_fitted(self, "svm_")
        return self.svm_.predict(check_matrix(Xt, "Xt", n_features=self.n_features_in_))
