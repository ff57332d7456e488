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


from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dahash.atomic import write_bytes_atomic, write_text_atomic
from dahash.eval.records import EVALUATION_RULES, FAMILIES, PROTOCOLS, REQUIRED_KEYS, RETRIEVALS
from dahash.report import paper_results
from dahash.report.figures import _a_distance_figure, _check_pr, _curves_figure, plot_pr_curve
from dahash.eval.records import check_record as _check_record
from dahash.report.model import (_Run, _Section, _Table, _build, _check_analysis, _method_label, _safe_name,
                                 collect_analysis, collect_records, method_summary)
from dahash.report.tables import (_accuracy_section, _detail_sections, _map_sections, _precision_sections,
                                  _pwcf_sections)

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

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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

