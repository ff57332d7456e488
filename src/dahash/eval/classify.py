"""Classification of target items from the codes: the authors' eq. 6 variant and accuracy (``test_dah.m``).

Rules in :func:`predict_eq6`; :mod:`dahash.eval.metrics` re-exports both functions.
"""

from __future__ import annotations

import numpy as np

from dahash.eval._arrays import _as_matrix, _as_vector

__all__ = ["accuracy", "predict_eq6"]


def predict_eq6(
    u_t: np.ndarray,
    u_s: np.ndarray,
    y_s: np.ndarray,
    num_classes: int,
    max_per_class: int | None = 200,
) -> np.ndarray:
    """Classify target items with the authors' variant of eq. 6 (``test_dah.m``).

    ``score_ij = sum_{k in S_j} exp(u_t_i . u_s_k)`` and ``pred_i = argmax_j score_ij``, where
    ``S_j`` = the first ``max_per_class`` source items of class ``j`` **in the given order of
    u_s / y_s** (all of them if ``max_per_class`` is None). The inner product is the plain one on
    the continuous (tanh) outputs -- no 0.5 factor and no binarization; note that a scale factor
    inside ``exp`` would change the argmax of a sum of exponentials, so this matters.

    Computed in log-space, ``log score_ij = logsumexp_k(u_t_i . u_s_k)``, which has the same
    argmax and cannot overflow. A class with no source item gets score ``-inf``. Ties go to the
    lowest class index (``np.argmax``).

    Args:
        u_t: (m, d) target outputs.
        u_s: (n, d) source outputs, same d.
        y_s: (n,) integer source labels in [0, num_classes).
        num_classes: C >= 1.
        max_per_class: cap per class (the code uses 200); None = no cap.

    Returns:
        (m,) int64 predicted class indices.
    """
    ut = _as_matrix(u_t, "u_t").astype(np.float64, copy=False)
    us = _as_matrix(u_s, "u_s").astype(np.float64, copy=False)
    if ut.shape[1] != us.shape[1]:
        raise ValueError(f"u_t has d={ut.shape[1]} but u_s has d={us.shape[1]}; they must match")
    ys = _as_vector(y_s, "y_s", us.shape[0], "u_s")
    if us.shape[0] == 0:
        raise ValueError("u_s must contain at least one source item")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes!r}")
    if max_per_class is not None and (
        not isinstance(max_per_class, (int, np.integer)) or max_per_class < 1
    ):
        raise ValueError(f"max_per_class must be a positive integer or None; got {max_per_class!r}")
    if not np.issubdtype(ys.dtype, np.integer):
        if not (np.issubdtype(ys.dtype, np.floating) and np.all(ys == np.round(ys))):
            raise ValueError(f"y_s must hold integer class indices; got dtype {ys.dtype}")
        ys = ys.astype(np.int64)
    if ys.min() < 0 or ys.max() >= num_classes:
        raise ValueError(
            f"y_s must lie in [0, {num_classes}); got range [{ys.min()}, {ys.max()}]"
        )

    from scipy.special import logsumexp  # lazy: scipy's import is paid only by jobs that classify

    scores = np.full((ut.shape[0], num_classes), -np.inf, dtype=np.float64)
    for j in range(num_classes):
        idx = np.flatnonzero(ys == j)
        if max_per_class is not None:
            idx = idx[:max_per_class]
        if idx.size:
            scores[:, j] = logsumexp(ut @ us[idx].T, axis=1)
    return np.argmax(scores, axis=1).astype(np.int64)


def accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    """Fraction of correct predictions, ``(1/m) sum_i [pred_i == true_i]``, in [0, 1].

    Args:
        pred: (m,) predicted labels, m >= 1.
        true: (m,) true labels.
    """
    p = _as_vector(pred, "pred")
    t = _as_vector(true, "true", p.shape[0], "pred")
    if p.shape[0] == 0:
        raise ValueError("pred must contain at least one item")
    return float(np.mean(p == t))


