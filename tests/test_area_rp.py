"""PWCF's area_RP (dahash.eval.curves): a hand-computed case and a line-by-line transcription of the MATLAB.

The transcription below follows fuxianghuang1/PWCF ``utils/recall_precision.m`` (called as in ``demo.m``, two
arguments, so ``max_hamm = max(Dhat(:))``) and ``utils/area_RP.m`` statement by statement, on the full
(queries x database) distance and relevance matrices, with 1-based loop indices as there.
"""

from __future__ import annotations

import numpy as np
import pytest

from dahash.eval.curves import area_rp, pooled_recall_precision, pwcf_area_rp
from dahash.eval.metrics import hamming_distance, mean_average_precision, retrieval_scores

EPS = 2.0**-52  # MATLAB eps


def _matlab_recall_precision(wtrue: np.ndarray, dhat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """recall_precision.m, nargin = 2."""
    max_hamm = int(dhat.max())
    total_good_pairs = wtrue.sum()
    precision = np.zeros(max_hamm)
    recall = np.zeros(max_hamm)
    for n in range(1, max_hamm + 1):
        j = dhat <= ((n - 1) + 0.00001)
        retrieved_good_pairs = wtrue[j].sum()
        retrieved_pairs = j.sum()
        precision[n - 1] = retrieved_good_pairs / (retrieved_pairs + EPS)
        recall[n - 1] = retrieved_good_pairs / total_good_pairs
    if max_hamm == 0:
        precision, recall = np.array([0.01]), np.array([0.01])
    return recall, precision


def _matlab_area_rp(recall: np.ndarray, precision: np.ndarray) -> float:
    """area_RP.m; MATLAB's [xx, index] = unique(xx) = sorted values, first occurrence."""
    if recall[0] != 0:
        xx = [0.0, *recall]
        yy = [precision[0], *precision]
    else:
        xx, yy = list(recall), list(precision)
    uniq = sorted(set(xx))
    index = [xx.index(v) for v in uniq]
    xx = uniq
    yy = [yy[i] for i in index]
    for iii in range(1, len(xx) + 1):
        ic = len(xx) - iii + 1
        if not yy[ic - 1] >= 0:
            yy[ic - 1] = yy[ic]
    area = 0.0
    for i in range(1, len(xx)):
        area += 0.5 * (xx[i] - xx[i - 1]) * (yy[i] + yy[i - 1])
    return area


def test_area_rp_hand_case() -> None:
    # d = 2. db: 00 (class 0), 01 (class 0), 11 (class 1); queries: 00 (class 0), 11 (class 1).
    # Distances: q0 -> [0, 1, 2], q1 -> [2, 1, 0]; relevant pairs: (0,0), (0,1), (1,2): total_good = 3.
    # max_hamm = 2, so radii 0 and 1 only (radius 2 is never a point):
    #   r = 0: retrieved (0,0), (1,2) = 2, good 2      -> precision 1,    recall 2/3
    #   r = 1: retrieved + (0,1), (1,1) = 4, good 3     -> precision 3/4,  recall 1
    # recall(1) != 0: prepend (0, 1). Area = 2/3 * 1 + 1/3 * (1 + 3/4) / 2 = 2/3 + 7/24 = 23/24.
    db = np.array([[0, 0], [0, 1], [1, 1]], dtype=np.uint8)
    q = np.array([[0, 0], [1, 1]], dtype=np.uint8)
    s = retrieval_scores(q, db, np.array([0, 1]), np.array([0, 0, 1]), ks=(1,))
    assert s.area_rp == pytest.approx(23 / 24, abs=1e-12)
    assert s.map.map == pytest.approx(1.0)  # the ranking mAP of the same codes: both queries rank perfectly
    rec, pre = pooled_recall_precision(np.array([[1, 1, 1], [1, 1, 1]]), np.array([[1, 1, 0], [1, 0, 0]]))
    np.testing.assert_allclose(rec, [2 / 3, 1.0])
    np.testing.assert_allclose(pre, [1.0, 0.75])


def test_area_rp_duplicate_recall_keeps_first_and_zero_start() -> None:
    # recall [0, 0.5, 0.5, 1], precision [0, 1, 0.5, 0.4]: recall(1) = 0, no point prepended;
    # unique keeps (0, 0), (0.5, 1), (1, 0.4): area = 0.5 * (0 + 1) / 2 + 0.5 * (1 + 0.4) / 2 = 0.25 + 0.35
    assert area_rp(np.array([0.0, 0.5, 0.5, 1.0]), np.array([0.0, 1.0, 0.5, 0.4])) == pytest.approx(0.6)
    # every pair at distance 0: the MATLAB's fallback precision = recall = 0.01 -> area 0.01 * 0.01
    assert pwcf_area_rp(np.array([[2, 0]]), np.array([[1, 0]])) == pytest.approx(1e-4)


@pytest.mark.parametrize("bits, n_class", [(8, 3), (16, 5), (32, 10)])
def test_area_rp_equals_matlab_transcription(bits: int, n_class: int) -> None:
    rng = np.random.default_rng(bits)
    q = rng.integers(0, 2, (40, bits)).astype(np.uint8)
    db = rng.integers(0, 2, (150, bits)).astype(np.uint8)
    yq, ydb = rng.integers(0, n_class + 1, 40), rng.integers(0, n_class, 150)  # some queries have no relevant item
    dhat = hamming_distance(q, db).astype(np.float64)
    wtrue = yq[:, None] == ydb[None, :]
    expected = _matlab_area_rp(*_matlab_recall_precision(wtrue, dhat))
    s = retrieval_scores(q, db, yq, ydb, ks=(10,))
    assert s.area_rp == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # on random codes the two "mAP"s differ: they are not interchangeable
    assert abs(s.area_rp - mean_average_precision(q, db, yq, ydb).map) > 1e-3
