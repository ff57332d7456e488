"""Comparison report: every method's per-task metrics beside the paper's published numbers.

Writes into one folder: ``results.md``, ``index.html`` (inline CSS, no CDN, no JavaScript) and PNG
figures next to them, referenced by relative links. Sections, after the protocol:

* **Target accuracy (%) -- Table 2/3 analogue**: rows = tasks (+ Average), columns = the methods
  that classify, each followed by a "paper" column with the published value
  (:mod:`dahash.report.paper_results`) when the paper has a table for the dataset and backbone;
* **mAP@d (%) -- Table 4 analogue**: rows = the methods with hash codes, columns = target domains,
  each cell from the task :func:`dahash.report.paper_results.table4_sources` picks; then the full per-task
  mAP table;
* **Precision-recall curves -- Figures 4/5 analogue**: one figure per target domain (the Table-4
  task, one curve per hashing method) and one per task (all methods overlaid);
* **Feature analysis -- Figure 3 analogue**: A-distance bar chart (feature kind x task) and the
  t-SNE images, when analysis records are given;
* **Precision@k and within Hamming radius 2 (%)**: per method, averaged over tasks, when the records
  carry them (``precision_at_k``, ``precision_radius2``);
* **pwcf protocol** (records with ``protocol: pwcf``): mAP per task and code length beside the published
  values of PWCF, PEACE, IDEA, CPH, COUPLE and VPDS (:mod:`dahash.report.pwcf_results`) where dataset,
  protocol, bits and backbone match, with a plain statement of where ours is behind;
* per-method detail tables (task, sizes, seeds, accuracy, mAP).

Records are the per-(method, task, seed) dicts written by the evaluation stage; their schema is
:mod:`dahash.eval.records` (the one copy). Fractions are shown as percentages with one decimal; a null
(not applicable: a hashing method does not classify, TCA has no codes) gives an empty cell, never 0; a NaN
``map`` means no query was scored and shows "n/a"; ``uses_target_labels`` (SuH) is flagged in the tables.

Every file is written atomically (temporary file in the same directory, then ``os.replace``), and
all inputs are validated before the first write, so a failing call leaves nothing new behind.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dahash.report import paper_results
from dahash.report import pwcf_results
from dahash.atomic import write_bytes_atomic, write_text_atomic
from dahash.eval.records import (EVALUATION_RULES, FAMILIES, PROTOCOLS, REQUIRED_KEYS, RETRIEVALS,
                                 check_record as _check_record)

__all__ = [
    "EVALUATION_RULES",
    "FAMILIES",
    "PROTOCOLS",
    "REQUIRED_KEYS",
    "RETRIEVALS",
    "collect_analysis",
    "collect_records",
    "method_summary",
    "plot_pr_curve",
    "render_report",
]

_RETRIEVAL_LABELS = {"source_database": "source database", "target_split": "target split"}
_PR_COLUMNS = ("radius", "precision", "recall")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
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


def _check_pr(key: Any, frame: Any) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"pr_curves[{key!r}] must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in _PR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"pr_curves[{key!r}] lacks columns {missing}")
    return frame


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
        return [r[key] for r in self.cells.get((method, task), []) if r[key] is not None]

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


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------
def _accuracy_section(run: _Run) -> _Section:
    sec = _Section(2, "Target accuracy (%) — Table 2/3 analogue")
    methods = [m for m in run.methods if run.reports(m, "accuracy")]
    if not methods:
        sec.paragraphs.append("No method in this run reports target accuracy.")
        return sec
    pub = paper_results.published_accuracy(run.dataset, run.backbone)
    pub_avg = paper_results.published_accuracy_average(run.dataset, run.backbone) or {}
    name = paper_results.table_name(run.dataset, run.backbone, "accuracy")
    if pub is not None and _pwcf_run(run):
        pub = None
        sec.paragraphs.append("The DAH paper's accuracies are not shown: this run follows the pwcf protocol (its "
                              "query images are left out of training), not the paper's.")
    elif pub is None:
        sec.paragraphs.append(
            f"The paper has no accuracy table for dataset {run.dataset} with backbone {run.backbone}: "
            "no published values are shown.")
    else:
        sec.paragraphs.append(
            f"Published values: {name} of the paper. Each method is followed by a \"paper\" column "
            "holding the paper's value for that method and task (the column's header names the "
            "paper's method); it is blank where the paper has no such method or task.")
    header = ["task", "source → target"]
    paper_cols: set[int] = set()
    keys: dict[str, str | None] = {}
    for m in methods:
        header.append(_method_label(run, m))
        if pub is not None:
            keys[m] = _paper_key(run, m, pub)
            paper_cols.add(len(header))
            header.append("paper " + paper_results.PAPER_LABELS.get(keys[m], keys[m]) if keys[m] else "paper")
    rows = []
    for t in run.tasks:
        src, tgt = run.task_pair[t]
        row = [t, f"{src} → {tgt}"]
        for m in methods:
            row.append(_fmt(run.values(m, t, "accuracy")))
            if pub is not None:
                val = pub[keys[m]].get((src, tgt)) if keys[m] else None
                row.append("" if val is None else f"{val:.2f}")
        rows.append(row)
    avg_row = ["Average", ""]
    partial = False
    for m in methods:
        avg_row.append(_average(run, m, "accuracy", run.tasks))
        if pub is not None:
            cell = ""
            if keys[m]:
                vals = [pub[keys[m]].get(run.task_pair[t]) for t in run.tasks]
                if all(v is not None for v in vals):
                    if {run.task_pair[t] for t in run.tasks} == set(pub[keys[m]]) and keys[m] in pub_avg:
                        cell = f"{pub_avg[keys[m]]:.2f}"  # the paper's printed Avg.
                    else:
                        cell = f"{float(np.mean(vals)):.2f}{_PARTIAL_AVG_MARK}"
                        partial = True
            avg_row.append(cell)
    rows.append(avg_row)
    sec.table = _Table(header, rows, n_label=2, paper_cols=paper_cols, average_rows={len(rows) - 1})
    sec.notes.append(
        "Ours: percent, one decimal; with several seeds mean ± sample standard deviation over seeds. "
        "Average = mean of the per-task means (n/a when a task has no value or a NaN one). "
        "An empty cell means not applicable (the method does not classify) or not run.")
    if partial:
        sec.notes.append(f"{_PARTIAL_AVG_MARK} mean of the published values over this run's tasks "
                         "only; the paper's Avg. covers all of its tasks.")
    _upper_bound_note(run, methods, sec)
    return sec


def _pwcf_run(run: _Run) -> bool:
    """True when any method of the run was evaluated on the pwcf protocol."""
    return any(run.info[m]["protocol"] == "pwcf" for m in run.methods)


def _upper_bound_note(run: _Run, methods: list[str], sec: _Section) -> None:
    if any(run.info[m]["uses_target_labels"] for m in methods):
        sec.notes.append(f"{_UPPER_BOUND_MARK} uses target labels (supervised hashing): an upper "
                         "bound, not a domain-adaptation result.")


def _map_sections(run: _Run, sources: dict[str, str]) -> list[_Section]:
    methods = [m for m in run.methods if run.reports(m, "map")]
    label = _bits_label(run, methods) if methods else "mAP@d"
    sec = _Section(2, f"{label} (%) — Table 4 analogue")
    if not methods:
        sec.paragraphs.append("No method in this run reports mAP (no method produced hash codes).")
        return [sec]
    pub = paper_results.published_map(run.dataset, run.backbone)
    name = paper_results.table_name(run.dataset, run.backbone, "map")
    if pub is not None and _pwcf_run(run):
        pub = None
        sec.paragraphs.append("The DAH paper's Table 4 is not shown: it uses all target items as queries, this run "
                              "the pwcf protocol (see the pwcf section for the published values that match).")
    rule = ", ".join(f"{s} → {t}" for t, s in sources.items())
    sec.paragraphs.append(
        f"One column per target domain; each cell comes from the task given by the paper's Table 4 "
        f"protocol (source → target): {rule}. For methods retrieving within a target split the "
        "source plays no part.")
    if pub is None and _pwcf_run(run):
        pass  # said above: the paper's protocol differs
    elif pub is None:
        sec.paragraphs.append(f"The paper has no mAP table for dataset {run.dataset} with backbone "
                              f"{run.backbone}: no published values are shown.")
    else:
        sec.paragraphs.append(
            f"Published values: {name} of the paper (printed as fractions, shown here as percent); "
            "blank where the paper has no such method or domain. The paper's Avg. column averages "
            "domains of both of its datasets and is not shown.")
    header = ["method", "retrieval"]
    paper_cols: set[int] = set()
    missing: list[str] = []
    col_task: dict[str, str | None] = {}
    for tgt, src in sources.items():
        col_task[tgt] = run.task_for(src, tgt)
        mark = ""
        if col_task[tgt] is None:
            mark = f" {_MISSING_TASK_MARK}"
            missing.append(f"{src} → {tgt}")
        header.append(f"{tgt} (from {src}){mark}")
        if pub is not None:
            paper_cols.add(len(header))
            header.append("paper")
    header.append("Average")
    rows = []
    for m in methods:
        retrieval = run.info[m]["retrieval"]
        key = _paper_key(run, m, pub)
        via = f" [paper: {paper_results.PAPER_LABELS.get(key, key)}]" if key is not None and key != m else ""
        row = [_method_label(run, m) + via, _RETRIEVAL_LABELS.get(retrieval, "")]
        for tgt in sources:
            task = col_task[tgt]
            row.append(_fmt(run.values(m, task, "map")) if task else "")
            if pub is not None:
                val = pub[key].get(tgt) if key else None
                row.append("" if val is None else f"{val:.1f}")
        tasks = [col_task[t] for t in sources]
        row.append(_average(run, m, "map", tasks) if all(tasks) else "n/a")
        rows.append(row)
    sec.table = _Table(header, rows, n_label=2, paper_cols=paper_cols)
    sec.notes.append("Ours: percent, one decimal, mean ± sample standard deviation over seeds; "
                     "n/a = no query scored (NaN) or, for Average, a domain without a value.")
    if missing:
        sec.notes.append(f"{_MISSING_TASK_MARK} the protocol task ({'; '.join(missing)}) is not among "
                         "this run's tasks: the column is blank.")
    _upper_bound_note(run, methods, sec)

    per_task = _Section(3, f"{label} (%) per task")
    rows = []
    for t in run.tasks:
        src, tgt = run.task_pair[t]
        rows.append([t, f"{src} → {tgt}"] + [_fmt(run.values(m, t, "map")) for m in methods])
    rows.append(["Average", ""] + [_average(run, m, "map", run.tasks) for m in methods])
    per_task.table = _Table(["task", "source → target"] + [_method_label(run, m) for m in methods],
                            rows, n_label=2, average_rows={len(rows) - 1})
    bits = {m: run.info[m]["hash_bits"] for m in methods}
    if len({b for v in bits.values() for b in v}) > 1:
        per_task.notes.append("Code lengths differ: " + ", ".join(
            f"{m}: {'/'.join(map(str, b))} bits" for m, b in bits.items()))
    return [sec, per_task]


_PRECISION_COLUMNS = (("100", "P@100"), ("500", "P@500"), ("1000", "P@1000"))


def _precision_values(run: _Run, method: str, task: str, key: str) -> list[float]:
    """Per-seed values of precision@k (``key`` = "100", ...) or ``"radius2"`` for (method, task)."""
    out = []
    for r in run.cells.get((method, task), []):
        v = r.get("precision_radius2") if key == "radius2" else (r.get("precision_at_k") or {}).get(key)
        if v is not None:
            out.append(v)
    return out


def _precision_sections(run: _Run) -> list[_Section]:
    """Precision@100/500/1000 and within Hamming radius 2, per method averaged over the tasks."""
    keys = [k for k, _ in _PRECISION_COLUMNS] + ["radius2"]
    methods = [m for m in run.methods if any(_precision_values(run, m, t, k) for t in run.tasks for k in keys)]
    if not methods:
        return []
    sec = _Section(2, "Precision@k and within Hamming radius 2 (%)")
    sec.paragraphs.append("Same queries, database and stable ranking as the mAP (rules in the protocol section). "
                          "Cells: mean over the tasks of the per-task means (n/a when a task lacks a value).")
    rows = []
    for m in methods:
        row = [_method_label(run, m), "/".join(map(str, run.info[m]["hash_bits"]))]
        for k in keys:
            means = [_mean(_precision_values(run, m, t, k)) for t in run.tasks]
            row.append("n/a" if any(math.isnan(v) for v in means) else f"{100.0 * float(np.mean(means)):.1f}")
        rows.append(row)
    sec.table = _Table(["method", "bits"] + [h for _, h in _PRECISION_COLUMNS] + ["P@r≤2"], rows, n_label=2)
    return [sec]


def _pwcf_sections(run: _Run) -> list[_Section]:
    """mAP per task and code length on the pwcf protocol, beside the published values that match."""
    methods = [m for m in run.methods if run.info[m]["protocol"] == "pwcf" and run.reports(m, "map")]
    if not methods:
        return []
    sec = _Section(2, "Cross-domain retrieval, pwcf protocol — mAP (%) beside the published values")
    sec.paragraphs.append(
        "Protocol of PWCF (CVPR 2020) and the papers since: a seeded random 10 % of the target items are the "
        "queries (left out of training), the source domain is the database, relevant = same class.")
    pub_bits = pwcf_results.published_bits(run.dataset, run.backbone)
    ours_bits = sorted({b for m in methods for b in run.info[m]["hash_bits"]})
    if not pub_bits:
        sec.paragraphs.append(
            f"No published values are shown: none were transcribed for dataset {run.dataset} with backbone "
            f"{run.backbone} (transcribed: Office-Home and Office-31 with VGG-16 at 64 bits; "
            f"{pwcf_results.SOURCE}).")
    else:
        sec.paragraphs.append(f"Published values: {pwcf_results.SOURCE}; shown where dataset ({run.dataset}), "
                              f"protocol, code length and backbone ({run.backbone}) match ours.")
        missing = [b for b in ours_bits if b not in pub_bits]
        if missing:
            sec.paragraphs.append(f"No published values transcribed at {', '.join(map(str, missing))} bits.")
    out = [sec]
    for bits in ours_bits:
        ms = [m for m in methods if run.info[m]["hash_bits"] == [bits]]
        if not ms:
            continue
        pub = pwcf_results.published_pwcf_map(run.dataset, run.backbone, bits) or {}
        tasks = [t for t in run.tasks if any(run.values(m, t, "map") for m in ms)]
        sub = _Section(3, f"{bits} bits")
        header = ["task", "source → target"] + [_method_label(run, m) for m in ms]
        paper_cols = set(range(len(header), len(header) + len(pub)))
        header += [f"paper {pwcf_results.METHODS[p]}" for p in pub]
        rows = []
        for t in tasks:
            src, tgt = run.task_pair[t]
            row = [t, f"{src} → {tgt}"] + [_fmt(run.values(m, t, "map")) for m in ms]
            row += [f"{pub[p][(src, tgt)]:.2f}" if (src, tgt) in pub[p] else "" for p in pub]
            rows.append(row)
        avg = ["Average", ""] + [_average(run, m, "map", tasks) for m in ms]
        for p in pub:
            vals = [pub[p].get(run.task_pair[t]) for t in tasks]
            avg.append(f"{float(np.mean(vals)):.2f}" if vals and all(v is not None for v in vals) else "")
        rows.append(avg)
        sub.table = _Table(header, rows, n_label=2, paper_cols=paper_cols, average_rows={len(rows) - 1})
        if pub:
            sub.notes.append("Paper Average: the mean of the published values over this run's tasks (the paper's own "
                             "Avg. mixes Office-Home and Office-31).")
            sub.notes += _behind_notes(run, ms, tasks, pub)
        out.append(sub)
    return out


def _behind_notes(run: _Run, methods: list[str], tasks: list[str], pub: Mapping[str, Mapping]) -> list[str]:
    """One plain sentence per our method: which published methods it trails, on how many tasks, by how much."""
    notes = []
    for m in methods:
        parts, ahead = [], []
        for p, table in pub.items():
            pairs = [(100.0 * _mean(run.values(m, t, "map")), table[run.task_pair[t]]) for t in tasks
                     if run.task_pair[t] in table and run.values(m, t, "map")]
            pairs = [(o, v) for o, v in pairs if not math.isnan(o)]
            if not pairs:
                continue
            behind = sum(o < v for o, v in pairs)
            gap = float(np.mean([o - v for o, v in pairs]))
            label = pwcf_results.METHODS[p]
            if behind:
                parts.append(f"{label} on {behind} of {len(pairs)} tasks (mean difference {gap:+.1f} points)")
            else:
                ahead.append(label)
        if parts:
            notes.append(f"Where ours is behind: {m} trails " + "; ".join(parts) + "."
                         + (f" It is ahead of {', '.join(ahead)} on every task." if ahead else ""))
        elif ahead:
            notes.append(f"{m} is ahead of every published method shown ({', '.join(ahead)}) on every task.")
    return notes


def _detail_sections(run: _Run) -> list[_Section]:
    out = [_Section(2, "Per-method details")]
    for m in run.methods:
        info = run.info[m]
        facts = [f"seeds {', '.join(info['seeds'])}"]
        for key in ("algorithm", "family"):
            if info[key]:
                facts.append(f"{key} {info[key]}")
        if info["retrieval"]:
            facts.append(f"retrieval: {_RETRIEVAL_LABELS[info['retrieval']]}")
        if info["hash_bits"]:
            facts.append(f"{'/'.join(map(str, info['hash_bits']))} bits")
        if info["uses_target_labels"]:
            facts.append("uses target labels (upper bound)")
        sec = _Section(3, f"{m} — {run.dataset}, {run.backbone} ({'; '.join(facts)})")
        rows = []
        for t in run.tasks:
            recs = run.cells.get((m, t))
            if not recs:
                continue
            src, tgt = run.task_pair[t]
            rows.append([t, src, tgt, str(recs[0]["n_source"]), str(recs[0]["n_target"]), str(len(recs)),
                         _fmt(run.values(m, t, "accuracy")), _fmt(run.values(m, t, "map"))])
        sec.table = _Table(["task", "source", "target", "n_source", "n_target", "seeds",
                            "accuracy (%)", f"{_bits_label(run, [m]) if info['hash_bits'] else 'mAP'} (%)"],
                           rows, n_label=3)
        out.append(sec)
    return out


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


def _pr_sections(run: _Run, curves: dict[tuple[str, str], pd.DataFrame], sources: dict[str, str]
                 ) -> tuple[list[_Section], dict[str, bytes]]:
    """PR figure sections and their PNG bytes (file name -> bytes)."""
    files: dict[str, bytes] = {}
    bits = sorted({b for m in run.methods for b in run.info[m]["hash_bits"]})
    at = f"PR @{bits[0]} bits" if len(bits) == 1 else "PR"
    by_target = _Section(3, "Per target domain (the Table-4 task; first seed)", figure_class="pr")
    by_task = _Section(3, "Per task, all methods (first seed)", figure_class="pr")
    top = _Section(2, "Precision-recall curves — Figures 4/5 analogue")

    def lines(task: str) -> list[tuple[str, pd.DataFrame, bool]]:
        return [(_method_label(run, m), curves[(m, task)], bool(run.info[m]["uses_target_labels"]))
                for m in run.methods if (m, task) in curves]

    for tgt, src in sources.items():
        task = run.task_for(src, tgt)
        if task is None or not lines(task):
            continue
        fname = f"pr_target_{_safe_name(tgt)}.png"
        title = f"{at}: target {tgt} (task {task}, {src} → {tgt})"
        files[fname] = _curves_figure(lines(task), title)
        by_target.figures.append((fname, title))
    for task in run.tasks:
        if not lines(task):
            continue
        fname = f"pr_task_{_safe_name(task)}.png"
        if fname in files:
            raise ValueError(f"pr_curves: task {task!r} maps to a file name already in use ({fname})")
        src, tgt = run.task_pair[task]
        title = f"{at}: task {task} ({src} → {tgt})"
        files[fname] = _curves_figure(lines(task), title)
        by_task.figures.append((fname, title))
    if not files:
        top.paragraphs.append("No precision-recall curves: no method in this run produced hash codes.")
        return [top], files
    top.paragraphs.append("Hamming-radius retrieval r = 0..d; one curve per method with hash codes "
                          "(first seed)." + (" Dashed: uses target labels (upper bound)."
                                             if any(run.info[m]["uses_target_labels"] for m in run.methods) else ""))
    return [top, by_target, by_task], files


def _analysis_sections(analysis: list[dict]) -> tuple[list[_Section], dict[str, bytes]]:
    sec = _Section(2, "Feature analysis — Figure 3 analogue")
    if not analysis:
        sec.paragraphs.append("No feature analysis configured.")
        return [sec], {}
    files: dict[str, bytes] = {}
    kinds = list(dict.fromkeys(k for a in analysis for k in a["a_distance"]))
    if kinds:
        files["a_distance.png"] = _a_distance_figure(analysis, kinds)
        sec.paragraphs.append("Proxy A-distance 2(1 − 2ε) between source and target features, ε the "
                              "cross-validated error of a linear source-vs-target classifier (lower: "
                              "domains harder to tell apart).")
        sec.figures.append(("a_distance.png", "A-distance per task and feature kind"))
        sec.table = _Table(["task", "source → target"] + kinds, [
            [a["task"], f"{a['source']} → {a['target']}" if a["source"] and a["target"] else ""]
            + [f"{a['a_distance'][k]:.3f}" if k in a["a_distance"] else "" for k in kinds]
            for a in analysis], n_label=2)
    else:
        sec.paragraphs.append("No A-distance values were given.")
    tsne = _Section(3, "t-SNE embeddings", figure_class="tsne")
    for a in analysis:
        for kind, data in a["tsne_bytes"].items():
            fname = f"tsne_{_safe_name(a['task'])}_{_safe_name(kind)}.png"
            if fname in files:
                raise ValueError(f"analysis: {a['task']!r}/{kind!r} maps to a file name already in use ({fname})")
            files[fname] = data
            pair = f", {a['source']} → {a['target']}" if a["source"] and a["target"] else ""
            tsne.figures.append((fname, f"t-SNE of {kind} features, task {a['task']}{pair}"))
    return ([sec, tsne] if tsne.figures else [sec]), files


# --------------------------------------------------------------------------------------------
# markdown and HTML
# --------------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace("|", r"\|").replace("\n", " ")


def _markdown(title: str, sections: list[_Section]) -> str:
    lines = [f"# {_md_cell(title)}", ""]
    for sec in sections:
        lines += [f"{'#' * sec.level} {_md_cell(sec.title)}", ""]
        if sec.definitions is not None:
            lines += [f"- **{_md_cell(k)}**: {_md_cell(v)}" for k, v in sec.definitions.items()] + [""]
        lines += [p for par in sec.paragraphs for p in (_md_cell(par), "")]
        if sec.table is not None:
            t = sec.table
            lines.append("| " + " | ".join(_md_cell(h) for h in t.header) + " |")
            lines.append("|" + "|".join(":---" if i < t.n_label else "---:" for i in range(len(t.header))) + "|")
            for i, row in enumerate(t.rows):
                cells = [_md_cell(c) for c in row]
                if i in t.average_rows:
                    cells[0] = f"**{cells[0]}**"
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        lines += [p for note in sec.notes for p in (_md_cell(note), "")]
        lines += [p for fname, cap in sec.figures for p in (f"![{_md_cell(cap)}]({fname})", "")]
    return "\n".join(lines).rstrip("\n") + "\n"


_CSS = """
body { font-family: sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { font-weight: bold; } dd { margin: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 0.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #bbb; padding: 0.2rem 0.5rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.paper, td.paper { color: #666; font-style: italic; background: #fafafa; }
tr.average { font-weight: bold; background: #f3f3f3; }
p.note { font-size: 0.85rem; color: #444; margin: 0.2rem 0; }
img { max-width: 100%; } figure { margin: 1rem 0; }
div.pr figure { display: inline-block; width: 48%; vertical-align: top; margin: 0.5rem 0.5%; }
div.tsne figure { display: inline-block; width: 32%; vertical-align: top; margin: 0.5rem 0.5%; }
""".strip()


def _html_table(t: _Table) -> list[str]:
    e = html.escape
    heads = "".join(f'<th class="paper">{e(h)}</th>' if i in t.paper_cols else f"<th>{e(h)}</th>"
                    for i, h in enumerate(t.header))
    out = ["<table>", f"<thead><tr>{heads}</tr></thead>", "<tbody>"]
    for r, row in enumerate(t.rows):
        cells = []
        for i, c in enumerate(row):
            if i < t.n_label:
                cells.append(f"<td>{e(c)}</td>")
            else:
                cls = "num paper" if i in t.paper_cols else "num"
                cells.append(f'<td class="{cls}">{e(c)}</td>')
        tr = '<tr class="average">' if r in t.average_rows else "<tr>"
        out.append(f"{tr}{''.join(cells)}</tr>")
    out += ["</tbody>", "</table>"]
    return out


def _html(title: str, sections: list[_Section]) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style></head>",
        "<body>",
        f"<h1>{e(title)}</h1>",
    ]
    for sec in sections:
        parts.append(f"<h{sec.level}>{e(sec.title)}</h{sec.level}>")
        if sec.definitions is not None:
            parts.append("<dl>")
            parts += [f"<dt>{e(str(k))}</dt><dd>{e(str(v))}</dd>" for k, v in sec.definitions.items()]
            parts.append("</dl>")
        parts += [f"<p>{e(p)}</p>" for p in sec.paragraphs]
        if sec.table is not None:
            parts += _html_table(sec.table)
        parts += [f'<p class="note">{e(n)}</p>' for n in sec.notes]
        if sec.figures:
            parts.append(f'<div class="{sec.figure_class}">' if sec.figure_class else "<div>")
            parts += [f'<figure><img src="{e(f)}" alt="{e(c)}"><figcaption>{e(c)}</figcaption></figure>'
                      for f, c in sec.figures]
            parts.append("</div>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------
def render_report(
    records: list[dict],
    pr_curves: Mapping[tuple[str, str], pd.DataFrame],
    out_dir: Path,
    *,
    title: str,
    protocol: Mapping[str, str],
    methods: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    domains: Sequence[str] | None = None,
    analysis: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write the comparison report (results.md, index.html, PNGs) into ``out_dir``.

    Args:
        records: per-(method, task, seed) metric dicts with at least :data:`REQUIRED_KEYS`, all of
            one dataset and backbone (``accuracy``/``map`` fractions in [0, 1]; None = not
            applicable -> empty cell; NaN ``map`` = no query scored -> "n/a"). Optional keys:
            ``algorithm`` (picks the paper column when the method's name is not a paper method),
            ``family``, ``retrieval``, ``uses_target_labels``. Extra keys are ignored.
        pr_curves: (method, task) -> DataFrame with ``radius``, ``precision``, ``recall`` (one
            seed, usually the first). Frames without rows (methods without codes) are skipped.
        out_dir: created if missing.
        title: report title (HTML-escaped).
        protocol: name -> description, the protocol section (see :data:`EVALUATION_RULES`).
        methods, tasks: column / row order (e.g. params order); names absent from ``records``
            are ignored, names only in ``records`` follow in order of appearance.
        domains: the dataset's domains in configuration order, for Table 4's source rule
            (:func:`dahash.report.paper_results.table4_sources`); default: order of appearance.
        analysis: feature-analysis records (:func:`collect_analysis`): ``task``, ``source``,
            ``target``, ``a_distance`` {kind: float}, ``tsne`` {kind: PNG path}. None or empty:
            the report says no feature analysis is configured.

    Returns:
        file name -> written path: ``results.md``, ``index.html``, ``pr_target_<domain>.png``
        (one per target domain whose Table-4 task has curves), ``pr_task_<task>.png`` (one per task
        with curves), ``a_distance.png`` and ``tsne_<task>_<kind>.png`` (with analysis).

    Raises:
        ValueError: empty ``records``; a bad record (missing key, value outside [0, 1], NaN
            accuracy, unknown family/retrieval); several datasets/backbones; a duplicate
            (method, task, seed); a malformed PR frame or key; a malformed analysis record or a
            t-SNE file that is not a PNG; two names mapping to one file name.
        FileNotFoundError: a t-SNE image is missing.
        Nothing is written when an error is raised.
    """
    if not records:
        raise ValueError("records is empty: nothing to report")
    recs = [_check_record(r, f"records[{i}]") for i, r in enumerate(records)]
    run = _build(recs, methods, tasks, domains)
    curves: dict[tuple[str, str], pd.DataFrame] = {}
    for key, frame in pr_curves.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"pr_curves: keys must be (method, task) tuples, got {key!r}")
        frame = _check_pr(key, frame)
        if len(frame):
            curves[(str(key[0]), str(key[1]))] = frame
    checked = [_check_analysis(a, f"analysis[{i}]", None) for i, a in enumerate(analysis or [])]
    if len({a["task"] for a in checked}) != len(checked):
        raise ValueError("analysis: a task appears twice")
    for a in checked:
        a["tsne_bytes"] = {}
        for kind, path in a["tsne"].items():
            data = Path(path).read_bytes()
            if not data.startswith(_PNG_MAGIC):
                raise ValueError(f"analysis {a['task']!r}: {path} is not a PNG file")
            a["tsne_bytes"][kind] = data

    sources = paper_results.table4_sources(run.dataset, run.domains)
    sections = [_Section(2, "Protocol", definitions=dict(protocol)), _accuracy_section(run)]
    sections += _map_sections(run, sources)
    pr_secs, pr_files = _pr_sections(run, curves, sources)
    an_secs, an_files = _analysis_sections(checked)
    sections += _precision_sections(run) + _pwcf_sections(run)
    sections += pr_secs + an_secs + _detail_sections(run)
    files = {**pr_files, **an_files}
    markdown, page = _markdown(title, sections), _html(title, sections)

    # everything is validated and rendered in memory: only now touch the disk
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for fname, data in files.items():
        written[fname] = write_bytes_atomic(out / fname, data)
    written["results.md"] = write_text_atomic(out / "results.md", markdown)
    written["index.html"] = write_text_atomic(out / "index.html", page)
    return written
