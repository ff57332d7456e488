"""The retrieval database capped per class (eval.db_per_class; the authors' digits test_dah.m, boostSize): hand case."""

from __future__ import annotations

import numpy as np
import pytest

from dahash.eval.evaluation import first_per_class, score


def test_first_per_class_keeps_the_first_items_of_each_class_in_order() -> None:
    y = np.array([3, 1, 3, 3, 1, 2, 1])
    np.testing.assert_array_equal(first_per_class(y, 2), [0, 1, 2, 4, 5])
    np.testing.assert_array_equal(first_per_class(y, None), np.arange(7))
    np.testing.assert_array_equal(first_per_class(y, 10), np.arange(7))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            first_per_class(y, bad)


def test_map_with_database_cap_hand_case() -> None:
    # d = 2 bits; one target query t0 = 10, class 0. Source (bits, class):
    #   s0 = 11 c0 (distance 1)   s1 = 10 c1 (0)   s2 = 01 c0 (2)   s3 = 10 c0 (0)   s4 = 00 c1 (1)
    # Whole source: stable ranking s1 N, s3 Y, s0 Y, s4 N, s2 Y -> AP = (1/2 + 2/3 + 3/5) / 3 = 0.5888...
    # Cap 2 per class keeps s0, s2 (class 0) and s1, s4 (class 1), drops s3:
    #   ranking s1 N, s0 Y, s4 N, s2 Y -> AP = (1/2 + 2/4) / 2 = 0.5
    bits_s = np.array([[1, 1], [1, 0], [0, 1], [1, 0], [0, 0]])
    codes = {"u_source": 2.0 * bits_s - 1.0, "u_target": np.array([[1.0, -1.0]])}
    ys, yt = np.array([0, 1, 0, 0, 1]), np.array([0])
    kw = dict(num_classes=2, retrieval="source_database", max_per_class=200, query_fraction=0.5, split_seed=0)
    whole = score(codes, ys, yt, **kw)
    capped = score(codes, ys, yt, **kw, db_per_class=2)
    assert whole["map"] == pytest.approx((1 / 2 + 2 / 3 + 3 / 5) / 3) and whole["n_database"] == 5
    assert capped["map"] == pytest.approx(0.5) and capped["n_database"] == 4
    assert capped["area_rp"] is None  # area_RP only under the pwcf protocol


def test_pwcf_protocol_scores_area_rp_beside_the_ranking_map() -> None:
    from dahash.eval.metrics import binarize, retrieval_scores
    from dahash.eval.split import target_query_database_split

    rng = np.random.default_rng(0)
    codes = {"u_source": rng.standard_normal((60, 8)), "u_target": rng.standard_normal((50, 8))}
    ys, yt = rng.integers(0, 3, 60), rng.integers(0, 3, 50)
    out = score(codes, ys, yt, num_classes=3, retrieval="source_database", max_per_class=200, query_fraction=0.2,
                split_seed=1, protocol="pwcf")
    qi, _ = target_query_database_split(50, query_fraction=0.2, seed=1)
    want = retrieval_scores(binarize(codes["u_target"])[qi], binarize(codes["u_source"]), yt[qi], ys)
    assert out["area_rp"] == want.area_rp and out["map"] == want.map.map and out["n_queries"] == 10
    assert out["area_rp"] != out["map"]


def test_rules_name_the_database_cap_and_area_rp() -> None:
    from dahash.eval.records import report_rules, run_rules

    assert "database cap" not in run_rules("dah") and "area_RP" not in run_rules("dah")
    assert "200" in report_rules("dah", 0.1, 0, 200)["database cap"] and "area_RP" not in report_rules("dah", 0.1, 0)
    assert "pooled over ALL query-database pairs" in run_rules("pwcf")["area_RP"]
    assert "area_RP" in report_rules("pwcf", 0.1, 0) and "database cap" in run_rules("dah", 200)
