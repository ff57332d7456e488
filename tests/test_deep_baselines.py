"""Deep DA baselines (source-only, DAN, DANN) on cached features: gradient reversal, schedules,
the API, and adaptation on a two-Gaussian domain shift."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dahash.baselines.deep import (
    DeepDAModel,
    annealed_lr,
    dann_lambda,
    features,
    grad_reverse,
    predict,
    train_deep_baseline,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def shifted_gaussians(seed: int, n: int = 300, d: int = 10) -> tuple[np.ndarray, ...]:
    """Two classes at x0 = -1 / +1 (sigma 0.5, 8 more noise dims). The target is the source
    translated by (+1.2, +3.0) in (x0, x1): a source classifier thresholding x0 near 0 labels most
    of target class 0 (now at x0 = 0.2) as class 1, while x0 - 0.4 x1 aligns both domains and
    still separates the classes -- the invariant direction the adaptation has to find."""
    rng = np.random.default_rng(seed)

    def make(offset: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, n)
        x = rng.standard_normal((n, d)) * 0.5
        x[:, 0] += np.where(y == 1, 1.0, -1.0) + offset[0]
        x[:, 1] += offset[1]
        return x.astype(np.float32), y

    xs, ys = make((0.0, 0.0))
    xt, yt = make((1.2, 3.0))
    return xs, ys, xt, yt


TOY = dict(hidden_dims=(32, 32), epochs=100, lr=0.01, batch_size=64, domain_hidden=(32, 32))


# ---------------------------------------------------------------------------------------------
# gradient reversal and schedules
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("coeff", [0.0, 0.37, 1.0, 2.5])
def test_gradient_reversal_negates_and_scales_exactly(coeff: float) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    y = grad_reverse(x, coeff)
    assert torch.equal(y, x)  # identity forward
    (grad,) = torch.autograd.grad(y, x, grad_outputs=upstream)
    assert torch.equal(grad, -coeff * upstream)
    # composed with a differentiable function: d/dx sum(w * R(x)^2) = -coeff * 2 w x
    w = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    x2 = x.detach().clone().requires_grad_(True)
    (w * grad_reverse(x2, coeff).pow(2)).sum().backward()
    torch.testing.assert_close(x2.grad, -coeff * 2 * w * x2.detach(), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="coeff"):
        grad_reverse(x, -1.0)


def test_dann_schedules() -> None:
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1) and dann_lambda(1.0) < 1
    vals = [dann_lambda(p) for p in np.linspace(0, 1, 11)]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    assert annealed_lr(0.01, 0.0) == 0.01
    assert annealed_lr(0.01, 1.0) == pytest.approx(0.01 / 11**0.75)
    with pytest.raises(ValueError, match="progress"):
        dann_lambda(1.5)


# ---------------------------------------------------------------------------------------------
# adaptation
# ---------------------------------------------------------------------------------------------
def test_dan_and_dann_beat_source_only_on_shifted_gaussians() -> None:
    acc: dict[str, list[float]] = {"source_only": [], "dan": [], "dann": []}
    for seed in (0, 1, 2):
        xs, ys, xt, yt = shifted_gaussians(seed)
        for method in acc:
            model, history = train_deep_baseline(method, xs, ys, xt, 2, seed=seed, **TOY)
            assert history["source_acc"][-1] > 0.9  # every method fits the source
            acc[method].append(float((predict(model, xt) == yt).mean()))
    mean = {m: float(np.mean(v)) for m, v in acc.items()}
    assert mean["source_only"] < 0.85, acc
    for method in ("dan", "dann"):
        assert mean[method] > 0.85, acc
        assert mean[method] > mean["source_only"] + 0.15, acc
        assert all(a > s for a, s in zip(acc[method], acc["source_only"])), acc


# ---------------------------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------------------------
def test_history_model_and_inference_api() -> None:
    xs, ys, xt, _ = shifted_gaussians(5, n=80)
    model, history = train_deep_baseline("dann", xs, ys, xt, 2, hidden_dims=(16, 8), epochs=3,
                                         batch_size=16, domain_hidden=(8,), bottleneck_dim=4)
    assert isinstance(model, DeepDAModel) and not model.training
    assert set(history) == {"loss", "cls_loss", "transfer_loss", "lambda", "lr", "source_acc"}
    assert all(len(v) == 3 for v in history.values())
    assert 0 < history["lambda"][0] < history["lambda"][-1] < 1
    assert history["lr"][-1] < history["lr"][0] <= 1e-3
    labels = predict(model, xt)
    assert labels.shape == (80,) and labels.dtype == np.int64 and set(labels) <= {0, 1}
    feats = features(model, xt)
    assert feats.shape == (80, 8) and feats.dtype == np.float32 and (feats >= 0).all()  # relu7
    # batch-size independence of inference
    np.testing.assert_allclose(features(model, xt, batch_size=7), feats, rtol=1e-6, atol=1e-6)


def test_training_is_deterministic_given_seed() -> None:
    xs, ys, xt, _ = shifted_gaussians(3, n=60)
    kw = dict(hidden_dims=(16, 16), epochs=2, batch_size=16)
    for method in ("source_only", "dan", "dann"):
        m1, h1 = train_deep_baseline(method, xs, ys, xt, 2, seed=4, domain_hidden=(8,), **kw)
        m2, h2 = train_deep_baseline(method, xs, ys, xt, 2, seed=4, domain_hidden=(8,), **kw)
        assert h1 == h2
        for p1, p2 in zip(m1.parameters(), m2.parameters()):
            assert torch.equal(p1, p2)


def test_source_only_ignores_target_and_dan_reports_mmd() -> None:
    xs, ys, xt, _ = shifted_gaussians(6, n=60)
    kw = dict(hidden_dims=(16, 16), epochs=2, batch_size=16, seed=0)
    m1, h1 = train_deep_baseline("source_only", xs, ys, xt, 2, **kw)
    m2, _ = train_deep_baseline("source_only", xs, ys, xt + 10.0, 2, **kw)
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p1, p2)
    assert h1["transfer_loss"] == [0.0, 0.0]
    _, h_dan = train_deep_baseline("dan", xs, ys, xt, 2, **kw)
    assert all(np.isfinite(h_dan["transfer_loss"])) and h_dan["transfer_loss"][0] != 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [({"method": "coral"}, "method"), ({"num_classes": 1}, "num_classes"), ({"batch_size": 1}, "batch_size"),
     ({"lr": 0.0}, "lr"), ({"mmd_weight": -1.0}, "mmd_weight"), ({"hidden_dims": (8,)}, "hidden_dims"),
     ({"ys_offset": 5}, "ys"), ({"xt_cols": 3}, "xt")],
)
def test_train_validates_inputs(kwargs: dict, match: str) -> None:
    xs, ys, xt, _ = shifted_gaussians(0, n=20)
    method = kwargs.pop("method", "dan")
    num_classes = kwargs.pop("num_classes", 2)
    ys = ys + kwargs.pop("ys_offset", 0)
    if "xt_cols" in kwargs:
        xt = xt[:, : kwargs.pop("xt_cols")]
    kw = {"hidden_dims": (8, 8), "epochs": 1, "batch_size": 8, **kwargs}
    with pytest.raises(ValueError, match=match):
        train_deep_baseline(method, xs, ys, xt, num_classes, **kw)
