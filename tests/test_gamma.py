"""Tests of dahash.train.gamma: the domain classifier's held-out balanced error and the choice of gamma."""

from __future__ import annotations

import numpy as np
import pytest

from dahash.train.gamma import domain_classification_error, select_gamma


def _gauss(n: int, f: int = 8, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, f)) + shift


def test_identical_distributions_give_error_near_half() -> None:
    err = domain_classification_error(_gauss(400, seed=1), _gauss(400, seed=2), seed=0)
    assert 0.4 < err < 0.6


def test_error_is_balanced_for_unequal_domain_sizes() -> None:
    # 100 vs 600 items from the SAME distribution: a plain error could be as low as 1/7 by always
    # answering "target"; the balanced error of a classifier that cannot separate them stays ~0.5
    errs = [domain_classification_error(_gauss(100, seed=s), _gauss(600, seed=s + 10), seed=s) for s in range(3)]
    assert 0.35 < float(np.mean(errs)) < 0.65


def test_well_separated_domains_give_error_near_zero() -> None:
    err = domain_classification_error(_gauss(300, seed=1), _gauss(200, shift=3.0, seed=2))
    assert err < 0.02
    # a partial shift lies in between: the error orders the degree of alignment
    mid = domain_classification_error(_gauss(300, seed=1), _gauss(200, shift=0.4, seed=2))
    assert err < mid < 0.45


def test_error_is_deterministic_given_seed_and_uses_the_split() -> None:
    a, b = _gauss(150, seed=3), _gauss(150, shift=0.3, seed=4)
    assert domain_classification_error(a, b, seed=5) == domain_classification_error(a, b, seed=5)
    values = {domain_classification_error(a, b, seed=s) for s in range(5)}
    assert len(values) > 1  # another split, another held-out set


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(f_source=np.zeros(5), f_target=np.zeros((5, 2))), "f_source"),
        (dict(f_source=np.zeros((5, 2)), f_target=np.full((5, 2), np.nan)), "f_target"),
        (dict(f_source=np.zeros((5, 2)), f_target=np.zeros((5, 3))), "feature dimension"),
        (dict(f_source=np.zeros((5, 2)), f_target=np.zeros((5, 2)), held_out=1.0), "held_out"),
        (dict(f_source=np.zeros((5, 2)), f_target=np.zeros((5, 2)), held_out=0.0), "held_out"),
        (dict(f_source=np.zeros((2, 2)), f_target=np.zeros((50, 2)), held_out=0.9), "f_source"),
    ],
)
def test_domain_error_rejects_bad_input(kwargs, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        domain_classification_error(**kwargs)


def test_select_gamma_takes_largest_error() -> None:
    assert select_gamma({0.0: 0.05, 10.0: 0.31, 5e3: 0.48, 1e4: 0.40}) == 5e3
    assert select_gamma({7.0: 0.2}) == 7.0


def test_select_gamma_ties_go_to_the_smaller_gamma() -> None:
    assert select_gamma({1e4: 0.5, 10.0: 0.5, 5e3: 0.5}) == 10.0
    assert select_gamma({1e3: 0.3, 100.0: 0.45, 1.0: 0.45}) == 1.0  # insertion order does not matter


def test_select_gamma_rejects_empty_and_bad_values() -> None:
    with pytest.raises(ValueError, match="errors"):
        select_gamma({})
    with pytest.raises(ValueError, match="gamma"):
        select_gamma({-1.0: 0.2})
    with pytest.raises(ValueError, match=r"errors\[10.0\]"):
        select_gamma({10.0: float("nan")})
