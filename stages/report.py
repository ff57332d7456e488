"""Stage `report`: report/index.html and report/results.md from every task's metrics and PR curve."""

from __future__ import annotations

import argparse

import pandas as pd

from dahash.report import collect_records, render_report
from stages.common import ROOT, load_params, main_wrapper
from stages.evaluate import RULES, metrics_path, pr_path


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    dataset = params["data"]["dataset"]
    tasks = list(params["tasks"])
    records = collect_records([metrics_path(dataset, t) for t in tasks])
    curves = {t: pd.read_csv(pr_path(dataset, t)) for t in tasks}
    tp = params["train"]
    protocol = {
        "setting": "unsupervised domain adaptation, transductive: all labeled source + all unlabeled target images "
        "for training; tested on all target images",
        "dataset": dataset,
        "backbone": params["backbone"]["name"] + " (training starts from cached features; mode = " + tp["mode"] + ")",
        "hash bits": str(tp["hash_bits"]),
        "model": RULES["model"],
        "seeds": str(tp["seed"]),
        "epochs": str(tp["epochs"]),
        **{k: v for k, v in RULES.items() if k != "model"},
    }
    written = render_report(records, curves, ROOT / "report", title=params["report"]["title"], protocol=protocol)
    for p in written.values():
        print(f"wrote {p.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
