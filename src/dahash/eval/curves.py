"""Curves from the per-query Hamming-distance counts: the PR table, and PWCF's pooled ``area_RP``.

Both start from the counts the ranking pass of :mod:`dahash.eval.metrics` already makes, per query ``i``
and distance ``r = 0..d``:

* ``hist[i, r]``    = database items at Hamming distance exactly ``r`` from query ``i``;
* ``relhist[i, r]`` = the relevant ones among them (same class label).

So neither needs the (m, n) distance matrix again.

**The PR table** (:func:`pr_from_counts`, the evaluate stage's PR curve): per-query precision and recall
of Hamming-radius retrieval, averaged over queries (rules in :func:`dahash.eval.metrics.precision_recall_curve`).

**area_RP** (:func:`pwcf_area_rp`): the number PWCF (Huang et al., CVPR 2020; code fuxianghuang1/PWCF) prints
as "mAP". It is NOT a per-query ranking mAP. Its ``demo.m`` calls ``recall_precision(WtrueTestTraining,
Dhamm)`` then ``area_RP(recall, precision)``:

* ``recall_precision.m`` pools all query-database pairs: with ``max_hamm = max(Dhamm(:))`` (the largest
  distance that occurs, not the code length), for ``n = 1..max_hamm`` the pairs within radius ``n - 1``
  are retrieved and ::

      precision(n) = good(n) / (retrieved(n) + eps)      recall(n) = good(n) / total_good

  with ``good(n)`` = relevant pairs at distance <= n - 1 over ALL queries (a query with no relevant
  item adds retrieved pairs and no good ones), ``retrieved(n)`` = pairs at distance <= n - 1,
  ``total_good`` = all relevant pairs and ``eps = 2^-52`` (MATLAB's). The radius ``max_hamm`` itself,
  where recall would be 1, is never a point. When ``max_hamm == 0`` the code sets
  ``precision = recall = [0.01]``.
* ``area_RP.m``: prepend ``(recall 0, precision(1))`` when ``recall(1) != 0``; keep one point per distinct
  recall (MATLAB ``unique``: sorted, the FIRST occurrence's precision, the R2013a+ default); a
  precision that is not ``>= 0`` (NaN) takes the next point's; then the trapezoidal area under
  precision over recall.

It is therefore an area under a PR curve that stops short of recall 1, in [0, 1]; on poor codes it differs
from the ranking mAP in both directions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MATLAB_EPS", "area_rp", "pooled_recall_precision", "pr_from_counts", "pwcf_area_rp"]

#: MATLAB's ``eps`` (2^-52), in ``recall_precision.m``'s denominator
MATLAB_EPS = float(np.finfo(np.float64).eps)


def pr_from_counts(hist: np.ndarray, relhist: np.ndarray, step: int) -> Any:
    """Per-query-averaged PR table from the counts (rules: :func:`dahash.eval.metrics.precision_recall_curve`).

    Args:
        hist: (m, d + 1) int counts of database items per query and distance.
        relhist: (m, d + 1) int counts of the relevant ones.
        step: queries summed per chunk (the ranking's chunk size, so the float sums equal the reference's).

    Returns:
        pandas DataFrame with d + 1 rows: ``radius``, ``precision``, ``recall``, ``n_queries_precision``,
        ``n_queries_recall``.
    """
    import pandas as pd  # lazy: pandas costs ~0.5 s of import in every job that loads this module

    m, nb = hist.shape
    prec_sum = np.zeros(nb)
    prec_cnt = np.zeros(nb, dtype=np.int64)
    rec_sum = np.zeros(nb)
    rec_cnt = 0
    for start in range(0, m, max(1, int(step))):
        stop = min(start + step, m)
        retrieved = np.cumsum(hist[start:stop], axis=1)  # (c, d + 1): retrieved within radius r
        rel_ret = np.cumsum(relhist[start:stop].astype(np.float64), axis=1)
        has_ret = retrieved > 0
        prec_sum += np.where(has_ret, rel_ret / np.maximum(retrieved, 1), 0.0).sum(axis=0)
        prec_cnt += has_ret.sum(axis=0)
        n_rel = rel_ret[:, -1]
        scored = n_rel > 0
        rec_sum += (rel_ret[scored] / n_rel[scored, None]).sum(axis=0)
        rec_cnt += int(scored.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(prec_cnt > 0, prec_sum / np.maximum(prec_cnt, 1), np.nan)
        recall = rec_sum / rec_cnt if rec_cnt else np.full(nb, np.nan)
    return pd.DataFrame(
        {
            "radius": np.arange(nb, dtype=np.int64),
            "precision": precision,
            "recall": recall,
            "n_queries_precision": prec_cnt,
            "n_queries_recall": np.full(nb, rec_cnt, dtype=np.int64),
        }
    )


def pooled_recall_precision(hist: np.ndarray, relhist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PWCF's ``recall_precision.m`` on pooled counts: ``(recall, precision)``, each (max_hamm,) float64.

    ``max_hamm`` = the largest distance with a pair; point ``n`` (1-based) is radius ``n - 1``::

        good(r) = sum_i sum_{s <= r} relhist[i, s]      retrieved(r) = sum_i sum_{s <= r} hist[i, s]
        precision = good / (retrieved + eps)            recall = good / good(d)

    ``max_hamm == 0`` (every pair at distance 0): ``([0.01], [0.01])``, as the MATLAB. No relevant pair at
    all: recall is NaN (0/0), as the MATLAB.

    Args:
        hist, relhist: (m, d + 1) counts per query and distance (the module docstring).
    """
    retrieved_at = np.asarray(hist, dtype=np.int64).sum(axis=0)  # (d + 1,) pairs at distance exactly r
    good_at = np.asarray(relhist, dtype=np.int64).sum(axis=0)
    present = np.flatnonzero(retrieved_at)
    max_hamm = int(present[-1]) if present.size else 0
    if max_hamm == 0:
        return np.array([0.01]), np.array([0.01])
    good = np.cumsum(good_at)[:max_hamm].astype(np.float64)  # radius 0..max_hamm - 1
    retrieved = np.cumsum(retrieved_at)[:max_hamm].astype(np.float64)
    total_good = float(good_at.sum())
    precision = good / (retrieved + MATLAB_EPS)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = good / total_good
    return recall, precision


def area_rp(recall: np.ndarray, precision: np.ndarray) -> float:
    """PWCF's ``area_RP.m``: trapezoidal area under precision over recall (rules in the module docstring).

    Args:
        recall, precision: (p,) the points of :func:`pooled_recall_precision`, p >= 1.

    Returns:
        The area (float); NaN when the recall is NaN (no relevant pair).
    """
    rec = np.asarray(recall, dtype=np.float64).reshape(-1)
    pre = np.asarray(precision, dtype=np.float64).reshape(-1)
    if rec.shape != pre.shape or rec.size == 0:
        raise ValueError(f"recall and precision must be non-empty and of one length; got {rec.shape} and {pre.shape}")
    if np.isnan(rec).any():
        return float("nan")
    if rec[0] != 0:
        rec, pre = np.concatenate([[0.0], rec]), np.concatenate([[pre[0]], pre])
    xx, first = np.unique(rec, return_index=True)  # sorted, first occurrence (MATLAB's default since R2013a)
    yy = pre[first]
    for ic in range(len(yy) - 2, -1, -1):  # a precision that is not >= 0 (NaN) takes the next one
        if not yy[ic] >= 0:
            yy[ic] = yy[ic + 1]
    return float(np.sum(0.5 * np.diff(xx) * (yy[1:] + yy[:-1])))


def pwcf_area_rp(hist: np.ndarray, relhist: np.ndarray) -> float:
    """PWCF's "mAP": ``area_rp(*pooled_recall_precision(hist, relhist))`` over all query-database pairs."""
    return area_rp(*pooled_recall_precision(hist, relhist))
