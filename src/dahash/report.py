"""Result report: per-task metrics -> results.md, index.html and precision-recall figures.

The report is static and self-contained: plain markdown, one HTML file with inline CSS (no CDN, no
JavaScript) and PNG figures next to it, referenced by relative links. Every file is written
atomically (temporary file in the same directory, then ``os.replace``), so an interrupted run never
leaves a half-written report behind.

Records are the per-task metric dicts written by the evaluation stage (see :data:`REQUIRED_KEYS`);
``accuracy`` and ``map`` are fractions in [0, 1] and are shown as percentages with one decimal.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dahash.atomic import write_bytes_atomic, write_text_atomic

__all__ = ["EVALUATION_RULES", "REQUIRED_KEYS", "collect_records", "plot_pr_curve", "render_report"]

REQUIRED_KEYS: tuple[str, ...] = (
    "task",
    "source",
    "target",
    "method",
    "dataset",
    "backbone",
    "hash_bits",
    "seed",
    "accuracy",
    "map",
    "n_target",
    "n_source",
)

#: The evaluation rules implemented by :mod:`dahash.metrics`, worded for a report's protocol
#: section. Callers may merge these into the ``protocol`` they pass to :func:`render_report`.
EVALUATION_RULES: dict[str, str] = {
    "codes": "b = 1[u > 0] on the tanh outputs (an exact 0 is bit 0), as in the authors' calcMap.m; "
    "training's quantization loss uses sign(0) = +1",
    "retrieval": "queries = all target codes, database = all source codes, relevant = same class",
    "ranking": "full Hamming ranking of the whole database (no top-k); ties keep database order "
    "(stable sort)",
    "AP": "(1/R) x sum of precision@r over the ranks r of the R relevant items",
    "empty queries": "queries with no relevant database item are excluded from the mAP mean "
    "(and counted)",
    "classification": "eq. 6, code variant: argmax_j of sum of exp(u_t . u_s) over the first 200 "
    "source items of class j, continuous outputs",
    "PR curves": "Hamming-radius retrieval (distance <= r) for r = 0..d over the same distances",
}

_PR_COLUMNS = ("radius", "precision", "recall")
_GROUP_KEYS = ("dataset", "method", "backbone", "hash_bits")


# --------------------------------------------------------------------------------------------
# I/O helpers
# --------------------------------------------------------------------------------------------
def _check_record(rec: Any, where: str) -> dict[str, Any]:
    """Validate one record and return a normalised copy (``map`` None -> NaN)."""
    if not isinstance(rec, Mapping):
        raise ValueError(f"{where}: a record must be a JSON object / dict, got {type(rec).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"{where}: missing required keys {missing}")
    out = dict(rec)
    for key in ("accuracy", "map"):
        val = out[key]
        if val is None and key == "map":
            val = float("nan")
        try:
            val = float(val)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: {key} must be a number, got {out[key]!r}") from None
        if math.isnan(val):
            if key == "accuracy":
                raise ValueError(f"{where}: accuracy is NaN")
        elif not 0.0 <= val <= 1.0:
            raise ValueError(f"{where}: {key} = {val} is not a fraction in [0, 1]")
        out[key] = val
    return out


def collect_records(metric_files: Sequence[Path]) -> list[dict]:
    """Read per-task metric JSON files (one object each) into a list of records, in the given order.

    Raises:
        FileNotFoundError: a file is missing (the message names it).
        ValueError: a file is not valid JSON, not a JSON object, or lacks one of
            :data:`REQUIRED_KEYS`; the message names the file.
    """
    records = []
    for p in metric_files:
        path = Path(p)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        records.append(_check_record(data, str(path)))
    return records


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100.0 * x:.1f}"


def _pct_sd(mean: float, sd: float, n: int) -> str:
    if n <= 1 or math.isnan(mean):
        return _pct(mean)
    return f"{_pct(mean)} ± {100.0 * sd:.1f}"


def _summarise(records: list[dict]) -> list[dict[str, Any]]:
    """Group records into tables; one table per (dataset, method, backbone, hash_bits).

    Within a table, rows are tasks in order of first appearance; a task with several seeds shows
    the mean over seeds (± sample standard deviation). The Average row is the plain mean of the
    per-task means; it is NaN (shown "n/a") if any task's value is NaN, never silently dropped.
    """
    groups: dict[tuple, dict[str, list[dict]]] = {}
    for rec in records:
        gkey = tuple(rec[k] for k in _GROUP_KEYS)
        tasks = groups.setdefault(gkey, {})
        tasks.setdefault(str(rec["task"]), []).append(rec)
    tables = []
    for gkey, tasks in groups.items():
        rows = []
        seeds: set = set()
        for task, recs in tasks.items():
            task_seeds = [r["seed"] for r in recs]
            if len(set(map(str, task_seeds))) != len(task_seeds):
                raise ValueError(
                    f"records: duplicate seed for task {task!r} in table {dict(zip(_GROUP_KEYS, gkey))}"
                )
            seeds.update(map(str, task_seeds))
            acc = np.array([r["accuracy"] for r in recs], dtype=float)
            mp = np.array([r["map"] for r in recs], dtype=float)
            n = len(recs)
            rows.append(
                {
                    "task": task,
                    "source": str(recs[0]["source"]),
                    "target": str(recs[0]["target"]),
                    "n_source": recs[0]["n_source"],
                    "n_target": recs[0]["n_target"],
                    "n_seeds": n,
                    "accuracy": float(acc.mean()),
                    "accuracy_sd": float(acc.std(ddof=1)) if n > 1 else 0.0,
                    "map": float(mp.mean()),
                    "map_sd": float(mp.std(ddof=1)) if n > 1 else 0.0,
                }
            )
        tables.append(
            {
                **dict(zip(_GROUP_KEYS, gkey)),
                "seeds": sorted(seeds, key=lambda s: (len(s), s)),
                "rows": rows,
                "avg_accuracy": float(np.mean([r["accuracy"] for r in rows])),
                "avg_map": float(np.mean([r["map"] for r in rows])),
            }
        )
    return tables


def _table_heading(t: dict[str, Any]) -> str:
    return (
        f"{t['method']} — {t['dataset']}, {t['backbone']}, {t['hash_bits']} bits "
        f"(seeds: {', '.join(t['seeds'])})"
    )


def _md_cell(text: str) -> str:
    return str(text).replace("|", r"\|").replace("\n", " ")


def _markdown(title: str, protocol: Mapping[str, str], tables: list[dict[str, Any]]) -> str:
    lines = [f"# {_md_cell(title)}", "", "## Protocol", ""]
    lines += [f"- **{_md_cell(k)}**: {_md_cell(v)}" for k, v in protocol.items()]
    lines += ["", "## Results", ""]
    for t in tables:
        lines += [
            f"### {_md_cell(_table_heading(t))}",
            "",
            f"| task | accuracy (%) | mAP@{t['hash_bits']} (%) |",
            "|:---|---:|---:|",
        ]
        for r in t["rows"]:
            lines.append(
                f"| {_md_cell(r['task'])} | {_pct_sd(r['accuracy'], r['accuracy_sd'], r['n_seeds'])}"
                f" | {_pct_sd(r['map'], r['map_sd'], r['n_seeds'])} |"
            )
        lines += [f"| **Average** | {_pct(t['avg_accuracy'])} | {_pct(t['avg_map'])} |", ""]
    lines.append(
        "Values are percentages (one decimal); with several seeds a cell is mean ± sample standard "
        "deviation over seeds, and Average is the mean of the per-task means."
    )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def _safe_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(key).replace("->", "_to_")).strip("_.")
    if not name:
        raise ValueError(f"pr_curves: key {key!r} gives an empty file name")
    return name


def _check_pr(key: str, frame: Any) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"pr_curves[{key!r}] must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in _PR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"pr_curves[{key!r}] lacks columns {missing}")
    return frame


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
    """Write one task's precision-recall figure (PR curve + precision/recall vs radius) as a PNG.

    ``frame`` is :func:`dahash.metrics.precision_recall_curve`'s output; the write is atomic.
    """
    write_bytes_atomic(Path(path), _task_figure(title, _check_pr(title, frame)))
    return Path(path)


def _all_figure(pr_curves: Mapping[str, pd.DataFrame]) -> bytes:
    fig = _new_figure(6.5, 5.0)
    ax = fig.subplots()
    for key, frame in pr_curves.items():
        ax.plot(frame["recall"], frame["precision"], marker=".", label=str(key))
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
           title="precision-recall curves, all tasks")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    return _png_bytes(fig)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
_CSS = """
body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { font-weight: bold; } dd { margin: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.6rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.average { font-weight: bold; background: #f3f3f3; }
img { max-width: 100%; } figure { margin: 1rem 0; }
""".strip()


def _html(
    title: str,
    protocol: Mapping[str, str],
    tables: list[dict[str, Any]],
    figures: list[tuple[str, str]],
) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style></head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
        "<h2>Protocol</h2>",
        "<dl>",
    ]
    parts += [f"<dt>{e(str(k))}</dt><dd>{e(str(v))}</dd>" for k, v in protocol.items()]
    parts += ["</dl>", "<h2>Results</h2>"]
    for t in tables:
        parts += [
            f"<h3>{e(_table_heading(t))}</h3>",
            "<table>",
            "<thead><tr><th>task</th><th>source</th><th>target</th><th>n_source</th>"
            f"<th>n_target</th><th>accuracy (%)</th><th>mAP@{e(str(t['hash_bits']))} (%)</th>"
            "</tr></thead>",
            "<tbody>",
        ]
        for r in t["rows"]:
            parts.append(
                f"<tr><td>{e(r['task'])}</td><td>{e(r['source'])}</td><td>{e(r['target'])}</td>"
                f"<td class=\"num\">{e(str(r['n_source']))}</td>"
                f"<td class=\"num\">{e(str(r['n_target']))}</td>"
                f"<td class=\"num\">{e(_pct_sd(r['accuracy'], r['accuracy_sd'], r['n_seeds']))}</td>"
                f"<td class=\"num\">{e(_pct_sd(r['map'], r['map_sd'], r['n_seeds']))}</td></tr>"
            )
        parts += [
            '<tr class="average"><td colspan="5">Average</td>'
            f'<td class="num">{_pct(t["avg_accuracy"])}</td>'
            f'<td class="num">{_pct(t["avg_map"])}</td></tr>',
            "</tbody>",
            "</table>",
        ]
    parts.append(
        "<p>Values are percentages (one decimal); with several seeds a cell is mean ± sample "
        "standard deviation over seeds, and Average is the mean of the per-task means.</p>"
    )
    parts.append("<h2>Precision-recall curves</h2>")
    if not figures:
        parts.append("<p>No precision-recall curves were given.</p>")
    for fname, caption in figures:
        parts.append(
            f'<figure><img src="{e(fname)}" alt="{e(caption)}">'
            f"<figcaption>{e(caption)}</figcaption></figure>"
        )
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def render_report(
    records: list[dict],
    pr_curves: dict[str, pd.DataFrame],
    out_dir: Path,
    *,
    title: str,
    protocol: dict[str, str],
) -> dict[str, Path]:
    """Write results.md, index.html and PR-curve PNGs into ``out_dir``.

    Args:
        records: per-task metric dicts with at least :data:`REQUIRED_KEYS` (``accuracy`` and
            ``map`` as fractions in [0, 1]; ``map`` may be NaN/None when no query was scored).
            Extra keys are allowed and ignored. One table is made per
            (dataset, method, backbone, hash_bits); rows are tasks in order of first appearance;
            a task with several seeds shows mean ± sample std over seeds; the Average row is the
            mean of the per-task means (n/a if any is NaN).
        pr_curves: label (usually the task) -> DataFrame with at least ``radius``, ``precision``,
            ``recall`` (as from :func:`dahash.metrics.precision_recall_curve`). Each gives
            ``pr_<label>.png`` with ``->`` written ``_to_`` and other characters outside
            ``[A-Za-z0-9_.-]`` as ``_``; all of them together give ``pr_all.png``.
        out_dir: created if missing.
        title: report title (HTML-escaped).
        protocol: name -> description, shown as a definition list (HTML) / bullet list (markdown);
            see :data:`EVALUATION_RULES` for the evaluation rules worded for it.

    Returns:
        file name -> written path, e.g. ``{"results.md": ..., "index.html": ...,
        "pr_all.png": ..., "pr_A_W.png": ...}``.

    Raises:
        ValueError: empty ``records``, a record lacking a required key or with a value outside
            [0, 1], duplicate (task, seed) in a table, a malformed PR frame, or two PR labels
            that map to the same file name.
    """
    if not records:
        raise ValueError("records is empty: nothing to report")
    recs = [_check_record(r, f"records[{i}]") for i, r in enumerate(records)]
    curves = {str(k): _check_pr(str(k), v) for k, v in pr_curves.items()}

    fig_names: dict[str, str] = {}
    for key in curves:
        fname = f"pr_{_safe_name(key)}.png"
        if fname == "pr_all.png" or fname in fig_names.values():
            raise ValueError(f"pr_curves: key {key!r} maps to a file name already in use ({fname})")
        fig_names[key] = fname

    tables = _summarise(recs)  # validates (task, seed) uniqueness before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    figures: list[tuple[str, str]] = []
    if curves:
        write_bytes_atomic(out / "pr_all.png", _all_figure(curves))
        written["pr_all.png"] = out / "pr_all.png"
        figures.append(("pr_all.png", "All tasks"))
    for key, frame in curves.items():
        fname = fig_names[key]
        write_bytes_atomic(out / fname, _task_figure(key, frame))
        written[fname] = out / fname
        figures.append((fname, key))

    write_text_atomic(out / "results.md", _markdown(title, protocol, tables))
    written["results.md"] = out / "results.md"
    write_text_atomic(out / "index.html", _html(title, protocol, tables, figures))
    written["index.html"] = out / "index.html"
    return written
