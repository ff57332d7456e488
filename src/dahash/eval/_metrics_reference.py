"""The plain-numpy Hamming ranking that :mod:`dahash.eval.metrics` used before its kernel (kept as an oracle).

Tests check :func:`dahash.eval.metrics.mean_average_precision` and :func:`dahash.eval.metrics.precision_recall_curve`
against these, value for value (``np.array_equal``, not a tolerance), and ``benchmarks/run.py`` times
them side by side. Same rules as :mod:`dahash.eval.metrics`: float32 +-1 matrix product for the distances,
``np.argsort(kind="stable")`` for the ranking (ties keep database order), numpy's cumsum/sum for AP,
per-query histograms over radius 0..d for the PR curve, queries in chunks of ``_chunk_rows(n)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dahash.eval.metrics import MAPResult, _chunk_rows, _retrieval_inputs, hamming_distance

__all__ = ["mean_average_precision_reference", "precision_recall_curve_reference"]


def mean_average_precision_reference(q_bits: np.ndarray, db_bits: np.ndarray, q_labels: np.ndarray,
                                     db_labels: np.ndarray) -> MAPResult:
    """mAP of the stable Hamming ranking, per query ``(1/R) sum_{relevant r} precision@r`` (see metrics)."""
    q, db, ql, dl = _retrieval_inputs(q_bits, db_bits, q_labels, db_labels)
    m, n = q.shape[0], db.shape[0]
    ap = np.full(m, np.nan, dtype=np.float64)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    step = _chunk_rows(n)
    for start in range(0, m, step):
        stop = min(start + step, m)
        dist = hamming_distance(q[start:stop], db)
        order = np.argsort(dist, axis=1, kind="stable")
        rel = dl[order] == ql[start:stop, None]  # (c, n) relevance in ranked order
        n_rel = rel.sum(axis=1)
        prec_at_r = np.cumsum(rel, axis=1) / ranks
        sum_prec = np.where(rel, prec_at_r, 0.0).sum(axis=1)
        scored = n_rel > 0
        ap[start:stop][scored] = sum_prec[scored] / n_rel[scored]
    n_scored = int(np.count_nonzero(~np.isnan(ap)))
    mean = float(np.nanmean(ap)) if n_scored else float("nan")
    return MAPResult(map=mean, n_queries=m, n_scored=n_scored, n_empty=m - n_scored, ap=ap)


def precision_recall_curve_reference(q_bits: np.ndarray, db_bits: np.ndarray, q_labels: np.ndarray,
                                     db_labels: np.ndarray) -> pd.DataFrame:
    """Hamming-radius precision/recall for r = 0..d (see metrics.precision_recall_curve for the rules)."""
    q, db, ql, dl = _retrieval_inputs(q_bits, db_bits, q_labels, db_labels)
    m, n, d = q.shape[0], db.shape[0], q.shape[1]
    nb = d + 1
    prec_sum = np.zeros(nb)
    prec_cnt = np.zeros(nb, dtype=np.int64)
    rec_sum = np.zeros(nb)
    rec_cnt = 0
    step = _chunk_rows(n)
    for start in range(0, m, step):
        stop = min(start + step, m)
        c = stop - start
        dist = hamming_distance(q[start:stop], db)
        rel = dl[None, :] == ql[start:stop, None]
        flat = (dist + nb * np.arange(c)[:, None]).ravel()
        retrieved = np.cumsum(np.bincount(flat, minlength=c * nb).reshape(c, nb), axis=1)
        rel_ret = np.cumsum(
            np.bincount(flat, weights=rel.ravel().astype(np.float64), minlength=c * nb).reshape(c, nb),
            axis=1,
        )
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
    return pd.DataFrame({"radius": np.arange(nb, dtype=np.int64), "precision": precision, "recall": recall,
                         "n_queries_precision": prec_cnt, "n_queries_recall": np.full(nb, rec_cnt, dtype=np.int64)})
