"""Stage `baseline_finetune --method M [--task KEY ...]`: one comparison method of ``baselines.finetune``, the
paper's deep columns (source-only "Deep", DAN, DANN, NoDA, SuH) trained end to end from images, as DAH fine-tunes,
on every transfer task of params.yaml (or the given ones). One GPU job per method (the DAG's
``baseline_finetune@M``), checkpointed every ``train.checkpoint_every`` epochs into checkpoints/<same path as the
run> and resumed after a kill (the checkpoints of the job's tasks are deleted once every task is written), its
epochs logged to one MLflow run per task as the train stage does. SuH sees the target only: trained once per target
domain, as in stages.baseline (run.json ``fitted_for``). Setup, run folder and run.json: stages.baseline.

Everything but the loss is DAH's fine-tuning (stages.finetune.finetune_trained): the backbone's trunk and input
recipe (moments of the task's source + target images), K-per-class batches from the training items (plus
target batches for DAN and DANN), lr multipliers, schedule and the ``train.*`` settings of :data:`CONFIG_KEYS`,
with the method's ``FINETUNE_TRAIN_KEYS`` overrides (dahash.baselines.objectives). The head is fc6 -> fc7 -> fc8
(the pretrained fc6/fc7 for VGG-F), fc8 with C outputs (classifiers) or ``train.hash_bits`` (DPSH). Training items:

* source_only, dan, dann, noda: the labelled source (DAN, DANN also read the target images, never their labels;
  under ``eval.protocol: pwcf`` not the query images);
* suh: the labelled target DATABASE part of the evaluate stage's label-free split (the upper bound: it reads
  target labels, the queries' never).

Outputs (as head mode's, from the final epoch's network on the evaluation transform): classifiers
``pred_target`` (argmax of fc8 on every target image) and ``f_source``/``f_target`` (fc7: Figure 3 reads them);
noda ``u_source``/``u_target`` (fc8); suh ``u_target`` (signs of fc8 on every target image).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dahash.progress import echo, loss_postfix, progress
from stages import tracking
from stages.baseline import Domains, MethodSetup, finish_run, method_args, method_tasks, run_starter
from stages.common import StageError, load_params, main_wrapper, run_dir, task_of
from stages.runs import dah_config

#: the ``train.*`` keys of DAHConfig a fine-tuned comparison method reads (hash_bits: its code length, hidden_dims:
#: fc6/fc7, the schedule and SGD settings, new_lr_mult: its new layers, mmd_odd: DAN's MMD); the run's DAHConfig is
#: built from these only (the other fields: defaults no comparison objective reads), so they, with the job's
#: device, num_workers and checkpoint_every, are the stage's train params in dvc.yaml (tests/test_baseline_stage.py)
CONFIG_KEYS: tuple[str, ...] = ("hash_bits", "hidden_dims", "k_per_class", "epochs", "lr_start", "lr_end", "momentum",
                                "weight_decay", "bias_decay", "new_lr_mult", "mmd_odd")
#: the other ``train.*`` keys the stage reads
JOB_KEYS: tuple[str, ...] = ("device", "num_workers", "checkpoint_every")


def split_options(train: dict[str, Any], algorithm: str, options: dict[str, Any], bits: int) -> tuple[Any, dict]:
    """(DAHConfig of the run, the objective's options): the :data:`CONFIG_KEYS` of ``train`` with the method's
    train-key overrides and ``hash_bits = bits``; the objective gets the algorithm's own options only."""
    from dahash.baselines.modes import FINETUNE_TRAIN_KEYS, OBJECTIVE_OPTIONS

    tp = {**{k: train[k] for k in CONFIG_KEYS if k in train},
          **{k: v for k, v in options.items() if k in FINETUNE_TRAIN_KEYS}, "hash_bits": bits}
    return dah_config(tp), {k: v for k, v in options.items() if k in OBJECTIVE_OPTIONS[algorithm]}


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    args = method_args(argv, __doc__, "finetune")
    params = load_params()
    setup = MethodSetup.from_params(params, args.method, "finetune")
    tasks = method_tasks(params, args.task)
    domains = Domains(params["data"]["dataset"], params["backbone"]["name"])
    fitted: dict[str, tuple[str, Any]] = {}  # SuH: target domain -> (task, BaselineOutput)
    for key in progress(tasks, desc=f"baseline_finetune {args.method}", unit="task"):  # DAHASH_PROGRESS=0: no bars
        run_task(params, setup, key, domains, fitted)
    for key in tasks:  # every task is written: the checkpoints (kept for a resumed job) can go
        shutil.rmtree(run_dir("checkpoints", params, setup.name, key, setup.seed), ignore_errors=True)


def run_task(params: dict[str, Any], setup: MethodSetup, key: str, domains: Domains,
             fitted: dict[str, tuple[str, Any]]) -> None:
    """Fine-tune ``setup`` on task ``key`` (a killed job's checkpoint and MLflow run go on), or reuse the fit of a
    task with the same target (SuH); write its run folder and close its MLflow run."""
    from stages.resume import logged_epochs, restored_unlogged, resumable_run

    task = task_of(params, key)
    counts = {side: len(domains.stored(task[side])[1]) for side in ("source", "target")}
    inputs = tracking.image_inputs(params["data"]["dataset"], task, counts)
    reuse = fitted.get(task["target"]) if setup.target_only else None
    if reuse is not None:
        run_id = run_starter(params, setup, key, domains, inputs, reuse[0])()
        finish_run(params, setup, key, run_id, reuse[1], reuse[1].history or [], reuse[0])
        return
    ckpt = run_dir("checkpoints", params, setup.name, key, setup.seed)
    run_id, resumed_run = resumable_run(ckpt, run_starter(params, setup, key, domains, inputs, None))
    logged = logged_epochs(run_id) if resumed_run else set()
    pending: list[dict] = []
    keys: list[str] = []

    def on_epoch(row: dict) -> None:
        keys[:] = [k for k in row if k != "epoch"]
        if row["epoch"] not in logged:
            pending.append(row)
        if len(pending) >= 10:
            tracking.log_history(run_id, pending, keys)
            pending.clear()
        echo(f"[{setup.name} {key}] epoch {row['epoch']} {loss_postfix(row, keys)}")

    try:
        out, resumed = fit_finetuned(params, setup, task, domains, on_epoch=on_epoch, checkpoint_dir=ckpt,
                                     progress=f"{setup.name} {key}")
    except Exception:
        tracking.end_run(run_id, {}, pending, keys, status="FAILED")
        raise
    pending.extend(restored_unlogged(out.history, logged, resumed))
    if setup.target_only:
        fitted[task["target"]] = (key, out)
    finish_run(params, setup, key, run_id, out, pending, None)


def fit_finetuned(params: dict[str, Any], setup: Any, task: dict[str, str], domains: Any, *, on_epoch,
                  checkpoint_dir: Path, progress: bool | str = False) -> tuple[Any, int]:
    """Fine-tune comparison method ``setup`` (:class:`stages.baseline.MethodSetup`) on ``task``, checkpointed into (and
    resumed from) ``checkpoint_dir``; returns (dahash.baselines.registry.BaselineOutput: arrays, history, seconds;
    the epochs restored from a checkpoint). ``progress``: bars over the epochs, batches and encodings (False, True
    or their label). No model.pt is kept (VGG-F's is 0.4 GB a run): the arrays are what
    evaluation and Figure 3 read."""
    from dahash.baselines.deep import DeepDAModel
    from dahash.baselines.objectives import make_objective
    from dahash.baselines.registry import BaselineOutput
    from dahash.eval.split import pwcf_training_rows, target_query_database_split
    from stages.finetune import finetune_trained
    from stages.image_cache import open_cached
    from stages.moments import load_moments
    from stages.resume import loader_workers

    t0 = time.perf_counter()
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    algorithm, seed, ev = setup.algorithm, setup.seed, params["eval"]
    config, obj_options = split_options(params["train"], algorithm, setup.options, setup.bits)
    src_paths, tgt_paths = domains.stored(task["source"])[1], domains.stored(task["target"])[1]
    all_source = open_cached(params, task["source"], list(src_paths))
    all_target = open_cached(params, task["target"], list(tgt_paths))
    if algorithm == "suh":  # the labelled target database part; the queries are never trained on
        _, db = target_query_database_split(len(tgt_paths), query_fraction=ev["query_fraction"], seed=ev["split_seed"])
        items, labels = all_target.subset(db), domains.labels(task["target"])[db]
        target = items  # not read (DPSH reads no target): one epoch = one pass over the database part
    else:
        items, labels = all_source, domains.labels(task["source"])
        fit_t = pwcf_training_rows(len(tgt_paths), protocol=ev.get("protocol", "dah"),
                                   query_fraction=ev["query_fraction"], split_seed=ev["split_seed"])
        target = all_target.subset(fit_t)
    num_classes = setup.num_classes
    if algorithm in ("noda", "suh"):  # DPSH reads only whether two labels are equal: K per class of the classes present
        labels = np.unique(labels, return_inverse=True)[1].astype(np.int64)
        num_classes = int(labels.max()) + 1
    missing = sorted(set(range(num_classes)) - set(np.asarray(labels).tolist()))
    if missing:
        raise StageError(f"{setup.name} on {task['source']} -> {task['target']}: no source item of class(es) "
                         f"{missing}; the classifier's K-per-class batches need every class")
    gen = torch.Generator().manual_seed(seed)
    objective, width = make_objective(algorithm, num_classes=setup.num_classes, bits=setup.bits,
                                      feature_dim=config.hidden_dims[1], labels=labels, generator=gen,
                                      mmd_scales=config.mmd_scales, mmd_odd=config.mmd_odd, **obj_options)

    def make_head(feat_dim: int, head_init: dict | None) -> DeepDAModel:
        return DeepDAModel(feat_dim, width, config.hidden_dims, pretrained=head_init,
                           generator=torch.Generator().manual_seed(seed))

    net = finetune_trained(items, labels, target, num_classes, config, backbone=backbone,
                           moments=load_moments(dataset, backbone, [task["source"], task["target"]]),
                           device=setup.device, seed=seed,
                           num_workers=loader_workers(setup.options.get("num_workers", params["train"]["num_workers"]),
                                                      setup.device),
                           on_epoch=on_epoch, checkpoint_dir=checkpoint_dir,
                           checkpoint_every=int(setup.options.get("checkpoint_every",
                                                                  params["train"]["checkpoint_every"])),
                           make_head=make_head, objective=objective, progress=progress)
    arrays = encode_outputs(net, algorithm, all_source, all_target)
    return BaselineOutput(arrays=arrays, history=net.history, seconds=time.perf_counter() - t0), net.resumed_epoch


def encode_outputs(net: Any, algorithm: str, source: Any, target: Any) -> dict[str, np.ndarray]:
    """The run's arrays for the evaluate stage and Figure 3 (module docstring)."""
    if algorithm in ("source_only", "dan", "dann"):
        return {"pred_target": net.encode(target, "fc8").argmax(1).astype(np.int64),
                "f_source": net.encode(source, "fc7"), "f_target": net.encode(target, "fc7")}
    if algorithm == "noda":
        return {"u_source": net.encode(source, "fc8"), "u_target": net.encode(target, "fc8")}
    u = net.encode(target, "fc8")  # suh: codes of every target image (queries and database)
    return {"u_target": np.where(u >= 0, 1.0, -1.0).astype(np.float32)}


if __name__ == "__main__":
    main()
