"""Feature analysis of the DAH paper's figure 3: proxy A-distance and t-SNE embeddings.

* :func:`a_distance` -- the proxy A-distance of Ben-David et al. used in fig. 3a,
  ``d_A = 2 (1 - 2 err)``, ``err`` the generalisation error of a linear classifier trained to tell
  source from target features (the paper: LIBLINEAR SVM with 5-fold cross-validation; the same
  definition as thuml Transfer-Learning-Library's ``a_distance.calculate``). ``d_A`` is near 0 for
  indistinguishable domains and 2 for perfectly separable ones; a value slightly below 0 (``err`` a
  bit above 1/2 by chance) also means "indistinguishable" and is returned as is (not clipped).
* :func:`tsne_embedding` / :func:`plot_tsne` -- figs. 3b-3d: a 2-D t-SNE of the features with
  class colours and domain markers, drawn with matplotlib's object API (``Figure`` +
  ``FigureCanvasAgg``; no pyplot global state) and written atomically.

Example::

    >>> rng = np.random.default_rng(0)
    >>> round(a_distance(rng.normal(size=(200, 5)), rng.normal(size=(200, 5)) + 5.0), 1)
    2.0
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.manifold import TSNE
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from dahash.atomic import write_bytes_atomic
from dahash.progress import label, note, progress_for

__all__ = ["a_distance", "plot_tsne", "tsne_embedding"]

_MARKERS = ("o", "^", "s", "D", "v", "P", "X", "*")


def _features(x: Any, name: str, *, min_rows: int = 1) -> np.ndarray:
    """``x`` as a finite float64 ``(N, d)`` array with ``N >= min_rows``, else ``ValueError``."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric 2-D array; {exc}") from exc
    if a.ndim != 2 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array (N, d); got shape {a.shape}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name} must have at least {min_rows} rows; got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def a_distance(f_source: Any, f_target: Any, *, seed: int = 0, folds: int = 5, C: float = 1.0,
               progress: bool | str = False) -> float:
    """Proxy A-distance ``2 (1 - 2 err)`` between two feature sets (paper fig. 3a).

    ``err`` = the ``folds``-fold cross-validated error (misclassified / all points, pooled over the
    folds) of ``LinearSVC(C, dual=True)`` (LIBLINEAR's default solver) on standardised features,
    separating source (label 0) from target (label 1). Folds are
    :class:`~sklearn.model_selection.StratifiedKFold` (shuffled with ``seed``); the standardiser is
    fitted on each training fold only. Shapes ``(ns, d)``, ``(nt, d)`` with
    ``ns, nt >= folds``. Returns a float in ``[-2, 2]`` (in practice ``~[0, 2]``).

    ``progress``: a bar over the folds' SVM fits (:mod:`dahash.progress`): False none, True labelled
    "A-distance", or a string: the label.

    Example: identical distributions -> ``~0``; far-apart Gaussians -> ``2.0``.
    """
    if not (isinstance(folds, (int, np.integer)) and folds >= 2):
        raise ValueError(f"folds must be an integer >= 2; got {folds!r}")
    fs = _features(f_source, "f_source", min_rows=folds)
    ft = _features(f_target, "f_target", min_rows=folds)
    if fs.shape[1] != ft.shape[1]:
        raise ValueError(f"f_target has {ft.shape[1]} features but f_source has {fs.shape[1]}")
    if not (isinstance(C, (int, float)) and np.isfinite(C) and C > 0):
        raise ValueError(f"C must be a positive finite number; got {C!r}")
    X = np.vstack([fs, ft])
    y = np.r_[np.zeros(fs.shape[0], dtype=np.int64), np.ones(ft.shape[0], dtype=np.int64)]
    wrong = 0
    splits = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=seed).split(X, y)
    for train, test in progress_for(progress, "A-distance", splits, total=int(folds), unit="fit"):
        svm = LinearSVC(C=float(C), dual=True, random_state=seed, max_iter=100_000)
        clf = make_pipeline(StandardScaler(), svm)
        clf.fit(X[train], y[train])
        wrong += int(np.sum(clf.predict(X[test]) != y[test]))
    err = wrong / X.shape[0]
    return float(2.0 * (1.0 - 2.0 * err))


def tsne_embedding(features: Any, *, seed: int = 0, perplexity: float = 30.0,
                   max_iter: int = 1000, progress: bool | str = False) -> np.ndarray:
    """2-D t-SNE of ``features (N, d)`` -> ``(N, 2)`` float64 (:class:`sklearn.manifold.TSNE`).

    PCA initialisation, ``random_state=seed`` (so the result is reproducible for a seed), automatic
    learning rate, ``max_iter`` gradient steps (sklearn's default 1000; at least 250). Requires
    ``0 < perplexity < N`` (sklearn's condition). ``progress`` (False, True or a label): a line when t-SNE starts
    (its size) and sklearn's own stage lines (``verbose=1``: neighbours, affinities, KL divergence after the
    early exaggeration and at the end); the embedding is the same.

    Example: ``tsne_embedding(np.random.default_rng(0).normal(size=(50, 8)), perplexity=10).shape``
    -> ``(50, 2)``.
    """
    X = _features(features, "features", min_rows=2)
    if not (isinstance(perplexity, (int, float)) and 0 < perplexity < X.shape[0]):
        raise ValueError(f"perplexity must be in (0, N={X.shape[0]}); got {perplexity!r}")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 250):
        raise ValueError(f"max_iter must be an integer >= 250; got {max_iter!r}")
    desc = label(progress, "t-SNE")
    if desc is not None:
        note(f"[{desc}] t-SNE of {X.shape[0]} points x {X.shape[1]} dims (perplexity {perplexity:g}, "
             f"{max_iter} iterations)")
    tsne = TSNE(n_components=2, perplexity=float(perplexity), init="pca", learning_rate="auto",
                max_iter=int(max_iter), random_state=seed, verbose=int(desc is not None))
    return np.asarray(tsne.fit_transform(X), dtype=np.float64)


def plot_tsne(emb: Any, domain: Sequence[Any] | np.ndarray, labels: Sequence[Any] | np.ndarray,
              path: str | Path, title: str = "") -> Path:
    """Scatter a 2-D embedding: colour = class label, marker = domain; write a PNG atomically.

    ``emb (N, 2)``; ``domain (N,)`` any labels (e.g. ``"source"/"target"`` or 0/1; up to 8 values);
    ``labels (N,)`` class labels (colours from ``tab10``/``tab20``). The parent folder must exist.
    Returns ``Path(path)``. Uses ``Figure`` + ``FigureCanvasAgg`` (no pyplot, no global state).

    Example: ``plot_tsne(emb, ["source"] * 50 + ["target"] * 50, y, "tsne.png", "A->W")``.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    E = _features(emb, "emb")
    if E.shape[1] != 2:
        raise ValueError(f"emb must have shape (N, 2); got {E.shape}")
    dom = np.asarray(domain)
    lab = np.asarray(labels)
    if dom.shape != (E.shape[0],):
        raise ValueError(f"domain must have shape ({E.shape[0]},); got {dom.shape}")
    if lab.shape != (E.shape[0],):
        raise ValueError(f"labels must have shape ({E.shape[0]},); got {lab.shape}")
    domains = list(dict.fromkeys(dom.tolist()))  # order of first appearance
    if len(domains) > len(_MARKERS):
        raise ValueError(f"domain has {len(domains)} distinct values; at most {len(_MARKERS)} supported")
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png; got {path.name!r}")
    if not path.parent.is_dir():
        raise ValueError(f"path: folder {path.parent} does not exist")

    classes = list(dict.fromkeys(sorted(lab.tolist())))
    fig = Figure(figsize=(6.0, 6.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    colour_of = {c: cmap(i % cmap.N) for i, c in enumerate(classes)}
    for m, d in zip(_MARKERS, domains):
        sel = dom == d
        ax.scatter(E[sel, 0], E[sel, 1], c=[colour_of[c] for c in lab[sel].tolist()], marker=m, s=12,
                   alpha=0.7, linewidths=0)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    # Legends from proxy artists: grey markers for the domains, coloured squares for the classes.
    dom_handles = [Line2D([], [], linestyle="", marker=m, color="0.3", label=str(d))
                   for m, d in zip(_MARKERS, domains)]
    dom_legend = ax.legend(handles=dom_handles, loc="upper right", fontsize=8, title="domain")
    if len(classes) <= 20:
        ax.add_artist(dom_legend)
        cls_handles = [Line2D([], [], linestyle="", marker="s", color=colour_of[c], label=str(c))
                       for c in classes]
        ax.legend(handles=cls_handles, loc="lower right", fontsize=7, title="class", ncol=2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    write_bytes_atomic(path, buf.getvalue())
    return path
