"""Stage `evaluate --method M --task KEY --seed S`: target accuracy, mAP and PR curve of the FINAL model.

This is the first and only place target labels are read. Rules (see dahash.metrics):
* accuracy: eq. 6 classifier on the continuous outputs, authors' variant (sum of exp(u_t.u_s) over up
  to ``eval.max_per_class`` source items per class), argmax, ties -> lowest class index;
* codes: bit = 1 iff u > 0 (authors' calcMap; training's quantization uses sign(0) = +1);
* mAP@d: queries = all target codes, database = all source codes, full Hamming ranking, ties keep
  database order (stable sort), queries with no relevant item excluded from the mean (and counted);
* PR curve: Hamming-radius retrieval r = 0..d over the same ranking;
* precision@k (k = 100, 500, 1000) on the same ranking (ties at the k-th position in database order, k > n cut
  to n) and precision within Hamming radius 2 (an empty radius-2 result counts as 0), over the mAP's queries;
* ``eval.protocol: pwcf``: queries = the seeded label-free ``eval.query_fraction`` of the target (left out of
  training by the train stage), database = the whole source;
* comparison methods (stage baseline): classifiers give ``pred_target`` (accuracy = mean of pred == label);
  unsupervised hashing and SuH have no source database: queries and database are the seeded label-free
  split of the target (``eval.query_fraction``, ``eval.split_seed``); methods without codes have no mAP
  (null, an empty PR table) and hashing methods without a classifier no accuracy (null).
Writes metrics/<dataset>/<M>/<KEY>/seed<S>.json (a DVC metric) and plots/pr/<dataset>/<M>/<KEY>/seed<S>.csv
(a DVC plot),
and logs both (plus a PR figure) to the training's MLflow run, which the training already closed: the scores
are logged at the run's end time (``ended_ms`` in run.json), so the run's duration stays the training's.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np

from dahash.evaluation import score
from dahash.report import EVALUATION_RULES, plot_pr_curve
from stages import tracking
from stages.common import (ROOT, StageError, atomic_path, dataset_spec, load_params, main_wrapper, method_params,
                           run_dir, task_of, write_json)
from stages.features import domain_rows
from stages.runs import parse_run_args

RULES = {
    **EVALUATION_RULES,
    "model": "final epoch (no model selection); no target label is read before this stage "
             "(SuH, the supervised upper bound, trains on the labels of the target split's database part)",
    "target split": "unsupervised hashing and SuH: target-only retrieval, queries = a seeded uniformly random "
                    "round(query_fraction x n_t) of the target items (no labels used), database = the rest",
    "not applicable": "null accuracy: the method has no classifier; null mAP: the method has no codes",
}
PWCF_RULE = ("queries = a seeded uniformly random round(query_fraction x n_t) of the target items (no labels used), "
             "left out of training; database = all source codes; relevant = same class (PWCF, CVPR 2020, and the "
             "cross-domain hashing papers since)")


def metrics_path(dataset: str, method: str, task: str, seed: int) -> Path:
    return ROOT / "metrics" / dataset / method / task / f"seed{seed}.json"


def pr_path(dataset: str, method: str, task: str, seed: int) -> Path:
    return ROOT / "plots" / "pr" / dataset / method / task / f"seed{seed}.csv"


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    args = parse_run_args(argv, __doc__)
    params = load_params()
    task = task_of(params, args.task)
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    spec = dataset_spec(params)
    mdir = run_dir("models", params, args.method, args.task, args.seed)
    producer = "baseline" if args.method in params["baselines"]["methods"] else "train"
    try:
        codes = dict(np.load(mdir / "codes.npz", allow_pickle=False))
        run = json.loads((mdir / "run.json").read_text())
    except FileNotFoundError as exc:
        raise StageError(f"{exc.filename}: missing; run the {producer} stage "
                         f"(dvc repro {producer}@{args.method}-{args.task}"
                         + (f"-{args.seed})" if producer == "train" else ")")) from exc
    ys = domain_rows(dataset, task["source"])["label"].to_numpy(np.int64)
    yt = domain_rows(dataset, task["target"])["label"].to_numpy(np.int64)  # the test: target labels
    for key, n in (("u_source", len(ys)), ("u_target", len(yt)), ("pred_target", len(yt))):
        if key in codes and len(codes[key]) != n:
            raise StageError(f"{mdir}: {key} has {len(codes[key])} rows, the manifest {n}; retrain")
    family = run.get("family", "dah")
    retrieval = run.get("retrieval", "source_database")
    protocol = params["eval"].get("protocol", "dah")
    try:
        result = score(codes, ys, yt, num_classes=len(spec.classes), retrieval=retrieval,
                       max_per_class=params["eval"]["max_per_class"], query_fraction=params["eval"]["query_fraction"],
                       split_seed=params["eval"]["split_seed"], protocol=protocol)
    except ValueError as exc:
        raise StageError(f"{mdir}: {exc}") from exc
    epochs = method_params(params, args.method)["epochs"] if producer == "train" else run.get("epochs")
    record = {
        "task": args.task, "source": task["source"], "target": task["target"], "dataset": dataset,
        "backbone": backbone, "method": args.method, "algorithm": run.get("algorithm", "dah"), "family": family,
        "retrieval": retrieval if result["map"] is not None else None,
        "protocol": protocol, "query_fraction": params["eval"]["query_fraction"] if protocol == "pwcf" else None,
        "split_seed": params["eval"]["split_seed"] if protocol == "pwcf" else None,
        "n_target_trained": run.get("n_target_trained"),
        "uses_target_labels": bool(run.get("uses_target_labels", False)),
        "hash_bits": result["bits"] or int(params["train"]["hash_bits"]),
        "seed": args.seed, "epochs": epochs, "accuracy": result["accuracy"], "map": result["map"],
        "n_source": int(len(ys)), "n_target": int(len(yt)), "n_queries": result["n_queries"],
        "n_database": result["n_database"], "n_queries_scored": result["n_scored"],
        "n_queries_empty": result["n_empty"],
        "precision_at_k": {str(k): v for k, v in (result["precision_at_k"] or {}).items()} or None,
        "precision_radius2": result["precision_radius2"], "n_queries_radius2_empty": result["n_radius2_empty"],
        "rules": {**RULES, **({"retrieval": PWCF_RULE} if protocol == "pwcf" else {})}, "mlflow_run_id": run["run_id"],
        "train_seconds": run.get("train_seconds"),
    }
    mpath = metrics_path(dataset, args.method, args.task, args.seed)
    ppath = pr_path(dataset, args.method, args.task, args.seed)
    write_json(mpath, record)
    pr = result["pr"]
    with atomic_path(ppath) as tmp:
        pr.to_csv(tmp, index=False)

    bits = record["hash_bits"]
    precision = {f"precision_at_{k}": v for k, v in (result["precision_at_k"] or {}).items()}
    scores = {k: v for k, v in {"accuracy": result["accuracy"], f"map_at_{bits}": result["map"],
                                "map": result["map"], **precision, "precision_radius2": result["precision_radius2"]
                                }.items() if v is not None and not math.isnan(v)}
    artifacts = [mpath, ppath]
    with tempfile.TemporaryDirectory() as td:
        if len(pr):
            png = Path(td) / f"pr_{args.method}_{args.task}_seed{args.seed}.png"
            plot_pr_curve(pr, png, title=f"{args.method} {args.task}: {task['source']} -> {task['target']} (seed {args.seed})")
            artifacts.append(png)
        # one call: the scores at the training's end time (the run's span stays the training's) and the files
        tracking.log_evaluation(run["run_id"], scores, artifacts, timestamp=run.get("ended_ms"))
    shown = "  ".join(f"{k} {100 * v:.1f} %" for k, v in (("accuracy", result["accuracy"]), (f"mAP@{bits}", result["map"]))
                      if v is not None)
    print(f"[{args.method} {args.task} seed{args.seed}] {shown or 'nothing to score'}  -> {mpath.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
