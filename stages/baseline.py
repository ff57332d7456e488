"""Stage `baseline --method M [--task KEY ...]`: one comparison method (paper Tables 2-4) on every transfer task of
params.yaml (or the given ones). One job per method (the DAG's ``baseline@M``): most methods fit in seconds, less
than a job's start-up, and the methods that see the target only (unsupervised hashing, SuH: ``target_split``
retrieval) are fitted ONCE per target domain, their run folders for tasks sharing that target hold the same codes
(run.json ``fitted_for``: the task whose fit they reuse).

``baselines.methods.<M>`` names the algorithm (``algorithm:``, default M) and its options; the run uses
``baselines.seed`` and ``train.hash_bits``. Inputs are the same cached features DAH trains on (shallow and
hashing methods: the backbone's fc7-level features, see stages.features.penultimate_features). Target
labels are NOT read, except by SuH (``suh``: supervised hashing on the labelled target database part, the
paper's upper bound), which reads the labels of the split's database items only (split rule:
``eval.query_fraction``, ``eval.split_seed``; see dahash.methods).

Writes models/<dataset>/<backbone>/<M>/<KEY>/seed<S>/ per task (the stage's out is the method's folder
models/<dataset>/<backbone>/<M>): codes.npz (pred_target and/or u_source/u_target,
f_source/f_target), history.csv (deep methods) and run.json (algorithm, family, retrieval protocol, MLflow
run id, wall time). The evaluate stage scores it like DAH.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dahash.baselines.split import target_query_database_split
from dahash.methods import algorithm_of, run_baseline
from stages import tracking
from stages.common import (atomic_path, baseline_options, dataset_spec, load_params, main_wrapper,
                           resolve_device, run_dir, task_of, write_json)
from stages.features import labels_for, load_features, penultimate_features
from stages.runs import pretrained_head


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, help="baselines.methods.<M> of params.yaml")
    ap.add_argument("--task", action="append", help="a tasks.<KEY> (repeatable; default: every task)")
    args = ap.parse_args(argv)
    params = load_params()
    baseline_options(params, args.method)  # the method exists and its options are valid, before any work
    tasks = args.task or list(params["tasks"])
    for key in tasks:
        task_of(params, key)
    features: dict[str, tuple[np.ndarray, list[str]]] = {}  # per domain, read once
    fitted: dict[str, tuple[str, Any]] = {}  # target-only methods: target domain -> (task, BaselineOutput)
    for key in tasks:
        run_task(params, args.method, key, features, fitted)


def run_task(params: dict[str, Any], method: str, key: str, features: dict[str, tuple[np.ndarray, list[str]]],
             fitted: dict[str, tuple[str, Any]]) -> None:
    """Fit comparison method ``method`` on task ``key`` (or reuse the fit of a task with the same target when the
    method sees the target only), write its run folder and its MLflow run.

    ``features`` caches (features, paths) per domain across tasks; ``fitted`` maps a target domain to the
    (task, output) of a target-only method's fit.
    """
    task = task_of(params, key)
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    algorithm, options = baseline_options(params, method)
    algo = algorithm_of(algorithm)
    seed = int(params["baselines"]["seed"])
    bits = int(params["train"]["hash_bits"])
    device = resolve_device(params["train"]["device"])
    spec = dataset_spec(params)

    for domain in (task["source"], task["target"]):
        if domain not in features:
            features[domain] = load_features(dataset, backbone, domain)
    xs, src_paths = features[task["source"]]
    xt, tgt_paths = features[task["target"]]
    xs_raw_shape, xt_raw_shape = xs.shape, xt.shape  # the feature files as stored (dataset inputs' profile)
    ys = labels_for(dataset, task["source"], src_paths)  # source labels
    target_only = algo.retrieval == "target_split"  # fitted on the target alone: one fit per target domain
    reuse = fitted.get(task["target"]) if target_only else None
    extra: dict = {}
    if reuse is None:
        if algo.uses_target_labels:  # SuH only: labels of the target split's DATABASE part, never of its queries
            ev = params["eval"]
            _, db = target_query_database_split(len(tgt_paths), query_fraction=ev["query_fraction"],
                                                seed=ev["split_seed"])
            yt = labels_for(dataset, task["target"], tgt_paths)
            extra = {"yt_database": yt[db], "database_idx": db}
        if algo.family == "deep":  # trains fc6/fc7 itself, from the pretrained layers for VGG-F
            extra["pretrained"] = pretrained_head(backbone)
        else:  # shallow and hashing methods work on the backbone's fc7-level features
            xs, xt = penultimate_features(backbone, xs, xt)

    experiment = params["tracking"]["experiment"] or f"dahash-{dataset}"
    shapes = {"source": xs_raw_shape, "target": xt_raw_shape}
    run_id = tracking.start_run(
        experiment, f"{method}:{key}:seed{seed}",
        tags={"task": key, "source": task["source"], "target": task["target"], "dataset": dataset,
              "backbone": backbone, "method": method, "algorithm": algorithm, "family": algo.family,
              "seed": str(seed), "device": device, "uses_target_labels": str(algo.uses_target_labels).lower(),
              **({"fitted_for": reuse[0]} if reuse else {})},
        params={**{f"option.{k}": v for k, v in options.items()}, "algorithm": algorithm, "hash_bits": bits,
                "seed": seed, "backbone": backbone, "dataset": dataset, "task": key, "method": method,
                "n_source": len(ys), "n_target": len(tgt_paths)},
        group=f"{method}:{key}", inputs=tracking.feature_inputs(dataset, backbone, task, shapes),
        source="stages/baseline.py",
    )
    try:
        if reuse is None:
            out = run_baseline(algorithm, xs, ys, xt, len(spec.classes), options=options, bits=bits, seed=seed,
                               device=device, **extra)
            if target_only:
                fitted[task["target"]] = (key, out)
        else:
            out = reuse[1]
    except Exception:
        tracking.end_run(run_id, {}, status="FAILED")
        raise
    keys = [k for k in out.history[0] if k != "epoch"] if out.history else []
    ended_ms = tracking.now_ms()  # the run's end: the work's, recorded in run.json (the evaluation logs at it)
    dest = run_dir("models", params, method, key, seed)
    record = {"run_id": run_id, "experiment": experiment, "tracking_uri": tracking.portable_uri(),
              "algorithm": algorithm, "family": algo.family, "retrieval": algo.retrieval,
              "uses_target_labels": algo.uses_target_labels, "options": options, "seed": seed, "hash_bits": bits,
              "train_seconds": out.seconds, "device": device, "paper": algo.paper,
              "epochs": options.get("epochs"), "ended_ms": ended_ms,
              "fitted_for": reuse[0] if reuse else key}
    try:
        write_run(dest, out, record)
    except Exception:
        tracking.end_run(run_id, {}, status="FAILED")
        raise
    # one call: the history, the wall time, the run closed at the work's end
    tracking.end_run(run_id, {"train_seconds": out.seconds}, out.history or [], keys, end_time=ended_ms)
    how = f"the fit of {reuse[0]} (same target, {algorithm} sees the target only)" if reuse else \
        f"{out.seconds:.1f} s"
    print(f"[{method} {key}] {algorithm} ({algo.family}): {how} (MLflow run {run_id})", flush=True)


def write_run(dest: Path, out, record: dict) -> None:
    """codes.npz (``out.arrays``), history.csv (``out.history``) and run.json (``record``) into ``dest``,
    atomically, as one folder."""
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        np.savez(tmp / "codes.npz", **out.arrays)
        pd.DataFrame(out.history).to_csv(tmp / "history.csv", index=False)
        write_json(tmp / "run.json", record)


if __name__ == "__main__":
    main()
