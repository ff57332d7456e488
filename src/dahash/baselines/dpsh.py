"""Deep Pairwise-Supervised Hashing (DPSH), Li, Wang & Kang, IJCAI 2016 ("Feature learning based
deep supervised hashing with pairwise labels"), on cached features.

With ``u_i = W^T phi(x_i; theta) + v`` the real-valued network output (``bits`` outputs, no
squashing), ``b_i = sgn(u_i)``, ``Theta_ij = 1/2 u_i . u_j`` and ``s_ij = 1`` iff items ``i, j``
share a label (else 0), DPSH minimises::

    J = - sum_{s_ij in S} (s_ij Theta_ij - log(1 + e^{Theta_ij}))  +  eta sum_i ||b_i - u_i||^2

(the negative log-likelihood of the pairwise labels under ``p(s_ij = 1) = sigmoid(Theta_ij)``,
plus the quantization term). The paper optimises it by mini-batch SGD: for the items ``i`` of a
batch the pairs run over *all* training items ``j``, using the latest stored outputs ``U_j`` of the
items not in the batch, and ``b_i = sgn(u_i)`` is refreshed with ``u_i``. This module does the
same with a memory ``U (n, bits)`` (initialised to zeros; a batch's rows are overwritten by its
current outputs before the loss), and ``log(1 + e^x)`` computed stably. The loss of a batch
``I`` is normalised as ``J_I / (|I| n)``::

    J_I = sum_{i in I, j < n} (log(1 + e^{Theta_ij}) - s_ij Theta_ij) + eta sum_{i in I} ||sgn(u_i) - u_i||^2

with ``Theta_ij = 1/2 u_i . U_j`` and ``U_j`` a constant (no gradient through the memory, as in
public implementations; for pairs inside the batch this halves the pair gradient, absorbed by the
learning rate).

Use in the DAH paper (Table 4):

* **NoDA**: DPSH trained on the *labelled source*, applied to the target (:func:`fit_noda`);
  evaluated like DAH (target queries against the source database).
* **SuH** (supervised hashing, the *upper bound*): DPSH trained on *labelled target* data
  (:func:`fit_suh`). This baseline legitimately uses target labels -- that is its purpose, not a
  leak -- and must be evaluated on target items it was not trained on (the paper: "hash codes on a
  validation subset"); with :func:`dahash.eval.split.target_query_database_split` train on the
  database part and query with the held-out query part.

This module is the head mode (``mode: head``, the ``paper-head`` preset); ``mode: finetune`` trains the whole
network end to end as the paper (:class:`dahash.baselines.objectives.DPSHObjective`, the same loss).
Simplifications of the head mode, stated explicitly: the backbone features are cached and only the head is
trained: ``hidden_dims = ()`` gives the paper's
hash layer alone (a linear layer on the features, e.g. fc7), otherwise ReLU fc layers come first
(a DAH-like ``fc6 -> fc7 -> hash`` head on pool5 features). Adam (default) or SGD with momentum
replaces the paper's plain SGD; ``eta`` and the optimiser settings are our defaults (the paper
selects ``eta`` by validation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dahash.baselines.bdnn import init_linear
from dahash.baselines.itq import as_features, check_bits, check_positive_int, check_seed, sign_pm1
from dahash.progress import progress_for

__all__ = ["DPSH", "DPSHNet", "dpsh_batch_loss", "dpsh_batch_terms", "fit_noda", "fit_suh"]


class DPSHNet(nn.Module):
    """``x (m, f) -> u (m, bits)``: ReLU fc layers of ``hidden_dims`` then a linear hash layer."""

    def __init__(self, in_dim: int, bits: int, hidden_dims: Sequence[int], generator: torch.Generator) -> None:
        super().__init__()
        dims = [int(in_dim), *[int(h) for h in hidden_dims]]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.hash = nn.Linear(dims[-1], bits)
        for layer in [*self.hidden, self.hash]:
            init_linear(layer, generator)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.hash(x)


def dpsh_batch_loss(u: Tensor, y_batch: Tensor, memory: Tensor, y_all: Tensor, eta: float) -> Tensor:
    """Normalised DPSH loss of one batch (module docstring).

    Args:
        u: ``(m, bits)`` outputs of the batch (with gradient).
        y_batch: ``(m,)`` integer labels of the batch.
        memory: ``(n, bits)`` stored outputs of all training items (constant; the batch's rows
            already hold ``u.detach()``).
        y_all: ``(n,)`` labels of all training items.
        eta: quantization weight.

    Returns:
        0-d tensor ``J_I / (m n)``.
    """
    pair, quant = dpsh_batch_terms(u, y_batch, memory, y_all)
    return (pair + eta * quant) / (u.shape[0] * memory.shape[0])


def dpsh_batch_terms(u: Tensor, y_batch: Tensor, memory: Tensor, y_all: Tensor) -> tuple[Tensor, Tensor]:
    """The two sums of a batch's DPSH loss, unweighted and unnormalised (0-d tensors):
    ``pair = sum_{i, j} log(1 + e^Theta_ij) - s_ij Theta_ij`` with ``Theta_ij = 1/2 u_i . U_j`` (``U`` =
    ``memory (n, bits)``, a constant) and ``quant = sum_i ||sgn(u_i) - u_i||^2`` (``sgn(0) = +1``)."""
    theta = 0.5 * u @ memory.T  # (m, n)
    s = (y_batch[:, None] == y_all[None, :]).to(u.dtype)
    pair = (F.softplus(theta) - s * theta).sum()
    quant = (sign_like(u) - u).pow(2).sum()
    return pair, quant


def sign_like(u: Tensor) -> Tensor:
    """``sgn(u)`` with ``sgn(0) = +1``, detached."""
    one = torch.ones((), dtype=u.dtype, device=u.device)
    return torch.where(u.detach() >= 0, one, -one)


def _labels(y: Any, n: int) -> np.ndarray:
    if y is None:
        raise ValueError("y is required: DPSH is supervised (pairwise labels from class labels)")
    if hasattr(y, "detach") and hasattr(y, "cpu"):
        y = y.detach().cpu().numpy()
    a = np.asarray(y)
    if a.ndim != 1 or a.shape[0] != n:
        raise ValueError(f"y must have shape ({n},), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"y must hold integer class labels, got dtype {a.dtype}")
    return a.astype(np.int64)


class DPSH:
    """DPSH on cached features (see the module docstring).

    Args:
        bits: code length.
        hidden_dims: ReLU fc widths before the hash layer (``()``: linear hash layer only).
        eta: quantization weight.
        epochs: passes over the training set.
        batch_size: items per batch.
        lr: learning rate.
        weight_decay: L2 weight decay of the optimiser.
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        seed: seeds the initialisation (``torch.Generator``) and the batch order (numpy Generator).
        device: torch device.

    Attributes (after :meth:`fit`): net_; history_ (mean batch loss per epoch); n_features_in_.
    """

    def __init__(
        self,
        bits: int,
        *,
        hidden_dims: Sequence[int] = (),
        eta: float = 10.0,
        epochs: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        optimizer: Literal["adam", "sgd"] = "adam",
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: bool | str = False,
    ) -> None:
        self.progress = progress  # a bar over the epochs (dahash.progress): False, True or its label
        self.bits = check_bits(bits)
        self.hidden_dims = tuple(check_positive_int(h, "hidden_dims") for h in hidden_dims)
        if not float(eta) >= 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        if not float(lr) > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not float(weight_decay) >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.eta, self.lr, self.weight_decay, self.optimizer = float(eta), float(lr), float(weight_decay), optimizer
        self.epochs = check_positive_int(epochs, "epochs")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.seed = check_seed(seed)
        self.device = torch.device(device)

    def fit(self, X: np.ndarray, y: np.ndarray) -> DPSH:
        """Train on ``X (n, f)`` with integer labels ``y (n,)``."""
        x_np = as_features(X, "X", min_rows=2)
        y_np = _labels(y, x_np.shape[0])
        n = x_np.shape[0]
        gen = torch.Generator().manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        net = DPSHNet(x_np.shape[1], self.bits, self.hidden_dims, gen).to(self.device)
        if self.optimizer == "adam":
            opt: torch.optim.Optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        x = torch.as_tensor(x_np, dtype=torch.float32, device=self.device)
        y_all = torch.as_tensor(y_np, device=self.device)
        memory = torch.zeros(n, self.bits, device=self.device)
        self.history_: list[float] = []
        net.train()
        for _ in progress_for(self.progress, "dpsh", range(self.epochs), unit="epoch"):
            perm = rng.permutation(n)
            losses = []
            for start in range(0, n, self.batch_size):
                idx = torch.as_tensor(perm[start : start + self.batch_size], device=self.device)
                u = net(x[idx])
                memory[idx] = u.detach()
                loss = dpsh_batch_loss(u, y_all[idx], memory, y_all, self.eta)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            self.history_.append(float(np.mean(losses)))
        self.net_ = net.eval()
        self.n_features_in_ = x_np.shape[1]
        return self

    def project(self, X: np.ndarray) -> np.ndarray:
        """Real-valued outputs ``u``, ``(n, bits)`` float32."""
        if not hasattr(self, "net_"):
            raise RuntimeError("DPSH is not fitted; call fit(X, y) first")
        x = as_features(X, "X", n_features=self.n_features_in_)
        with torch.no_grad():
            return self.net_(torch.as_tensor(x, dtype=torch.float32, device=self.device)).cpu().numpy()

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes ``sgn(u)``, ``(n, bits)`` float32 in ``{-1, +1}``."""
        return sign_pm1(self.project(X))


def fit_noda(xs: np.ndarray, ys: np.ndarray, bits: int, **kwargs: Any) -> DPSH:
    """NoDA baseline: DPSH trained on the labelled source ``(xs, ys)`` only; encode the target with
    the returned model (no adaptation; target data and labels are never seen)."""
    return DPSH(bits, **kwargs).fit(xs, ys)


def fit_suh(xt_train: np.ndarray, yt_train: np.ndarray, bits: int, **kwargs: Any) -> DPSH:
    """SuH upper bound: DPSH trained on *labelled target* items ``(xt_train, yt_train)``.

    Uses target labels by design (supervised hashing in the target domain, the paper's upper
    bound). Evaluate only on target items not in ``xt_train`` (e.g. train on the database part of
    :func:`dahash.eval.split.target_query_database_split` and query with its query part).
    """
    return DPSH(bits, **kwargs).fit(xt_train, yt_train)
