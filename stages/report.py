"""Stage `report`: report/index.html and report/results.md from every run's metrics and PR curve.

One table per method (tasks x accuracy, mAP@d; mean +- std over seeds when there are several), the
averages, the protocol, and the precision-recall figures (first seed of each method and task).
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from dahash.report import collect_records, render_report
from stages.common import ROOT, load_params, main_wrapper
from stages.evaluate import RULES, metrics_path, pr_path


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    dataset = params["data"]["dataset"]
    seeds = params["train"]["seeds"]
    runs = [(m, t, s) for m in params["methods"] for t in params["tasks"] for s in seeds]
    records = collect_records([metrics_path(dataset, m, t, s) for m, t, s in runs])
    curves = {f"{m} {t}": pd.read_csv(pr_path(dataset, m, t, seeds[0])) for m in params["methods"] for t in params["tasks"]}
    tp = params["train"]
    protocol = {
        "setting": "unsupervised domain adaptation, transductive: all labeled source + all unlabeled target images "
        "for training; tested on all target images",
        "dataset": dataset,
        "backbone": f"{params['backbone']['name']} (training mode: {tp['mode']})",
        "methods": ", ".join(f"{m} ({json.dumps(o or {})})" for m, o in params["methods"].items()),
        "hash bits": str(tp["hash_bits"]),
        "epochs": str(tp["epochs"]),
        "gamma": str(tp["gamma"]) + (" (per task: largest held-out domain-classifier error, paper sec. 5.2)"
                                     if tp["gamma"] == "auto" else ""),
        "seeds": ", ".join(map(str, seeds)) + (" (cells: mean +- std over seeds)" if len(seeds) > 1 else ""),
        "model": RULES["model"],
        **{k: v for k, v in RULES.items() if k != "model"},
    }
    written = render_report(records, curves, ROOT / "report", title=params["report"]["title"], protocol=protocol)
    for p in written.values():
        print(f"wrote {p.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
