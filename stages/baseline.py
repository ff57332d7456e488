"""Stage `baseline --method M [--task KEY ...]`: one comparison method (paper Tables 2-4) on every transfer task of
params.yaml (or the given ones). One job per method (the DAG's ``baseline@M``): most methods fit in seconds, less
than a job's start-up, and the methods that see the target only (unsupervised hashing, SuH: ``target_split``
retrieval) are fitted ONCE per target domain, their run folders for tasks sharing that target hold the same codes
(run.json ``fitted_for``: the task whose fit they reuse).

``baselines.methods.<M>`` names the algorithm (``algorithm:``, default M) and its options; the run uses
``baselines.seed`` and ``train.hash_bits``. Inputs are the same cached features DAH trains on (shallow and
hashing methods: the backbone's fc7-level features, see stages.runs.penultimate_features). Target
labels are NOT read, except by SuH (``suh``: supervised hashing on the labelled target database part, the
paper's upper bound), which reads the labels of the split's database items only (split rule:
``eval.query_fraction``, ``eval.split_seed``; see dahash.baselines.registry).

``mode: finetune`` (source_only, dan, dann, noda, suh; the paper's setting, params.yaml's default): the method is
trained end to end from images by DAH's fine-tuning loop with its own loss (stages.baseline_finetune): a GPU
job, checkpointed every ``train.checkpoint_every`` epochs into checkpoints/<same path as the run> and resumed
after a kill (the checkpoints of the job's tasks are deleted once every task is written), its epochs logged to
one MLflow run per task as the train stage does.

Writes models/<dataset>/<backbone>/<M>/<KEY>/seed<S>/ per task (the stage's out is the method's folder
models/<dataset>/<backbone>/<M>): codes.npz (pred_target and/or u_source/u_target,
f_source/f_target), history.csv (deep methods) and run.json (algorithm, family, retrieval protocol, MLflow
run id, wall time). The evaluate stage scores it like DAH.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dahash.baselines.registry import (
    ALGORITHMS,
    algorithm_of,
    check_options,
    mode_of,
    run_baseline,
)
from dahash.eval.split import target_query_database_split
from dahash.progress import echo, progress
from stages import tracking
from stages.common import (
    StageError,
    atomic_path,
    dataset_spec,
    load_params,
    main_wrapper,
    run_dir,
    task_of,
    write_json,
)
from stages.features import labels_for, load_features
from stages.gpu import resolve_device
from stages.runs import penultimate_features, pretrained_head


@dataclass(frozen=True)
class MethodSetup:
    """What every task of one comparison method shares, resolved and checked once per job."""

    name: str
    algorithm: str
    options: dict[str, Any]
    algo: Any  # dahash.baselines.registry.Algorithm
    seed: int
    bits: int
    device: str
    num_classes: int

    @classmethod
    def from_params(cls, params: dict[str, Any], name: str) -> MethodSetup:
        algorithm, options = baseline_options(params, name)  # the method exists and its options are valid
        return cls(name, algorithm, options, algorithm_of(algorithm), int(params["baselines"]["seed"]),
                   int(params["train"]["hash_bits"]), resolve_device(params["train"]["device"]),
                   len(dataset_spec(params).classes))

    @property
    def target_only(self) -> bool:
        """Fitted on the target features alone (retrieval inside the target): one fit serves every task with
        that target."""
        return self.algo.retrieval == "target_split"

    @property
    def mode(self) -> str:
        """``head`` (cached features) or ``finetune`` (end to end from images)."""
        return mode_of(self.options)


class Domains:
    """Per-domain inputs, read once for all the tasks of a job: the cached features as stored, their fc7-level
    version (shallow and hashing methods) and, only when asked for, the labels."""

    def __init__(self, dataset: str, backbone: str) -> None:
        self.dataset, self.backbone = dataset, backbone
        self._stored: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._fc7: dict[str, np.ndarray] = {}
        self._labels: dict[str, np.ndarray] = {}

    def stored(self, domain: str) -> tuple[np.ndarray, list[str]]:
        """``(features (n, f), manifest paths)`` as the extract stage wrote them."""
        if domain not in self._stored:
            self._stored[domain] = load_features(self.dataset, self.backbone, domain)
        return self._stored[domain]

    def fc7(self, domain: str) -> np.ndarray:
        """The backbone's penultimate features ``(n, h)`` (:func:`stages.runs.penultimate_features`)."""
        if domain not in self._fc7:
            self._fc7[domain] = penultimate_features(self.backbone, self.stored(domain)[0])[0]
        return self._fc7[domain]

    def labels(self, domain: str) -> np.ndarray:
        """``(n,)`` labels in the features' order (read from the manifest on first use only)."""
        if domain not in self._labels:
            self._labels[domain] = labels_for(self.dataset, domain, self.stored(domain)[1])
        return self._labels[domain]


def baseline_options(params: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """(algorithm, options) of ``baselines.methods.<name>``; the algorithm defaults to the name.

    Deep algorithms get ``hidden_dims`` from ``train.hidden_dims`` unless the entry sets it (same head as DAH).
    """
    methods = params["baselines"]["methods"]
    if name not in methods:
        raise StageError(f"params.yaml: baselines.methods.{name} not defined; baselines are {list(methods)}")
    entry = dict(methods[name] or {})
    algorithm = entry.pop("algorithm", name)
    if algorithm not in ALGORITHMS:
        raise StageError(f"params.yaml: baselines.methods.{name}: algorithm {algorithm!r} unknown; "
                         f"set `algorithm:` to one of {list(ALGORITHMS)}")
    try:
        options = check_options(algorithm, entry)
    except ValueError as exc:
        raise StageError(f"params.yaml: baselines.methods.{name}: {exc}") from exc
    if algorithm in ("source_only", "dan", "dann"):
        options.setdefault("hidden_dims", list(params["train"]["hidden_dims"]))
    return algorithm, options


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, help="baselines.methods.<M> of params.yaml")
    ap.add_argument("--task", action="append", help="a tasks.<KEY> (repeatable; default: every task)")
    args = ap.parse_args(argv)
    params = load_params()
    setup = MethodSetup.from_params(params, args.method)
    tasks = args.task or list(params["tasks"])
    for key in tasks:
        task_of(params, key)
    domains = Domains(params["data"]["dataset"], params["backbone"]["name"])
    pretrained = (pretrained_head(params["backbone"]["name"]) if setup.algo.family == "deep" and setup.mode == "head"
                  else None)
    fitted: dict[str, tuple[str, Any]] = {}  # target-only methods: target domain -> (task, BaselineOutput)
    for key in progress(tasks, desc=f"baseline {args.method}", unit="task"):  # DAHASH_PROGRESS=0: no bars
        run_task(params, setup, key, domains, fitted, pretrained)
    if setup.mode == "finetune":  # every task is written: the checkpoints (kept for a resumed job) can go
        for key in tasks:
            shutil.rmtree(run_dir("checkpoints", params, setup.name, key, setup.seed), ignore_errors=True)


def run_task(params: dict[str, Any], setup: MethodSetup, key: str, domains: Domains,
             fitted: dict[str, tuple[str, Any]], pretrained: dict | None) -> None:
    """Fit comparison method ``setup`` on task ``key`` (or reuse the fit of a task with the same target when the
    method sees the target only), write its run folder and its MLflow run.

    ``fitted`` maps a target domain to the (task, output) of a target-only method's fit; ``pretrained``: the
    deep methods' starting fc6/fc7 (VGG-F), or None.
    """
    task = task_of(params, key)
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    method, algorithm, options, algo, seed = setup.name, setup.algorithm, setup.options, setup.algo, setup.seed
    xs_raw, _ = domains.stored(task["source"])
    xt_raw, tgt_paths = domains.stored(task["target"])
    ys = domains.labels(task["source"])  # source labels
    reuse = fitted.get(task["target"]) if setup.target_only else None

    experiment = params["tracking"]["experiment"] or f"dahash-{dataset}"
    shapes = {"source": xs_raw.shape, "target": xt_raw.shape}  # the feature files as stored (dataset inputs)
    finetune = setup.mode == "finetune"
    inputs = (tracking.image_inputs(dataset, task, {"source": len(ys), "target": len(tgt_paths)}) if finetune
              else tracking.feature_inputs(dataset, backbone, task, shapes))
    start = lambda: tracking.start_run(
        experiment, f"{method}:{key}:seed{seed}",
        tags={"task": key, "source": task["source"], "target": task["target"], "dataset": dataset,
              "backbone": backbone, "method": method, "algorithm": algorithm, "family": algo.family,
              "seed": str(seed), "device": setup.device, "uses_target_labels": str(algo.uses_target_labels).lower(),
              "mode": setup.mode, **({"fitted_for": reuse[0]} if reuse else {})},
        params={**{f"option.{k}": v for k, v in options.items()}, "algorithm": algorithm, "hash_bits": setup.bits,
                "seed": seed, "backbone": backbone, "dataset": dataset, "task": key, "method": method,
                "n_source": len(ys), "n_target": len(tgt_paths), "mode": setup.mode},
        group=f"{method}:{key}", inputs=inputs, source="stages/baseline.py",
    )
    logged: set[int] = set()
    pending: list[dict] = []
    keys: list[str] = []
    if finetune and reuse is None:  # as the train stage: a killed job's MLflow run goes on (same per-epoch series)
        from stages.resume import logged_epochs, restored_unlogged, resumable_run

        ckpt = run_dir("checkpoints", params, method, key, seed)
        run_id, resumed_run = resumable_run(ckpt, start)
        logged = logged_epochs(run_id) if resumed_run else set()
    else:
        run_id = start()
    try:
        if finetune and reuse is None:
            from stages.baseline_finetune import fit_finetuned

            def on_epoch(row: dict) -> None:
                keys[:] = [k for k in row if k != "epoch"]
                if row["epoch"] not in logged:
                    pending.append(row)
                if len(pending) >= 10:
                    tracking.log_history(run_id, pending, keys)
                    pending.clear()
                echo(f"[{method} {key}] epoch {row['epoch']} " + " ".join(f"{k}={row[k]:.4g}" for k in keys))

            out, resumed = fit_finetuned(params, setup, task, domains, on_epoch=on_epoch, checkpoint_dir=ckpt,
                                         progress=f"{method} {key}")
            pending.extend(restored_unlogged(out.history, logged, resumed))
        else:
            out = reuse[1] if reuse else fit(params, setup, task, domains, pretrained)
        if setup.target_only and reuse is None:
            fitted[task["target"]] = (key, out)
    except Exception:
        tracking.end_run(run_id, {}, pending, keys, status="FAILED")
        raise
    keys = [k for k in out.history[0] if k != "epoch"] if out.history else []
    history = pending if finetune and reuse is None else (out.history or [])
    ended_ms = tracking.now_ms()  # the run's end: the work's, recorded in run.json (the evaluation logs at it)
    dest = run_dir("models", params, method, key, seed)
    record = {"run_id": run_id, "experiment": experiment, "tracking_uri": tracking.portable_uri(),
              "algorithm": algorithm, "family": algo.family, "retrieval": algo.retrieval,
              "uses_target_labels": algo.uses_target_labels, "options": options, "seed": seed,
              "hash_bits": setup.bits, "train_seconds": out.seconds, "device": setup.device, "paper": algo.paper,
              "epochs": options.get("epochs", params["train"]["epochs"] if finetune else None), "ended_ms": ended_ms,
              "mode": setup.mode,
              "fitted_for": reuse[0] if reuse else key}
    try:
        write_run(dest, out, record)
    except Exception:
        tracking.end_run(run_id, {}, history, keys, status="FAILED")
        raise
    # one call: the history, the wall time, the run closed at the work's end
    tracking.end_run(run_id, {"train_seconds": out.seconds}, history, keys, end_time=ended_ms)
    how = f"the fit of {reuse[0]} (same target, {algorithm} sees the target only)" if reuse else \
        f"{out.seconds:.1f} s"
    print(f"[{method} {key}] {algorithm} ({algo.family}): {how} (MLflow run {run_id})", flush=True)


def fit(params: dict[str, Any], setup: MethodSetup, task: dict[str, str], domains: Domains,
        pretrained: dict | None):
    """``run_baseline`` on one task: deep methods on the stored features (they train fc6/fc7 themselves, from
    ``pretrained`` for VGG-F), the others on the fc7-level features. Returns its ``BaselineOutput``."""
    algo = setup.algo
    extra: dict = {}
    if algo.uses_target_labels:  # SuH only: labels of the target split's DATABASE part, never of its queries
        ev = params["eval"]
        n_t = len(domains.stored(task["target"])[1])
        _, db = target_query_database_split(n_t, query_fraction=ev["query_fraction"], seed=ev["split_seed"])
        extra = {"yt_database": domains.labels(task["target"])[db], "database_idx": db}
    if algo.family == "deep":
        xs, xt = domains.stored(task["source"])[0], domains.stored(task["target"])[0]
        extra["pretrained"] = pretrained
    else:
        xs, xt = domains.fc7(task["source"]), domains.fc7(task["target"])
    return run_baseline(setup.algorithm, xs, domains.labels(task["source"]), xt, setup.num_classes,
                        options=setup.options, bits=setup.bits, seed=setup.seed, device=setup.device,
                        progress=f"{setup.name} {task['source']}->{task['target']}", **extra)


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
