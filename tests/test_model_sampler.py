"""Tests of dahash.nn.model (DAHHead) and dahash.train.sampler (batch composition)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dahash.nn.model import DAHHead, HeadOutput
from dahash.train.sampler import KPerClassSampler, target_batches


# ----------------------------------------------------------------------------- model
def test_forward_shapes_and_layer_semantics() -> None:
    torch.manual_seed(0)
    head = DAHHead(12, (32, 24), 8)
    x = torch.randn(10, 12)
    out = head(x)
    assert isinstance(out, HeadOutput)
    assert out.fc6.shape == (10, 32) and out.fc7.shape == (10, 24)
    assert out.fc8.shape == (10, 8) and out.u.shape == (10, 8)
    assert (out.fc6 >= 0).all() and (out.fc7 >= 0).all()  # after ReLU
    assert (out.u.abs() < 1).all()
    # fc8 is the pre-BN linear output; u = tanh(BN(fc8)) with batch statistics in train mode
    assert torch.allclose(out.fc8, out.fc7 @ head.fc8.weight.T + head.fc8.bias, atol=1e-6)
    mu, var = out.fc8.mean(0), out.fc8.var(0, unbiased=False)
    manual = torch.tanh((out.fc8 - mu) / torch.sqrt(var + head.bn.eps) * head.bn.weight + head.bn.bias)
    assert torch.allclose(out.u, manual, atol=1e-5)


def test_no_dropout_and_eval_uses_running_stats() -> None:
    head = DAHHead(6, (16, 16), 4, generator=torch.Generator().manual_seed(0))
    assert not any(isinstance(mod, nn.Dropout) for mod in head.modules())
    x = torch.randn(8, 6)
    assert torch.equal(head(x).u, head(x).u)  # train mode is deterministic (no dropout)
    head.eval()
    one = head(x[:1]).u
    assert torch.allclose(one, head(x).u[:1])  # eval output of an item does not depend on the batch


def test_initialisation() -> None:
    head = DAHHead(400, (300, 500), 256, generator=torch.Generator().manual_seed(0))
    assert head.fc8.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.all(head.fc8.bias == 0)
    assert head.fc6.weight.std().item() == pytest.approx(math.sqrt(2 / 400), rel=0.05)  # He init
    assert head.fc7.weight.std().item() == pytest.approx(math.sqrt(2 / 300), rel=0.05)
    assert torch.all(head.fc6.bias == 0) and torch.all(head.fc7.bias == 0)
    assert torch.all(head.bn.weight == 1) and torch.all(head.bn.bias == 0)
    assert head.pretrained_layers == frozenset()
    again = DAHHead(400, (300, 500), 256, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(head.state_dict().values(), again.state_dict().values()))


def _pretrained(in_dim: int, h1: int, h2: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    return {
        "fc6.weight": torch.randn(h1, in_dim, generator=g),
        "fc6.bias": torch.randn(h1, generator=g),
        "fc7.weight": torch.randn(h2, h1, generator=g),
        "fc7.bias": torch.randn(h2, generator=g),
    }


def test_pretrained_loading_and_param_groups() -> None:
    weights = _pretrained(10, 8, 6)
    head = DAHHead(10, (8, 6), 4, pretrained=weights)
    assert head.pretrained_layers == frozenset({"fc6", "fc7"})
    for key, value in weights.items():
        assert torch.equal(head.state_dict()[key], value)
    groups = head.param_groups(base_lr=1e-3, weight_decay=5e-4)
    by_name = {g["name"]: g for g in groups}
    # the code's weightDecay [wd 0]: biases are never decayed (bias_decay = 0 by default)
    expected = {
        "fc6.weight": (0.1, 5e-4), "fc6.bias": (0.2, 0.0), "fc7.weight": (0.1, 5e-4), "fc7.bias": (0.2, 0.0),
        "fc8.weight": (1.0, 5e-4), "fc8.bias": (2.0, 0.0), "bn.weight": (2.0, 0.0), "bn.bias": (1.0, 0.0),
    }
    assert {k: (g["lr_mult"], g["weight_decay"]) for k, g in by_name.items()} == expected
    decayed = {g["name"]: g["weight_decay"] for g in head.param_groups(1e-3, 5e-4, bias_decay=1.0)}
    assert decayed["fc6.bias"] == decayed["fc8.bias"] == 5e-4 and decayed["bn.bias"] == 0.0
    assert all(g["lr"] == pytest.approx(1e-3 * g["lr_mult"]) for g in groups)
    # every parameter exactly once
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in head.parameters())
    torch.optim.SGD(groups, lr=1e-3, momentum=0.9)  # accepted by SGD


def test_batchnorm_running_statistics_rate_is_the_codes_0_05() -> None:
    """bnorm learningRate [2 1 0.05]: running = 0.95 running + 0.05 batch (PyTorch's default is 0.1)."""
    head = DAHHead(6, (5, 4), 3, generator=torch.Generator().manual_seed(0))
    assert head.bn.momentum == 0.05
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1))
    head.train()
    with torch.no_grad():
        fc8 = head.fc8(torch.relu(head.fc7(torch.relu(head.fc6(x)))))
        head(x)
    assert torch.allclose(head.bn.running_mean, 0.05 * fc8.mean(0), atol=1e-7)
    assert torch.allclose(head.bn.running_var, 0.95 + 0.05 * fc8.var(0, unbiased=True), atol=1e-6)
    assert DAHHead(6, (5, 4), 3, bn_momentum=0.1).bn.momentum == 0.1
    with pytest.raises(ValueError, match="bn_momentum"):
        DAHHead(6, (5, 4), 3, bn_momentum=0.0)


def test_partial_pretrained_and_new_layer_multipliers() -> None:
    weights = {k: v for k, v in _pretrained(10, 8, 6).items() if k.startswith("fc6")}
    head = DAHHead(10, (8, 6), 4, pretrained=weights)
    assert head.pretrained_layers == frozenset({"fc6"})
    mult = {g["name"]: g["lr_mult"] for g in head.param_groups(1.0, 0.0, (0.1, 0.2), (1.0, 2.0))}
    assert (mult["fc6.weight"], mult["fc6.bias"]) == (0.1, 0.2)
    assert (mult["fc7.weight"], mult["fc7.bias"]) == (1.0, 2.0)


def test_model_rejects_bad_input() -> None:
    weights = _pretrained(10, 8, 6)
    with pytest.raises(ValueError, match=r"fc7.weight.*\(6, 8\).*\(5, 8\)"):
        DAHHead(10, (8, 5), 4, pretrained=weights)
    with pytest.raises(ValueError, match="unknown pretrained keys"):
        DAHHead(10, (8, 6), 4, pretrained={"fc8.weight": torch.zeros(4, 6)})
    with pytest.raises(ValueError, match="needs both"):
        DAHHead(10, (8, 6), 4, pretrained={"fc6.weight": weights["fc6.weight"]})
    with pytest.raises(ValueError, match="hash_bits"):
        DAHHead(10, (8, 6), 0)
    with pytest.raises(ValueError, match="hidden_dims"):
        DAHHead(10, (8, 0), 4)
    with pytest.raises(ValueError, match=r"\(N, 10\)"):
        DAHHead(10, (8, 6), 4)(torch.zeros(3, 9))


# ----------------------------------------------------------------------------- KPerClassSampler
def _labels(sizes: list[int], seed: int = 0) -> np.ndarray:
    labels = np.repeat(np.arange(len(sizes)), sizes)
    return np.random.default_rng(seed).permutation(labels)  # classes interleaved in the dataset


def test_sampler_class_order_and_k_per_class() -> None:
    labels = _labels([10, 3, 7])
    sampler = KPerClassSampler(labels, 3, 4, np.random.default_rng(0))
    assert sampler.batch_size == 12
    for _ in range(6):
        batch = sampler.next_batch()
        assert batch.shape == (12,) and batch.dtype == np.int64
        assert labels[batch].tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_sampler_repeats_only_when_needed() -> None:
    sizes, k = [10, 3, 7], 4
    labels = _labels(sizes)
    sampler = KPerClassSampler(labels, 3, k, np.random.default_rng(1))
    n_batches = 35  # multiple of 10/gcd and 7/gcd draws: 140 draws per class
    batches = [sampler.next_batch() for _ in range(n_batches)]
    for c, size in enumerate(sizes):
        stream = np.concatenate([b[c * k : (c + 1) * k] for b in batches])
        members = np.sort(np.flatnonzero(labels == c))
        # the per-class stream is a sequence of whole permutations: each item once per pass
        for start in range(0, (stream.size // size) * size, size):
            assert np.array_equal(np.sort(stream[start : start + size]), members)
        for b in batches:  # no repeats inside a batch unless the class is smaller than k
            chunk = b[c * k : (c + 1) * k]
            if size >= k:
                assert np.unique(chunk).size == k
            else:
                assert set(chunk.tolist()) == set(members.tolist())


@pytest.mark.parametrize("size, k", [(8, 4), (7, 3)])  # wraps at batch boundaries / in the middle of a batch
def test_sampler_redraws_each_class_order_when_it_wraps(size: int, k: int) -> None:
    """Each pass over a class is a fresh shuffle: reusing the previous order on a wrap would repeat one order
    forever. With 8 (7) items there are 40320 (5040) orders: 60 fresh shuffles give 60 distinct ones but for a
    rare collision, and every item leads some pass."""
    labels = _labels([size, 5])
    sampler = KPerClassSampler(labels, 2, k, np.random.default_rng(3))
    passes = 60
    n_batches = -(-passes * size // k)  # enough draws for `passes` whole passes over class 0
    stream = np.concatenate([sampler.next_batch()[:k] for _ in range(n_batches)])[: passes * size]
    orders = [tuple(stream[i : i + size].tolist()) for i in range(0, passes * size, size)]
    members = sorted(np.flatnonzero(labels == 0).tolist())
    assert all(sorted(o) == members for o in orders)  # each pass is a permutation of the class
    assert len(set(orders)) >= passes - 3
    assert {o[0] for o in orders} == set(members)


def test_sampler_is_seeded() -> None:
    labels = _labels([5, 6])
    a = KPerClassSampler(labels, 2, 3, np.random.default_rng(7))
    b = KPerClassSampler(labels, 2, 3, np.random.default_rng(7))
    c = KPerClassSampler(labels, 2, 3, np.random.default_rng(8))
    seq_a = [a.next_batch() for _ in range(5)]
    assert all(np.array_equal(x, b.next_batch()) for x in seq_a)
    assert not all(np.array_equal(x, c.next_batch()) for x in seq_a)


def test_sampler_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="class 1 has no source items"):
        KPerClassSampler(np.array([0, 0, 2, 2]), 3, 2, rng)
    with pytest.raises(ValueError, match="k must be"):
        KPerClassSampler(np.array([0, 1]), 2, 0, rng)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        KPerClassSampler(np.array([0, 1, 2]), 2, 1, rng)
    with pytest.raises(ValueError, match="1-D"):
        KPerClassSampler(np.zeros((2, 2), dtype=int), 1, 1, rng)


# ----------------------------------------------------------------------------- target_batches
def test_target_batches_cover_every_index_once_per_epoch() -> None:
    rng = np.random.default_rng(0)
    batches = target_batches(23, 5, rng)
    assert len(batches) == 5 and all(b.shape == (5,) for b in batches)
    flat = np.concatenate(batches)
    assert np.array_equal(np.sort(flat[:23]), np.arange(23))  # one full pass ...
    assert np.array_equal(flat[23:], flat[:2])  # ... then the last batch is filled by wrapping
    again = target_batches(23, 5, rng)  # next epoch: a new permutation
    assert not np.array_equal(np.concatenate(again), flat)
    assert np.array_equal(np.sort(np.concatenate(again)[:23]), np.arange(23))


def test_target_batches_exact_and_small_sets() -> None:
    batches = target_batches(20, 5, np.random.default_rng(1))
    assert len(batches) == 4
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(20))
    small = target_batches(3, 8, np.random.default_rng(1))
    assert len(small) == 1 and small[0].shape == (8,)
    assert set(small[0].tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="batch_size"):
        target_batches(3, 0, np.random.default_rng(1))
    with pytest.raises(ValueError, match="n_target"):
        target_batches(0, 3, np.random.default_rng(1))
