"""dahash.train.head.make_sgd: the fused SGD the trainings use updates exactly as the per-tensor SGD and as the formula."""

from __future__ import annotations

import torch

from dahash.nn.model import DAHHead
from dahash.train.head import make_sgd


def _head_and_groups() -> tuple[DAHHead, list[dict]]:
    torch.manual_seed(0)
    head = DAHHead(48, (32, 32), 16, None, generator=torch.Generator().manual_seed(0))
    return head, head.param_groups(0.01, 5e-4, bias_decay=0.0)


def test_fused_sgd_is_bit_identical_to_the_per_tensor_loop() -> None:
    """Ten steps with per-group lr multipliers, weight decay on weights only, momentum 0.9: every parameter and
    every momentum buffer equal to the last bit."""
    runs = []
    for make in (make_sgd, lambda g, lr, m: torch.optim.SGD(g, lr=lr, momentum=m, foreach=False)):
        head, groups = _head_and_groups()
        opt = make(groups, 0.01, 0.9)
        gen = torch.Generator().manual_seed(1)
        head.train()
        for _ in range(10):
            x = torch.randn(24, 48, generator=gen)
            out = head(x)
            loss = (out.u ** 2).sum() + out.u.sum() + out.fc7.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        runs.append((head.state_dict(), opt.state_dict()["state"]))
    (p1, s1), (p2, s2) = runs
    assert p1.keys() == p2.keys() and all(torch.equal(p1[k], p2[k]) for k in p1)
    assert s1.keys() == s2.keys() and all(torch.equal(s1[i]["momentum_buffer"], s2[i]["momentum_buffer"]) for i in s1)


def test_one_step_by_hand() -> None:
    """v = g + wd p (first step: the buffer is the gradient), p <- p - lr v; then v <- m v + g + wd p."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    opt = make_sgd([{"params": [w], "lr": 0.1, "weight_decay": 0.01}], 0.1, 0.9)
    w.grad = torch.tensor([0.5, 0.25, -1.0])
    opt.step()
    v1 = torch.tensor([0.5 + 0.01, 0.25 - 0.02, -1.0 + 0.005])
    p1 = torch.tensor([1.0, -2.0, 0.5]) - 0.1 * v1
    torch.testing.assert_close(w.detach(), p1, rtol=0, atol=1e-7)
    w.grad = torch.tensor([0.5, 0.25, -1.0])
    opt.step()
    v2 = 0.9 * v1 + torch.tensor([0.5, 0.25, -1.0]) + 0.01 * p1
    torch.testing.assert_close(w.detach(), p1 - 0.1 * v2, rtol=0, atol=1e-7)
