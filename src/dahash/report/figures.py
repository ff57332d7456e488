"""The report's figures (matplotlib's Agg canvas without pyplot: no global backend state): one run's PR figure
(:func:`plot_pr_curve`, also logged to MLflow by the evaluate stage), PR curves of several methods (the paper's
Figures 4/5 layout) and the A-distance bars (Figure 3).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dahash.atomic import write_bytes_atomic

_PR_COLUMNS = ("radius", "precision", "recall")

__all__ = ["plot_pr_curve"]


def _check_pr(key: Any, frame: Any) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"pr_curves[{key!r}] must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in _PR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"pr_curves[{key!r}] lacks columns {missing}")
    return frame



# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def _png_bytes(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _new_figure(width: float, height: float) -> Any:
    # Figure + FigureCanvasAgg directly: Agg rendering without pyplot, so no global backend state
    # is touched (safe inside other programs and threads).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _task_figure(key: str, frame: pd.DataFrame) -> bytes:
    fig = _new_figure(9.0, 3.8)
    ax_pr, ax_r = fig.subplots(1, 2)
    ax_pr.plot(frame["recall"], frame["precision"], marker=".", color="C0")
    ax_pr.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
              title="precision-recall (Hamming radius)")
    ax_pr.grid(alpha=0.3)
    ax_r.plot(frame["radius"], frame["precision"], marker=".", label="precision")
    ax_r.plot(frame["radius"], frame["recall"], marker=".", label="recall")
    ax_r.set(xlabel="Hamming radius r", ylim=(0, 1.02), title="within radius r")
    ax_r.grid(alpha=0.3)
    ax_r.legend(loc="best")
    fig.suptitle(str(key))
    return _png_bytes(fig)


def plot_pr_curve(frame: pd.DataFrame, path: Path, *, title: str) -> Path:
    """Write one run's precision-recall figure (PR curve + precision/recall vs radius) as a PNG.

    ``frame`` is :func:`dahash.eval.metrics.precision_recall_curve`'s output; the write is atomic.
    """
    write_bytes_atomic(Path(path), _task_figure(title, _check_pr(title, frame)))
    return Path(path)


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def _curves_figure(curves: list[tuple[str, pd.DataFrame, bool]], title: str) -> bytes:
    """Precision vs recall, one line per (label, frame, dashed) -- the paper's Figs. 4-5 layout."""
    fig = _new_figure(6.0, 4.8)
    ax = fig.subplots()
    for i, (label, frame, dashed) in enumerate(curves):
        ax.plot(frame["recall"], frame["precision"], marker=_MARKERS[i % len(_MARKERS)], markersize=3,
                linestyle="--" if dashed else "-", color=f"C{i % 10}", label=label)
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1.02), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _png_bytes(fig)


def _a_distance_figure(analysis: list[dict], kinds: list[str]) -> bytes:
    fig = _new_figure(max(5.0, 1.6 * len(analysis) + 2.0), 4.0)
    ax = fig.subplots()
    width = 0.8 / max(len(kinds), 1)
    x = np.arange(len(analysis))
    for k, kind in enumerate(kinds):
        xs = [x[i] + (k - (len(kinds) - 1) / 2) * width for i, a in enumerate(analysis) if kind in a["a_distance"]]
        ys = [a["a_distance"][kind] for a in analysis if kind in a["a_distance"]]
        bars = ax.bar(xs, ys, width=width, label=kind, color=f"C{k % 10}")
        ax.bar_label(bars, fmt="%.2f", fontsize="x-small")
    labels = [a["task"] + (f"\n{a['source']} → {a['target']}" if a["source"] and a["target"] else "")
              for a in analysis]
    ax.set_xticks(x, labels)
    ax.set(ylabel="A-distance", title="A-distance between source and target features")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _png_bytes(fig)


