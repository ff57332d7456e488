"""Stage `evaluate --method M --task KEY --seed S`: target accuracy, mAP and PR curve of the FINAL model.

This is the first and only place target labels are read. Rules (see dahash.metrics):
* accuracy: eq. 6 classifier on the continuous outputs, authors' variant (sum of exp(u_t.u_s) over up
  to ``eval.max_per_class`` source items per class), argmax, ties -> lowest class index;
* codes: bit = 1 iff u > 0 (authors' calcMap; training's quantization uses sign(0) = +1);
* mAP@d: queries = all target codes, database = all source codes, full Hamming ranking, ties keep
  database order (stable sort), queries with no relevant item excluded from the mean (and counted);
* PR curve: Hamming-radius retrieval r = 0..d over the same ranking.
Writes metrics/<dataset>/<M>/<KEY>/seed<S>.json (a DVC metric) and plots/pr/<dataset>/<M>/<KEY>/seed<S>.csv
(a DVC plot),
and logs both (plus a PR figure) to the task's MLflow run, which it then closes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from dahash.metrics import accuracy, binarize, mean_average_precision, precision_recall_curve, predict_eq6
from dahash.report import EVALUATION_RULES, plot_pr_curve
from stages import tracking
from stages.common import (ROOT, StageError, atomic_path, dataset_spec, load_params, main_wrapper, method_params,
                           run_dir, task_of, write_json)
from stages.features import domain_rows, load_features
from stages.runs import parse_run_args

RULES = {
    **EVALUATION_RULES,
    "model": "final epoch (no model selection); no target label is read before this stage",
}


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
    try:
        codes = np.load(mdir / "codes.npz")
        run = json.loads((mdir / "run.json").read_text())
    except FileNotFoundError as exc:
        raise StageError(f"{exc.filename}: missing; run the train stage (dvc repro train@{args.method}-{args.task}-{args.seed})") from exc
    us, ut = codes["u_source"], codes["u_target"]
    _, src_paths = load_features(dataset, backbone, task["source"])
    _, tgt_paths = load_features(dataset, backbone, task["target"])
    ys = domain_rows(dataset, task["source"])["label"].to_numpy(np.int64)
    yt = domain_rows(dataset, task["target"])["label"].to_numpy(np.int64)  # the test: target labels
    if len(ys) != len(us) or len(yt) != len(ut):
        raise StageError(f"{mdir}: codes do not match the manifest ({len(us)}/{len(ys)}, {len(ut)}/{len(yt)}); retrain")

    pred = predict_eq6(ut, us, ys, len(spec.classes), max_per_class=params["eval"]["max_per_class"])
    acc = accuracy(pred, yt)
    bs, bt = binarize(us), binarize(ut)
    m = mean_average_precision(bt, bs, yt, ys)
    pr = precision_recall_curve(bt, bs, yt, ys)
    bits = int(us.shape[1])
    record = {
        "task": args.task, "source": task["source"], "target": task["target"], "dataset": dataset,
        "backbone": backbone, "method": args.method, "hash_bits": bits,
        "seed": args.seed, "epochs": method_params(params, args.method)["epochs"],
        "accuracy": acc, "map": m.map, "n_source": int(len(ys)), "n_target": int(len(yt)),
        "n_queries_scored": m.n_scored, "n_queries_empty": m.n_empty, "rules": RULES,
        "mlflow_run_id": run["run_id"],
    }
    mpath = metrics_path(dataset, args.method, args.task, args.seed)
    ppath = pr_path(dataset, args.method, args.task, args.seed)
    write_json(mpath, record)
    with atomic_path(ppath) as tmp:
        pr.to_csv(tmp, index=False)

    tracking.log_metrics(run["run_id"], {"accuracy": acc, f"map_at_{bits}": m.map, "map": m.map})
    with tempfile.TemporaryDirectory() as td:
        png = Path(td) / f"pr_{args.method}_{args.task}_seed{args.seed}.png"
        plot_pr_curve(pr, png, title=f"{args.method} {args.task}: {task['source']} -> {task['target']} (seed {args.seed})")
        tracking.log_artifacts(run["run_id"], [mpath, ppath, png])
    tracking.finish_run(run["run_id"])
    print(f"[{args.method} {args.task} seed{args.seed}] accuracy {100 * acc:.1f} %  mAP@{bits} {100 * m.map:.1f} %  -> {mpath.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
