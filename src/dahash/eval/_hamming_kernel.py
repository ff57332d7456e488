"""Numba kernel for full Hamming ranking: per-query AP with stable ties and per-radius counts.

Imported lazily by :mod:`dahash.eval.metrics` (numba's import and the cached kernel's load are paid only by
jobs that rank). Hand-written, because no library ranks integer distances this way: the distances
take only ``d + 1`` values, so the stable ranking needs no sort. For query ``i`` and database item
``k`` with distance ``t = D[i, k]``, the stable (database-order) rank is

    rank(k) = N_<t + #{j < k : D[i, j] = t} + 1,         N_<t = #{j : D[i, j] < t},

and for a relevant ``k`` the number of relevant items in ranks ``1..rank(k)`` is

    hits(k) = R_<t + #{relevant j < k : D[i, j] = t} + 1,   R_<t = #{relevant j : D[i, j] < t}.

One pass over the database in its own order keeps the running per-distance counts (a counting sort
that never materialises the order); ``hits(k) / rank(k)`` is then written at position ``rank(k) - 1``
of a zeroed length-``n`` buffer and summed with numpy's own pairwise summation order
(``_pairwise_sum``), so that ``AP = sum / R`` is bit-identical to the reference implementation
(``np.argsort(kind="stable")`` + ``np.cumsum`` + ``ndarray.sum``). Work per query O(n * w) with
``w = ceil(d / 64)`` XOR + popcount words; memory per thread O(n).

The same ranks give the top-k hits: ``hits@k = #{relevant k' : rank(k') <= k}`` for every cut-off ``k`` asked
for (O(R * len(ks)) more per query), i.e. precision@k on the very ranking the AP uses (ties at the k-th
position resolved in database order).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.core import types
from numba.extending import intrinsic

__all__ = ["rank_stats"]


@intrinsic
def _popcount64(typingctx, x):  # noqa: ANN001, ANN202 (numba intrinsic signature)
    """LLVM ``ctpop`` on a uint64 (one POPCNT instruction on x86-64)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.ctpop(args[0])

    return sig, codegen


@nb.njit(cache=True, nogil=True)
def _leaf_sum(a: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise-sum leaf (n <= 128): 8 interleaved accumulators, then the tail in order."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    end = n - n % 8
    while i < end:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@nb.njit(cache=True, nogil=True)
def _pairwise_sum(a: np.ndarray) -> float:
    """``a.sum()`` in numpy's exact order (``pairwise_sum`` in numpy's ``loops_utils.h``).

    numpy splits ``n > 128`` into ``n2 = n // 2 - (n // 2) % 8`` and ``n - n2`` and adds the two
    halves' sums. Written with an explicit stack: numba's on-disk cache crashes on recursive functions.
    """
    los = np.empty(64, np.int64)
    ns = np.empty(64, np.int64)
    phase = np.empty(64, np.int64)
    left = np.empty(64, np.float64)
    los[0], ns[0], phase[0] = 0, a.shape[0], 0
    sp = 1
    ret = 0.0
    while sp > 0:
        top = sp - 1
        nn = ns[top]
        n2 = nn // 2
        n2 -= n2 % 8
        if phase[top] == 0:
            if nn <= 128:
                ret = _leaf_sum(a, los[top], nn)
                sp -= 1
            else:  # descend into the left half
                phase[top] = 1
                los[sp], ns[sp], phase[sp] = los[top], n2, 0
                sp += 1
        elif phase[top] == 1:  # left half done: descend into the right half
            left[top] = ret
            phase[top] = 2
            los[sp], ns[sp], phase[sp] = los[top] + n2, nn - n2, 0
            sp += 1
        else:  # both halves done
            ret = left[top] + ret
            sp -= 1
    return ret


@nb.njit(cache=True, nogil=True)
def _rank_one(qp: np.ndarray, dbp: np.ndarray, i: int, lab: int, dl: np.ndarray, d: int, ap: np.ndarray,
              hist: np.ndarray, relhist: np.ndarray, ks: np.ndarray, hits: np.ndarray, cnt: np.ndarray,
              rcnt: np.ndarray, start: np.ndarray, rstart: np.ndarray, rel_t: np.ndarray, rel_within: np.ndarray,
              rel_rwithin: np.ndarray, buf: np.ndarray) -> None:
    """Query ``i``: fill ``ap[i]``, ``hist[i]``, ``relhist[i]``, ``hits[i]``. The other arrays are the caller's
    scratch; ``buf`` (n,) must be all zeros on entry and is left all zeros."""
    w = qp.shape[1]
    n = dbp.shape[0]
    cnt[:] = 0
    rcnt[:] = 0
    nrel = 0
    for k in range(n):
        s = 0
        for j in range(w):
            s += _popcount64(qp[i, j] ^ dbp[k, j])
        if dl[k] == lab:  # relevant: remember its distance and its place within its tie group
            rel_t[nrel] = s
            rel_within[nrel] = cnt[s]
            rel_rwithin[nrel] = rcnt[s]
            rcnt[s] += 1
            nrel += 1
        cnt[s] += 1
    for t in range(d + 1):
        hist[i, t] = cnt[t]
        relhist[i, t] = rcnt[t]
    for j in range(ks.shape[0]):
        hits[i, j] = 0
    if nrel == 0:
        ap[i] = np.nan
        return
    acc = 0
    racc = 0
    for t in range(d + 1):  # N_<t and R_<t
        start[t] = acc
        rstart[t] = racc
        acc += cnt[t]
        racc += rcnt[t]
    for r in range(nrel):  # precision@rank at the relevant ranks, 0 elsewhere
        t = rel_t[r]
        rank = start[t] + rel_within[r] + 1
        hits_r = rstart[t] + rel_rwithin[r] + 1
        buf[rank - 1] = hits_r / rank
        for j in range(ks.shape[0]):  # top-k hits: relevant items ranked within the first ks[j]
            if rank <= ks[j]:
                hits[i, j] += 1
    ap[i] = _pairwise_sum(buf) / nrel
    for r in range(nrel):  # back to all zeros for the next query
        buf[start[rel_t[r]] + rel_within[r]] = 0.0


@nb.njit(cache=True, parallel=True, nogil=True)
def rank_stats(qp: np.ndarray, dbp: np.ndarray, ql: np.ndarray, dl: np.ndarray, d: int,
               ap: np.ndarray, hist: np.ndarray, relhist: np.ndarray, ks: np.ndarray, hits: np.ndarray,
               n_blocks: int) -> None:
    """Fill ``ap`` (m,), ``hist`` and ``relhist`` (m, d + 1), ``hits`` (m, len(ks)) for packed codes; query blocks
    run in parallel.

    Args:
        qp: (m, w) uint64 packed query bits; dbp: (n, w) uint64 packed database bits (same packing,
            zero padding).
        ql: (m,) int64 query label codes; dl: (n,) int64 database label codes (relevant = equal).
        d: number of bits (distances lie in [0, d]).
        ap: out (m,) float64, AP of the stable Hamming ranking, NaN when the query has no relevant item.
        hist: out (m, d + 1) int64, ``hist[i, t] = #{k : D[i, k] = t}``.
        relhist: out (m, d + 1) int64, the same count over the relevant items only.
        ks: (nk,) int64 cut-offs (may be empty); hits: out (m, nk) int64, ``hits[i, j]`` = relevant items among
            the first ``ks[j]`` of the stable ranking (ties in database order).
        n_blocks: the queries are split into this many contiguous blocks (1 <= n_blocks <= m), run in
            parallel; scratch memory O(n + d) per block, allocated once per block.
    """
    m = qp.shape[0]
    n = dbp.shape[0]
    for b in nb.prange(n_blocks):
        cnt = np.empty(d + 1, np.int64)
        rcnt = np.empty(d + 1, np.int64)
        start = np.empty(d + 1, np.int64)
        rstart = np.empty(d + 1, np.int64)
        rel_t = np.empty(n, np.int64)  # per relevant item, in database order: its distance,
        rel_within = np.empty(n, np.int64)  # how many items of that distance come before it,
        rel_rwithin = np.empty(n, np.int64)  # and how many relevant ones
        buf = np.zeros(n, np.float64)
        for i in range(b * m // n_blocks, (b + 1) * m // n_blocks):
            _rank_one(qp, dbp, i, ql[i], dl, d, ap, hist, relhist, ks, hits, cnt, rcnt, start, rstart, rel_t,
                      rel_within, rel_rwithin, buf)
