"""The comparison methods fine-tuned end to end (dahash.baselines.objectives) in DAH's fine-tuning loop
(dahash.train.finetune.train_finetune): each loss against a hand-computed case and autograd, DANN's gradient
reversal and lambda schedule, the loop (source batches equal to DAH's, the target never loaded by the methods
that do not read it, the objective's parameters trained) and a resume after a real SIGKILL, bit-identical."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import CHILD_SIGNAL_SRC, assert_imports_checkout, checkout_env
from dahash.baselines.deep import DeepDAModel, DeepOutput, dann_lambda, grad_reverse
from dahash.baselines.objectives import ClassifierObjective, DPSHObjective, make_objective
from dahash.train.checkpoint import list_checkpoints
from dahash.train.finetune import train_dah_finetune, train_finetune
from dahash.train.objectives import Batch, DAHObjective
from test_finetune_checkpoint import PROBLEM_SRC, TRANSFORM, make_config, make_images, make_models

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(ys, progress: float = 0.0, index=None, seed: int = 0) -> Batch:
    ys = torch.as_tensor(ys)
    idx = torch.arange(len(ys)) if index is None else torch.as_tensor(index)
    return Batch(n_source=len(ys), ys=ys, source_index=idx, epoch=1, progress=progress,
                 generator=torch.Generator().manual_seed(seed), gate_open=True)


def _out(fc6, fc7, logits) -> DeepOutput:
    return DeepOutput(fc6=fc6, fc7=fc7, bottleneck=None, logits=logits)


# ----------------------------------------------------------------------------- source-only: cross-entropy
def test_source_only_is_the_mean_cross_entropy_of_the_source_rows() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    obj = ClassifierObjective("source_only", 4)
    assert not obj.reads_target and obj.names == ("cls", "total")
    terms = obj.losses(_out(torch.zeros(2, 3), torch.zeros(2, 4), logits), _batch([0, 1]))
    # by hand: -log softmax([2, 0])[0] = log(1 + e^-2); -log softmax([0, 1])[1] = log(1 + e^-1)
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2
    assert terms["cls"].item() == pytest.approx(expected, rel=1e-12) and terms["total"] is terms["loss"]
    terms["loss"].backward()
    p = torch.softmax(logits.detach(), 1)  # d/dlogits mean CE = (p - onehot) / n
    assert torch.allclose(logits.grad, (p - torch.eye(2, dtype=torch.float64)) / 2)
    assert torch.autograd.gradcheck(lambda z: obj.losses(_out(z, z, z), _batch([0, 1]))["loss"],
                                    (torch.randn(2, 2, dtype=torch.float64, requires_grad=True),))


# ----------------------------------------------------------------------------- DAN: CE + MK-MMD on fc6, fc7, fc8
def test_dan_adds_the_linear_mk_mmd_of_fc6_fc7_fc8_by_hand() -> None:
    # 2 source + 2 target rows; the source rows equal (a), the target rows equal (b): whatever the random
    # halves, the one tuple gives k(a,a) - k(a,b) - k(a,b) + k(b,b) = 2 - 2 k(a,b); the median of the four
    # squared distances {0, D, D, 0} is D/2, so with the single scale q = 1: k(a,b) = exp(-D / (D/2)) = e^-2.
    obj = ClassifierObjective("dan", 3, mmd_weight=0.5, mmd_scales=(1.0,))
    assert obj.reads_target and obj.names == ("cls", "mmd", "total")
    layer = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    logits = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    terms = obj.losses(_out(layer, layer, logits), _batch([0, 1]))
    per_layer = 2 - 2 * math.exp(-2)
    assert terms["mmd"].item() == pytest.approx(3 * per_layer, rel=1e-12)
    cls = (math.log(1 + math.exp(-3)) + math.log(1 + math.exp(3))) / 2  # source rows' labels 0 and 1
    assert terms["cls"].item() == pytest.approx(cls, rel=1e-12)
    assert terms["total"].item() == pytest.approx(cls + 0.5 * 3 * per_layer, rel=1e-12)


def test_dan_gradient_is_autograd_of_its_value_and_pulls_the_domains_together(monkeypatch) -> None:
    import dahash.train.losses as losses

    # the median bandwidth is a constant for the gradient (as the authors' code): fix it so that the value is
    # the function the gradient belongs to
    monkeypatch.setattr(losses, "median_bandwidth", lambda d2: torch.tensor(4.0, dtype=d2.dtype))
    obj = ClassifierObjective("dan", 3, mmd_scales=(0.5, 1.0, 2.0))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, dtype=torch.float64, generator=g)
    x[4:] += 3.0  # target rows shifted
    x.requires_grad_(True)

    def value(z):  # fresh generator per call: the same halves every evaluation
        return obj.losses(_out(z, z, z[:, :2]), _batch([0, 1, 0, 1], seed=5))["loss"]

    assert torch.autograd.gradcheck(value, (x,))
    value(x).backward()
    # the MMD's gradient moves source and target means towards each other
    step = x.detach() - 0.1 * x.grad
    gap = lambda z: (z[:4].mean(0) - z[4:].mean(0)).norm()  # noqa: E731
    assert gap(step) < gap(x.detach())


# ----------------------------------------------------------------------------- DANN: gradient reversal + lambda
def test_gradient_reversal_is_identity_forward_and_minus_lambda_backward() -> None:
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    y = grad_reverse(x, 0.25)
    assert torch.equal(y, x.detach())
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-0.25, -0.5, -0.75]))
    with pytest.raises(ValueError, match="coeff"):
        grad_reverse(x, -1.0)


def test_dann_lambda_follows_ganins_schedule() -> None:
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + math.exp(-5)) - 1, rel=1e-15)  # 0.98661
    assert dann_lambda(1.0) == pytest.approx(0.9999092, abs=1e-7)
    values = [dann_lambda(p) for p in np.linspace(0, 1, 11)]
    assert all(a < b for a, b in zip(values, values[1:]))
    with pytest.raises(ValueError, match="progress"):
        dann_lambda(1.5)


def test_dann_loss_by_hand_and_its_gradients_reversed_into_the_features() -> None:
    obj = ClassifierObjective("dann", 2, dann_weight=2.0, domain_hidden=()).double()
    lin = obj.domain[0]
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -1.0]]))
        lin.bias.fill_(0.5)
    fc7 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    logits = torch.zeros(4, 2, dtype=torch.float64, requires_grad=True)
    p = 0.3
    terms = obj.losses(_out(fc7, fc7, logits), _batch([0, 1], progress=p))
    lam = 2.0 * (2 / (1 + math.exp(-10 * p)) - 1)
    assert terms["lambda"].item() == pytest.approx(lam, rel=1e-12)
    # domain logits w.fc7 + b = 1.5, -0.5 (source, d = 1); 1.5, 0.5 (target, d = 0); BCE by hand
    sp = lambda z: math.log1p(math.exp(z))  # noqa: E731 - softplus
    bce = (sp(-1.5) + sp(0.5) + sp(1.5) + sp(0.5)) / 4
    assert terms["domain"].item() == pytest.approx(bce, rel=1e-12)
    assert terms["cls"].item() == pytest.approx(math.log(2), rel=1e-12)
    assert terms["total"].item() == pytest.approx(math.log(2) + bce, rel=1e-12)
    terms["loss"].backward()
    # autograd of the plain BCE (no reversal) w.r.t. fc7 and w.r.t. the domain classifier
    fc7b = fc7.detach().clone().requires_grad_(True)
    w, b = lin.weight.detach().clone().requires_grad_(True), lin.bias.detach().clone().requires_grad_(True)
    plain = F.binary_cross_entropy_with_logits((fc7b @ w.T + b).squeeze(1),
                                               torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    plain.backward()
    assert torch.allclose(fc7.grad, -lam * fc7b.grad)  # the features get the REVERSED, lambda-scaled gradient
    assert torch.allclose(lin.weight.grad, w.grad) and torch.allclose(lin.bias.grad, b.grad)  # G_d: plain descent


# ----------------------------------------------------------------------------- DPSH (NoDA, SuH)
def test_dpsh_objective_by_hand_with_its_memory() -> None:
    obj = DPSHObjective([0, 1, 0], bits=1, eta=2.0)
    assert not obj.reads_target
    with torch.no_grad():
        obj.memory[2] = 2.0  # item 2's output stored earlier
    u = torch.tensor([[1.0], [-0.5]], dtype=torch.float32, requires_grad=True)
    terms = obj.losses(_out(u, u, u), _batch([0, 1], index=[0, 1]))
    assert torch.equal(obj.memory, torch.tensor([[1.0], [-0.5], [2.0]]))  # the batch's rows overwritten
    # Theta_ij = u_i U_j / 2; s = 1 for same labels (0 with 0 and 2; 1 with 1)
    u_, mem, lab = [1.0, -0.5], [1.0, -0.5, 2.0], [0, 1, 0]
    pair = sum(math.log1p(math.exp(0.5 * a * b)) - (la == lb) * 0.5 * a * b
               for a, la in zip(u_, [0, 1]) for b, lb in zip(mem, lab))
    quant = (1 - 1.0) ** 2 + (-1 + 0.5) ** 2
    assert terms["pair"].item() == pytest.approx(pair, rel=1e-6)
    assert terms["quantization"].item() == pytest.approx(quant, rel=1e-6)
    assert terms["total"].item() == pytest.approx((pair + 2.0 * quant) / (2 * 3), rel=1e-6)


def test_dpsh_gradient_is_autograd_of_its_value() -> None:
    obj = DPSHObjective([0, 1, 0, 1, 2], bits=3, eta=1.5).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        obj.memory.copy_(torch.randn(5, 3, generator=g, dtype=torch.float64))
    u = torch.randn(2, 3, dtype=torch.float64, generator=g, requires_grad=True)
    # the memory holds the batch's outputs as constants: compare with the formula written with U fixed
    total = obj.losses(_out(u, u, u), _batch([1, 2], index=[3, 4]))["loss"]
    total.backward()
    mem = obj.memory.clone()
    ub = u.detach().clone().requires_grad_(True)
    theta = 0.5 * ub @ mem.T
    s = (torch.tensor([1, 2])[:, None] == torch.tensor([0, 1, 0, 1, 2])[None, :]).double()
    ref = ((F.softplus(theta) - s * theta).sum() + 1.5 * (torch.sign(ub.detach()) - ub).pow(2).sum()) / (2 * 5)
    ref.backward()
    assert total.item() == pytest.approx(ref.item(), rel=1e-12) and torch.allclose(u.grad, ub.grad)


def test_make_objective_names_unknown_options() -> None:
    with pytest.raises(ValueError, match=r"dan \(fine-tuned\): unknown option\(s\) \['eta'\]"):
        make_objective("dan", num_classes=2, bits=8, feature_dim=4, eta=1.0)
    with pytest.raises(ValueError, match="cannot be fine-tuned"):
        make_objective("itq", num_classes=2, bits=8, feature_dim=4)
    obj, width = make_objective("suh", num_classes=2, bits=8, feature_dim=4, labels=np.array([0, 1, 1]), eta=3.0)
    assert isinstance(obj, DPSHObjective) and width == 8 and obj.eta == 3.0


# ----------------------------------------------------------------------------- the loop
def _comparison_models(method: str, ys, seed: int = 0):
    trunk, _ = make_models(seed)
    obj, width = make_objective(method, num_classes=2, bits=8, feature_dim=16, labels=ys,
                                generator=torch.Generator().manual_seed(7), **({"domain_hidden": [8]}
                                                                             if method == "dann" else {}))
    head = DeepDAModel(24, width, (16, 16), generator=torch.Generator().manual_seed(seed))
    return trunk, head, obj


def _train(method, source, ys, target, epochs, **kw):
    trunk, head, obj = _comparison_models(method, ys)
    return train_finetune(source, ys, target, 2, make_config(epochs), trunk=trunk, head=head, objective=obj,
                          trunk_pretrained=False, train_transform=TRANSFORM, seed=3, **kw), obj


@pytest.fixture(scope="module")
def problem():
    return make_images()


def test_dah_through_the_objective_interface_equals_train_dah_finetune(problem) -> None:
    source, ys, target = problem
    trunk, head = make_models(0)
    a = train_dah_finetune(source, ys, target, 2, make_config(2), trunk=trunk, head=head, trunk_pretrained=False,
                           train_transform=TRANSFORM, seed=3)
    trunk, head = make_models(0)
    b = train_finetune(source, ys, target, 2, make_config(2), trunk=trunk, head=head,
                       objective=DAHObjective(make_config(2), 2), trunk_pretrained=False, train_transform=TRANSFORM,
                       seed=3)
    assert a.history == b.history
    assert all(torch.equal(v, b.head.state_dict()[k]) for k, v in a.head.state_dict().items())


@pytest.mark.parametrize("method", ["source_only", "noda", "suh"])
def test_methods_that_do_not_read_the_target_never_load_it(problem, method: str, tmp_path: Path) -> None:
    source, ys, _ = problem
    absent = [tmp_path / f"missing-{i}.png" for i in range(12)]  # loading any would raise
    res, obj = _train(method, source, ys, absent, 2)
    assert [r["epoch"] for r in res.history] == [1, 2] and set(obj.names) <= set(res.history[0])
    assert len(res.history) == 2 and all(math.isfinite(v) for r in res.history for v in r.values())
    if method != "source_only":  # DPSH's memory holds every source item's output by now
        assert bool((obj.memory.abs().sum(1) > 0).all())


def test_dan_and_dann_train_and_dann_trains_its_domain_classifier(problem) -> None:
    source, ys, target = problem
    res, _ = _train("dan", source, ys, target, 2)
    assert res.history[0]["mmd"] != 0.0 and "domain" not in res.history[0]
    trunk, head, obj = _comparison_models("dann", ys)
    before = [p.detach().clone() for p in obj.parameters()]
    res = train_finetune(source, ys, target, 2, make_config(3), trunk=trunk, head=head, objective=obj,
                         trunk_pretrained=False, train_transform=TRANSFORM, seed=3)
    assert all(not torch.equal(a, b) for a, b in zip(before, obj.parameters()))
    lams = [r["lambda"] for r in res.history]  # epoch means of Ganin's lambda: rising with the progress
    assert lams[0] < lams[1] < lams[2] < 1.0
    # first batch: p = 0 -> lambda 0; the epoch mean of 3 batches at p = 0, 1/9, 2/9:
    assert lams[0] == pytest.approx(np.mean([dann_lambda(p) for p in (0, 1 / 9, 2 / 9)]), rel=1e-6)


# ----------------------------------------------------------------------------- a real SIGKILL
EPOCHS = 5
SCRIPT = PROBLEM_SRC + CHILD_SIGNAL_SRC + textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import dahash
    from dahash.baselines.deep import DeepDAModel
    from dahash.baselines.objectives import make_objective
    from dahash.train.finetune import train_finetune

    torch.set_num_threads(1)
    out, images, ckpt, mode, method = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5]

    on_epoch = kill_after_epoch(mode, ckpt)  # signals after epoch 2's checkpoint, then waits for the SIGKILL

    def models():
        trunk, _ = make_models(0)
        obj, width = make_objective(method, num_classes=2, bits=8, feature_dim=16, labels=ys,
                                    generator=torch.Generator().manual_seed(7))
        return trunk, DeepDAModel(24, width, (16, 16), generator=torch.Generator().manual_seed(0)), obj

    source, ys, target = make_images(images)
    trunk, head, obj = models()
    kw = dict(trunk=trunk, head=head, objective=obj, trunk_pretrained=False, train_transform=TRANSFORM, seed=11)
    if mode == "plain":
        res = train_finetune(source, ys, target, 2, make_config(EPOCHS), **kw)
    else:
        res = train_finetune(source, ys, target, 2, make_config(EPOCHS), on_epoch=on_epoch, checkpoint_dir=ckpt,
                             checkpoint_every=1, **kw)
    torch.save({"trunk": res.trunk.state_dict(), "head": res.head.state_dict(), "objective": obj.state_dict(),
                "history": res.history, "resumed": res.resumed_epoch, "dahash": dahash.__file__}, out)
    """
).replace("EPOCHS", str(EPOCHS))


@pytest.mark.parametrize("method", ["dann", "noda"])  # an objective with parameters, one with a memory buffer
def test_resume_after_sigkill_is_bit_identical(tmp_path: Path, kill_at_checkpoint, method: str) -> None:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    images, ckpt_dir = tmp_path / "images", tmp_path / "ckpt"
    images.mkdir()
    args = lambda out, mode: [sys.executable, str(script), str(tmp_path / out), str(images), str(ckpt_dir),  # noqa
                              mode, method]
    assert kill_at_checkpoint(args("killed.pt", "slow"), tmp_path / "ready.json", tmp_path)["epoch"] == 2
    assert [e for e, _ in list_checkpoints(ckpt_dir)] == [1, 2]
    for out, mode in (("resumed.pt", "fast"), ("plain.pt", "plain")):
        done = subprocess.run(args(out, mode), capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env=checkout_env())
        assert done.returncode == 0, done.stderr
    a, b = (torch.load(tmp_path / n, weights_only=True) for n in ("resumed.pt", "plain.pt"))
    assert_imports_checkout(a["dahash"])
    assert a["resumed"] == 2 and b["resumed"] == 0
    assert len(a["history"]) == EPOCHS and a["history"] == b["history"]
    for part in ("trunk", "head", "objective"):
        assert a[part].keys() == b[part].keys() and all(torch.equal(a[part][k], b[part][k]) for k in a[part])


# ----------------------------------------------------------------------------- options, presets, report
def test_options_are_checked_per_algorithm_and_mode() -> None:
    from dahash.baselines.registry import check_options

    assert check_options("dan", {"mmd_weight": 2.0, "lr_start": 1e-3}, "finetune")["mmd_weight"] == 2.0
    assert check_options("dan", {"epochs": 3})["epochs"] == 3
    with pytest.raises(ValueError,
                       match=r"tca cannot be fine-tuned; these can: \['source_only', 'dan', 'dann', 'noda', 'suh'\]"):
        check_options("tca", {}, "finetune")
    with pytest.raises(ValueError, match=r"dan: unknown option\(s\) \['batch_size'\] \(finetune mode\)"):
        check_options("dan", {"batch_size": 8}, "finetune")
    with pytest.raises(ValueError, match=r"dan: unknown option\(s\) \['mode'\] \(head mode\)"):
        check_options("dan", {"mode": "finetune"})  # the former key is no option
    with pytest.raises(ValueError, match="mode must be one of"):
        check_options("dan", {}, "end-to-end")


def test_paper_preset_fine_tunes_the_deep_columns_and_paper_head_says_it_does_not(tmp_path: Path) -> None:
    import shutil

    from stages.common import ROOT, load_params
    from stages.preset import apply_preset
    from stages.report import training_modes

    deep = ("source_only", "dan", "dann", "noda", "suh")
    params_file = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params_file)
    assert load_params(params_file)["baselines"]["finetune"] == {m: {} for m in deep}
    for preset, mode in (("paper", "finetune"), ("paper-head", "head")):
        apply_preset(preset, [], params_file)
        params = load_params(params_file)
        line = training_modes(params)
        assert set(params["baselines"]["finetune" if mode == "finetune" else "methods"]) >= set(deep)
        assert not set(params["baselines"]["methods" if mode == "finetune" else "finetune"]) & set(deep)
        for m in deep:
            assert f"{m}: {mode}" + (" (NOT the paper's: finetune)" if mode == "head" else "") in line
            assert f"{m}: finetune (NOT" not in line
        assert "tca: features;" in line and "NOT the paper's: features" not in line
