"""Stage `gamma_sweep --task KEY --gamma G`: one job of the paper's gamma selection (section 5.2).

Trains DAH as ``train`` defines it (no ``methods`` entry applied: a valid params.yaml need not have
``methods.dah``) on the task with MMD weight G (``gamma_sweep.epochs`` epochs, the first seed), takes the
fc7 outputs of every source and target image, and writes the held-out error of a binary linear domain
classifier (source vs target; no class labels, no target labels) to
sweeps/gamma/<dataset>/<backbone>/<KEY>/<G>.json. Each training job then picks its task's gamma with the
LARGEST error (stages.gamma_select.selected_gamma); every method that does not set its own ``gamma`` trains with it. The stage is in the DAG only
with ``train.gamma: auto`` (``gamma_sweep.grid`` is ``[]`` otherwise).
"""

from __future__ import annotations

import argparse
import dataclasses

from stages.common import StageError, dataset_spec, load_params, main_wrapper, task_of, write_json
from stages.gpu import resolve_device
from stages.paths import sweep_dir


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", required=True)
    ap.add_argument("--gamma", required=True, type=float)
    args = ap.parse_args(argv)
    params = load_params()
    task = task_of(params, args.task)
    out = sweep_dir(params, args.task) / f"{args.gamma}.json"
    record = {"task": args.task, "gamma": args.gamma}
    if params["train"]["gamma"] != "auto":  # the DAG has no sweep then (gamma_sweep.grid: []); a run by hand
        raise StageError(f"train.gamma is fixed ({params['train']['gamma']}): nothing to sweep; set train.gamma: auto "
                         "and gamma_sweep.grid to sweep")
    import torch  # heavy imports only when there is something to train

    from dahash.train.gamma import domain_classification_error
    from dahash.train.head import train_dah
    from stages.features import labels_for, load_features
    from stages.runs import dah_config, pretrained_head

    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    sweep = params["gamma_sweep"]
    tp = {**params["train"], "gamma": args.gamma, "epochs": sweep["epochs"]}
    config = dah_config(tp)
    seed = params["train"]["seeds"][0]
    device = resolve_device(tp["device"])
    xs, src_paths = load_features(dataset, backbone, task["source"])
    xt, _ = load_features(dataset, backbone, task["target"])
    ys = labels_for(dataset, task["source"], src_paths)
    result = train_dah(torch.from_numpy(xs), torch.tensor(ys), torch.from_numpy(xt), len(dataset_spec(params).classes),
                       config, device=device, seed=seed, pretrained=pretrained_head(backbone),
                       progress=f"gamma {args.gamma:g} {args.task}")
    model = result.model.eval()
    with torch.inference_mode():
        fs = model(torch.from_numpy(xs).to(device)).fc7.cpu().numpy()
        ft = model(torch.from_numpy(xt).to(device)).fc7.cpu().numpy()
    from dahash.progress import note

    note(f"[{args.task}] gamma {args.gamma:g}: domain classifier on {len(fs) + len(ft)} x {fs.shape[1]} fc7 features")
    err = domain_classification_error(fs, ft, seed=seed, held_out=sweep["held_out"])
    write_json(out, {**record, "domain_error": err, "layer": "fc7", "epochs": sweep["epochs"], "seed": seed,
                     "held_out": sweep["held_out"], "final_total_loss": result.history[-1]["total"],
                     "config": dataclasses.asdict(config)})
    print(f"[{args.task}] gamma {args.gamma:g}: held-out domain classification error {err:.3f}")


if __name__ == "__main__":
    main()
