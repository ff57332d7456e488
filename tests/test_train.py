"""Tests of dahash.train on a small synthetic domain-shift problem (small head, CPU, a few epochs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dahash.losses import class_probabilities
from dahash.model import DAHHead
from dahash.train import DAHConfig, DAHResult, NonFiniteLossError, encode, lr_schedule, train_dah

C = 3


def _problem(seed: int = 0, f: int = 20, ns_per: int = 30, nt_per: int = 40, shift: float = 1.5):
    """Three Gaussian clusters (means of norm 4, unit noise); target = source clusters + a shift."""
    g = np.random.default_rng(seed)
    mu = g.normal(size=(C, f))
    mu = 4.0 * mu / np.linalg.norm(mu, axis=1, keepdims=True)
    sh = g.normal(size=f)
    sh = shift * sh / np.linalg.norm(sh)
    ys = np.repeat(np.arange(C), ns_per)
    yt = np.repeat(np.arange(C), nt_per)
    xs = mu[ys] + g.normal(size=(ys.size, f))
    xt = mu[yt] + sh + g.normal(size=(yt.size, f))
    return (torch.tensor(xs, dtype=torch.float32), torch.tensor(ys),
            torch.tensor(xt, dtype=torch.float32), yt)


def _small(**overrides) -> DAHConfig:
    # the step sizes below were chosen for un-divided gradients (divide_by_batch=False)
    base = dict(hash_bits=16, hidden_dims=(64, 64), epochs=4, lr_start=1e-3, lr_end=1e-4, gamma=10.0,
                divide_by_batch=False)
    base.update(overrides)
    return DAHConfig(**base)


@pytest.fixture(scope="module")
def problem():
    return _problem()


@pytest.fixture(scope="module")
def trained(problem) -> DAHResult:
    xs, ys, xt, _ = problem
    return train_dah(xs, ys, xt, C, _small(epochs=12), seed=0)


def test_training_decreases_loss_and_classifies_target(problem, trained) -> None:
    xs, ys, xt, yt = problem
    hist = trained.history
    assert len(hist) == 12
    assert [h["epoch"] for h in hist] == list(range(1, 13))
    assert hist[-1]["total"] < 0.5 * hist[0]["total"]
    assert hist[-1]["hash"] < hist[0]["hash"]
    assert hist[-1]["quantization"] < hist[0]["quantization"]
    assert all(h["entropy"] > 0 for h in hist)  # k-per-class batches always open the entropy gate
    for h in hist:  # total is the weighted sum of the logged components
        expected = h["hash"] + 1.0 * h["quantization"] + 1.0 * h["entropy"] + 10.0 * h["mmd"]
        assert h["total"] == pytest.approx(expected, rel=1e-5, abs=1e-4)
    u_s = torch.from_numpy(encode(trained.model, xs))
    u_t = torch.from_numpy(encode(trained.model, xt))
    pred = class_probabilities(u_t, u_s, ys, C).argmax(1).numpy()
    assert (pred == yt).mean() > 0.8  # chance is 1/3


def test_history_lr_follows_logspace_schedule(trained) -> None:
    expected = np.logspace(np.log10(1e-3), np.log10(1e-4), 12)
    assert [h["lr"] for h in trained.history] == pytest.approx(expected.tolist())
    assert lr_schedule(1e-4, 1e-5, 300)[[0, -1]].tolist() == pytest.approx([1e-4, 1e-5])
    assert set(trained.history[0]) == {"epoch", "lr", "hash", "quantization", "entropy", "mmd", "total"}


def test_same_seed_is_bit_identical_and_global_rng_untouched(problem) -> None:
    xs, ys, xt, _ = problem
    cfg = _small(epochs=3, gamma=5e3)
    state = torch.get_rng_state()
    seen: list[dict] = []
    a = train_dah(xs, ys, xt, C, cfg, seed=3, on_epoch=seen.append)
    assert torch.equal(state, torch.get_rng_state())
    b = train_dah(xs, ys, xt, C, cfg, seed=3)
    assert a.history == b.history
    assert seen == a.history
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    c = train_dah(xs, ys, xt, C, cfg, seed=4)
    assert c.history != a.history
    assert not torch.equal(c.model.state_dict()["fc8.weight"], sa["fc8.weight"])


def test_divide_by_batch_equals_scaling_the_learning_rate(problem) -> None:
    xs, ys, xt, _ = problem
    batch = 2 * 5 * C
    cfg = _small(epochs=2, weight_decay=0.0)
    divided = train_dah(xs, ys, xt, C, dataclasses.replace(cfg, divide_by_batch=True), seed=1)
    scaled = train_dah(
        xs, ys, xt, C, dataclasses.replace(cfg, lr_start=1e-3 / batch, lr_end=1e-4 / batch), seed=1
    )
    for k, v in divided.model.state_dict().items():
        assert torch.allclose(v.float(), scaled.model.state_dict()[k].float(), rtol=1e-4, atol=1e-6), k
    plain = train_dah(xs, ys, xt, C, cfg, seed=1)
    assert not torch.allclose(plain.model.fc8.weight, divided.model.fc8.weight)


def test_pretrained_layers_are_loaded(problem) -> None:
    xs, ys, xt, _ = problem
    g = torch.Generator().manual_seed(0)
    weights = {"fc6.weight": 0.1 * torch.randn(64, 20, generator=g), "fc6.bias": torch.zeros(64)}
    cfg = _small(epochs=1, lr_start=1e-12, lr_end=1e-12)
    res = train_dah(xs, ys, xt, C, cfg, pretrained=weights)
    assert res.model.pretrained_layers == frozenset({"fc6"})
    assert torch.allclose(res.model.fc6.weight, weights["fc6.weight"], atol=1e-6)


def test_non_finite_loss_raises_with_epoch_and_component(problem) -> None:
    xs, ys, xt, _ = problem
    bad = xs.clone()
    bad[:] = float("nan")
    with pytest.raises(NonFiniteLossError, match="non-finite hash loss .* epoch 1, batch 1") as info:
        train_dah(bad, ys, xt, C, _small(epochs=1))
    assert info.value.epoch == 1 and info.value.component == "hash"


def test_train_rejects_bad_data(problem) -> None:
    xs, ys, xt, _ = problem
    with pytest.raises(ValueError, match="feature dimension"):
        train_dah(xs, ys, xt[:, :5], C, _small(epochs=1))
    with pytest.raises(ValueError, match="ys must have shape"):
        train_dah(xs, ys[:-1], xt, C, _small(epochs=1))
    with pytest.raises(ValueError, match="class 2 has no source items"):
        train_dah(xs[ys < 2], ys[ys < 2], xt, C, _small(epochs=1))


def test_encode_eval_mode_float32_and_batch_independent(trained, problem) -> None:
    _, _, xt, _ = problem
    model: DAHHead = trained.model
    model.train()
    full = encode(model, xt)
    assert full.dtype == np.float32 and full.shape == (xt.shape[0], 16)
    assert model.training  # mode restored
    chunked = encode(model, xt, batch_size=7)
    np.testing.assert_allclose(chunked, full, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encode(model, xt[:1]), full[:1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        encode(model, xt, batch_size=0)
    with pytest.raises(ValueError, match=r"\(N, 20\)"):
        encode(model, xt[:, :3])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("hash_bits", 0), ("k_per_class", 0), ("epochs", 0), ("epochs", 2.5), ("hidden_dims", (64,)),
        ("hidden_dims", (64, 0)), ("lr_start", 0.0), ("lr_end", -1e-5), ("momentum", 1.0),
        ("weight_decay", -1.0), ("similar_weight", 0.0), ("hash_scale", 0.0), ("beta", -1.0),
        ("eta", float("nan")), ("gamma", -5.0), ("mmd_layers", ("fc9",)), ("mmd_layers", ("fc6", "fc6")),
        ("mmd_layers", "fc6"), ("mmd_scale_exponents", (3, -3)), ("reduction", "max"),
        ("entropy_gate", "yes"), ("pretrained_lr_mult", (0.1,)), ("new_lr_mult", (-1.0, 2.0)),
    ],
)
def test_config_validation_names_the_field(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        DAHConfig(**{field: value})


def test_config_defaults_and_normalisation() -> None:
    cfg = DAHConfig(hidden_dims=[32, 16], mmd_layers=["fc7", "fc8"], mmd_scale_exponents=[-1, 1])
    assert cfg.hidden_dims == (32, 16) and cfg.mmd_layers == ("fc7", "fc8")
    assert cfg.mmd_scales == (0.5, 1.0, 2.0)
    default = DAHConfig()
    assert (default.epochs, default.gamma, default.k_per_class, default.reduction) == (300, 5e3, 5, "sum")
    assert len(default.mmd_scales) == 17
