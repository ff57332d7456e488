"""Stage `report`: report/index.html and report/results.md, the paper's comparison report.

Reads every metrics file (methods x tasks x seeds) and the first seed's PR curve per method and task,
plus the feature-analysis records of ``analysis.tasks`` that exist (analysis/<dataset>/<task>/
analysis.json), and renders Table 2/3 (accuracy), Table 4 (mAP per target domain) and Figures 3-5
analogues beside the paper's published values (dahash.report.paper_results). Also the DVC metrics of a run:
metrics/summary/<dataset>/<method>.json, per method the mean accuracy and mAP over tasks and seeds.
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from dahash.eval.records import PROTOCOL_SETTINGS, report_rules
from dahash.report.page import collect_analysis, collect_records, method_summary, render_report
from stages.common import StageError, atomic_path, comparison_methods, load_params, main_wrapper, write_json
from stages.paths import analysis_path, metrics_path, pr_path, report_dir, summary_dir


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    dataset = params["data"]["dataset"]
    seeds = params["train"]["seeds"]
    tasks = list(params["tasks"])
    baselines = params["baselines"]
    comparison = comparison_columns(params)
    # DAH methods run once per train.seeds, comparison methods once with baselines.seed
    first_seed = {**{m: seeds[0] for m in params["methods"]}, **{m: baselines["seed"] for m in comparison}}
    methods = list(first_seed)
    runs = [(m, t, s) for m in params["methods"] for t in tasks for s in seeds]
    runs += [(m, t, baselines["seed"]) for m in comparison for t in tasks]
    records = collect_records([metrics_path(dataset, m, t, s) for m, t, s in runs])
    first = {(r["method"], r["task"]): r for r in records if r["seed"] == first_seed[r["method"]]}

    curves = {}
    for m in methods:
        for t in tasks:
            path = pr_path(dataset, m, t, first_seed[m])
            if path.exists():
                curves[(m, t)] = pd.read_csv(path)
            elif first.get((m, t), {}).get("map") is not None:
                raise StageError(f"{path}: missing although {metrics_path(dataset, m, t, first_seed[m])} has an mAP; "
                                 f"rerun its evaluate stage")

    analysis_tasks = list((params.get("analysis") or {}).get("tasks") or [])
    found = [t for t in analysis_tasks if analysis_path(dataset, t).exists()]
    missing = [t for t in analysis_tasks if t not in found]
    if missing:
        print(f"report: no feature analysis yet for {missing} (analysis/{dataset}/<task>/analysis.json)",
              file=sys.stderr)
    analysis = collect_analysis([analysis_path(dataset, t) for t in found])

    tp, ev = params["train"], params.get("eval") or {}
    query_fraction, split_seed = ev.get("query_fraction", 0.1), ev.get("split_seed", 0)
    protocol_name = ev.get("protocol", "dah")
    protocol = {
        "setting": PROTOCOL_SETTINGS[protocol_name],
        "dataset": dataset,
        "backbone": params["backbone"]["name"],
        "training mode": training_modes(params),
        "methods": (", ".join(f"{m} ({json.dumps(o or {})})" for m, o in params["methods"].items())
                    + f"; trained once per seed in {seeds}") if params["methods"] else "none",
        "comparison methods": (", ".join(f"{m} ({json.dumps(options or {})})" for m, options in comparison.items())
                               + f"; each run once, seed {baselines['seed']}") if comparison else "none",
        "hash bits": str(tp["hash_bits"]) + "".join(
            f"; {m}: {o['hash_bits']}" for m, o in params["methods"].items() if (o or {}).get("hash_bits") is not None),
        "epochs": str(tp["epochs"]),
        "gamma": str(tp["gamma"]) + (" (per task: largest held-out domain-classifier error, paper sec. 5.2)"
                                     if tp["gamma"] == "auto" else ""),
        "seeds": ", ".join(map(str, seeds)) + (" (DAH methods; cells: mean +- std over seeds)" if len(seeds) > 1 else ""),
        **report_rules(protocol_name, query_fraction, split_seed, ev.get("db_per_class")),
    }
    if analysis_tasks:
        protocol.setdefault("feature analysis", f"tasks {', '.join(analysis_tasks)}"
                            + (f" (not yet computed: {', '.join(missing)})" if missing else ""))
    with atomic_path(report_dir()) as tmp:  # replaced whole: no file of an earlier report survives (persist)
        written = render_report(
            records, curves, tmp, title=params["report"]["title"], protocol=protocol,
            methods=methods, tasks=tasks, domains=params["data"]["domains"], analysis=analysis,
        )
    for name in written:
        print(f"wrote report/{name}")
    write_summary(dataset, method_summary(records, methods))


#: the comparison columns' order (the paper's tables), whichever of baselines.methods / baselines.finetune lists them
COLUMN_ORDER = ("source_only", "dan", "dann", "shallow_source_only", "gfk", "tca", "coral", "jda", "noda", "itq", "kmh",
                "ba", "bdnn", "suh")


def comparison_columns(params: dict) -> dict[str, dict]:
    """Every comparison method -> its options (``baselines.methods`` and ``baselines.finetune``), ordered by the
    algorithm's place in :data:`COLUMN_ORDER` (unknown last), params.yaml's order among equals."""
    baselines = params["baselines"]
    entries = {m: baselines["methods"].get(m) if mode == "head" else baselines["finetune"].get(m)
               for m, mode in comparison_methods(params).items()}
    place = {m: (COLUMN_ORDER.index(a) if (a := (o or {}).get("algorithm", m)) in COLUMN_ORDER else len(COLUMN_ORDER))
             for m, o in entries.items()}
    return {m: entries[m] for m in sorted(entries, key=place.__getitem__)}


def training_modes(params: dict) -> str:
    """Each column's training mode, marked where it differs from the paper's: DAH, DAH-e and the deep comparison
    methods (source-only, DAN, DANN, NoDA, SuH) are fine-tuned end to end in the paper; the shallow and
    unsupervised hashing methods run on fixed features there as here."""
    from dahash.baselines.modes import FINETUNE_METHODS

    cols = [(m, (o or {}).get("mode", params["train"]["mode"]), "finetune") for m, o in params["methods"].items()]
    modes = comparison_methods(params)
    for m, o in comparison_columns(params).items():
        if (o or {}).get("algorithm", m) in FINETUNE_METHODS:
            cols.append((m, modes[m], "finetune"))
        else:
            cols.append((m, "features", "features"))
    if not cols:
        return "none"
    shown = "; ".join(f"{m}: {mode}" + ("" if mode == paper else f" (NOT the paper's: {paper})") for m, mode, paper in cols)
    return shown + (" (finetune = the whole network from images, the paper's protocol; head = fc6/fc7 and the last "
                    "layer on cached backbone features, frozen convolutions, no augmentation; features = a shallow or "
                    "unsupervised hashing method on fixed fc7-level features, as in the paper)")


def write_summary(dataset: str, summary: dict[str, dict]) -> None:
    """Replace metrics/summary/<dataset>/ whole (a method no longer in params.yaml leaves no file behind)."""
    with atomic_path(summary_dir(dataset)) as tmp:
        tmp.mkdir()
        for method, entry in summary.items():
            write_json(tmp / f"{method}.json", entry)
    shown = "; ".join(f"{m} " + " ".join(f"{k} {100 * v:.1f} %" for k, v in e.items() if k != "runs" and v is not None)
                      for m, e in summary.items())
    print(f"wrote metrics/summary/{dataset}/ (mean over tasks and seeds: {shown})")


if __name__ == "__main__":
    main()
