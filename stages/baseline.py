"""Stage `baseline --method M [--task KEY ...]`: one comparison method of ``baselines.methods`` (paper Tables
2-4, on the cached features: head mode) on every transfer task of params.yaml (or the given ones). One job per
method (the DAG's ``baseline@M``): most methods fit in seconds, less than a job's start-up, and the methods that see
the target only (unsupervised hashing, SuH: ``target_split`` retrieval) are fitted ONCE per target domain, their run
folders for tasks sharing that target hold the same codes (run.json ``fitted_for``: the task whose fit they reuse).

``baselines.methods.<M>`` names the algorithm (``algorithm:``, default M) and its options; the run uses
``baselines.seed``, ``train.hash_bits``, ``train.device`` and (deep algorithms' default head) ``train.hidden_dims``,
none of DAH's ``train.*`` schedule. Inputs are the same cached features DAH trains on (shallow and hashing methods:
the backbone's fc7-level features, see stages.runs.penultimate_features). Target labels are NOT read, except by SuH
(``suh``: supervised hashing on the labelled target database part, the paper's upper bound), which reads the labels
of the split's database items only (split rule: ``eval.query_fraction``, ``eval.split_seed``; see
dahash.baselines.registry).

The methods of ``baselines.finetune`` (source_only, dan, dann, noda, suh fine-tuned end to end from images, the
paper's setting) are the stage ``baseline_finetune`` (stages.baseline_finetune), which shares this module's setup,
run records and MLflow runs.

Writes models/<dataset>/<backbone>/<M>/<KEY>/seed<S>/ per task (the stage's out is the method's folder
models/<dataset>/<backbone>/<M>): codes.npz (pred_target and/or u_source/u_target,
f_source/f_target), history.csv (deep methods) and run.json (algorithm, family, retrieval protocol, MLflow
run id, wall time). The evaluate stage scores it like DAH.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dahash.baselines.registry import (
    ALGORITHMS,
    algorithm_of,
    check_options,
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

#: the params dict of each mode's methods, and the stage (dvc.yaml family and module) that runs them
MODE_KEYS = {"head": "methods", "finetune": "finetune"}
MODE_STAGES = {"head": "baseline", "finetune": "baseline_finetune"}


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
    mode: str = "head"  # head (baselines.methods, cached features) or finetune (baselines.finetune, from images)

    @classmethod
    def from_params(cls, params: dict[str, Any], name: str, mode: str = "head") -> MethodSetup:
        algorithm, options = baseline_options(params, name, mode)  # the method exists and its options are valid
        return cls(name, algorithm, options, algorithm_of(algorithm), int(params["baselines"]["seed"]),
                   int(params["train"]["hash_bits"]), resolve_device(params["train"]["device"]),
                   len(dataset_spec(params).classes), mode)

    @property
    def target_only(self) -> bool:
        """Fitted on the target features alone (retrieval inside the target): one fit serves every task with
        that target."""
        return self.algo.retrieval == "target_split"


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


def baseline_options(params: dict[str, Any], name: str, mode: str = "head") -> tuple[str, dict[str, Any]]:
    """(algorithm, options) of ``baselines.methods.<name>`` (``mode`` head) or ``baselines.finetune.<name>``
    (``mode`` finetune); the algorithm defaults to the name.

    Deep algorithms get ``hidden_dims`` from ``train.hidden_dims`` unless the entry sets it (same head as DAH).
    """
    key = MODE_KEYS[mode]
    methods = params["baselines"][key]
    if name not in methods:
        other = next(m for m in MODE_KEYS if m != mode)
        hint = (f"; {name} is under baselines.{MODE_KEYS[other]}: its stage is {MODE_STAGES[other]}@{name}"
                if name in params["baselines"][MODE_KEYS[other]] else "")
        raise StageError(f"params.yaml: baselines.{key}.{name} not defined; baselines.{key} has {list(methods)}{hint}")
    entry = dict(methods[name] or {})
    algorithm = entry.pop("algorithm", name)
    if algorithm not in ALGORITHMS:
        raise StageError(f"params.yaml: baselines.{key}.{name}: algorithm {algorithm!r} unknown; "
                         f"set `algorithm:` to one of {list(ALGORITHMS)}")
    try:
        options = check_options(algorithm, entry, mode)
    except ValueError as exc:
        raise StageError(f"params.yaml: baselines.{key}.{name}: {exc}") from exc
    if algorithm in ("source_only", "dan", "dann"):
        options.setdefault("hidden_dims", list(params["train"]["hidden_dims"]))
    return algorithm, options


def method_args(argv: list[str] | None, doc: str | None, mode: str) -> argparse.Namespace:
    """--method (required) and --task (repeatable) of a comparison-method stage."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--method", required=True, help=f"baselines.{MODE_KEYS[mode]}.<M> of params.yaml")
    ap.add_argument("--task", action="append", help="a tasks.<KEY> (repeatable; default: every task)")
    return ap.parse_args(argv)


def method_tasks(params: dict[str, Any], given: list[str] | None) -> list[str]:
    """The task keys a job runs: ``given`` (each checked) or every task of params.yaml."""
    tasks = given or list(params["tasks"])
    for key in tasks:
        task_of(params, key)
    return tasks


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    args = method_args(argv, __doc__, "head")
    params = load_params()
    setup = MethodSetup.from_params(params, args.method)
    tasks = method_tasks(params, args.task)
    domains = Domains(params["data"]["dataset"], params["backbone"]["name"])
    pretrained = pretrained_head(params["backbone"]["name"]) if setup.algo.family == "deep" else None
    fitted: dict[str, tuple[str, Any]] = {}  # target-only methods: target domain -> (task, BaselineOutput)
    for key in progress(tasks, desc=f"baseline {args.method}", unit="task"):  # DAHASH_PROGRESS=0: no bars
        run_task(params, setup, key, domains, fitted, pretrained)


def run_task(params: dict[str, Any], setup: MethodSetup, key: str, domains: Domains,
             fitted: dict[str, tuple[str, Any]], pretrained: dict | None) -> None:
    """Fit comparison method ``setup`` on task ``key`` (or reuse the fit of a task with the same target when the
    method sees the target only), write its run folder and its MLflow run.

    ``fitted`` maps a target domain to the (task, output) of a target-only method's fit; ``pretrained``: the
    deep methods' starting fc6/fc7 (VGG-F), or None.
    """
    task = task_of(params, key)
    xs_raw, _ = domains.stored(task["source"])
    xt_raw, _ = domains.stored(task["target"])
    reuse = fitted.get(task["target"]) if setup.target_only else None
    shapes = {"source": xs_raw.shape, "target": xt_raw.shape}  # the feature files as stored (dataset inputs)
    inputs = tracking.feature_inputs(params["data"]["dataset"], params["backbone"]["name"], task, shapes)
    run_id = run_starter(params, setup, key, domains, inputs, reuse[0] if reuse else None)()
    try:
        out = reuse[1] if reuse else fit(params, setup, task, domains, pretrained)
    except Exception:
        tracking.end_run(run_id, {}, [], [], status="FAILED")
        raise
    if setup.target_only and reuse is None:
        fitted[task["target"]] = (key, out)
    finish_run(params, setup, key, run_id, out, out.history or [], reuse[0] if reuse else None)


def run_starter(params: dict[str, Any], setup: MethodSetup, key: str, domains: Domains, inputs: list,
                fitted_for: str | None) -> Callable[[], str]:
    """A function that creates the MLflow run of ``setup`` on task ``key`` (tags, params, dataset ``inputs``) and
    returns its id; ``fitted_for``: the task whose fit this run reuses (target-only methods), or None."""
    task = task_of(params, key)
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    method, algorithm, seed = setup.name, setup.algorithm, setup.seed
    n_source, n_target = len(domains.stored(task["source"])[1]), len(domains.stored(task["target"])[1])
    return lambda: tracking.start_run(
        experiment_name(params), f"{method}:{key}:seed{seed}",
        tags={"task": key, "source": task["source"], "target": task["target"], "dataset": dataset,
              "backbone": backbone, "method": method, "algorithm": algorithm, "family": setup.algo.family,
              "seed": str(seed), "device": setup.device,
              "uses_target_labels": str(setup.algo.uses_target_labels).lower(),
              "mode": setup.mode, **({"fitted_for": fitted_for} if fitted_for else {})},
        params={**{f"option.{k}": v for k, v in setup.options.items()}, "algorithm": algorithm,
                "hash_bits": setup.bits, "seed": seed, "backbone": backbone, "dataset": dataset, "task": key,
                "method": method, "n_source": n_source, "n_target": n_target, "mode": setup.mode},
        group=f"{method}:{key}", inputs=inputs, source=f"stages/{MODE_STAGES[setup.mode]}.py",
    )


def experiment_name(params: dict[str, Any]) -> str:
    """The MLflow experiment of the runs: ``tracking.experiment``, default ``dahash-<dataset>``."""
    return params["tracking"]["experiment"] or f"dahash-{params['data']['dataset']}"


def finish_run(params: dict[str, Any], setup: MethodSetup, key: str, run_id: str, out: Any,
               history: list[dict], fitted_for: str | None) -> None:
    """Write the run folder of ``setup`` on task ``key`` (``out``: its BaselineOutput) and close its MLflow run
    with ``history`` (the epochs not logged yet) and the wall time; ``fitted_for`` as :func:`run_starter`."""
    keys = [k for k in out.history[0] if k != "epoch"] if out.history else []
    ended_ms = tracking.now_ms()  # the run's end: the work's, recorded in run.json (the evaluation logs at it)
    algo, finetune = setup.algo, setup.mode == "finetune"
    record = {"run_id": run_id, "experiment": experiment_name(params), "tracking_uri": tracking.portable_uri(),
              "algorithm": setup.algorithm, "family": algo.family, "retrieval": algo.retrieval,
              "uses_target_labels": algo.uses_target_labels, "options": setup.options, "seed": setup.seed,
              "hash_bits": setup.bits, "train_seconds": out.seconds, "device": setup.device, "paper": algo.paper,
              "epochs": setup.options.get("epochs", params["train"]["epochs"] if finetune else None),
              "ended_ms": ended_ms, "mode": setup.mode, "fitted_for": fitted_for or key}
    try:
        write_run(run_dir("models", params, setup.name, key, setup.seed), out, record)
    except Exception:
        tracking.end_run(run_id, {}, history, keys, status="FAILED")
        raise
    # one call: the history, the wall time, the run closed at the work's end
    tracking.end_run(run_id, {"train_seconds": out.seconds}, history, keys, end_time=ended_ms)
    how = f"the fit of {fitted_for} (same target, {setup.algorithm} sees the target only)" if fitted_for else \
        f"{out.seconds:.1f} s"
    print(f"[{setup.name} {key}] {setup.algorithm} ({algo.family}): {how} (MLflow run {run_id})", flush=True)


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
