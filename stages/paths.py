"""Where the pipeline's files live: the one module of project paths (dvc.yaml's outs spell the same layout).

``ROOT`` is the project root; every helper reads it when called, so pointing ``stages.paths.ROOT`` elsewhere
moves them all (the tests do). Layout::

    params.yaml
    data/raw/<dataset>/                                    download
    data/weights/<backbone>/<file>                          weights (dahash.data.datasets.WEIGHT_FILES)
    data/manifests/<dataset>.parquet                        preprocess
    data/moments/<dataset>/<backbone>.json                  moments
    data/features/<dataset>/<backbone>/<domain>/            extract
    sweeps/gamma/<dataset>/<backbone>/<task>/<gamma>.json   gamma_sweep
    models/<dataset>/<backbone>/<method>/<task>/seed<S>/    train, baseline  (run_dir; checkpoints/ alike)
    metrics/<dataset>/<method>/<task>/seed<S>.json          evaluate
    plots/pr/<dataset>/<method>/<task>/seed<S>.csv          evaluate
    analysis/<dataset>/<task>/analysis.json                 analysis
    plots/a_distance/<dataset>/<task>.csv                   analysis
    report/, metrics/summary/<dataset>/                     report
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = ROOT / "params.yaml"


def project_path(value: str | os.PathLike[str]) -> Path:
    """A path from params: absolute as given, relative ones against the project root."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else ROOT / p


def shown(path: Path) -> Path:
    """``path`` relative to the project root, for messages."""
    return Path(path).relative_to(ROOT)


def raw_dir(dataset: str) -> Path:
    """data/raw/<dataset>: the download stage's out (``<domain>/<class>/<image>``)."""
    return ROOT / "data" / "raw" / dataset


def weights_dir(name: str) -> Path:
    """data/weights/<backbone>: the weights stage's out."""
    return ROOT / "data" / "weights" / name


def weights_file(name: str) -> Path:
    """Path of the weights file the `weights` stage writes for backbone ``name``."""
    from dahash.data.datasets import weights_path

    return weights_path(ROOT, name)


def manifest_path(dataset: str) -> Path:
    """data/manifests/<dataset>.parquet: the preprocess stage's manifest."""
    return ROOT / "data" / "manifests" / f"{dataset}.parquet"


def moments_path(dataset: str, backbone: str) -> Path:
    """data/moments/<dataset>/<backbone>.json: per-domain pixel moments (the moments stage)."""
    return ROOT / "data" / "moments" / dataset / f"{backbone}.json"


def features_dir(dataset: str, backbone: str, domain: str) -> Path:
    """data/features/<dataset>/<backbone>/<domain>: one extract stage's out."""
    return ROOT / "data" / "features" / dataset / backbone / domain


def image_cache_dir(dataset: str, backbone: str, domain: str) -> Path:
    """data/image_cache/<dataset>/<backbone>/<domain>: one image_cache stage's out (fine-tuning's decoded images)."""
    return ROOT / "data" / "image_cache" / dataset / backbone / domain


def sweep_dir(params: dict[str, Any], task: str) -> Path:
    """sweeps/gamma/<dataset>/<backbone>/<task>: the gamma sweep's records of one task."""
    return ROOT / "sweeps" / "gamma" / params["data"]["dataset"] / params["backbone"]["name"] / task


def run_dir(top: str, params: dict[str, Any], method: str, task: str, seed: int) -> Path:
    """``<top>/<dataset>/<backbone>/<method>/<task>/seed<seed>`` (top: models, checkpoints, ...)."""
    p = params
    return ROOT / top / p["data"]["dataset"] / p["backbone"]["name"] / method / task / f"seed{seed}"


def metrics_dir(dataset: str, method: str) -> Path:
    """metrics/<dataset>/<method>: the evaluate stage's out for one method."""
    return ROOT / "metrics" / dataset / method


def pr_dir(dataset: str, method: str) -> Path:
    """plots/pr/<dataset>/<method>: the evaluate stage's plots out for one method."""
    return ROOT / "plots" / "pr" / dataset / method


def metrics_file(folder: Path, task: str, seed: int) -> Path:
    """``<folder>/<task>/seed<seed>.json`` (folder: a metrics_dir or its temp copy)."""
    return folder / task / f"seed{seed}.json"


def pr_file(folder: Path, task: str, seed: int) -> Path:
    """``<folder>/<task>/seed<seed>.csv`` (folder: a pr_dir or its temp copy)."""
    return folder / task / f"seed{seed}.csv"


def metrics_path(dataset: str, method: str, task: str, seed: int) -> Path:
    """metrics/<dataset>/<method>/<task>/seed<seed>.json: one run's metrics record."""
    return metrics_file(metrics_dir(dataset, method), task, seed)


def pr_path(dataset: str, method: str, task: str, seed: int) -> Path:
    """plots/pr/<dataset>/<method>/<task>/seed<seed>.csv: one run's PR curve."""
    return pr_file(pr_dir(dataset, method), task, seed)


def analysis_dir(dataset: str, task: str) -> Path:
    """analysis/<dataset>/<task>: one analysis stage's out."""
    return ROOT / "analysis" / dataset / task


def analysis_path(dataset: str, task: str) -> Path:
    """analysis/<dataset>/<task>/analysis.json: the A-distance and t-SNE record of one task."""
    return analysis_dir(dataset, task) / "analysis.json"


def a_distance_csv(dataset: str, task: str) -> Path:
    """plots/a_distance/<dataset>/<task>.csv: the analysis stage's DVC bar plot."""
    return ROOT / "plots" / "a_distance" / dataset / f"{task}.csv"


def report_dir() -> Path:
    """report/: the report stage's out (index.html, results.md, figures)."""
    return ROOT / "report"


def summary_dir(dataset: str) -> Path:
    """metrics/summary/<dataset>: one <method>.json per method, the DVC metrics of a run (kept in git)."""
    return ROOT / "metrics" / "summary" / dataset
