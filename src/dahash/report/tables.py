"""The report's tables: target accuracy (Table 2/3 analogue), mAP (Table 4 analogue and per task), precision@k
and within radius 2, the pwcf protocol's comparison with the published methods, and the per-method details.

Each function turns a :class:`dahash.report.model._Run` into :class:`dahash.report.model._Section` objects
that :mod:`dahash.report.page` writes as markdown and HTML.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from dahash.report import paper_results, pwcf_results
from dahash.report.model import (_MISSING_TASK_MARK, _PARTIAL_AVG_MARK, _RETRIEVAL_LABELS, _UPPER_BOUND_MARK, _Run,
                                 _Section, _Table, _average, _bits_label, _fmt, _mean, _method_label, _paper_key)

# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------
#: where the published values of the accuracy and mAP tables come from ({name}: the paper's table)
_ACCURACY_SOURCE = ("Published values: {name} of the paper. Each method is followed by a \"paper\" column holding the "
                    "paper's value for that method and task (the column's header names the paper's method); it is "
                    "blank where the paper has no such method or task.")
_MAP_SOURCE = ("Published values: {name} of the paper (printed as fractions, shown here as percent); blank where the "
               "paper has no such method or domain. The paper's Avg. column averages domains of both of its datasets "
               "and is not shown.")


def _published_note(sec: _Section, run: _Run, pub: Mapping | None, what: str, shown: str) -> None:
    """The paragraph on the published values: ``shown`` when the paper has a ``what`` table for this dataset and
    backbone (``pub``), else that it has none."""
    if pub is None:
        sec.paragraphs.append(f"The paper has no {what} table for dataset {run.dataset} with backbone "
                              f"{run.backbone}: no published values are shown.")
    else:
        sec.paragraphs.append(shown)


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
    else:
        _published_note(sec, run, pub, "accuracy", _ACCURACY_SOURCE.format(name=name))
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
    if not (pub is None and _pwcf_run(run)):  # pwcf: said above, the paper's protocol differs
        _published_note(sec, run, pub, "mAP", _MAP_SOURCE.format(name=name))
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
    """Per code length on the pwcf protocol: one table per metric (ranking mAP, PWCF's area_RP), ours beside the
    published values of the SAME metric only (:data:`dahash.report.pwcf_results.METRIC`)."""
    methods = [m for m in run.methods if run.info[m]["protocol"] == "pwcf" and run.reports(m, "map")]
    if not methods:
        return []
    sec = _Section(2, "Cross-domain retrieval, pwcf protocol — mAP and area_RP (%) beside the published values")
    sec.paragraphs.append(
        "Protocol of PWCF (CVPR 2020) and the papers since: a seeded random 10 % of the target items are the "
        "queries (left out of training), the source domain is the database, relevant = same class. Two metrics: "
        f"{pwcf_results.METRIC_LABELS['map']}; {pwcf_results.METRIC_LABELS['area_rp']}. The papers print both as "
        "\"MAP\"; a published value is shown only beside our value of the metric its paper computes.")
    pub_bits = pwcf_results.published_bits(run.dataset, run.backbone)
    ours_bits = sorted({b for m in methods for b in run.info[m]["hash_bits"]})
    if not pub_bits:
        sec.paragraphs.append(
            f"No published values are shown: none were transcribed for dataset {run.dataset} with backbone "
            f"{run.backbone} (transcribed: Office-Home and Office-31 with VGG-16 at 64 bits; "
            f"{pwcf_results.SOURCE}).")
    else:
        sec.paragraphs.append(f"Published values: {pwcf_results.SOURCE}; shown where dataset ({run.dataset}), "
                              f"protocol, code length, backbone ({run.backbone}) and metric match ours.")
        missing = [b for b in ours_bits if b not in pub_bits]
        if missing:
            sec.paragraphs.append(f"No published values transcribed at {', '.join(map(str, missing))} bits.")
    sec.paragraphs.append("Still open (not found offline, nothing transcribed): "
                          + "; ".join(pwcf_results.NOT_FOUND) + ".")
    out = [sec]
    for bits in ours_bits:
        ms = [m for m in methods if run.info[m]["hash_bits"] == [bits]]
        for metric in ("map", "area_rp"):
            sub = _pwcf_metric_table(run, ms, bits, metric)
            if sub is not None:
                out.append(sub)
        unknown = pwcf_results.published_pwcf_map(run.dataset, run.backbone, bits, "unknown") or {}
        if unknown and ms:
            out[-1].notes.append(
                "Not compared (metric unknown: " + pwcf_results.METRIC_SOURCES[next(iter(unknown))] + "): "
                + ", ".join(pwcf_results.METHODS[p] for p in unknown) + f" ({pwcf_results.SOURCE}).")
    return out


def _pwcf_metric_table(run: _Run, ms: list[str], bits: int, metric: str) -> _Section | None:
    """Ours (record key :data:`pwcf_results.RECORD_KEY`) beside the published values of ``metric`` at ``bits``."""
    key = pwcf_results.RECORD_KEY[metric]
    ms = [m for m in ms if run.reports(m, key)]
    if not ms:
        return None
    pub = pwcf_results.published_pwcf_map(run.dataset, run.backbone, bits, metric) or {}
    tasks = [t for t in run.tasks if any(run.values(m, t, key) for m in ms)]
    name = "ranking mAP" if metric == "map" else "area_RP"
    sub = _Section(3, f"{bits} bits — {name}")
    header = ["task", "source → target"] + [_method_label(run, m) for m in ms]
    paper_cols = set(range(len(header), len(header) + len(pub)))
    header += [f"paper {pwcf_results.METHODS[p]} ({name})" for p in pub]
    rows = []
    for t in tasks:
        src, tgt = run.task_pair[t]
        row = [t, f"{src} → {tgt}"] + [_fmt(run.values(m, t, key)) for m in ms]
        row += [f"{pub[p][(src, tgt)]:.2f}" if (src, tgt) in pub[p] else "" for p in pub]
        rows.append(row)
    avg = ["Average", ""] + [_average(run, m, key, tasks) for m in ms]
    for p in pub:
        vals = [pub[p].get(run.task_pair[t]) for t in tasks]
        avg.append(f"{float(np.mean(vals)):.2f}" if vals and all(v is not None for v in vals) else "")
    rows.append(avg)
    sub.table = _Table(header, rows, n_label=2, paper_cols=paper_cols, average_rows={len(rows) - 1})
    sub.notes.append(f"Metric of every value in this table: {pwcf_results.METRIC_LABELS[metric]}.")
    if pub:
        sub.notes.append("Paper Average: the mean of the published values over this run's tasks (the paper's own "
                         "Avg. mixes Office-Home and Office-31). Where the metric was read: "
                         + "; ".join(f"{pwcf_results.METHODS[p]}: {name}, {pwcf_results.METRIC_SOURCES[p]}" for p in pub)
                         + ".")
        sub.notes += _behind_notes(run, ms, tasks, pub, key)
    else:
        sub.notes.append(f"No published value with this metric ({name}) is transcribed for these tasks.")
    return sub


def _behind_notes(run: _Run, methods: list[str], tasks: list[str], pub: Mapping[str, Mapping],
                  key: str = "map") -> list[str]:
    """One plain sentence per our method: which published methods it trails, on how many tasks, by how much."""
    notes = []
    for m in methods:
        parts, ahead = [], []
        for p, table in pub.items():
            pairs = [(100.0 * _mean(run.values(m, t, key)), table[run.task_pair[t]]) for t in tasks
                     if run.task_pair[t] in table and run.values(m, t, key)]
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


