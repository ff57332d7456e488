"""Scoring one run's outputs: target accuracy, mAP@d, precision@k, precision within Hamming radius 2 and the
PR curve, for DAH and every comparison method.

Outputs come as a dict of arrays (see :class:`dahash.baselines.registry.BaselineOutput`): ``pred_target``,
``u_source``, ``u_target``. The rules are those of :mod:`dahash.eval.metrics` (codes ``u > 0``, full
Hamming ranking with stable ties, empty queries excluded and counted); what is new here is which
items are queries and which the database (``retrieval`` and ``protocol``):

* ``protocol="dah"`` (the DAH paper): methods with a source database rank it for ALL target items.
* ``protocol="pwcf"`` (PWCF, CVPR 2020, and the cross-domain hashing papers since): the queries are a
  seeded random ``query_fraction`` of the target items, drawn without labels
  (:func:`dahash.eval.split.target_query_database_split`, its query part), the database is the
  whole source domain. In those papers the query images are also left out of training; the train stage
  does so under this protocol (:func:`dahash.eval.split.pwcf_training_rows`, re-exported here).

Methods without a source database (``retrieval="target_split"``) retrieve within the target split under
both protocols.

``db_per_class`` (the digits preset: 200) caps the source database at the first ``db_per_class`` source items
of each class in the given (manifest) order, as the authors' digits ``test_dah.m`` does (``boostSize``: its
``calcMap`` ranks only those ``srcKSet`` items, the same ones its classifier uses); None = the whole source.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dahash.eval.split import pwcf_training_rows, target_query_database_split
from dahash.eval.records import PROTOCOLS
from dahash.eval.metrics import PRECISION_KS, accuracy, binarize, predict_eq6, retrieval_scores

__all__ = ["PROTOCOLS", "first_per_class", "pwcf_training_rows", "score"]



def first_per_class(labels: np.ndarray, cap: int | None) -> np.ndarray:
    """Indices of the first ``cap`` items of each class, in the given order (all items when ``cap`` is None).

    ``test_dah.m``: ``ids = find(trSrcLabels == ii); ids = ids(1:min(boostSize, length(ids)))`` per class ``ii``.
    The returned indices are sorted ascending (the database keeps its order, so the ranking's tie rule is
    unchanged: ties keep database order).

    Args:
        labels: (n,) class labels.
        cap: positive integer, or None.

    Returns:
        int64 indices into ``labels``.
    """
    y = np.asarray(labels).reshape(-1)
    if cap is None:
        return np.arange(y.shape[0], dtype=np.int64)
    if isinstance(cap, bool) or int(cap) != cap or cap < 1:
        raise ValueError(f"the database cap per class must be a positive integer or None; got {cap!r}")
    rank_in_class = np.zeros(y.shape[0], dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rank_in_class[idx] = np.arange(idx.size)
    return np.flatnonzero(rank_in_class < int(cap)).astype(np.int64)


def score(codes: dict[str, np.ndarray], ys: np.ndarray, yt: np.ndarray, *, num_classes: int, retrieval: str | None,
          max_per_class: int | None, query_fraction: float, split_seed: int, protocol: str = "dah",
          db_per_class: int | None = None) -> dict:
    """Accuracy and retrieval scores of one run's outputs (None where the method has no such output).

    accuracy: ``pred_target`` when the method classifies by itself, else the eq. 6 classifier on
    ``u_target``/``u_source`` when it has source codes (DAH, NoDA), else None; always over ALL target items.
    mAP/PR/precision: ``source_database`` -> target queries (all of them under ``protocol="dah"``, the
    seeded query part under ``"pwcf"``) vs the whole source database; ``target_split`` -> the seeded
    label-free split of the target (``target_query_database_split(n_t, query_fraction, split_seed)``),
    its query part vs its database part; no codes -> None and an empty PR table.
    ``precision_at_k`` ({k: value} for k in :data:`dahash.eval.metrics.PRECISION_KS`), ``precision_radius2`` and
    ``n_radius2_empty`` follow :func:`dahash.eval.metrics.retrieval_scores` (same ranking and tie rule as mAP).
    ``area_rp``: PWCF's pooled area under the Hamming-radius PR curve (:mod:`dahash.eval.curves`), under
    ``protocol="pwcf"`` only (None otherwise). ``db_per_class``: the source database is
    :func:`first_per_class` ``(ys, db_per_class)`` (``source_database`` retrieval only).
    """
    if retrieval not in (None, "source_database", "target_split"):
        raise ValueError(f"unknown retrieval protocol {retrieval!r}; expected source_database or target_split")
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {protocol!r}; expected one of {list(PROTOCOLS)}")
    acc = None
    if "pred_target" in codes:
        acc = accuracy(codes["pred_target"], yt)
    elif "u_source" in codes and "u_target" in codes:
        acc = accuracy(predict_eq6(codes["u_target"], codes["u_source"], ys, num_classes, max_per_class=max_per_class), yt)
    empty = pd.DataFrame({"radius": pd.Series(dtype=int), "precision": pd.Series(dtype=float),
                          "recall": pd.Series(dtype=float)})
    out = {"accuracy": acc, "map": None, "bits": None, "pr": empty, "n_queries": None, "n_database": None,
           "n_scored": None, "n_empty": None, "precision_at_k": None, "precision_radius2": None,
           "n_radius2_empty": None, "area_rp": None}
    if "u_target" not in codes or retrieval is None:
        return out
    bt = binarize(codes["u_target"])
    if retrieval == "source_database":
        di = first_per_class(ys, db_per_class)
        db, ydb = binarize(codes["u_source"])[di], np.asarray(ys)[di]
    if retrieval == "source_database" and protocol == "dah":
        q, yq = bt, yt
    elif retrieval == "source_database":  # pwcf: the seeded query part of the target vs the source database
        qi, _ = target_query_database_split(len(yt), query_fraction=query_fraction, seed=split_seed)
        q, yq = bt[qi], yt[qi]
    else:  # target_split
        qi, di = target_query_database_split(len(yt), query_fraction=query_fraction, seed=split_seed)
        q, yq, db, ydb = bt[qi], yt[qi], bt[di], yt[di]
    s = retrieval_scores(q, db, yq, ydb, ks=PRECISION_KS, radius=2)  # mAP, PR, P@k, P@r<=2: one ranking pass
    m = s.map
    out.update(map=m.map, bits=int(bt.shape[1]), pr=s.pr, n_queries=int(len(q)), n_database=int(len(db)),
               n_scored=m.n_scored, n_empty=m.n_empty, precision_at_k=s.precision_at_k,
               precision_radius2=s.precision_radius, n_radius2_empty=s.n_radius_empty,
               area_rp=s.area_rp if protocol == "pwcf" else None)
    return out
