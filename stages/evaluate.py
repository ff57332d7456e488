"""Stage `evaluate --method M [--task KEY ...] [--seed S ...]`: target accuracy, mAP and PR curve of the FINAL
models of method M: every task of params.yaml x every seed (``train.seeds`` for DAH methods, ``baselines.seed``
for comparison methods), or the given subset. One job per method (the DAG's ``evaluate@M``,
``evaluate_baseline@M`` and ``evaluate_finetuned@M``): a run's evaluation takes well under a second, a job's
start-up seconds.

This is the first and only place target labels are read. The rules (accuracy by the eq. 6 classifier, codes
u > 0, mAP over a full stable Hamming ranking, PR curves, precision@k and within radius 2, the protocols dah and
pwcf (pwcf also scores PWCF's own "mAP", area_RP), the source database capped per class (``eval.db_per_class``,
the digits preset), target-only retrieval for the methods without a source database) are stated once, in
:mod:`dahash.eval.records` (every record carries them under ``rules``), and explained in docs/evaluation.md.
Writes metrics/<dataset>/<M>/<KEY>/seed<S>.json and plots/pr/<dataset>/<M>/<KEY>/seed<S>.csv (a DVC plot) per
run; the stage's outs are the method's folders metrics/<dataset>/<M> and plots/pr/<dataset>/<M>, which a run over
every task and seed rebuilds and swaps in at its end (they hold exactly the runs of params.yaml; on a failure the
previous folders stay). Each run logs both (plus a PR figure) to the training's MLflow run, which the training already closed: the scores
are logged at the run's end time (``ended_ms`` in run.json), so the run's duration stays the training's.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dahash.eval.evaluation import score
from dahash.eval.records import metrics_record
from dahash.report.figures import plot_pr_curve
from stages import tracking
from stages.common import (StageError, atomic_path, comparison_methods, dataset_spec, load_arrays, load_params,
                           main_wrapper, method_params, producer_stage, run_seed, task_of, write_json)
from stages.paths import metrics_dir, metrics_file, metrics_path, pr_dir, pr_file, pr_path, run_dir, shown
from stages.features import domain_rows

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """--method (required), --task and --seed (repeatable; default: every task, every seed of the method)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True,
                    help="methods.<M>, baselines.methods.<M> or baselines.finetune.<M> of params.yaml")
    ap.add_argument("--task", action="append", help="a tasks.<KEY> (repeatable; default: every task)")
    ap.add_argument("--seed", type=int, action="append",
                    help="a seed (repeatable; default: train.seeds for DAH methods, baselines.seed otherwise)")
    return ap.parse_args(argv)


def runs_of(params: dict[str, Any], method: str, tasks: list[str] | None = None,
            seeds: list[int] | None = None) -> list[tuple[str, int]]:
    """The (task, seed) pairs to evaluate: ``tasks`` (default every task) x ``seeds`` (default the method's:
    ``train.seeds``, or ``[baselines.seed]`` for a comparison method, which runs once)."""
    if method not in params["methods"] and method not in comparison_methods(params):
        raise StageError(f"params.yaml: {method!r} is neither in methods ({list(params['methods'])}) nor in "
                         f"baselines.methods ({list(params['baselines']['methods'])}) nor in baselines.finetune "
                         f"({list(params['baselines']['finetune'])})")
    for t in tasks or []:
        task_of(params, t)
    if method in comparison_methods(params):
        seeds = [run_seed(params, method, s) for s in (seeds or [None])]
    return [(t, int(s)) for t in (tasks or list(params["tasks"])) for s in (seeds or params["train"]["seeds"])]


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_params()
    runs = runs_of(params, args.method, args.task, args.seed)
    rows: dict[str, np.ndarray] = {}  # labels per domain, read once for all runs

    def labels(domain: str) -> np.ndarray:
        if domain not in rows:
            rows[domain] = domain_rows(params["data"]["dataset"], domain)["label"].to_numpy(np.int64)
        return rows[domain]

    dataset = params["data"]["dataset"]
    if args.task is not None or args.seed is not None:  # a subset: its records are replaced one by one
        for task, seed in runs:
            evaluate_run(params, args.method, task, seed, labels,
                         metrics_path(dataset, args.method, task, seed), pr_path(dataset, args.method, task, seed))
        return
    # the whole method: both folders are rebuilt and swapped in at the end, so they hold exactly these runs
    # (no record of a task or seed no longer in params.yaml, no marker another tool left) and a failure leaves
    # the previous ones as they were
    with atomic_path(metrics_dir(dataset, args.method)) as mtmp, atomic_path(pr_dir(dataset, args.method)) as ptmp:
        for task, seed in runs:
            evaluate_run(params, args.method, task, seed, labels, metrics_file(mtmp, task, seed),
                         pr_file(ptmp, task, seed), display=metrics_path(dataset, args.method, task, seed))


def evaluate_run(params: dict[str, Any], method: str, task_key: str, seed: int,
                 labels: Callable[[str], np.ndarray], mpath: Path, ppath: Path, display: Path | None = None) -> None:
    """Score the final model of one run, write its metrics JSON to ``mpath`` and its PR CSV to ``ppath``, log
    both to its MLflow run.

    ``labels(domain)`` gives the domain's labels in manifest order; ``display``: the path printed (default mpath).
    """
    task = task_of(params, task_key)
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    spec = dataset_spec(params)
    mdir = run_dir("models", params, method, task_key, seed)
    producer = producer_stage(params, method)
    try:
        redo = f"dvc repro {producer}@{method}" + (f"-{task_key}-{seed}" if producer == "train" else "")
        codes = load_arrays(mdir / "codes.npz", redo=redo)
        run = json.loads((mdir / "run.json").read_text())
    except FileNotFoundError as exc:
        raise StageError(f"{exc.filename}: missing; run the {producer} stage "
                         f"(dvc repro {producer}@{method}" + (f"-{task_key}-{seed})" if producer == "train" else ")")
                         ) from exc
    ys = labels(task["source"])
    yt = labels(task["target"])  # the test: target labels
    for key, n in (("u_source", len(ys)), ("u_target", len(yt)), ("pred_target", len(yt))):
        if key in codes and len(codes[key]) != n:
            raise StageError(f"{mdir}: {key} has {len(codes[key])} rows, the manifest {n}; retrain")
    retrieval = run.get("retrieval", "source_database")
    protocol = params["eval"].get("protocol", "dah")
    try:
        result = score(codes, ys, yt, num_classes=len(spec.classes), retrieval=retrieval,
                       max_per_class=params["eval"]["max_per_class"], query_fraction=params["eval"]["query_fraction"],
                       split_seed=params["eval"]["split_seed"], protocol=protocol,
                       db_per_class=params["eval"].get("db_per_class"))
    except ValueError as exc:
        raise StageError(f"{mdir}: {exc}") from exc
    epochs = method_params(params, method)["epochs"] if producer == "train" else run.get("epochs")
    record = metrics_record(
        task_key=task_key, task=task, dataset=dataset, backbone=backbone, method=method, run=run, result=result,
        protocol=protocol, query_fraction=params["eval"]["query_fraction"], split_seed=params["eval"]["split_seed"],
        hash_bits=int(params["train"]["hash_bits"]), seed=seed, epochs=epochs, n_source=len(ys), n_target=len(yt),
        db_per_class=params["eval"].get("db_per_class"))
    write_json(mpath, record)
    pr = result["pr"]
    with atomic_path(ppath) as tmp:
        pr.to_csv(tmp, index=False)

    bits = record["hash_bits"]
    precision = {f"precision_at_{k}": v for k, v in (result["precision_at_k"] or {}).items()}
    scores = {k: v for k, v in {"accuracy": result["accuracy"], f"map_at_{bits}": result["map"],
                                "map": result["map"], **precision, "precision_radius2": result["precision_radius2"],
                                "area_rp": result["area_rp"]}.items() if v is not None and not math.isnan(v)}
    artifacts = [mpath, ppath]
    with tempfile.TemporaryDirectory() as td:
        if len(pr):
            png = Path(td) / f"pr_{method}_{task_key}_seed{seed}.png"
            plot_pr_curve(pr, png, title=f"{method} {task_key}: {task['source']} -> {task['target']} (seed {seed})")
            artifacts.append(png)
        # one call: the scores at the training's end time (the run's span stays the training's) and the files
        tracking.log_evaluation(run["run_id"], scores, artifacts, timestamp=run.get("ended_ms"))
    scored = "  ".join(f"{k} {100 * v:.1f} %" for k, v in (("accuracy", result["accuracy"]), (f"mAP@{bits}", result["map"]),
                                                          ("area_RP", result["area_rp"]))
                      if v is not None)
    print(f"[{method} {task_key} seed{seed}] {scored or 'nothing to score'}  -> {shown(display or mpath)}",
          flush=True)


if __name__ == "__main__":
    main()
