"""Prediction and evaluation for DAH: hash codes, Hamming ranking, eq. 6 classifier, accuracy, mAP, PR curves.

Everything here follows the authors' released evaluation code (hemanthdv/da-hash,
``examples/office/test_dah.m`` and ``calcMap.m``); see ``docs/dah-reference.md``, section
"Prediction and evaluation". The evaluation rules are part of the science, so each function states
them explicitly. In short:

* **Codes.** Evaluation codes are ``b = 1[u > 0]`` on the network's continuous (tanh) outputs ``u``;
  an exact 0 becomes bit 0 (``calcMap.m``: ``Bs = Us > 0``). Training's quantization loss instead
  uses ``sign(u)`` with ``sign(0) = +1`` (``hash_entropy_loss.m``). Both rules come from the
  authors' code; they disagree only on exact zeros, which essentially never occur after tanh.
* **Retrieval setting.** Queries = all target codes, database = all source codes. Relevance =
  same class label. Transductive: the target labels are used only here, at final evaluation.
* **Ranking.** Full Hamming ranking of the whole database (no top-k cut-off). Ties in Hamming
  distance keep database order (stable sort; MATLAB's ``sort`` is stable).
* **AP.** ``AP = (1/R) * sum over relevant ranks r of precision@r``, ``R`` = number of relevant
  database items. Queries with ``R = 0`` are excluded from the mean (and counted).
* **PR curves.** Hamming-radius retrieval (distance <= r) over the same distances, i.e. the
  ranking cut at the end of a tie group, so tie order cannot change them.
* **Precision@k** (:func:`retrieval_scores`): ``(#relevant in ranks 1..k) / k`` on the SAME stable
  ranking as the AP; when the k-th position falls inside a tie group, the items of that group that
  enter the top k are the first ones in database order (as for the AP); ``k > n`` is cut to ``n``.
  Averaged over the scored queries (R >= 1), like mAP.
* **area_RP** (:func:`retrieval_scores`, :mod:`dahash.eval.curves`): PWCF's "mAP" (fuxianghuang1/PWCF
  ``recall_precision.m`` + ``area_RP.m``), the area under the Hamming-radius precision-recall curve pooled
  over ALL query-database pairs (no per-query mean, no query excluded); not the ranking mAP above.
* **Precision within Hamming radius r** (r = 2, :func:`retrieval_scores`): per query
  ``relevant_retrieved / retrieved`` over the items with distance <= r (independent of tie order);
  a query that retrieves nothing within r counts as precision **0** (and is counted); averaged over
  the scored queries. The PR curve's precision(r) instead averages only over queries that retrieve
  something (it describes the retrieved sets), so the two differ when some radius-r result is empty.
* **Classification (eq. 6, code variant).** ``score_ij = sum_k exp(u_t_i . u_s_k)`` over up to 200
  source items ``k`` of class ``j`` (the first ones in the given order), on the continuous outputs;
  predict ``argmax_j`` (:mod:`dahash.eval.classify`; re-exported here with ``accuracy``).

Arrays are numpy in / numpy out; torch tensors are accepted (converted with ``.detach().cpu()``).
The ranking functions also run on a CUDA device (``device=``, or CUDA tensors as input).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dahash.eval._arrays import _as_bits, _as_matrix, _as_vector, _to_numpy  # noqa: F401  (_to_numpy: re-export)
from dahash.eval.classify import accuracy, predict_eq6
from dahash.eval.curves import pr_from_counts, pwcf_area_rp

__all__ = [
    "MAPResult",
    "PRECISION_KS",
    "RetrievalScores",
    "accuracy",
    "binarize",
    "hamming_distance",
    "hamming_retrieval",
    "mean_average_precision",
    "precision_recall_curve",
    "predict_eq6",
    "retrieval_scores",
]

#: the precision@k cut-offs reported beside mAP (as the cross-domain hashing papers since PWCF)
PRECISION_KS: tuple[int, ...] = (100, 500, 1000)

_NO_KS = np.zeros(0, dtype=np.int64)

# Queries are processed in chunks so that one chunk's (chunk, n) working arrays hold about this
# many elements (a few tens of MB in float64), whatever the database size.
_CHUNK_ELEMENTS = 1 << 22

# Below this many query x database pairs the ranking runs in plain numpy (same values): loading numba
# and the cached kernel (about 0.3 s) costs more than ranking, e.g. 0.05 s for 1,000 x 1,000 codes.
_KERNEL_MIN_PAIRS = 1 << 21


def _chunk_rows(n_cols: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, n_cols))


# --------------------------------------------------------------------------------------------
# codes and distances
# --------------------------------------------------------------------------------------------
def binarize(u: np.ndarray) -> np.ndarray:
    """Hash codes for evaluation: ``b = 1[u > 0]``.

    Args:
        u: (N, d) continuous network outputs (after tanh).

    Returns:
        (N, d) uint8 array of bits in {0, 1}. An exact 0 becomes bit **0**.

    Rule: this is the authors' evaluation rule (``calcMap.m``: ``Bs = Us > 0``). Training's
    quantization loss ``||U - sign(U)||^2`` uses ``sign(0) = +1`` instead
    (``hash_entropy_loss.m``). Both rules are the authors'; they differ only for exact zeros.
    NaN inputs become bit 0 as well (``NaN > 0`` is False) -- check for NaN upstream.
    """
    a = _as_matrix(u, "u")
    return (a > 0).astype(np.uint8)


def hamming_distance(q_bits: np.ndarray, db_bits: np.ndarray) -> np.ndarray:
    """Pairwise Hamming distances between query and database codes.

    ``D[i, k] = sum_b [q_bits[i, b] != db_bits[k, b]] = (d - p_i . p_k) / 2`` with ``p = 2b - 1``
    in {-1, +1} (the authors' ``calcHammingDist``). Computed as a float32 matrix product in query
    chunks; exact because every partial sum is an integer below 2**24.

    Args:
        q_bits: (m, d) bits in {0, 1} (or bool).
        db_bits: (n, d) bits in {0, 1} (or bool), same d.

    Returns:
        (m, n) int32 array with values in [0, d].
    """
    q = _as_bits(q_bits, "q_bits")
    db = _as_bits(db_bits, "db_bits")
    if q.shape[1] != db.shape[1]:
        raise ValueError(
            f"q_bits has {q.shape[1]} bits per code but db_bits has {db.shape[1]}; they must match"
        )
    d = q.shape[1]
    if d >= 1 << 24:
        raise ValueError(f"q_bits: d = {d} bits is too long for exact float32 distances")
    pq = q.astype(np.float32) * 2.0 - 1.0
    pdb_t = (db.astype(np.float32) * 2.0 - 1.0).T
    out = np.empty((q.shape[0], db.shape[0]), dtype=np.int32)
    step = _chunk_rows(db.shape[0])
    for start in range(0, q.shape[0], step):
        inner = pq[start : start + step] @ pdb_t
        out[start : start + step] = np.rint((d - inner) * 0.5).astype(np.int32)
    return out


# --------------------------------------------------------------------------------------------
# retrieval
# --------------------------------------------------------------------------------------------
@dataclass
class MAPResult:
    """Result of :func:`mean_average_precision`.

    Attributes:
        map: mean AP over the scored queries (NaN if none is scored).
        n_queries: m, all queries.
        n_scored: queries with at least one relevant database item (R >= 1).
        n_empty: queries with R = 0, excluded from the mean; ``n_scored + n_empty == n_queries``.
        ap: (m,) per-query AP, NaN for the empty queries.
    """

    map: float
    n_queries: int
    n_scored: int
    n_empty: int
    ap: np.ndarray


def _retrieval_inputs(
    q_bits: Any, db_bits: Any, q_labels: Any, db_labels: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    q = _as_bits(q_bits, "q_bits")
    db = _as_bits(db_bits, "db_bits")
    if q.shape[1] != db.shape[1]:
        raise ValueError(
            f"q_bits has {q.shape[1]} bits per code but db_bits has {db.shape[1]}; they must match"
        )
    if q.shape[0] == 0:
        raise ValueError("q_bits must contain at least one query")
    if db.shape[0] == 0:
        raise ValueError("db_bits must contain at least one database item")
    ql = _as_vector(q_labels, "q_labels", q.shape[0], "q_bits")
    dl = _as_vector(db_labels, "db_labels", db.shape[0], "db_bits")
    return q, db, ql, dl


def _label_codes(ql: np.ndarray, dl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 codes with ``code_q[i] == code_db[k]`` iff ``ql[i] == dl[k]`` (the relevance rule).

    Integer labels are cast (a bijection, also for uint64); anything else is encoded with
    ``np.unique(..., equal_nan=False)``, so a NaN label equals nothing, as with ``==``.
    """
    if ql.dtype.kind in "biu" and dl.dtype.kind in "biu":
        return ql.astype(np.int64), dl.astype(np.int64)
    both = np.concatenate([ql, dl])
    _, inv = np.unique(both, return_inverse=True, equal_nan=False)
    inv = inv.reshape(-1).astype(np.int64)
    return inv[: len(ql)], inv[len(ql):]


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """(N, d) {0, 1} bits -> (N, ceil(d / 64)) uint64 words, zero-padded (popcount(a ^ b) = Hamming)."""
    n, d = bits.shape
    w = max(1, -(-d // 64))
    padded = np.zeros((n, w * 64), dtype=np.uint8)
    padded[:, :d] = bits
    return np.ascontiguousarray(np.packbits(padded, axis=1).view(np.uint64))


def _torch_device(device: Any, *arrays: Any) -> Any:
    """The torch device to rank on, or None for the CPU kernel.

    ``device`` None: the device of the first input that is a non-CPU torch tensor, else None.
    ``"cpu"`` -> None (the kernel); anything else (``"cuda"``, ``"cuda:1"``, a torch.device) -> itself.
    """
    if device is None:
        for a in arrays:
            dev = getattr(a, "device", None)
            if dev is not None and getattr(dev, "type", "cpu") != "cpu":
                return dev
        return None
    return None if str(device) == "cpu" else device


def _rank_stats_kernel(q: np.ndarray, db: np.ndarray, qc: np.ndarray, dc: np.ndarray, ks: np.ndarray = _NO_KS
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CPU: numba kernel on packed codes (see :mod:`dahash.eval._hamming_kernel`); queries in parallel.

    ``ks``: (nk,) int64 cut-offs, each in [1, n]; returns (ap, hist, relhist, hits (m, nk))."""
    import numba

    from dahash.eval._hamming_kernel import rank_stats  # lazy: numba is imported only by jobs that rank

    m, d = q.shape
    ap = np.empty(m, dtype=np.float64)
    hist = np.empty((m, d + 1), dtype=np.int64)
    relhist = np.empty((m, d + 1), dtype=np.int64)
    ks = np.ascontiguousarray(ks, dtype=np.int64)
    hits = np.empty((m, ks.shape[0]), dtype=np.int64)
    n_blocks = min(m, 64 * numba.get_num_threads())  # blocks of queries, a few per thread (load balance)
    rank_stats(_pack_bits(q), _pack_bits(db), qc, dc, d, ap, hist, relhist, ks, hits, n_blocks)
    return ap, hist, relhist, hits


def _rank_stats_numpy(q: np.ndarray, db: np.ndarray, qc: np.ndarray, dc: np.ndarray, ks: np.ndarray = _NO_KS
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Small problems: stable argsort of the distances in query chunks (the reference's arithmetic).

    ``hits[:, j]`` = the cumulative relevant count of the stable ranking at rank ``ks[j]``."""
    m, d = q.shape
    n = db.shape[0]
    ap = np.full(m, np.nan, dtype=np.float64)
    hist = np.empty((m, d + 1), dtype=np.int64)
    relhist = np.empty((m, d + 1), dtype=np.int64)
    ks = np.asarray(ks, dtype=np.int64)
    hits = np.empty((m, ks.shape[0]), dtype=np.int64)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    step = _chunk_rows(n)
    for start in range(0, m, step):
        stop = min(start + step, m)
        c = stop - start
        dist = hamming_distance(q[start:stop], db)
        rel_db = dc[None, :] == qc[start:stop, None]
        rel = np.take_along_axis(rel_db, np.argsort(dist, axis=1, kind="stable"), axis=1)
        if ks.shape[0]:
            hits[start:stop] = np.cumsum(rel, axis=1)[:, ks - 1]
        n_rel = rel.sum(axis=1)
        sum_prec = np.where(rel, np.cumsum(rel, axis=1) / ranks, 0.0).sum(axis=1)
        scored = n_rel > 0
        ap[start:stop][scored] = sum_prec[scored] / n_rel[scored]
        flat = (dist + (d + 1) * np.arange(c)[:, None]).ravel()
        hist[start:stop] = np.bincount(flat, minlength=c * (d + 1)).reshape(c, d + 1)
        relhist[start:stop] = np.bincount(flat[rel_db.ravel()], minlength=c * (d + 1)).reshape(c, d + 1)
    return ap, hist, relhist, hits


def _rank_stats_torch(q: np.ndarray, db: np.ndarray, qc: np.ndarray, dc: np.ndarray, device: Any,
                      ks: np.ndarray = _NO_KS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Any torch device (CUDA): the same ranking with torch ops, in query blocks of (block, n).

    Distances ``(d - p_q . p_db) / 2`` from a float32 +-1 matrix product (exact: integer partial
    sums below 2**24, also under TF32, whose +-1 inputs are exact); the stable ranking as a sort of
    the unique keys ``D * n + k``; AP as in the reference (cumsum / rank at the relevant ranks).
    The ranking and the counts are identical to the CPU kernel; the AP sums use torch's reduction
    order, so an AP may differ from the CPU value in the last bits (about 1e-16).
    """
    import torch

    dev = torch.device(device)
    m, d = q.shape
    n = db.shape[0]
    pq = torch.as_tensor(q, device=dev).to(torch.float32) * 2 - 1
    pdb_t = (torch.as_tensor(db, device=dev).to(torch.float32) * 2 - 1).T.contiguous()
    qcl = torch.as_tensor(qc, device=dev)
    dcl = torch.as_tensor(dc, device=dev)
    idx = torch.arange(n, device=dev, dtype=torch.int64)
    ranks = torch.arange(1, n + 1, device=dev, dtype=torch.float64)
    ap = torch.empty(m, dtype=torch.float64, device=dev)
    hist = torch.zeros((m, d + 1), dtype=torch.int64, device=dev)
    relhist = torch.zeros((m, d + 1), dtype=torch.int64, device=dev)
    kidx = torch.as_tensor(np.asarray(ks, dtype=np.int64) - 1, device=dev)
    hits = torch.zeros((m, kidx.shape[0]), dtype=torch.int64, device=dev)
    step = _chunk_rows(n)
    for start in range(0, m, step):
        stop = min(start + step, m)
        dist = torch.round((d - pq[start:stop] @ pdb_t) * 0.5).to(torch.int64)  # (c, n) in [0, d]
        rel_db = dcl[None, :] == qcl[start:stop, None]  # (c, n) relevance, database order
        order = torch.sort(dist * n + idx, dim=1).indices  # unique keys: ties keep database order
        rel = torch.gather(rel_db, 1, order)
        n_rel = rel.sum(dim=1)
        cum = torch.cumsum(rel, dim=1)
        if kidx.shape[0]:
            hits[start:stop] = cum[:, kidx]
        prec_at_r = cum.to(torch.float64) / ranks
        sum_prec = torch.where(rel, prec_at_r, torch.zeros((), dtype=torch.float64, device=dev)).sum(dim=1)
        ap[start:stop] = torch.where(n_rel > 0, sum_prec / n_rel.clamp(min=1), torch.nan)
        hist[start:stop].scatter_add_(1, dist, torch.ones_like(dist))
        relhist[start:stop].scatter_add_(1, dist, rel_db.to(torch.int64))
    return ap.cpu().numpy(), hist.cpu().numpy(), relhist.cpu().numpy(), hits.cpu().numpy()


def _rank_stats(q_bits: Any, db_bits: Any, q_labels: Any, db_labels: Any, device: Any, ks: Any = ()
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """Validated inputs -> (ap (m,), hist (m, d + 1), relhist (m, d + 1), n, hits (m, len(ks))) of the stable
    ranking; ``hits[:, j]`` = relevant items among the first ``min(ks[j], n)`` ranks."""
    dev = _torch_device(device, q_bits, db_bits)
    q, db, ql, dl = _retrieval_inputs(q_bits, db_bits, q_labels, db_labels)
    qc, dc = _label_codes(ql, dl)
    n = db.shape[0]
    kk = np.minimum(np.asarray(ks, dtype=np.int64).reshape(-1), n)
    if dev is None and q.shape[0] * n < _KERNEL_MIN_PAIRS:
        ap, hist, relhist, hits = _rank_stats_numpy(q, db, qc, dc, kk)
    elif dev is None:
        ap, hist, relhist, hits = _rank_stats_kernel(q, db, qc, dc, kk)
    else:
        ap, hist, relhist, hits = _rank_stats_torch(q, db, qc, dc, dev, kk)
    return ap, hist, relhist, n, hits


def _map_from_ap(ap: np.ndarray) -> MAPResult:
    m = ap.shape[0]
    n_scored = int(np.count_nonzero(~np.isnan(ap)))
    mean = float(np.nanmean(ap)) if n_scored else float("nan")
    return MAPResult(map=mean, n_queries=m, n_scored=n_scored, n_empty=m - n_scored, ap=ap)


def mean_average_precision(
    q_bits: np.ndarray, db_bits: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray,
    *, device: Any = None,
) -> MAPResult:
    """Mean average precision of Hamming ranking, with the authors' rules (``calcMap.m``).

    Setting: queries = target codes, database = source codes, relevant = same label.

    Rules:
      1. Full ranking: every database item is ranked by Hamming distance to the query (no top-k).
      2. Ties keep database order (MATLAB's stable ``sort``; ``np.argsort(dist, kind="stable")``).
      3. ``AP = (1/R) * sum_{r : item at rank r is relevant} precision@r``, with
         ``precision@r = (#relevant in ranks 1..r) / r`` and ``R`` = number of relevant items
         in the whole database (every relevant item is retrieved by a full ranking).
      4. A query with ``R = 0`` is excluded from the mean and counted in ``n_empty``; its AP is NaN.
      5. ``map`` = mean AP over the scored queries; NaN (with ``n_scored = 0``) if none.

    ``sklearn.metrics.average_precision_score`` computes the same AP only when there are no
    distance ties: for tied scores it treats the tie group as one threshold, not rule 2, so it
    is not used here (it serves as a cross-check in the tests).

    Computation: distances are integers in [0, d], so the stable ranking is a counting sort
    (XOR + popcount on 64-bit words, one pass per query, queries in parallel; see
    :mod:`dahash.eval._hamming_kernel`), with the per-query sums in numpy's order: the values are
    bit-identical to the plain numpy version (``dahash.eval._metrics_reference``). Memory O(threads x n).
    Problems under ``_KERNEL_MIN_PAIRS`` pairs use that numpy version (stable argsort per query
    chunk, memory O(chunk x n)) because loading the kernel would cost more than it saves.

    Args:
        q_bits: (m, d) query bits, m >= 1.
        db_bits: (n, d) database bits, n >= 1.
        q_labels: (m,) query labels.
        db_labels: (n,) database labels (compared with ``==``).
        device: None = the device of a non-CPU torch tensor input, else the CPU kernel; ``"cpu"``
            the CPU kernel; ``"cuda"`` (any torch device) the torch version on that device (same
            ranking; APs may differ from the CPU ones in the last bits).

    Returns:
        :class:`MAPResult`.
    """
    ap, _, _, _, _ = _rank_stats(q_bits, db_bits, q_labels, db_labels, device)
    return _map_from_ap(ap)


def precision_recall_curve(
    q_bits: np.ndarray, db_bits: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray,
    *, device: Any = None,
) -> Any:
    """Precision and recall of Hamming-radius retrieval, for every radius r = 0..d.

    Same setting and distances as :func:`mean_average_precision` (queries = target codes,
    database = source codes, relevant = same label; ``device`` likewise).

    Rules:
      1. At radius r a query retrieves every database item with Hamming distance <= r. This is
         the Hamming ranking cut at the end of a tie group, so it is consistent with the mAP
         ranking and independent of the tie order.
      2. ``precision(r)`` = mean over the queries that retrieve >= 1 item of
         ``relevant_retrieved / retrieved``; NaN if no query retrieves anything.
         ``n_queries_precision`` = the number of such queries.
      3. ``recall(r)`` = mean over the queries with R >= 1 relevant database items of
         ``relevant_retrieved / R``; queries with R = 0 are excluded (as in mAP).
         ``n_queries_recall`` = the number of such queries (the same for every r).
      4. At r = d everything is retrieved: recall(d) = 1 whenever n_queries_recall > 0, and
         precision(d) = mean fraction of relevant items in the database. Recall is
         non-decreasing in r; precision need not be monotone.

    Args:
        q_bits: (m, d) query bits; db_bits: (n, d) database bits;
        q_labels: (m,) and db_labels: (n,) labels.

    Returns:
        pandas DataFrame with d + 1 rows and columns ``radius`` (int), ``precision``, ``recall``
        (float), ``n_queries_precision``, ``n_queries_recall`` (int).
    """
    _, hist, relhist, n, _ = _rank_stats(q_bits, db_bits, q_labels, db_labels, device)
    return pr_from_counts(hist, relhist, _chunk_rows(n))


def hamming_retrieval(
    q_bits: np.ndarray, db_bits: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray,
    *, device: Any = None,
) -> tuple[MAPResult, Any]:
    """``(mean_average_precision(...), precision_recall_curve(...))`` from one pass over the pairs."""
    ap, hist, relhist, n, _ = _rank_stats(q_bits, db_bits, q_labels, db_labels, device)
    return _map_from_ap(ap), pr_from_counts(hist, relhist, _chunk_rows(n))


@dataclass
class RetrievalScores:
    """Result of :func:`retrieval_scores` (rules there).

    Attributes:
        map: :class:`MAPResult` of the stable Hamming ranking.
        pr: the precision-recall table of :func:`precision_recall_curve`.
        precision_at_k: k -> mean precision@k over the scored queries (NaN if none is scored).
        radius: the Hamming radius r of ``precision_radius``.
        precision_radius: mean precision within Hamming radius r over the scored queries, empty
            results counted as 0 (NaN if no query is scored).
        n_radius_empty: scored queries that retrieve nothing within radius r.
        area_rp: PWCF's ``area_RP`` over all query-database pairs (:func:`dahash.eval.curves.pwcf_area_rp`).
    """

    map: MAPResult
    pr: Any
    precision_at_k: dict[int, float]
    radius: int
    precision_radius: float
    n_radius_empty: int
    area_rp: float = float("nan")


def retrieval_scores(
    q_bits: np.ndarray, db_bits: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray,
    *, ks: tuple[int, ...] = PRECISION_KS, radius: int = 2, device: Any = None,
) -> RetrievalScores:
    """mAP, PR curve, precision@k, precision within Hamming radius ``radius`` and PWCF's area_RP, from one ranking
    pass.

    Ranking, relevance and the scored queries are those of :func:`mean_average_precision`.

    Rules:
      1. ``precision@k = (#relevant in ranks 1..k') / k'`` with ``k' = min(k, n)`` (a database smaller
         than k is retrieved whole), on the same stable ranking as the AP: when the k-th position falls
         inside a group of tied distances, the members of that group that make the top k are the first
         ones in **database order** (rule 2 of the mAP), not a share of the group.
      2. ``precision within radius r`` per query = ``relevant_retrieved / retrieved`` over the database
         items with Hamming distance <= r (independent of tie order); a query that retrieves **nothing**
         within r scores **0** and is counted in ``n_radius_empty``.
      3. Both are averaged over the scored queries (R >= 1), as mAP; NaN when no query is scored.
         (The PR curve's precision(r) averages over the queries that retrieve something instead.)
      4. ``area_rp``: PWCF's pooled area under the Hamming-radius PR curve, over every query (also those with
         R = 0) and database item (:func:`dahash.eval.curves.pwcf_area_rp`).

    Args:
        q_bits, db_bits, q_labels, db_labels, device: as :func:`mean_average_precision`.
        ks: positive integer cut-offs (default :data:`PRECISION_KS` = 100, 500, 1000).
        radius: integer r >= 0 (default 2; r >= d retrieves everything).

    Returns:
        :class:`RetrievalScores`.
    """
    kl = [int(k) for k in ks]
    if any(k < 1 for k in kl) or any(isinstance(k, bool) for k in ks):
        raise ValueError(f"ks must be positive integers; got {list(ks)!r}")
    if isinstance(radius, bool) or int(radius) != radius or radius < 0:
        raise ValueError(f"radius must be an integer >= 0; got {radius!r}")
    ap, hist, relhist, n, hits = _rank_stats(q_bits, db_bits, q_labels, db_labels, device, kl)
    result = _map_from_ap(ap)
    scored = ~np.isnan(ap)
    prec_k = {}
    for j, k in enumerate(kl):
        vals = hits[scored, j] / min(k, n)
        prec_k[k] = float(vals.mean()) if vals.size else float("nan")
    r = min(int(radius), hist.shape[1] - 1)
    retrieved = hist[scored, : r + 1].sum(axis=1)
    rel_ret = relhist[scored, : r + 1].sum(axis=1)
    per_q = np.where(retrieved > 0, rel_ret / np.maximum(retrieved, 1), 0.0)
    return RetrievalScores(map=result, pr=pr_from_counts(hist, relhist, _chunk_rows(n)), precision_at_k=prec_k,
                           radius=int(radius), precision_radius=float(per_q.mean()) if per_q.size else float("nan"),
                           n_radius_empty=int(np.count_nonzero(retrieved == 0)), area_rp=pwcf_area_rp(hist, relhist))
