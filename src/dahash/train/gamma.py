"""Choosing the MK-MMD weight gamma as in the paper's section 5.2 (the authors' code has no such step).

    "We estimate gamma by validating a binary domain classifier to distinguish between source and
    target data points and select gamma which gives largest error on a validation set."

Procedure: train DAH once per candidate gamma, extract features of source and target (e.g. with
:func:`dahash.train.head.encode`), compute :func:`domain_classification_error` for each, and pick
:func:`select_gamma` of the ``{gamma: error}`` mapping. The larger the held-out error of the domain
classifier, the less the two domains can be told apart, i.e. the better aligned they are. Only
domain membership (source vs target) is used; class labels never are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["domain_classification_error", "select_gamma"]


def _features(name: str, x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array with >= 2 rows and >= 1 column, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no nan/inf)")
    return arr


def domain_classification_error(
    f_source: np.ndarray, f_target: np.ndarray, *, seed: int = 0, held_out: float = 0.3
) -> float:
    """Held-out BALANCED error of a linear source-vs-target classifier on features.

    Data: rows of ``f_source (ns, f)`` get domain label 0, rows of ``f_target (nt, f)`` label 1.
    A stratified random split (``held_out`` of each domain held out, ``random_state=seed``) gives
    fit/held-out parts; the classifier is ``StandardScaler`` (fitted on the fit part only) followed
    by ``LogisticRegression(class_weight="balanced")``. Returned::

        err = 1 - balanced_accuracy = 1 - (TPR_source + TPR_target) / 2     in [0, 1]

    Balanced because the domains differ in size (e.g. Amazon 2817 vs Webcam 795 images): the plain
    error of a classifier that always answers the larger domain is ``min(ns, nt) / (ns + nt)``,
    which would reward "cannot tell" and "ignores the small domain" alike, whereas the balanced
    error is 0.5 for any classifier that cannot separate the domains, whatever their sizes, and 0
    for a perfect one. No class labels are used.

    Args:
        f_source: ``(ns, f)`` source features (e.g. fc7 or hash outputs). f_target: ``(nt, f)``.
        seed: seed of the split (the solver is deterministic).
        held_out: fraction of each domain held out, in ``(0, 1)``; each domain needs at least one
            item in each part.

    Raises:
        ValueError: bad shapes, non-finite values, feature dimensions that differ, ``held_out``
            outside ``(0, 1)`` or too few items for the split.
    """
    xs = _features("f_source", f_source)
    xt = _features("f_target", f_target)
    if xs.shape[1] != xt.shape[1]:
        raise ValueError(f"f_source and f_target must have the same feature dimension, got {xs.shape} and {xt.shape}")
    held_out = float(held_out)
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be in (0, 1), got {held_out!r}")
    for name, n in (("f_source", xs.shape[0]), ("f_target", xt.shape[0])):
        n_test = math.ceil(n * held_out)
        if n_test < 1 or n - n_test < 1:
            raise ValueError(f"{name} has {n} rows: too few for held_out={held_out} (each part needs one)")
    # scikit-learn is imported here, not at module top: gamma_select only needs select_gamma (about 1 s less)
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([xs, xt])
    domain = np.concatenate([np.zeros(xs.shape[0], dtype=np.int64), np.ones(xt.shape[0], dtype=np.int64)])
    x_fit, x_test, d_fit, d_test = train_test_split(
        x, domain, test_size=held_out, stratify=domain, random_state=int(seed)
    )
    clf = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    clf.fit(x_fit, d_fit)
    return float(1.0 - balanced_accuracy_score(d_test, clf.predict(x_test)))


def select_gamma(errors: Mapping[float, float]) -> float:
    """The gamma whose domain classifier has the LARGEST held-out error (paper sec. 5.2).

    ``argmax_gamma errors[gamma]``; ties go to the SMALLER gamma (the weaker MMD weight that aligns
    the domains as well). Exact float comparison: round the errors first if near-ties should count.

    Args:
        errors: ``{gamma: domain_classification_error}``, gammas finite and ``>= 0``, errors finite.

    Raises:
        ValueError: empty ``errors``, or a non-finite/negative gamma or non-finite error (named).
    """
    if not errors:
        raise ValueError("errors must hold at least one {gamma: error} entry, got an empty mapping")
    best_gamma, best_err = math.nan, -math.inf
    for gamma, err in sorted(((float(g), float(e)) for g, e in errors.items()), key=lambda ge: ge[0]):
        if not math.isfinite(gamma) or gamma < 0:
            raise ValueError(f"errors keys (gamma) must be finite and >= 0, got {gamma!r}")
        if not math.isfinite(err):
            raise ValueError(f"errors[{gamma!r}] must be a finite number, got {err!r}")
        if err > best_err:  # strict: an equal error at a larger gamma does not win
            best_gamma, best_err = gamma, err
    return best_gamma
