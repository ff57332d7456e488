"""Tests of dahash.train.head on a small synthetic domain-shift problem (small head, CPU, a few epochs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import dahash.train.head as train_mod
from dahash.train.losses import class_probabilities, linear_mk_mmd, pairwise_hash_loss, target_entropy_loss
from dahash.nn.model import DAHHead, HeadOutput
from dahash.train.head import (
    DAHConfig,
    DAHResult,
    NonFiniteLossError,
    batch_losses,
    encode,
    lr_schedule,
    train_dah,
)

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


pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
        ("sign_zero", 0.0), ("sign_zero", "plus"), ("sign_zero", True), ("hash_diagonal_grad", 1),
        ("divide_by_batch", None),
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
    assert (default.hash_scale, default.similar_weight, default.sign_zero) == (0.5, 10.0, 1.0)
    assert (default.entropy_gate, default.hash_diagonal_grad, default.divide_by_batch) == (True, False, True)
    assert DAHConfig(sign_zero=-1).sign_zero == -1.0
    assert len(default.mmd_scales) == 17


# ----------------------------------------------------------------------------- batch_losses, paper-vs-code options
K, NS = 2, 2 * C  # k per class, source rows of the joint batch
F64 = torch.float64


def _head_output(seed: int = 0, zeros: bool = False) -> HeadOutput:
    """A joint batch of NS source rows (class order, K per class) and NS target rows, as leaf tensors."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * NS
    u = torch.rand(n, 4, generator=g, dtype=F64) * 1.8 - 0.9
    if zeros:
        u[0, 1] = u[NS + 1, 2] = u[3, 0] = 0.0
    layers = [torch.randn(n, h, generator=g, dtype=F64) for h in (6, 5, 4)]
    return HeadOutput(*(t.requires_grad_() for t in (*layers, u)))


YS = torch.arange(C).repeat_interleave(K)


def _losses(cfg: DAHConfig, out: HeadOutput | None = None, gate_open: bool = True) -> dict[str, torch.Tensor]:
    out = _head_output() if out is None else out
    return batch_losses(out, NS, YS, C, cfg, torch.Generator().manual_seed(7), gate_open)


def _grad_u(cfg: DAHConfig, out: HeadOutput | None = None, gate_open: bool = True) -> torch.Tensor:
    out = _head_output() if out is None else out
    (grad,) = torch.autograd.grad(_losses(cfg, out, gate_open)["total"], out.u)
    return grad


def test_batch_losses_keys_components_and_total() -> None:
    cfg = DAHConfig(k_per_class=K, gamma=3.0, beta=0.5, eta=2.0)
    out = _head_output()
    terms = _losses(cfg, out)
    assert set(terms) == {"hash", "quantization", "entropy", "mmd", "total"}
    u_s, u_t = out.u[:NS], out.u[NS:]
    assert terms["hash"].item() == pytest.approx(pairwise_hash_loss(u_s, YS).item(), rel=1e-12)
    assert terms["entropy"].item() == pytest.approx(target_entropy_loss(u_t, u_s, YS, C).item(), rel=1e-12)
    g = torch.Generator().manual_seed(7)  # the same draws, layer by layer
    mmd = sum(linear_mk_mmd(getattr(out, n)[:NS], getattr(out, n)[NS:], cfg.mmd_scales, "sum", g).item()
              for n in ("fc6", "fc7", "fc8"))
    assert terms["mmd"].item() == pytest.approx(mmd, rel=1e-12)
    expected = terms["hash"] + 0.5 * terms["quantization"] + 2.0 * terms["entropy"] + 3.0 * terms["mmd"]
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-12)
    with pytest.raises(ValueError, match="n_source"):
        batch_losses(out, 2 * NS, YS, C, cfg, torch.Generator(), True)


def test_reduction_mean_divides_each_term_by_its_count() -> None:
    out = _head_output()
    summed = _losses(DAHConfig(k_per_class=K), out)
    mean = _losses(DAHConfig(k_per_class=K, reduction="mean"), out)
    assert mean["hash"].item() == pytest.approx(summed["hash"].item() / NS**2, rel=1e-12)
    assert mean["quantization"].item() == pytest.approx(summed["quantization"].item() / NS, rel=1e-12)  # ns == nt
    assert mean["entropy"].item() == pytest.approx(summed["entropy"].item() / NS, rel=1e-12)
    assert mean["mmd"].item() == pytest.approx(summed["mmd"].item() / (NS // 2), rel=1e-12)


def test_hash_scale_and_similar_weight_change_the_hash_term_as_written() -> None:
    out = _head_output()
    u_s = out.u[:NS].detach()
    theta = u_s @ u_s.T  # scale 1
    same = YS[:, None] == YS[None, :]
    base = _losses(DAHConfig(k_per_class=K), out)["hash"].item()
    scaled = _losses(DAHConfig(k_per_class=K, hash_scale=1.0), out)["hash"].item()
    assert scaled == pytest.approx(pairwise_hash_loss(u_s, YS, 10.0, 1.0).item(), rel=1e-12)
    assert scaled != pytest.approx(base)
    # W = 10 vs 1 on like pairs: the difference is 9 * sum_like (softplus(theta/2) - theta/2)
    unweighted = _losses(DAHConfig(k_per_class=K, similar_weight=1.0), out)["hash"].item()
    like = (torch.nn.functional.softplus(0.5 * theta) - 0.5 * theta)[same].sum().item()
    assert base - unweighted == pytest.approx(9.0 * like, rel=1e-10)


def test_sign_zero_flips_the_quantization_gradient_at_exact_zeros() -> None:
    out = _head_output(zeros=True)
    plus = _grad_u(DAHConfig(k_per_class=K, beta=1.5), out)
    minus = _grad_u(DAHConfig(k_per_class=K, beta=1.5, sign_zero=-1.0), out)
    zeros = out.u.detach() == 0
    assert int(zeros.sum()) == 3
    # d/du beta (u - sign(u))^2 at 0 is -2 beta sign(0): +3 for sign(0) = -1, -3 for +1
    assert torch.allclose((minus - plus)[zeros], torch.full((3,), 4 * 1.5, dtype=F64))
    assert torch.equal(minus[~zeros], plus[~zeros])


def test_hash_diagonal_grad_adds_exactly_the_diagonal_derivative() -> None:
    out = _head_output()
    code = _grad_u(DAHConfig(k_per_class=K), out)
    paper = _grad_u(DAHConfig(k_per_class=K, hash_diagonal_grad=True), out)
    assert _losses(DAHConfig(k_per_class=K, hash_diagonal_grad=True), out)["total"].item() == pytest.approx(
        _losses(DAHConfig(k_per_class=K), out)["total"].item(), rel=1e-12)  # same value
    u_s = out.u[:NS].detach()
    theta_aa = 0.5 * (u_s**2).sum(1, keepdim=True)  # same class: W = 10, S = 1
    diag = 10.0 * (torch.sigmoid(theta_aa) - 1.0) * 2 * 0.5 * u_s
    assert torch.allclose(paper[:NS] - code[:NS], diag, atol=1e-12)
    assert torch.allclose(paper[NS:], code[NS:], atol=1e-14)  # target rows are not in the hash loss


def test_entropy_gate_closed_and_eta_zero_skip_the_entropy_term(monkeypatch) -> None:
    out = _head_output()
    full = _losses(DAHConfig(k_per_class=K), out)
    closed = _losses(DAHConfig(k_per_class=K), out, gate_open=False)
    assert closed["entropy"].item() == 0.0 and full["entropy"].item() > 0
    assert closed["total"].item() == pytest.approx(full["total"].item() - full["entropy"].item(), rel=1e-12)

    def boom(*args, **kwargs):
        raise AssertionError("the entropy term must not be computed when eta == 0")

    grad_closed = _grad_u(DAHConfig(k_per_class=K), out, gate_open=False)
    monkeypatch.setattr(train_mod, "target_entropy_loss", boom)
    dah_e = DAHConfig(k_per_class=K, eta=0.0)
    terms = _losses(dah_e, out)
    assert terms["entropy"].item() == 0.0
    assert terms["total"].item() == pytest.approx(closed["total"].item(), rel=1e-12)
    assert torch.allclose(_grad_u(dah_e, out), grad_closed, atol=1e-14)


def test_eta_zero_trains_dah_e_and_logs_zero_entropy(problem, monkeypatch) -> None:
    xs, ys, xt, _ = problem
    monkeypatch.setattr(train_mod, "target_entropy_loss", lambda *a, **k: 1 / 0)  # would raise if called
    res = train_dah(xs, ys, xt, C, _small(epochs=2, eta=0.0), seed=0)
    for h in res.history:
        assert h["entropy"] == 0.0
        assert h["total"] == pytest.approx(h["hash"] + h["quantization"] + 10.0 * h["mmd"], rel=1e-5)


def test_gamma_scales_only_the_mmd_term() -> None:
    out = _head_output()
    lo = _losses(DAHConfig(k_per_class=K, gamma=1.0), out)
    hi = _losses(DAHConfig(k_per_class=K, gamma=5e3), out)
    assert lo["mmd"].item() == hi["mmd"].item() != 0.0
    assert hi["total"].item() - lo["total"].item() == pytest.approx((5e3 - 1.0) * lo["mmd"].item(), rel=1e-9)
    g_lo = torch.autograd.grad(lo["total"], out.fc7)[0]
    g_hi = torch.autograd.grad(hi["total"], out.fc7)[0]  # fc7 only feeds the MMD term
    assert torch.allclose(g_hi, 5e3 * g_lo, rtol=1e-10, atol=1e-14)


def test_entropy_gate_off_equals_on_with_the_k_per_class_sampler(problem) -> None:
    xs, ys, xt, _ = problem
    on = train_dah(xs, ys, xt, C, _small(epochs=1), seed=2)
    off = train_dah(xs, ys, xt, C, _small(epochs=1, entropy_gate=False), seed=2)
    assert on.history == off.history  # every sampler batch is class-ordered, so the gate is always open


def test_different_seeds_give_different_but_valid_results(problem) -> None:
    xs, ys, xt, _ = problem
    cfg = _small(epochs=2)
    runs = {seed: train_dah(xs, ys, xt, C, cfg, seed=seed) for seed in (0, 1, 2)}
    for res in runs.values():
        assert [h["epoch"] for h in res.history] == [1, 2]
        assert all(np.isfinite([h[k] for k in ("hash", "quantization", "entropy", "mmd", "total")]).all()
                   for h in res.history)
        assert res.history[-1]["total"] < res.history[0]["total"]
        codes = encode(res.model, xt)
        assert np.isfinite(codes).all() and np.abs(codes).max() <= 1.0
    weights = [runs[s].model.fc8.weight.detach() for s in (0, 1, 2)]
    assert not torch.equal(weights[0], weights[1]) and not torch.equal(weights[1], weights[2])
    assert len({runs[s].history[0]["total"] for s in (0, 1, 2)}) == 3
