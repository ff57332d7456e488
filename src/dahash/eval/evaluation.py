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
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dahash.eval.split import pwcf_training_rows, target_query_database_split
from dahash.eval.records import PROTOCOLS
from dahash.eval.metrics import PRECISION_KS, accuracy, binarize, predict_eq6, retrieval_scores

__all__ = ["PROTOCOLS", "pwcf_training_rows", "score"]



def score(codes: dict[str, np.ndarray], ys: np.ndarray, yt: np.ndarray, *, num_classes: int, retrieval: str | None,
          max_per_class: int | None, query_fraction: float, split_seed: int, protocol: str = "dah") -> dict:
    """Accuracy and retrieval scores of one run's outputs (None where the method has no such output).

    accuracy: ``pred_target`` when the method classifies by itself, else the eq. 6 classifier on
    ``u_target``/``u_source`` when it has source codes (DAH, NoDA), else None; always over ALL target items.
    mAP/PR/precision: ``source_database`` -> target queries (all of them under ``protocol="dah"``, the
    seeded query part under ``"pwcf"``) vs the whole source database; ``target_split`` -> the seeded
    label-free split of the target (``target_query_database_split(n_t, query_fraction, split_seed)``),
    its query part vs its database part; no codes -> None and an empty PR table.
    ``precision_at_k`` ({k: value} for k in :data:`dahash.eval.metrics.PRECISION_KS`), ``precision_radius2`` and
    ``n_radius2_empty`` follow :func:`dahash.eval.metrics.retrieval_scores` (same ranking and tie rule as mAP).
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
           "n_radius2_empty": None}
    if "u_target" not in codes or retrieval is None:
        return out
    bt = binarize(codes["u_target"])
    if retrieval == "source_database" and protocol == "dah":
        q, yq, db, ydb = bt, yt, binarize(codes["u_source"]), ys
    elif retrieval == "source_database":  # pwcf: the seeded query part of the target vs the whole source
        qi, _ = target_query_database_split(len(yt), query_fraction=query_fraction, seed=split_seed)
        q, yq, db, ydb = bt[qi], yt[qi], binarize(codes["u_source"]), ys
    else:  # target_split
        qi, di = target_query_database_split(len(yt), query_fraction=query_fraction, seed=split_seed)
        q, yq, db, ydb = bt[qi], yt[qi], bt[di], yt[di]
    s = retrieval_scores(q, db, yq, ydb, ks=PRECISION_KS, radius=2)  # mAP, PR, P@k, P@r<=2: one ranking pass
    m = s.map
    out.update(map=m.map, bits=int(bt.shape[1]), pr=s.pr, n_queries=int(len(q)), n_database=int(len(db)),
               n_scored=m.n_scored, n_empty=m.n_empty, precision_at_k=s.precision_at_k,
               precision_radius2=s.precision_radius, n_radius2_empty=s.n_radius_empty)
    return out
