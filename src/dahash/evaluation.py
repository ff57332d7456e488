"""Scoring one run's outputs: target accuracy, mAP@d and the PR curve, for DAH and every comparison method.

Outputs come as a dict of arrays (see :class:`dahash.methods.BaselineOutput`): ``pred_target``,
``u_source``, ``u_target``. The rules are those of :mod:`dahash.metrics` (codes ``u > 0``, full
Hamming ranking with stable ties, empty queries excluded and counted); what is new here is which
items are queries and which the database (``retrieval``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dahash.baselines.split import target_query_database_split
from dahash.metrics import accuracy, binarize, hamming_retrieval, predict_eq6

__all__ = ["score"]


def score(codes: dict[str, np.ndarray], ys: np.ndarray, yt: np.ndarray, *, num_classes: int, retrieval: str | None,
          max_per_class: int | None, query_fraction: float, split_seed: int) -> dict:
    """Accuracy and retrieval scores of one run's outputs (None where the method has no such output).

    accuracy: ``pred_target`` when the method classifies by itself, else the eq. 6 classifier on
    ``u_target``/``u_source`` when it has source codes (DAH, NoDA), else None.
    mAP/PR: ``source_database`` -> target queries vs source database; ``target_split`` -> the seeded
    label-free split of the target (``target_query_database_split(n_t, query_fraction, split_seed)``),
    its query part vs its database part; no codes -> None and an empty PR table.
    """
    if retrieval not in (None, "source_database", "target_split"):
        raise ValueError(f"unknown retrieval protocol {retrieval!r}; expected source_database or target_split")
    acc = None
    if "pred_target" in codes:
        acc = accuracy(codes["pred_target"], yt)
    elif "u_source" in codes and "u_target" in codes:
        acc = accuracy(predict_eq6(codes["u_target"], codes["u_source"], ys, num_classes, max_per_class=max_per_class), yt)
    empty = pd.DataFrame({"radius": pd.Series(dtype=int), "precision": pd.Series(dtype=float),
                          "recall": pd.Series(dtype=float)})
    out = {"accuracy": acc, "map": None, "bits": None, "pr": empty, "n_queries": None, "n_database": None,
           "n_scored": None, "n_empty": None}
    if "u_target" not in codes or retrieval is None:
        return out
    bt = binarize(codes["u_target"])
    if retrieval == "source_database":
        q, yq, db, ydb = bt, yt, binarize(codes["u_source"]), ys
    else:  # target_split
        qi, di = target_query_database_split(len(yt), query_fraction=query_fraction, seed=split_seed)
        q, yq, db, ydb = bt[qi], yt[qi], bt[di], yt[di]
    m, pr = hamming_retrieval(q, db, yq, ydb)  # mAP and PR curve from one ranking pass
    out.update(map=m.map, bits=int(bt.shape[1]), pr=pr,
               n_queries=int(len(q)), n_database=int(len(db)), n_scored=m.n_scored, n_empty=m.n_empty)
    return out
