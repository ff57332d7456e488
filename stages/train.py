"""Stage `train --task KEY`: DAH on cached features for one transfer task (source -> target).

Reads the source and target features, the SOURCE labels only (target labels are never read here),
trains the DAH head (fc6, fc7, hash fc8 -> BatchNorm -> tanh) with the paper's losses and schedule,
and writes models/<dataset>/<backbone>/<method>/<KEY>/: model.pt, codes.npz (continuous outputs u of
every source and target image, the FINAL epoch's model: no model selection), history.csv, run.json
(the MLflow run id). The MLflow run gets the params, the per-epoch losses and the data hashes.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd
import torch

from dahash.train import DAHConfig, encode, train_dah
from stages import tracking
from stages.common import ROOT, dataset_spec, StageError, atomic_path, file_md5, load_params, main_wrapper, resolve_device, write_json
from stages.features import features_dir, labels_for, load_features
from stages.weights import weights_file

LOSS_KEYS = ["hash", "quantization", "entropy", "mmd", "total", "lr"]


def model_dir(params: dict, task: str):
    """models/<dataset>/<backbone>/<method>/<task>."""
    p = params
    return ROOT / "models" / p["data"]["dataset"] / p["backbone"]["name"] / p["train"]["method"] / task


def dah_config(train: dict) -> DAHConfig:
    """DAHConfig from the ``train`` params (keys that are not DAH hyper-parameters are dropped)."""
    names = {f.name for f in dataclasses.fields(DAHConfig)}
    kwargs = {k: v for k, v in train.items() if k in names}
    kwargs["hidden_dims"] = tuple(train["hidden_dims"])
    return DAHConfig(**kwargs)


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", required=True)
    args = ap.parse_args(argv)
    params = load_params()
    if args.task not in params["tasks"]:
        raise StageError(f"params.yaml: tasks.{args.task} not defined; tasks are {list(params['tasks'])}")
    task = params["tasks"][args.task]
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    spec = dataset_spec(params)
    tp = params["train"]
    config = dah_config(tp)
    device = resolve_device(tp["device"])

    xs, src_paths = load_features(dataset, backbone, task["source"])
    xt, _ = load_features(dataset, backbone, task["target"])
    ys = labels_for(dataset, task["source"], src_paths)
    pretrained = None
    if backbone == "vggf":
        from dahash.backbones import build_backbone

        pretrained = build_backbone("vggf", weights=weights_file("vggf")).head_init

    experiment = params["tracking"]["experiment"] or f"dahash-{dataset}"
    run_name = f"{tp['method']}:{args.task}:seed{tp['seed']}"
    data_hashes = {
        f"dvc_md5.{side}": file_md5(features_dir(dataset, backbone, task[side]) / "features.npy")
        for side in ("source", "target")
    }
    run_id = tracking.start_run(
        experiment,
        run_name,
        tags={"task": args.task, "source": task["source"], "target": task["target"], "dataset": dataset,
              "backbone": backbone, "method": tp["method"], "device": device, **data_hashes},
        params={**{f"train.{k}": v for k, v in tp.items()}, "backbone": backbone, "dataset": dataset,
                "task": args.task, "n_source": len(xs), "n_target": len(xt)},
    )
    history: list[dict] = []
    pending: list[dict] = []

    def on_epoch(row: dict) -> None:
        history.append(row)
        pending.append(row)
        if len(pending) >= 10:
            tracking.log_history(run_id, pending, LOSS_KEYS)
            pending.clear()
        if row["epoch"] % max(1, config.epochs // 10) == 0 or row["epoch"] == config.epochs:
            print(f"[{args.task}] epoch {row['epoch']}/{config.epochs} " +
                  " ".join(f"{k}={row[k]:.4g}" for k in LOSS_KEYS if k in row), flush=True)

    t0 = time.perf_counter()
    try:
        result = train_dah(
            torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(xt), len(spec.classes), config,
            device=device, seed=tp["seed"], pretrained=pretrained, on_epoch=on_epoch,
        )
    except Exception:
        tracking.finish_run(run_id, "FAILED")
        raise
    if pending:
        tracking.log_history(run_id, pending, LOSS_KEYS)
    wall = time.perf_counter() - t0
    us = encode(result.model, torch.from_numpy(xs), device=device)
    ut = encode(result.model, torch.from_numpy(xt), device=device)
    tracking.log_metrics(run_id, {"train_seconds": wall})

    out = model_dir(params, args.task)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        torch.save({"state_dict": result.model.state_dict(), "config": dataclasses.asdict(config),
                    "in_dim": int(xs.shape[1]), "num_classes": len(spec.classes)}, tmp / "model.pt")
        np.savez(tmp / "codes.npz", u_source=us, u_target=ut)
        pd.DataFrame(result.history).to_csv(tmp / "history.csv", index=False)
        write_json(tmp / "run.json", {"run_id": run_id, "experiment": experiment, "tracking_uri": tracking.tracking_uri(),
                                      "train_seconds": wall, "device": device})
    print(f"[{args.task}] trained in {wall:.1f} s on {device} -> {out.relative_to(ROOT)} (MLflow run {run_id})")


if __name__ == "__main__":
    main()
