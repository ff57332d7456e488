"""The authors' digits CNN (cnn_digit_dah_init.m): grouped fc3 against a direct loop over groups, layer list, init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dahash.nn.backbones.smallcnn import DIGITS_FC3_GROUPS, DIGITS_INIT_STD, DIGITS_LAYERS, SmallCNN


def _fc3_loop(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int) -> torch.Tensor:
    """MatConvNet's vl_nnconv with filters h x w x (C / groups) x O on C channels, written as a loop: output o of
    group g = o // (O / groups) is the sum over the group's input channels c' of w[o, c'] * x[5 g + c'] + b[o]."""
    n, c, h, w = x.shape
    out_ch, depth = weight.shape[0], weight.shape[1]
    per_group = out_ch // groups
    out = torch.empty(n, out_ch, dtype=x.dtype)
    for o in range(out_ch):
        g = o // per_group
        patch = x[:, g * depth:(g + 1) * depth]  # (n, depth, h, w): the kernel covers the whole 4 x 4 map
        out[:, o] = (patch * weight[o]).sum(dim=(1, 2, 3)) + bias[o]
    return out


def test_fc3_is_a_grouped_convolution_as_a_loop_over_groups() -> None:
    net = SmallCNN(1, 500, 28, generator=torch.Generator().manual_seed(0))
    assert net.fc3.groups == DIGITS_FC3_GROUPS == 10 and tuple(net.fc3.weight.shape) == (500, 5, 4, 4)
    with torch.no_grad():
        net.fc3.bias.normal_(generator=torch.Generator().manual_seed(1))
        x = torch.randn(3, 50, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
        got = net.fc3.double()(x).flatten(1)
        want = _fc3_loop(x, net.fc3.weight, net.fc3.bias, 10)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # a channel outside a group does not reach it: perturbing input channel 7 (group 1) moves outputs 50..99 only
    x2 = x.clone()
    x2[:, 7] += 1.0
    with torch.no_grad():
        diff = (net.fc3(x2).flatten(1) - got).abs().amax(dim=0)
    assert torch.all(diff[50:100] > 0) and torch.all(diff[:50] == 0) and torch.all(diff[100:] == 0)


def test_layer_list_and_gaussian_init_as_the_authors() -> None:
    net = SmallCNN(1, 500, 28, generator=torch.Generator().manual_seed(0))
    convs = {"conv1": net.conv1, "conv2": net.conv2, "fc3": net.fc3}
    for name, shape in DIGITS_LAYERS:
        if shape is None:
            continue
        h, w, depth, out = shape  # MatConvNet: h x w x in x out; torch: out x in/groups x h x w
        assert tuple(convs[name].weight.shape) == (out, depth, h, w), name
        assert torch.count_nonzero(convs[name].bias) == 0
    assert [n for n, _ in DIGITS_LAYERS] == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "fc3", "relu3"]
    std = torch.cat([m.weight.flatten() for m in convs.values()]).std().item()
    assert std == pytest.approx(DIGITS_INIT_STD, rel=0.05)
    again = SmallCNN(1, 500, 28, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.fc3.weight, net.fc3.weight)  # seeded


def test_bad_groups_refused() -> None:
    with pytest.raises(ValueError, match="fc3_groups"):
        SmallCNN(1, 32, 28)  # 32 outputs cannot be split into 10 groups
    SmallCNN(1, 32, 28, fc3_groups=1)


def test_authors_digits_head_has_no_fc6_fc7() -> None:
    """hidden_dims = (): relu3 -> fc4 (the hash layer) -> BN -> tanh; fc6/fc7 of the output are the head's input
    (where lmmd3 sits), fc8 the pre-BN fc4 output (lmmd4)."""
    from dahash.nn.model import DAHHead
    from dahash.train.head import DAHConfig

    g = torch.Generator().manual_seed(0)
    trunk, head = SmallCNN(1, 500, 28, generator=g), DAHHead(500, (), 10, generator=g)
    x = torch.randn(4, 1, 28, 28, generator=g)
    feats = trunk(x)
    out = head(feats)
    assert out.fc7 is feats and out.fc6 is feats and out.fc8.shape == (4, 10) and out.u.shape == (4, 10)
    torch.testing.assert_close(out.fc8, feats @ head.fc8.weight.T + head.fc8.bias)
    assert [p["name"] for p in head.param_groups(1e-4, 5e-4, bias_decay=1.0)] == [
        "fc8.weight", "fc8.bias", "bn.weight", "bn.bias"]
    assert head.widths == {"fc6": 500, "fc7": 500, "fc8": 10, "u": 10}
    assert not hasattr(head, "fc6")
    DAHConfig(hidden_dims=(), mmd_layers=("fc7", "fc8"))
    with pytest.raises(ValueError, match="one tensor"):
        DAHConfig(hidden_dims=(), mmd_layers=("fc6", "fc7", "fc8"))
    with pytest.raises(ValueError, match="no fc6/fc7"):
        DAHHead(500, (), 10, pretrained={"fc6.weight": torch.zeros(4, 500), "fc6.bias": torch.zeros(4)})


def test_export_reads_a_head_without_fc6_fc7() -> None:
    from dahash.codes.export import _head_spec
    from dahash.nn.model import DAHHead

    state = DAHHead(500, (), 10).state_dict()
    spec = _head_spec({"bn_momentum": 0.05}, state, __import__("pathlib").Path("model.pt"))
    assert spec["in_dim"] == 500 and spec["hidden_dims"] == [] and spec["hash_bits"] == 10
