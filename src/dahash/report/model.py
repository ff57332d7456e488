"""The report's data model: reading and checking the metrics records, analysis records and PR curves, the
per-method and per-task tables they form (:class:`_Run`), and the number formatting every table shares.

Records follow :mod:`dahash.eval.records` (the schema's one copy). Fractions in [0, 1] are shown as percentages
with one decimal; None (not applicable) gives an empty cell, never 0; NaN shows "n/a".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dahash.eval.records import check_record as _check_record
from dahash.report import paper_results

_RETRIEVAL_LABELS = {"source_database": "source database", "target_split": "target split"}
_UPPER_BOUND_MARK = "‡"
_MISSING_TASK_MARK = "†"
_PARTIAL_AVG_MARK = "*"


# --------------------------------------------------------------------------------------------
# input validation and I/O
# --------------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def collect_records(metric_files: Sequence[Path]) -> list[dict]:
    """Read per-(method, task, seed) metric JSON files (one object each), in the given order.

    Raises:
        FileNotFoundError: a file is missing (the message names it).
        ValueError: a file is not valid JSON, not a JSON object, lacks one of
            :data:`REQUIRED_KEYS` or has a bad value; the message names the file.
    """
    return [_check_record(_read_json(Path(p)), str(p)) for p in metric_files]


def method_summary(records: Sequence[Mapping[str, Any]], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method, the plain mean over its runs (every task and seed) of accuracy and mAP.

    ``{method: {"accuracy": mean or None, "map": mean or None, "runs": n}}`` for each of ``methods`` that has
    records: with T tasks and S seeds per task, ``accuracy = sum of the T * S run accuracies / (T * S)``, which
    is also the mean over tasks of the per-task mean over seeds (every task has the same seeds). ``None`` where
    the method has no such score (no classifier: ITQ, SuH ...; no codes: CORAL, JDA ...); never 0. A run whose
    score is null does not count in that mean.
    """
    out: dict[str, dict[str, Any]] = {}
    for method in methods:
        runs = [r for r in records if r["method"] == method]
        if not runs:
            continue
        entry: dict[str, Any] = {}
        for key in ("accuracy", "map"):
            values = [float(r[key]) for r in runs if r.get(key) is not None]
            entry[key] = float(np.mean(values)) if values else None
        out[method] = {**entry, "runs": len(runs)}
    return out


def _check_analysis(rec: Any, where: str, base: Path | None) -> dict[str, Any]:
    if not isinstance(rec, Mapping):
        raise ValueError(f"{where}: an analysis record must be a JSON object / dict")
    if not isinstance(rec.get("task"), str) or not rec["task"]:
        raise ValueError(f"{where}: 'task' must be a non-empty string")
    out: dict[str, Any] = {"task": rec["task"]}
    for key in ("source", "target"):
        val = rec.get(key)
        if val is not None and not isinstance(val, str):
            raise ValueError(f"{where}: {key!r} must be a string")
        out[key] = val
    dist = rec.get("a_distance") or {}
    tsne = rec.get("tsne") or {}
    if not isinstance(dist, Mapping) or not isinstance(tsne, Mapping):
        raise ValueError(f"{where}: 'a_distance' and 'tsne' must be objects (feature kind -> value)")
    out["a_distance"] = {}
    for kind, val in dist.items():
        try:
            fval = float(val)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: a_distance[{kind!r}] = {val!r} is not a number") from None
        if isinstance(val, bool) or not math.isfinite(fval):
            raise ValueError(f"{where}: a_distance[{kind!r}] = {val!r} is not a finite number")
        out["a_distance"][str(kind)] = fval
    out["tsne"] = {}
    for kind, name in tsne.items():
        if not isinstance(name, (str, Path)) or not str(name):
            raise ValueError(f"{where}: tsne[{kind!r}] must be a PNG file name")
        p = Path(name)
        out["tsne"][str(kind)] = base / p if base is not None and not p.is_absolute() else p
    return out


def collect_analysis(analysis_files: Sequence[Path]) -> list[dict]:
    """Read feature-analysis records (``analysis/<dataset>/<task>/analysis.json``), in order.

    Each file holds ``{"task", "source", "target", "a_distance": {kind: float},
    "tsne": {kind: "file.png"}}``; t-SNE names are resolved against the file's folder.

    Raises:
        FileNotFoundError: a file is missing. ValueError: malformed (the message names the file).
    """
    return [_check_analysis(_read_json(Path(p)), str(p), Path(p).parent) for p in analysis_files]


def _safe_name(key: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(key).replace("->", "_to_")).strip("_.")
    if not name:
        raise ValueError(f"key {key!r} gives an empty file name")
    return name


# --------------------------------------------------------------------------------------------
# the data model
# --------------------------------------------------------------------------------------------
@dataclass
class _Run:
    """Everything the report shows, indexed: (method, task) -> records over seeds."""

    dataset: str
    backbone: str
    methods: list[str]
    tasks: list[str]
    domains: list[str]
    task_pair: dict[str, tuple[str, str]]
    cells: dict[tuple[str, str], list[dict]]
    info: dict[str, dict[str, Any]] = field(default_factory=dict)

    def values(self, method: str, task: str, key: str) -> list[float]:
        return [r[key] for r in self.cells.get((method, task), []) if r.get(key) is not None]

    def reports(self, method: str, key: str) -> bool:
        return any(self.values(method, t, key) for t in self.tasks)

    def task_for(self, source: str, target: str) -> str | None:
        return next((t for t in self.tasks if self.task_pair[t] == (source, target)), None)


def _ordered(given: Sequence[str] | None, seen: list[str]) -> list[str]:
    """``given`` (those present in ``seen``) first, then the rest of ``seen`` in appearance order."""
    head = [str(x) for x in (given or []) if str(x) in seen]
    return list(dict.fromkeys(head + seen))


def _build(records: list[dict], methods: Sequence[str] | None, tasks: Sequence[str] | None,
           domains: Sequence[str] | None) -> _Run:
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    backbones = list(dict.fromkeys(r["backbone"] for r in records))
    if len(datasets) > 1 or len(backbones) > 1:
        raise ValueError(f"records mix datasets {datasets} / backbones {backbones}: one report per "
                         "dataset and backbone")
    cells: dict[tuple[str, str], list[dict]] = {}
    task_pair: dict[str, tuple[str, str]] = {}
    for rec in records:
        task, method = rec["task"], rec["method"]
        pair = (rec["source"], rec["target"])
        if task_pair.setdefault(task, pair) != pair:
            raise ValueError(f"records: task {task!r} has two source/target pairs {task_pair[task]} and {pair}")
        group = cells.setdefault((method, task), [])
        if any(str(r["seed"]) == str(rec["seed"]) for r in group):
            raise ValueError(f"records: duplicate seed {rec['seed']!r} for method {method!r}, task {task!r}")
        group.append(rec)
    seen_methods = list(dict.fromkeys(r["method"] for r in records))
    seen_tasks = list(dict.fromkeys(r["task"] for r in records))
    seen_domains = list(dict.fromkeys(d for r in records for d in (r["source"], r["target"])))
    run = _Run(
        dataset=datasets[0], backbone=backbones[0], methods=_ordered(methods, seen_methods),
        tasks=_ordered(tasks, seen_tasks), domains=_ordered(domains, seen_domains),
        task_pair=task_pair, cells=cells,
    )
    for m in run.methods:
        recs = [r for t in run.tasks for r in cells.get((m, t), [])]
        first = recs[0]
        bits = sorted({r["hash_bits"] for r in recs if r["map"] is not None and r["hash_bits"] is not None})
        run.info[m] = {
            "algorithm": first.get("algorithm"),
            "family": first.get("family"),
            "retrieval": first.get("retrieval"),
            "protocol": first.get("protocol") or "dah",
            "uses_target_labels": any(r.get("uses_target_labels") is True for r in recs),
            "hash_bits": bits,
            "seeds": sorted({str(r["seed"]) for r in recs}, key=lambda s: (len(s), s)),
        }
    return run


# --------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------
def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _fmt(values: list[float]) -> str:
    """Blank when no value (not applicable); "n/a" when NaN; mean (± sample sd with 2+ seeds)."""
    if not values:
        return ""
    mean = _mean(values)
    if math.isnan(mean):
        return "n/a"
    if len(values) == 1:
        return f"{100.0 * mean:.1f}"
    return f"{100.0 * mean:.1f} ± {100.0 * float(np.std(values, ddof=1)):.1f}"


def _average(run: _Run, method: str, key: str, tasks: list[str]) -> str:
    """Mean of per-task means; "n/a" if a task has no value or a NaN one (never silently dropped)."""
    means = [_mean(run.values(method, t, key)) for t in tasks]
    if not tasks or any(math.isnan(v) for v in means):
        return "n/a"
    return f"{100.0 * float(np.mean(means)):.1f}"


def _paper_key(run: _Run, method: str, published: Mapping[str, Any] | None) -> str | None:
    """The published column for a method: its name; else, when the name is not one of the paper's
    methods at all (e.g. "dah_auto"), its ``algorithm``; None if neither ("dah_e" with algorithm
    "dah" gets DAH-e's column in Tables 2/3 and none in Table 4, never DAH's)."""
    if published is None:
        return None
    if method in published:
        return method
    algorithm = run.info[method]["algorithm"]
    if method not in paper_results.PAPER_LABELS and algorithm in published:
        return algorithm
    return None


def _method_label(run: _Run, method: str) -> str:
    return method + (f" {_UPPER_BOUND_MARK}" if run.info[method]["uses_target_labels"] else "")


def _bits_label(run: _Run, methods: list[str]) -> str:
    bits = sorted({b for m in methods for b in run.info[m]["hash_bits"]})
    return f"mAP@{bits[0]}" if len(bits) == 1 else "mAP"


@dataclass
class _Table:
    header: list[str]
    rows: list[list[str]]
    n_label: int = 1  # leading label columns (left-aligned)
    paper_cols: set[int] = field(default_factory=set)
    average_rows: set[int] = field(default_factory=set)


@dataclass
class _Section:
    level: int
    title: str
    paragraphs: list[str] = field(default_factory=list)
    table: _Table | None = None
    notes: list[str] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (file name, caption)
    figure_class: str = ""
    definitions: Mapping[str, str] | None = None


