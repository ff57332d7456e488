"""Source-only baseline (no adaptation) and the helpers shared by the shallow DA baselines.

The shallow baselines of the DAH paper (tables 2-3: GFK, TCA, CORAL, JDA) are all "transform the
features, then train an ordinary classifier on the labelled source and apply it to the target".
:class:`SourceOnly` is that classifier alone on the raw features, i.e. the no-adaptation reference
each adapted method must beat.

Classifiers (as in the original papers' benchmark protocols on Office-Caltech-10):

* ``"1nn"``: 1-nearest-neighbour in Euclidean distance with the labelled source as the gallery
  (GFK, TCA and JDA papers). Ties go to the first source item (``argmin``).
* ``"svm"``: a linear SVM, :class:`sklearn.svm.LinearSVC` (LIBLINEAR's default ``-s 1``: squared
  hinge, L2 penalty, dual solver; one-vs-rest) with ``C`` (the CORAL paper's classifier; the DAH
  paper's A-distance also uses LIBLINEAR).

Every estimator here follows the same API: ``fit(Xs, ys, Xt)`` (``ys`` is used by the methods
that need source labels; all of them need it for their classifier), ``transform(X)`` and
``predict(Xt)``. Target labels are never an input.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from sklearn.svm import LinearSVC

from dahash.baselines.itq import as_features as check_matrix  # one input check for every baseline

__all__ = ["SourceOnly", "check_domains", "check_matrix", "nearest_neighbour_predict"]

Classifier = Literal["1nn", "svm"]
_CLASSIFIERS: tuple[str, ...] = ("1nn", "svm")
# Queries are processed in blocks so a (block, n_source) distance matrix stays ~32 MB in float64.
_NN_BLOCK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------------------------
# input validation (shared by all baselines)
# --------------------------------------------------------------------------------------------
def check_domains(Xs: Any, ys: Any, Xt: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a source ``(Xs (ns, d), ys (ns,))`` / target ``Xt (nt, d)`` triple.

    Returns float64 ``Xs``, ``Xt`` and an integer-like label vector ``ys`` (any hashable numeric
    labels are kept as given). Raises ``ValueError`` naming the offending argument.

    Example: ``check_domains(np.zeros((4, 3)), [0, 0, 1, 1], np.ones((5, 3)))``.
    """
    Xs = check_matrix(Xs, "Xs")
    Xt = check_matrix(Xt, "Xt", n_features=None)
    if Xt.shape[1] != Xs.shape[1]:
        raise ValueError(f"Xt has {Xt.shape[1]} features but Xs has {Xs.shape[1]}; they must match")
    y = np.asarray(ys)
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(f"ys must be a 1-D label vector; got shape {y.shape}")
    if y.shape[0] != Xs.shape[0]:
        raise ValueError(f"ys has {y.shape[0]} labels but Xs has {Xs.shape[0]} rows")
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"ys must hold integer class labels; got dtype {y.dtype}")
    if np.unique(y).size < 2:
        raise ValueError("ys must contain at least two classes")
    return Xs, y, Xt


def check_classifier(classifier: str) -> str:
    """Return ``classifier`` if it is ``"1nn"`` or ``"svm"``, else raise ``ValueError``."""
    if classifier not in _CLASSIFIERS:
        raise ValueError(f"classifier must be one of {_CLASSIFIERS}; got {classifier!r}")
    return classifier


def check_fitted(est: Any, attr: str) -> None:
    """Raise ``RuntimeError`` if ``est`` has no attribute ``attr`` (i.e. ``fit`` was not called)."""
    if not hasattr(est, attr):
        raise RuntimeError(f"{type(est).__name__} is not fitted; call fit(Xs, ys, Xt) first")


# --------------------------------------------------------------------------------------------
# classifiers
# --------------------------------------------------------------------------------------------
def nearest_neighbour_predict(Zs: np.ndarray, ys: np.ndarray, Zq: np.ndarray) -> np.ndarray:
    """1-NN: ``pred_i = ys[argmin_j ||zq_i - zs_j||_2]`` (ties -> first source item).

    Shapes: ``Zs (ns, k)``, ``ys (ns,)``, ``Zq (nq, k)`` -> ``(nq,)``. Uses
    ``||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b`` in query blocks.

    Example: ``nearest_neighbour_predict(np.array([[0.], [10.]]), np.array([0, 1]),
    np.array([[2.], [9.]]))`` -> ``array([0, 1])``.
    """
    Zs = check_matrix(Zs, "Zs")
    Zq = check_matrix(Zq, "Zq", n_features=Zs.shape[1], min_rows=0)
    ys = np.asarray(ys)
    if ys.shape != (Zs.shape[0],):
        raise ValueError(f"ys must have shape ({Zs.shape[0]},); got {ys.shape}")
    sq_s = np.einsum("ij,ij->i", Zs, Zs)
    out = np.empty(Zq.shape[0], dtype=ys.dtype)
    block = max(1, _NN_BLOCK_ELEMENTS // max(1, Zs.shape[0]))
    for start in range(0, Zq.shape[0], block):
        q = Zq[start : start + block]
        # ||q||^2 is constant per query row, so it does not change the argmin.
        d2 = sq_s[None, :] - 2.0 * (q @ Zs.T)
        out[start : start + block] = ys[np.argmin(d2, axis=1)]
    return out


def make_linear_svm(C: float = 1.0, *, seed: int = 0, max_iter: int = 100_000) -> LinearSVC:
    """The linear SVM used by the baselines: ``LinearSVC(C=C, dual=True)``, one-vs-rest.

    ``dual=True`` is LIBLINEAR's default solver (``-s 1``: L2-regularised squared hinge, dual
    coordinate descent). It is set explicitly because sklearn's ``dual="auto"`` picks the primal
    solver when ``n > d``, which is ~10x slower to converge on z-scored SURF features.
    """
    if not (isinstance(C, (int, float)) and np.isfinite(C) and C > 0):
        raise ValueError(f"C must be a positive finite number; got {C!r}")
    return LinearSVC(C=float(C), dual=True, random_state=seed, max_iter=max_iter)


class SourceOnly:
    """No adaptation: train the classifier on the raw source features, apply it to the target.

    ``classifier="1nn"``: 1-NN (Euclidean) against the source; ``"svm"``: ``LinearSVC(C)``.
    ``transform`` is the identity. ``Xt`` in ``fit`` is only validated (for a uniform API).

    Shapes: ``Xs (ns, d)``, ``ys (ns,)``, ``Xt (nt, d)``; ``predict(X (n, d)) -> (n,)``.

    Example::

        >>> rng = np.random.default_rng(0)
        >>> Xs = np.r_[rng.normal(0, 1, (10, 2)), rng.normal(5, 1, (10, 2))]
        >>> ys = np.r_[np.zeros(10, int), np.ones(10, int)]
        >>> SourceOnly("1nn").fit(Xs, ys, Xs + 0.1).predict(np.array([[0., 0.], [5., 5.]]))
        array([0, 1])
    """

    def __init__(self, classifier: Classifier = "1nn", *, C: float = 1.0, seed: int = 0) -> None:
        self.classifier = classifier
        self.C = C
        self.seed = seed

    def fit(self, Xs: Any, ys: Any, Xt: Any) -> SourceOnly:
        """Store the source gallery (1-NN) or train the linear SVM on ``(Xs, ys)``."""
        check_classifier(self.classifier)
        Xs, ys, _ = check_domains(Xs, ys, Xt)
        self.n_features_in_ = Xs.shape[1]
        if self.classifier == "svm":
            self.svm_ = make_linear_svm(self.C, seed=self.seed).fit(Xs, ys)
        else:
            self.Xs_, self.ys_ = Xs, ys
        self.classes_ = np.unique(ys)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Identity (float64 copy): ``(n, d) -> (n, d)``."""
        check_fitted(self, "n_features_in_")
        return check_matrix(X, "X", n_features=self.n_features_in_).copy()

    def predict(self, Xt: Any) -> np.ndarray:
        """Predicted labels ``(n,)`` for ``Xt (n, d)``."""
        X = self.transform(Xt)
        if self.classifier == "svm":
            return self.svm_.predict(X)
        return nearest_neighbour_predict(self.Xs_, self.ys_, X)
