"""K-means Hashing (KMH), He, Wen & Sun, CVPR 2013: affinity-preserving k-means in a product space.

One subspace, ``b`` bits (paper Sec. 3). ``k = 2^b`` codewords ``c_0 .. c_{k-1}``; codeword ``i``'s
hash code is the ``b``-bit binary representation of ``i``, and a point is encoded by the index of
its nearest codeword. The Hamming-based distance between indices approximates the Euclidean
distance between their codewords::

    d_h(i, j) = lambda * h(i, j)^(1/2)            (h = Hamming distance of the b-bit indices)

and the affinity-preserving k-means objective is::

    E = E_quan + w * E_aff
    E_quan = (1/n) sum_x ||x - c_{i(x)}||^2
    E_aff  = sum_{i, j} (n_i n_j / n^2) * (||c_i - c_j|| - d_h(i, j))^2

(``n_i`` = number of points assigned to codeword ``i``; ``w`` is the paper's affinity weight,
10 in the paper's code). Alternating optimisation:

* assignment step: ``i(x) = argmin_i ||x - c_i||`` (codewords fixed);
* update step: the codewords are updated **one at a time**, each minimising the part of ``E``
  that depends on it with the others fixed::

      E_j(c) = (n_j ||c||^2 - 2 c . S_j) / n  +  2 w (n_j / n^2) sum_{i != j} n_i (||c - c_i|| - d_h(i, j))^2

  (``S_j`` = sum of the points of cell ``j``; the constant ``sum ||x||^2`` is dropped), solved by a
  quasi-Newton method started from the current codeword with the analytic gradient (the authors'
  code uses MATLAB's ``fminunc``; here by default an L-BFGS written in numba with scipy's L-BFGS-B
  stopping rules, :func:`dahash.baselines._kmh_kernel.minimize_center`, the whole update step in one
  compiled call; ``optimizer="scipy"`` keeps the previous path: ``scipy.optimize.minimize``, BFGS for
  subspaces of dimension ``<= 64`` and L-BFGS-B above, about 4x slower per fit because of its per-call
  overhead. On A->C the two give 99.85 % identical code bits, see benchmarks/README.md). A step that
  would raise ``E_j`` is rejected. A cell with ``n_j = 0`` has ``E_j == 0`` and keeps its codeword.

Initialisation (PCA hashing, as the authors' ``init_PCAH.m``): in the subspace's PCA basis the
codewords are the ``2^b`` vertices ``s * (+-1, ..., +-1, 0, ..., 0)`` of a hypercube on the first
``b`` principal axes, vertex signs = the bits of the codeword's index, with
``s = mean |x_t|`` over the first ``b`` PCA coordinates (the least-squares scale of PCAH codes).
The scale ``lambda`` of ``d_h`` is fixed from this initialisation: ``d_h(i, j) = s ||p_i - p_j||
= 2 s h(i, j)^(1/2)`` with ``p_i in {-1, +1}^b`` the vertex signs, i.e. ``lambda = 2 s``
(as the authors' code).

Product space (paper Sec. 4): ``bits = M * b``; the data are zero-centred and PCA-rotated, the
principal axes are dealt into ``M`` subspaces of equal dimension ``d`` with the authors' greedy
"balanced partition" (each axis, in decreasing eigenvalue order, goes to the non-full subspace
with the smallest sum of shifted log-eigenvalues, balancing the product of variances as in OPQ's
eigenvalue allocation), and a separate affinity-preserving k-means with ``2^b`` codewords runs in
each subspace. The code of a point is the concatenation of its ``M`` codeword indices.

Simplifications / choices, stated explicitly:

* PCA keeps ``D = pca_dim`` dimensions (default: the largest multiple of ``M`` not above
  ``min(n, f)``), because the subspaces must have equal size; the authors' code keeps all
  ``f`` dimensions and requires ``M | f``. The dropped axes have the smallest variance.
* Inside a subspace no second PCA is done: after the global PCA and the in-order allocation the
  subspace's coordinates are already decorrelated, centred and sorted by variance, which is what
  the authors' per-subspace PCA produces (up to signs).
* L-BFGS (at most ``max_inner_iter`` iterations per codeword update) instead of ``fminunc``; the
  assignment step can raise ``E_aff`` (the weights ``n_i n_j`` change), so ``E`` is not guaranteed to
  decrease monotonically (nor is it in the paper).

Codes are returned as ``float32`` in ``{-1, +1}`` (bit ``t`` of index ``i`` -> ``+1`` if set).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize
from threadpoolctl import threadpool_limits

from dahash.baselines.itq import as_features, check_bits, check_positive_int, pca_top
from dahash.progress import progress_for

__all__ = ["KMeansHashing", "balanced_partition", "index_codes"]

_EPS = 1e-12
# Dense BFGS up to this subspace dimension, limited-memory BFGS above (much faster there).
_BFGS_MAX_DIM = 64


def index_codes(b: int) -> np.ndarray:
    """``(2^b, b)`` float64 table of ``{-1, +1}`` codes: row ``i``, column ``t`` is ``+1`` iff bit
    ``t`` of ``i`` is set."""
    b = check_positive_int(b, "b")
    idx = np.arange(2**b)[:, None]
    return np.where((idx >> np.arange(b)[None, :]) & 1, 1.0, -1.0)


def balanced_partition(eigenvalues: np.ndarray, n_subspaces: int) -> list[np.ndarray]:
    """Deal ``D`` principal axes into ``M`` equal subspaces, balancing the product of variances.

    The authors' ``balanced_partition.m``: ``g = log(eig + 1e-20)``, shifted so ``min g = 1``;
    axes in the given (decreasing-eigenvalue) order; each goes to the non-full subspace whose
    running sum of ``g`` is smallest (ties -> lowest subspace index).

    Args:
        eigenvalues: ``(D,)`` non-negative, sorted descending.
        n_subspaces: ``M``, must divide ``D``.

    Returns:
        ``M`` int arrays of ``D / M`` axis indices each, in allocation (= decreasing variance) order.
    """
    vals = np.asarray(eigenvalues, dtype=np.float64)
    m = check_positive_int(n_subspaces, "n_subspaces")
    if vals.ndim != 1 or vals.size % m:
        raise ValueError(f"eigenvalues must be 1-D with a length divisible by n_subspaces={m}")
    size = vals.size // m
    g = np.log(np.clip(vals, 0.0, None) + 1e-20)
    g = g - g.min() + 1.0
    sums = np.zeros(m)
    tables: list[list[int]] = [[] for _ in range(m)]
    current = 0
    for axis in range(vals.size):
        tables[current].append(axis)
        sums[current] += g[axis]
        if len(tables[current]) == size:
            sums[current] = np.inf
        current = int(np.argmin(sums))
    return [np.asarray(t, dtype=np.int64) for t in tables]


def _center_cost_and_grad(
    c: np.ndarray,
    j: int,
    sum_j: np.ndarray,
    counts: np.ndarray,
    n: int,
    centers: np.ndarray,
    dh_j: np.ndarray,
    weight: float,
) -> tuple[float, np.ndarray]:
    """``E_j(c)`` of the module docstring and its gradient w.r.t. ``c (d,)`` (numpy reference; the fit uses
    the numba version :func:`dahash.baselines._kmh_kernel.center_cost_and_grad`, checked against this)."""
    nj = counts[j]
    quan = (nj * (c @ c) - 2.0 * (sum_j @ c)) / n
    g_quan = (2.0 * nj * c - 2.0 * sum_j) / n
    diff = c[None, :] - centers  # (k, d)
    e = np.sqrt(np.sum(diff**2, axis=1))  # (k,)
    mask = np.ones_like(e, dtype=bool)
    mask[j] = False
    err = np.where(mask, e - dh_j, 0.0)
    coef = 2.0 * weight * nj / n**2
    aff = coef * np.sum(counts * err**2)
    unit = diff / np.maximum(e, _EPS)[:, None]
    g_aff = coef * np.sum((counts * 2.0 * err)[:, None] * unit, axis=0)
    return float(quan + aff), g_quan + g_aff


def pca_all_eigh(xc: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`dahash.baselines.itq.pca_top` (same covariance, order and sign convention) by the full
    divide-and-conquer eigensolver (LAPACK ``syevd``) instead of ``syevr`` on an index subset.

    KMH keeps nearly all axes (``D = 1,120`` of ``f = 1,280`` on Office-Caltech's A->C), where ``syevd`` is 4x
    faster (0.44 s vs 1.84 s, one thread); measured on those features the eigenvalues agree to 5e-16 relative and
    the eigenvectors to ``1 - |cos| <= 2e-15`` (``tests/test_hashing_baselines.py`` checks it against ``pca_top``).

    Returns:
        ``(components (f, k), eigenvalues (k,))``, eigenvalues descending.
    """
    return pca_top(xc, k, driver="evd")


def _cell_sums(x: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """``S_j = sum_{i(x) = j} x`` for ``j < k``, ``(k, d)``: rows added in their order, as ``np.add.at`` does
    (which is 10x slower)."""
    sums = np.zeros((k, x.shape[1]))
    for j in np.unique(idx):
        sums[j] = x[idx == j].sum(axis=0)
    return sums


def _assign(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    d2 = np.sum(x**2, axis=1)[:, None] - 2.0 * x @ centers.T + np.sum(centers**2, axis=1)[None, :]
    return np.argmin(d2, axis=1)


def _objective(x: np.ndarray, centers: np.ndarray, dh: np.ndarray, weight: float) -> float:
    """Total ``E = E_quan + w E_aff`` of one subspace at the nearest-codeword assignment."""
    n, k = x.shape[0], centers.shape[0]
    idx = _assign(x, centers)
    counts = np.bincount(idx, minlength=k).astype(np.float64)
    quan = float(np.sum((x - centers[idx]) ** 2)) / n
    dist = np.sqrt(np.maximum(np.sum((centers[:, None, :] - centers[None, :, :]) ** 2, axis=2), 0.0))
    aff = float(np.sum(np.outer(counts, counts) / n**2 * (dist - dh) ** 2))
    return quan + weight * aff


def affinity_preserving_kmeans(
    x: np.ndarray, b: int, *, n_iter: int, weight: float, max_inner_iter: int, optimizer: str = "lbfgs"
) -> tuple[np.ndarray, float, list[float]]:
    """Affinity-preserving k-means in one PCA-aligned subspace.

    Args:
        x: ``(n, d)`` centred subspace data whose columns are decorrelated and sorted by
            decreasing variance (``d >= b``).
        b: bits of this subspace (``2^b`` codewords).
        n_iter: alternating (assignment, sequential update) iterations.
        weight: the affinity weight ``w``.
        max_inner_iter: quasi-Newton iteration cap per codeword update.
        optimizer: ``"lbfgs"`` (the whole update step in numba:
            :func:`dahash.baselines._kmh_kernel.update_centers`) or ``"scipy"`` (``scipy.optimize.minimize``,
            BFGS up to 64 dimensions and L-BFGS-B above, one call per codeword: the previous path, ~10x slower).

    Returns:
        ``(centers (2^b, d), scale s, objective history (n_iter + 1,))``; the history holds ``E``
        at the initialisation and after each iteration's update step (with re-assignment).
    """
    from dahash.baselines._kmh_kernel import center_cost_and_grad, update_centers  # numba

    if optimizer not in ("lbfgs", "scipy"):
        raise ValueError(f"optimizer must be 'lbfgs' or 'scipy', got {optimizer!r}")

    n, d = x.shape
    k = 2**b
    codes = index_codes(b)
    scale = float(np.mean(np.abs(x[:, :b])))
    centers = np.zeros((k, d))
    centers[:, :b] = scale * codes
    dh = scale * np.sqrt(np.sum((codes[:, None, :] - codes[None, :, :]) ** 2, axis=2))  # 2 s sqrt(h)
    history = [_objective(x, centers, dh, weight)]
    for _ in range(n_iter):
        idx = _assign(x, centers)
        counts = np.bincount(idx, minlength=k).astype(np.float64)
        sums = _cell_sums(x, idx, k)
        if optimizer == "lbfgs":
            update_centers(centers, sums, counts, n, dh, weight, max_inner_iter)
            history.append(_objective(x, centers, dh, weight))
            continue
        for j in range(k):
            if counts[j] == 0:
                continue
            res = scipy.optimize.minimize(
                center_cost_and_grad,
                centers[j].copy(),
                args=(j, sums[j], counts, n, centers, dh[:, j], weight),
                jac=True,
                method="BFGS" if d <= _BFGS_MAX_DIM else "L-BFGS-B",
                options={"maxiter": max_inner_iter},
            )
            start_cost = center_cost_and_grad(centers[j], j, sums[j], counts, n, centers, dh[:, j], weight)[0]
            if res.fun <= start_cost:  # never accept a worse point
                centers[j] = res.x
        history.append(_objective(x, centers, dh, weight))
    return centers, scale, history


class KMeansHashing:
    """Product-space K-means Hashing.

    Args:
        bits: total code length ``M * b``.
        bits_per_subspace: ``b`` in ``[1, 8]`` (4 in the authors' recommended setting; ``2^b``
            codewords each; the authors use ``b <= 8``).
        n_iter: alternating iterations per subspace (50 in the authors' demo).
        affinity_weight: ``w`` in ``E = E_quan + w E_aff`` (10 in the authors' demo).
        pca_dim: PCA dimension ``D`` (a multiple of ``M`` with ``D / M >= b``); default the largest
            multiple of ``M`` not above ``min(n, f)``.
        max_inner_iter: quasi-Newton iteration cap per codeword update.
        optimizer: ``"lbfgs"`` (numba L-BFGS, default) or ``"scipy"`` (``scipy.optimize.minimize`` per codeword,
            the previous path); see :func:`affinity_preserving_kmeans`.

    The algorithm is deterministic (PCA-hashing initialisation, no random draws), so there is no
    seed.

    Attributes (after :meth:`fit`):
        mean_ ``(f,)``; projection_ ``(f, D)`` (PCA axes, columns grouped by subspace);
        subspaces_ (list of ``M`` column-index arrays into ``projection_``);
        centers_ (list of ``M`` arrays ``(2^b, D / M)``); scales_ ``(M,)`` the PCAH scales ``s``
        (``lambda = 2 s``); history_ (list of ``M`` objective histories).
    """

    def __init__(
        self,
        bits: int,
        *,
        bits_per_subspace: int = 4,
        n_iter: int = 50,
        affinity_weight: float = 10.0,
        pca_dim: int | None = None,
        max_inner_iter: int = 100,
        optimizer: str = "lbfgs",
        progress: bool | str = False,
    ) -> None:
        self.progress = progress  # a bar over the subspaces (dahash.progress): False, True or its label
        self.bits = check_bits(bits)
        self.bits_per_subspace = check_positive_int(bits_per_subspace, "bits_per_subspace")
        if self.bits_per_subspace > 8:
            raise ValueError(f"bits_per_subspace must be <= 8 (2^b codewords), got {bits_per_subspace}")
        if self.bits % self.bits_per_subspace:
            raise ValueError(
                f"bits={self.bits} must be a multiple of bits_per_subspace={self.bits_per_subspace}"
            )
        self.n_subspaces = self.bits // self.bits_per_subspace
        self.n_iter = check_positive_int(n_iter, "n_iter", minimum=0)
        if not float(affinity_weight) >= 0:
            raise ValueError(f"affinity_weight must be >= 0, got {affinity_weight}")
        self.affinity_weight = float(affinity_weight)
        self.pca_dim = None if pca_dim is None else check_positive_int(pca_dim, "pca_dim")
        self.max_inner_iter = check_positive_int(max_inner_iter, "max_inner_iter")
        if optimizer not in ("lbfgs", "scipy"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'scipy', got {optimizer!r}")
        self.optimizer = optimizer

    def _resolve_pca_dim(self, n: int, f: int) -> int:
        m, b = self.n_subspaces, self.bits_per_subspace
        if self.pca_dim is None:
            dim = (min(n, f) // m) * m
        else:
            dim = self.pca_dim
            if dim % m or dim > f:
                raise ValueError(f"pca_dim={dim} must be a multiple of M={m} and <= f={f}")
        if dim // m < b:
            raise ValueError(
                f"each of the M={m} subspaces needs >= b={b} dimensions but pca_dim gives {dim // m} "
                f"(X has n={n}, f={f}); use fewer bits or more data"
            )
        return dim

    def fit(self, X: np.ndarray, y: Any = None) -> KMeansHashing:
        """Learn the PCA rotation and the ``M`` codebooks from ``X (n, f)``; ``y`` is ignored."""
        x = as_features(X, "X", min_rows=2)
        n, f = x.shape
        if n < 2**self.bits_per_subspace:
            raise ValueError(f"X needs at least 2^b={2 ** self.bits_per_subspace} rows, got {n}")
        dim = self._resolve_pca_dim(n, f)
        self.mean_ = x.mean(axis=0)
        xc = x - self.mean_
        comps, vals = pca_all_eigh(xc, dim)
        order = np.concatenate(balanced_partition(vals, self.n_subspaces))
        self.projection_ = comps[:, order]
        size = dim // self.n_subspaces
        self.subspaces_ = [np.arange(m * size, (m + 1) * size) for m in range(self.n_subspaces)]
        z = xc @ self.projection_
        self.centers_, scales, self.history_ = [], [], []
        # One BLAS thread: the alternating loop works on (n, d) and (2^b, d) arrays with d ~ 70, where BLAS
        # threads only add synchronisation (measured: 15 s -> 232 s for one A->C fit with 2 threads on a
        # loaded 2-core machine); it also makes the fit independent of the machine's thread count.
        with threadpool_limits(limits=1, user_api="blas"):
            for cols in progress_for(self.progress, "kmh", self.subspaces_, unit="subspace"):
                centers, scale, hist = affinity_preserving_kmeans(
                    z[:, cols], self.bits_per_subspace, n_iter=self.n_iter,
                    weight=self.affinity_weight, max_inner_iter=self.max_inner_iter, optimizer=self.optimizer,
                )
                self.centers_.append(centers)
                scales.append(scale)
                self.history_.append(hist)
        self.scales_ = np.asarray(scales)
        self.n_features_in_ = f
        return self

    def assign(self, X: np.ndarray) -> np.ndarray:
        """Nearest-codeword index per subspace, ``(n, M)`` int64."""
        if not hasattr(self, "centers_"):
            raise RuntimeError("KMeansHashing is not fitted; call fit(X) first")
        x = as_features(X, "X", n_features=self.n_features_in_)
        z = (x - self.mean_) @ self.projection_
        return np.stack([_assign(z[:, cols], c) for cols, c in zip(self.subspaces_, self.centers_)], axis=1)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Codes ``(n, bits)`` float32 in ``{-1, +1}``: subspace ``m`` fills bits ``m*b .. m*b+b-1``
        with the binary representation of its codeword index."""
        idx = self.assign(X)
        table = index_codes(self.bits_per_subspace)
        return np.concatenate([table[idx[:, m]] for m in range(self.n_subspaces)], axis=1).astype(np.float32)
