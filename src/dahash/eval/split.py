"""Query/database split of the target domain for hashing methods without a source database.

The DAH retrieval protocol (``dahash.eval.metrics``) uses the *target* codes as queries and the
*source* codes as the database. Methods that never see a labelled source -- the unsupervised
hashing baselines ITQ, KMH, BA, BDNN of the paper's Table 4, and the supervised upper bound SuH --
have no source database, so retrieval is done inside the target domain:

* ``query_idx``: a seeded uniformly random ``round(query_fraction * n)`` of the target items
  (at least 1, at most ``n - 1``);
* ``db_idx``: all the other target items.

Under the ``pwcf`` protocol (:mod:`dahash.eval.evaluation`) the query part of the same split is the target's
queries for every method, and :func:`pwcf_training_rows` the target items a method may train on (the others).

The split is stratification-free: **no class label is used to make it** (labels only decide
relevance at evaluation time), so it can be computed before any label is read. Both index arrays
are sorted ascending, disjoint, and together cover ``range(n)`` exactly once.
"""

from __future__ import annotations

import numpy as np

from dahash.eval.records import PROTOCOLS

__all__ = ["pwcf_training_rows", "target_query_database_split"]


def target_query_database_split(
    n: int, *, query_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic random split of ``range(n)`` into query and database indices.

    ``perm = np.random.default_rng(seed).permutation(n)``;
    ``n_q = clip(floor(query_fraction * n + 0.5), 1, n - 1)`` (round half up);
    ``query_idx = sort(perm[:n_q])``, ``db_idx = sort(perm[n_q:])``.

    Args:
        n: number of target items, ``>= 2``.
        query_fraction: fraction of items used as queries, in ``(0, 1)``.
        seed: seed of the numpy Generator (same ``(n, query_fraction, seed)`` -> same split).

    Returns:
        ``(query_idx (n_q,), db_idx (n - n_q,))``, int64, sorted ascending.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be an integer, got {type(n).__name__}")
    if n < 2:
        raise ValueError(f"n must be >= 2 (one query and one database item), got {n}")
    query_fraction = float(query_fraction)
    if not 0.0 < query_fraction < 1.0:
        raise ValueError(f"query_fraction must lie in (0, 1), got {query_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer, got {type(seed).__name__}")
    n = int(n)
    n_q = int(np.floor(query_fraction * n + 0.5))
    n_q = min(max(n_q, 1), n - 1)
    perm = np.random.default_rng(int(seed)).permutation(n).astype(np.int64)
    return np.sort(perm[:n_q]), np.sort(perm[n_q:])


def pwcf_training_rows(n_target: int, *, protocol: str, query_fraction: float, split_seed: int) -> np.ndarray:
    """Indices of the target items a method may train on: all under ``dah``; under ``pwcf`` all but the queries.

    The pwcf queries are ``target_query_database_split(n_target, query_fraction, split_seed)[0]`` (no label
    is used to draw them), the same items :func:`dahash.eval.evaluation.score` uses as queries, so no query image is seen in
    training (the papers' protocol: "10 % of the target domain samples are randomly selected as the query
    set; the remaining 90 % along with all source domain samples constitute the training set").

    Returns:
        int64 indices, sorted ascending.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {list(PROTOCOLS)}")
    if protocol == "dah":
        return np.arange(n_target, dtype=np.int64)
    return target_query_database_split(n_target, query_fraction=query_fraction, seed=split_seed)[1]
