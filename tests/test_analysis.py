"""dahash.eval.analysis: proxy A-distance, t-SNE embedding and the t-SNE figure (DAH paper fig. 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dahash.eval.analysis import a_distance, plot_tsne, tsne_embedding


def test_a_distance_identical_distributions_is_near_zero() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 10)), rng.normal(size=(300, 10))
    assert abs(a_distance(a, b)) <= 0.3


def test_a_distance_separated_distributions_is_near_two() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 10)), rng.normal(size=(150, 10))
    b[:, 0] += 8.0  # separable along one coordinate only
    assert a_distance(a, b) >= 1.9


def test_a_distance_grows_with_the_shift_and_is_seeded() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(200, 5)), rng.normal(size=(200, 5))
    dists = [a_distance(a, b + [s, 0, 0, 0, 0]) for s in (0.0, 1.0, 3.0)]
    assert dists[0] < dists[1] < dists[2]
    assert a_distance(a, b + 1.0, seed=3) == a_distance(a, b + 1.0, seed=3)


def test_a_distance_bad_input() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 4))
    with pytest.raises(ValueError, match="f_target"):
        a_distance(a, rng.normal(size=(20, 3)))
    with pytest.raises(ValueError, match="f_source"):
        a_distance(a[:3], a)  # fewer rows than folds
    with pytest.raises(ValueError, match="f_source"):
        a_distance(a[0], a)
    with pytest.raises(ValueError, match="folds"):
        a_distance(a, a, folds=1)
    bad = a.copy()
    bad[1, 1] = np.inf
    with pytest.raises(ValueError, match="f_target"):
        a_distance(a, bad)


def _clusters(n_per: int = 30) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), n_per)
    X = rng.normal(size=(3 * n_per, 8))
    X[np.arange(3 * n_per), y] += 6.0
    dom = np.where(np.arange(3 * n_per) % 2 == 0, "source", "target")
    return X, y, dom


def test_tsne_shape_and_determinism() -> None:
    X, y, _ = _clusters()
    e1 = tsne_embedding(X, seed=0, perplexity=10, max_iter=250)
    e2 = tsne_embedding(X, seed=0, perplexity=10, max_iter=250)
    assert e1.shape == (90, 2) and e1.dtype == np.float64
    np.testing.assert_array_equal(e1, e2)
    # the embedding keeps the clusters: every point's nearest neighbour is in its class
    d = np.sum((e1[:, None] - e1[None]) ** 2, axis=-1) + np.diag(np.full(90, np.inf))
    assert np.mean(y[np.argmin(d, axis=1)] == y) > 0.95


def test_tsne_bad_input() -> None:
    X, _, _ = _clusters(5)
    with pytest.raises(ValueError, match="perplexity"):
        tsne_embedding(X, perplexity=30)  # N = 15
    with pytest.raises(ValueError, match="features"):
        tsne_embedding(X[0])
    with pytest.raises(ValueError, match="max_iter"):
        tsne_embedding(X, perplexity=3, max_iter=10)


def test_plot_tsne_writes_a_valid_png(tmp_path: Path) -> None:
    X, y, dom = _clusters()
    emb = tsne_embedding(X, perplexity=10, max_iter=250)
    out = plot_tsne(emb, dom, y, tmp_path / "tsne.png", "A -> W")
    assert out == tmp_path / "tsne.png"
    with Image.open(out) as im:
        im.verify()
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    assert [p.name for p in tmp_path.iterdir()] == ["tsne.png"]  # no temporary file left behind
    # rewriting replaces the file atomically
    plot_tsne(emb, dom, y, out, "again")
    assert [p.name for p in tmp_path.iterdir()] == ["tsne.png"]


def test_plot_tsne_bad_input(tmp_path: Path) -> None:
    emb = np.zeros((4, 2))
    with pytest.raises(ValueError, match="emb"):
        plot_tsne(np.zeros((4, 3)), [0] * 4, [0] * 4, tmp_path / "a.png", "")
    with pytest.raises(ValueError, match="domain"):
        plot_tsne(emb, [0] * 3, [0] * 4, tmp_path / "a.png", "")
    with pytest.raises(ValueError, match="labels"):
        plot_tsne(emb, [0] * 4, [0] * 5, tmp_path / "a.png", "")
    with pytest.raises(ValueError, match="path"):
        plot_tsne(emb, [0] * 4, [0] * 4, tmp_path / "missing" / "a.png", "")
    with pytest.raises(ValueError, match="path"):
        plot_tsne(emb, [0] * 4, [0] * 4, tmp_path / "a.jpg", "")
    assert list(tmp_path.iterdir()) == []
