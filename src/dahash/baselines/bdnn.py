"""Unsupervised Hashing with Binary Deep Neural Network (UH-BDNN), Do, Doan & Cheung, ECCV 2016
("Learning to hash with binary deep neural network").

Network (``n`` layers): the input layer takes ``x (D,)``; hidden layers ``2 .. n-2`` use the
sigmoid; layer ``n-1`` has ``L = bits`` units with the identity activation and its output
``H^(n-1)`` *is* the code layer; the last layer reconstructs the input linearly from the codes,
``x_hat = W^(n-1) h^(n-1) + c^(n-1)``. With ``m`` training items (here rows are items, so
``H (m, L)``), the UH-BDNN objective is::

    J = 1/(2m) ||X - H W^(n-1)T - 1 c^(n-1)T||^2          reconstruction
      + lambda1/2 sum_l ||W^(l)||^2                          weight decay
      + lambda2/(2m) ||H - B||^2                             binary constraint, B in {-1,+1}^(m x L)
      + lambda3/2 ||(1/m) H^T H - I||^2                      independence (uncorrelated bits)
      + lambda4/(2m) ||H^T 1||^2                             balance (each bit half +1, half -1)

The binary constraint ``H = B`` is relaxed into the ``lambda2`` penalty with the auxiliary binary
matrix ``B``, and ``J`` is minimised by alternating optimisation:

* network step: fix ``B``, minimise ``J`` over all weights and biases by back-propagation with
  L-BFGS (full batch; here ``torch.optim.LBFGS`` with the strong-Wolfe line search,
  ``inner_iter`` iterations per step);
* B step: fix the network, ``B = sgn(H)`` (the exact minimiser: only the ``lambda2`` term
  involves ``B``).

Codes of new data: ``sgn(h^(n-1)(x))`` (``sgn(0) = +1``).

Note on the independence term: in the paper it is on the *codes* (``(1/m) H^T H = I``), not on
the weights; we implement the paper's form. (Weight orthogonality ``W W^T = I`` belongs to Deep
Hashing, Liong et al. 2015.)

Choices and simplifications, stated explicitly:

* ``B`` is initialised with ITQ codes of the training data (our choice; a random network's
  signs are a poor start);
* the inputs are centred and divided by one global scale (the RMS feature value), so the
  reconstruction term is on a fixed scale whatever the feature extractor; ``J`` is then that of
  the scaled data;
* the hidden widths and the ``lambda`` defaults are ours, not the paper's tuned values; weight
  decay (``lambda1``) covers the weight matrices only, not the biases;
* parameters are initialised from a seeded ``torch.Generator`` with PyTorch's default
  ``nn.Linear`` ranges (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dahash.baselines.itq import ITQ, as_features, check_bits, check_positive_int, check_seed, sign_pm1
from dahash.progress import progress_for

__all__ = ["BDNN", "BDNNNet", "bdnn_objective"]


def init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's default ``nn.Linear`` ranges, drawn from ``generator``:
    weight and bias ``~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / float(np.sqrt(layer.in_features))
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=generator)


class BDNNNet(nn.Module):
    """Encoder ``D -> hidden_dims (sigmoid) -> L (identity)`` and linear decoder ``L -> D``.

    ``forward(x (m, D)) -> (h (m, L), x_hat (m, D))``.
    """

    def __init__(self, in_dim: int, bits: int, hidden_dims: Sequence[int], generator: torch.Generator) -> None:
        super().__init__()
        dims = [int(in_dim), *[int(h) for h in hidden_dims]]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.code = nn.Linear(dims[-1], bits)
        self.decoder = nn.Linear(bits, in_dim)
        for layer in [*self.hidden, self.code, self.decoder]:
            init_linear(layer, generator)

    def encode(self, x: Tensor) -> Tensor:
        """``(m, D) -> (m, L)`` code-layer outputs ``h^(n-1)``."""
        for layer in self.hidden:
            x = torch.sigmoid(layer(x))
        return self.code(x)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encode(x)
        return h, self.decoder(h)


def bdnn_objective(
    net: BDNNNet,
    x: Tensor,
    b: Tensor,
    *,
    weight_decay: float,
    binary_weight: float,
    independence_weight: float,
    balance_weight: float,
) -> tuple[Tensor, dict[str, float]]:
    """The UH-BDNN ``J`` (module docstring) for ``x (m, D)``, ``b (m, L)`` in ``{-1, +1}``.

    Returns ``(J as a 0-d tensor, {term name: float value of the weighted term})``.
    """
    m, L = b.shape
    h, x_hat = net(x)
    recon = (x - x_hat).pow(2).sum() / (2 * m)
    decay = 0.5 * weight_decay * sum(
        layer.weight.pow(2).sum() for layer in [*net.hidden, net.code, net.decoder]
    )
    binary = binary_weight * (h - b).pow(2).sum() / (2 * m)
    eye = torch.eye(L, dtype=h.dtype, device=h.device)
    indep = 0.5 * independence_weight * ((h.T @ h) / m - eye).pow(2).sum()
    balance = balance_weight * h.sum(dim=0).pow(2).sum() / (2 * m)
    total = recon + decay + binary + indep + balance
    terms = {
        name: float(value.detach())
        for name, value in (("reconstruction", recon), ("weight_decay", decay), ("binary", binary),
                            ("independence", indep), ("balance", balance), ("total", total))
    }
    return total, terms


class BDNN:
    """UH-BDNN hashing (see the module docstring).

    Args:
        bits: code length ``L``.
        hidden_dims: widths of the sigmoid hidden layers (layers ``2 .. n-2``), at least one.
        weight_decay, binary_weight, independence_weight, balance_weight: ``lambda1 .. lambda4``.
        outer_iter: alternating (network step, B step) iterations ``T``.
        inner_iter: L-BFGS iterations per network step.
        itq_iter: ITQ iterations for the initial ``B``.
        seed: seeds the weight initialisation and ITQ.
        device: torch device for training and encoding (``"cpu"``, ``"cuda"``, ...).

    Attributes (after :meth:`fit`):
        net_ (:class:`BDNNNet`, on ``device``); mean_ ``(D,)``; scale_ (the global input scale);
        codes_ ``(m, L)`` the final ``B``; history_: one dict of ``J``'s terms per outer iteration
        (after its network step) plus ``"b_changed"`` = fraction of entries of ``B`` flipped by
        that iteration's B step; init_stats_/final_stats_: ``{"binary_gap": mean |1 - |h||,
        "balance": mean_l |mean_i h_il|}`` of the training outputs before and after training.
    """

    def __init__(
        self,
        bits: int,
        *,
        hidden_dims: Sequence[int] = (256,),
        weight_decay: float = 1e-5,
        binary_weight: float = 1.0,
        independence_weight: float = 1e-2,
        balance_weight: float = 1e-2,
        outer_iter: int = 10,
        inner_iter: int = 50,
        itq_iter: int = 50,
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: bool | str = False,
    ) -> None:
        self.progress = progress  # a bar over the outer iterations (dahash.progress): False, True or its label
        self.bits = check_bits(bits)
        hidden_dims = tuple(hidden_dims)
        if not hidden_dims:
            raise ValueError("hidden_dims must hold at least one hidden layer width")
        self.hidden_dims = tuple(check_positive_int(h, "hidden_dims") for h in hidden_dims)
        for name, value in (("weight_decay", weight_decay), ("binary_weight", binary_weight),
                            ("independence_weight", independence_weight), ("balance_weight", balance_weight)):
            if not float(value) >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        self.weight_decay, self.binary_weight = float(weight_decay), float(binary_weight)
        self.independence_weight, self.balance_weight = float(independence_weight), float(balance_weight)
        self.outer_iter = check_positive_int(outer_iter, "outer_iter")
        self.inner_iter = check_positive_int(inner_iter, "inner_iter")
        self.itq_iter = check_positive_int(itq_iter, "itq_iter", minimum=0)
        self.seed = check_seed(seed)
        self.device = torch.device(device)

    def _weights(self) -> dict[str, float]:
        return {"weight_decay": self.weight_decay, "binary_weight": self.binary_weight,
                "independence_weight": self.independence_weight, "balance_weight": self.balance_weight}

    @staticmethod
    def _stats(h: Tensor) -> dict[str, float]:
        return {"binary_gap": float((1 - h.abs()).abs().mean()), "balance": float(h.mean(dim=0).abs().mean())}

    def fit(self, X: np.ndarray, y: Any = None) -> BDNN:
        """Alternating optimisation on ``X (m, D)``; ``y`` is ignored (unsupervised)."""
        x_np = as_features(X, "X", min_rows=2)
        if self.bits > min(x_np.shape):
            raise ValueError(f"bits={self.bits} exceeds min(m, D)={min(x_np.shape)} of X {x_np.shape}")
        self.mean_ = x_np.mean(axis=0)
        xc = x_np - self.mean_
        self.scale_ = float(np.sqrt(np.mean(xc**2))) or 1.0
        xs = xc / self.scale_
        b_np = ITQ(self.bits, n_iter=self.itq_iter, seed=self.seed).fit(xs).encode(xs)
        gen = torch.Generator().manual_seed(self.seed)
        net = BDNNNet(xs.shape[1], self.bits, self.hidden_dims, gen).to(self.device, torch.float32)
        x = torch.as_tensor(xs, dtype=torch.float32, device=self.device)
        b = torch.as_tensor(b_np, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            self.init_stats_ = self._stats(net.encode(x))
        self.history_: list[dict[str, float]] = []
        for _ in progress_for(self.progress, "bdnn", range(self.outer_iter), unit="iter"):
            opt = torch.optim.LBFGS(net.parameters(), lr=1.0, max_iter=self.inner_iter,
                                    line_search_fn="strong_wolfe")

            def closure() -> Tensor:
                opt.zero_grad()
                loss, _ = bdnn_objective(net, x, b, **self._weights())
                loss.backward()
                return loss

            opt.step(closure)
            with torch.no_grad():
                _, terms = bdnn_objective(net, x, b, **self._weights())
                new_b = torch.where(net.encode(x) >= 0, 1.0, -1.0)  # B step
                terms["b_changed"] = float((new_b != b).float().mean())
                b = new_b
            self.history_.append(terms)
        with torch.no_grad():
            self.final_stats_ = self._stats(net.encode(x))
        self.net_ = net.eval()
        self.codes_ = b.cpu().numpy().astype(np.float32)
        self.n_features_in_ = x_np.shape[1]
        return self

    def project(self, X: np.ndarray) -> np.ndarray:
        """Code-layer outputs ``h^(n-1)(x)``, ``(n, bits)`` float32 (continuous)."""
        if not hasattr(self, "net_"):
            raise RuntimeError("BDNN is not fitted; call fit(X) first")
        x = as_features(X, "X", n_features=self.n_features_in_)
        xt = torch.as_tensor((x - self.mean_) / self.scale_, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return self.net_.encode(xt).cpu().numpy()

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes ``sgn(h^(n-1)(x))``, ``(n, bits)`` float32 in ``{-1, +1}``."""
        return sign_pm1(self.project(X))
