"""Joint Distribution Adaptation (JDA; Long, Wang, Ding, Sun & Yu, ICCV 2013).

Maths (paper section 3, kernelised form: the linear form with ``X`` replaced by ``K``). JDA is
TCA plus one class-conditional MMD term per class, computed with target *pseudo-labels*:

    min_A  sum_{c=0}^{C} tr(A^T K M_c K A) + lambda ||A||_F^2    s.t.  A^T K H K A = I_k,

* ``M_0 = e_0 e_0^T`` the marginal MMD matrix of TCA (``e_0 = [1/ns ..., -1/nt ...]``);
* ``M_c = e_c e_c^T`` for class ``c``: ``(e_c)_i = 1/ns^(c)`` for source rows with ``y_i = c``,
  ``-1/nt^(c)`` for target rows with pseudo-label ``c``, 0 elsewhere;
* ``H = I - 11^T/n``.

The solution is the ``k`` leading eigenvectors of ``K H K a = phi^{-1} (K M K + lambda I) a``,
``M = sum_c M_c`` (solved with :func:`scipy.linalg.eigh`, shared with :mod:`.tca`). The algorithm
(paper Algorithm 1) alternates ``T`` times: solve for ``A`` with the current ``M``; embed
``Z = K A``; train 1-NN on the embedded labelled source; pseudo-label the target with it; rebuild
the ``M_c``. The first pass has no pseudo-labels, i.e. it is TCA. Target labels are never used:
the pseudo-labels come only from the classifier.

Implementation choices, stated:

* ``M`` is divided by its Frobenius norm, so ``lambda`` does not depend on ``n`` or ``C`` (as in
  the authors' released ``JDA.m``).
* ``normalize=True`` (default, as in ``JDA.m``): unit-L2 input rows before the kernel and unit-L2
  embedded rows before 1-NN.
* A class with no pseudo-labelled target point contributes no ``M_c`` term (the paper is silent;
  ``JDA.m`` keeps its source half). ``JDA.m`` also scales ``M_0`` by ``C``; we keep the paper's
  unweighted sum (simplification). With these settings the paper's Office-Caltech-10 SURF results
  are reproduced: mean over the 12 tasks 46.6% (paper 46.3%), every task within 2 points (see
  benchmarks/surf_benchmark.py).

Example::

    >>> rng = np.random.default_rng(0)
    >>> Xs, ys = rng.normal(size=(40, 5)), np.repeat([0, 1], 20)
    >>> Xt = rng.normal(size=(30, 5)) + 3.0
    >>> jda = JDA(dim=3, lam=1.0, n_iter=3).fit(Xs, ys, Xt)
    >>> jda.transform(Xt).shape, jda.pseudo_labels_.shape
    ((30, 3), (30,))
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dahash.baselines.source_only import check_domains, nearest_neighbour_predict
from dahash.progress import progress_for
from dahash.baselines.tca import TCA, Kernel, _row_normalise, mmd_matrix_factor, transfer_components

__all__ = ["JDA", "jda_mmd_factor"]


def jda_mmd_factor(ys: np.ndarray, yt_pseudo: np.ndarray | None, classes: np.ndarray) -> np.ndarray:
    """Factor ``E (n, r)`` of ``M = M_0 + sum_c M_c = E E^T`` (before Frobenius normalisation).

    Column 0 is ``e_0`` (marginal MMD); one more column ``e_c`` per class ``c`` that has both
    source points and pseudo-labelled target points. (TCA's ``M_0`` alone is
    :func:`~dahash.baselines.tca.mmd_matrix_factor`.)

    Example: ``jda_mmd_factor(np.array([0, 1]), np.array([0, 0]), np.array([0, 1]))`` has columns
    ``e_0 = [1/2, 1/2, -1/2, -1/2]`` and ``e_{c=0} = [1, 0, -1/2, -1/2]`` (class 1 has no target).
    """
    if yt_pseudo is None:
        raise ValueError("yt_pseudo must be given (use mmd_matrix_factor for the marginal term only)")
    ns, nt = ys.shape[0], yt_pseudo.shape[0]
    cols = [mmd_matrix_factor(ns, nt)]
    for c in classes:
        src, tgt = ys == c, yt_pseudo == c
        if src.any() and tgt.any():
            e = np.zeros(ns + nt)
            e[:ns][src] = 1.0 / src.sum()
            e[ns:][tgt] = -1.0 / tgt.sum()
            cols.append(e)
    return np.stack(cols, axis=1)


class JDA(TCA):
    """Joint Distribution Adaptation with 1-NN pseudo-labels (see the module docstring).

    Parameters: ``dim`` (``k``), ``lam`` (``lambda``), ``n_iter`` (``T`` >= 1; ``T = 1`` is TCA with
    JDA's normalisation), ``kernel``/``gamma`` as in :class:`~dahash.baselines.tca.TCA`,
    ``normalize`` (Long et al.'s unit-L2 rows; default on). Defaults ``k = 100, lambda = 1, T = 10``
    are the paper's Office-Caltech-10 setting (they reproduce its SURF numbers, e.g. A->C 39.2%).

    Shapes: ``fit(Xs (ns, d), ys (ns,), Xt (nt, d))``; ``transform(X) -> (n, dim)``;
    ``predict(X) -> (n,)``. After ``fit``: ``pseudo_labels_ (nt,)`` (the last pass's 1-NN labels,
    i.e. the labels that define the final ``M_c``), ``pseudo_history_`` (one array per pass),
    ``W_``, ``Zs_``, ``Zt_``.
    """

    def __init__(self, dim: int = 100, lam: float = 1.0, n_iter: int = 10, kernel: Kernel = "linear", *,
                 gamma: float | None = None, normalize: bool = True, progress: bool | str = False) -> None:
        super().__init__(dim=dim, mu=lam, kernel=kernel, gamma=gamma, normalize=normalize)
        self.lam = lam
        self.n_iter = n_iter
        self.progress = progress  # a bar over the passes (dahash.progress): False, True or its label

    def fit(self, Xs: Any, ys: Any, Xt: Any) -> JDA:
        """Alternate ``n_iter`` times: solve for ``A`` -> embed -> 1-NN pseudo-label the target."""
        self.mu = self.lam
        self._check_params()
        if not (isinstance(self.n_iter, (int, np.integer)) and self.n_iter >= 1):
            raise ValueError(f"n_iter must be a positive integer; got {self.n_iter!r}")
        Xs, ys, Xt = check_domains(Xs, ys, Xt)
        K = self._fit_kernel(Xs, Xt)
        ns, nt = Xs.shape[0], Xt.shape[0]
        classes = np.unique(ys)
        pseudo: np.ndarray | None = None
        history: list[np.ndarray] = []
        for _ in progress_for(self.progress, "jda", range(int(self.n_iter)), unit="pass"):
            E = mmd_matrix_factor(ns, nt)[:, None] if pseudo is None else jda_mmd_factor(ys, pseudo, classes)
            # ||E E^T||_F = ||E^T E||_F (cheap: r x r).
            E = E / np.sqrt(np.linalg.norm(E.T @ E, "fro"))
            W = transfer_components(K, E, float(self.lam), int(self.dim))
            Z = K @ W
            if self.normalize:
                Z = _row_normalise(Z)
            pseudo = nearest_neighbour_predict(Z[:ns], ys, Z[ns:])
            history.append(pseudo)
        self.W_ = W
        self.Zs_, self.Zt_, self.ys_ = Z[:ns], Z[ns:], ys
        self.pseudo_labels_ = pseudo
        self.pseudo_history_ = history
        self.classes_ = classes
        return self
