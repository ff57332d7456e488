"""Stage `train --method M --task KEY --seed S`: DAH (or DAH-e) for one transfer task and seed.

Reads the source and target features, the SOURCE labels only (target labels are never read here),
trains the DAH head (fc6, fc7, hash fc8 -> BatchNorm -> tanh) with the paper's losses and schedule, and
writes models/<dataset>/<backbone>/<M>/<KEY>/seed<S>/: model.pt, codes.npz (continuous outputs u of every
source and target image from the FINAL epoch's model: no model selection), history.csv and run.json (the
MLflow run: id and end time; see stages.tracking for what is logged). The method's params are ``train`` with ``methods.<M>`` applied (dah_e: eta = 0); gamma is
the method's own ``gamma`` when it sets one (e.g. a no-adaptation floor, ``gamma: 0``), else the one
gamma_select recorded (the fixed ``train.gamma`` or the sweep's choice for ``auto``).
Checkpoints go to checkpoints/<same path> every ``train.checkpoint_every`` epochs: a killed job resumes
from the last one and ends with the same metrics; they are deleted once the model is written.
Under ``eval.protocol: pwcf`` the target's query items (the evaluate stage's seeded label-free split) are left
out of training and only encoded, as in the PWCF-protocol papers.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from stages import tracking
from stages.common import atomic_path, dataset_spec, load_params, main_wrapper, method_params, task_of, write_json
from stages.gpu import resolve_device
from stages.paths import run_dir
from dahash.eval.split import pwcf_training_rows
from dahash.progress import echo
from stages.features import labels_for, load_features
from stages.gamma_select import selected_gamma
from stages.preprocess import warn_small_classes
from stages.resume import loader_workers, logged_epochs, restored_unlogged, resumable_run
from stages.runs import dah_config, parse_run_args, pretrained_head

if TYPE_CHECKING:  # numpy, pandas, torch and dahash.train.head are imported where used: `--help` stays fast
    import numpy as np

    from dahash.train.head import DAHConfig

LOSS_KEYS = ["hash", "quantization", "entropy", "mmd", "total", "lr"]


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    args = parse_run_args(argv, __doc__)
    import torch

    from dahash.train.checkpoint import cpu_state_dict
    from dahash.train.head import encode, train_dah

    params = load_params()
    task = task_of(params, args.task)
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    spec = dataset_spec(params)
    tp = method_params(params, args.method)
    if "gamma" not in (params["methods"][args.method] or {}):
        tp["gamma"] = selected_gamma(params, args.task)
    config = dah_config(tp)
    device = resolve_device(tp["device"])

    xs, src_paths = load_features(dataset, backbone, task["source"])
    xt, tgt_paths = load_features(dataset, backbone, task["target"])
    ev = params["eval"]  # pwcf: the target's query items (label-free split) are not trained on, only encoded
    fit_t = pwcf_training_rows(len(tgt_paths), protocol=ev.get("protocol", "dah"),
                               query_fraction=ev["query_fraction"], split_seed=ev["split_seed"])
    ys = labels_for(dataset, task["source"], src_paths)  # source labels only
    warn_small_classes(ys, spec.classes, config.k_per_class, task["source"])
    n_target = len(tgt_paths)

    experiment = params["tracking"]["experiment"] or f"dahash-{dataset}"
    ckpt = run_dir("checkpoints", params, args.method, args.task, args.seed)
    run_id, resumed_run = open_run(params, args, experiment, tp, config, device, ckpt,
                                   {"source": xs.shape, "target": xt.shape, "n_source": len(ys), "n_target": n_target})
    # a resumed run: what its killed attempt already sent to MLflow (a new run holds nothing: no query)
    logged = logged_epochs(run_id) if resumed_run else set()
    pending: list[dict] = []

    def on_epoch(row: dict) -> None:
        if row["epoch"] not in logged:
            pending.append(row)
        if len(pending) >= 10:
            tracking.log_history(run_id, pending, LOSS_KEYS)
            pending.clear()
        if row["epoch"] % max(1, config.epochs // 10) == 0 or row["epoch"] == config.epochs:
            echo(f"[{args.method} {args.task} seed{args.seed}] epoch {row['epoch']}/{config.epochs} "
                 + " ".join(f"{k}={row[k]:.4g}" for k in LOSS_KEYS if k in row))  # print, above the bar

    t0 = time.perf_counter()
    resumed = 0
    bar = f"{args.method} {args.task} seed{args.seed}"  # the progress bars' label (DAHASH_PROGRESS=0: none)
    try:
        if tp["mode"] == "finetune":
            from stages.finetune import finetune_run
            from stages.image_cache import open_cached
            from stages.moments import load_moments

            cached_target = open_cached(params, task["target"], list(tgt_paths))
            us, ut, out = finetune_run(
                open_cached(params, task["source"], list(src_paths)), ys, cached_target.subset(fit_t),
                len(spec.classes), config,
                backbone=backbone, moments=load_moments(dataset, backbone, [task["source"], task["target"]]),
                device=device, seed=args.seed, num_workers=loader_workers(tp["num_workers"], device),
                on_epoch=on_epoch, checkpoint_dir=ckpt, checkpoint_every=tp["checkpoint_every"],
                encode_target=cached_target, progress=bar)
            state, history, resumed = out["state_dict"], out["history"], out["resumed_epoch"]
        else:
            result = train_dah(
                torch.from_numpy(xs), torch.tensor(ys), torch.from_numpy(xt[fit_t]), len(spec.classes), config,
                device=device, seed=args.seed, pretrained=pretrained_head(backbone, config.hidden_dims), on_epoch=on_epoch,
                checkpoint_dir=ckpt, checkpoint_every=tp["checkpoint_every"], progress=bar,
            )
            us = encode(result.model, torch.from_numpy(xs), device=device)
            ut = encode(result.model, torch.from_numpy(xt), device=device)
            state, history, resumed = cpu_state_dict(result.model), result.history, result.resumed_epoch
    except Exception:
        tracking.end_run(run_id, {}, pending, LOSS_KEYS, status="FAILED")
        raise
    pending.extend(restored_unlogged(history, logged, resumed))
    wall = time.perf_counter() - t0
    ended_ms = tracking.now_ms()  # the run's end: the work's, recorded in run.json (the evaluation logs at it)
    mdir = run_dir("models", params, args.method, args.task, args.seed)
    try:
        write_outputs(mdir, state, history, config, us, ut,
                      {"run_id": run_id, "experiment": experiment, "tracking_uri": tracking.portable_uri(),
                       "train_seconds": wall, "device": device, "mode": tp["mode"], "resumed_epoch": resumed,
                       "ended_ms": ended_ms, "n_target_trained": len(fit_t)})
    except Exception:
        tracking.end_run(run_id, {}, pending, LOSS_KEYS, status="FAILED")
        raise
    # one call: the history not sent yet, the final metrics, the run closed at the work's end
    tracking.end_run(run_id, {"train_seconds": wall, "resumed_epoch": resumed}, pending, LOSS_KEYS,
                     end_time=ended_ms)
    if params["tracking"].get("log_model"):  # off by default: VGG-F's model is about 0.4 GB per run
        from stages.log_model import log_pyfunc  # an MLflow pyfunc model: `mlflow models serve` answers with codes

        log_pyfunc(run_id, mdir, params["tracking"].get("register_model"))
    shutil.rmtree(ckpt, ignore_errors=True)
    print(f"[{args.method} {args.task} seed{args.seed}] trained in {wall:.1f} s on {device} (MLflow run {run_id})")


def open_run(params: dict, args, experiment: str, tp: dict, config: DAHConfig, device: str, ckpt: Path,
             sizes: dict) -> tuple[str, bool]:
    """The run's MLflow run: the one a killed attempt opened (its id kept in ``ckpt``), else a new one with the
    run's tags, params and dataset inputs (features, or in fine-tune mode the images). ``sizes``: the feature
    arrays' shapes (``source``, ``target``) and the item counts (``n_source``, ``n_target``). Returns
    ``(run_id, resumed)``."""
    task, dataset, backbone = params["tasks"][args.task], params["data"]["dataset"], params["backbone"]["name"]
    n = {"source": sizes["n_source"], "target": sizes["n_target"]}
    inputs = (tracking.image_inputs(dataset, task, n) if tp["mode"] == "finetune"
              else tracking.feature_inputs(dataset, backbone, task, {"source": sizes["source"],
                                                                     "target": sizes["target"]}))
    return resumable_run(ckpt, lambda: tracking.start_run(
        experiment,
        f"{args.method}:{args.task}:seed{args.seed}",
        tags={"task": args.task, "source": task["source"], "target": task["target"], "dataset": dataset,
              "backbone": backbone, "method": args.method, "seed": str(args.seed), "device": device},
        params={**{f"train.{k}": v for k, v in dataclasses.asdict(config).items()}, "train.mode": tp["mode"],
                "seed": args.seed, "backbone": backbone, "dataset": dataset, "task": args.task, "method": args.method,
                "n_source": n["source"], "n_target": n["target"]},
        group=f"{args.method}:{args.task}", inputs=inputs, source="stages/train.py",
    ))


def write_outputs(out: Path, state: dict, history: list[dict], config: DAHConfig, us: np.ndarray, ut: np.ndarray,
                  run: dict) -> None:
    """model.pt, codes.npz, history.csv, run.json into ``out`` (atomically, as one folder).

    model.pt holds CPU tensors only (a model trained on a GPU loads on a CPU-only machine) and plain types,
    so it loads with ``torch.load(..., weights_only=True)``."""
    import numpy as np
    import pandas as pd
    import torch

    with atomic_path(out) as tmp:
        tmp.mkdir()
        torch.save({"config": dataclasses.asdict(config), "state_dict": state}, tmp / "model.pt")
        np.savez(tmp / "codes.npz", u_source=us, u_target=ut)
        pd.DataFrame(history).to_csv(tmp / "history.csv", index=False)
        write_json(tmp / "run.json", run)


if __name__ == "__main__":
    main()
