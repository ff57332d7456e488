"""Reading the cached features and the manifest rows they belong to (shared by train and evaluate).

A feature folder data/features/<dataset>/<backbone>/<domain>/ holds ``features.npy`` (N x F float32)
and ``meta.json`` (the manifest paths of the N rows, in order). Labels are NOT stored there: the train
stage reads source labels from the manifest, and only the evaluate stage reads target labels.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dahash.data.manifest import read_manifest
from stages.common import StageError, load_arrays
from stages.paths import features_dir, manifest_path


def domain_rows(dataset: str, domain: str) -> pd.DataFrame:
    """The manifest's usable (status == ok) rows of ``domain``, in manifest order."""
    df = read_manifest(manifest_path(dataset))
    rows = df[(df["domain"] == domain) & (df["status"] == "ok")].reset_index(drop=True)
    if rows.empty:
        raise StageError(f"{manifest_path(dataset)}: no usable images for domain {domain!r}")
    return rows


def load_features(dataset: str, backbone: str, domain: str) -> tuple[np.ndarray, list[str]]:
    """Features (N, F) and the manifest paths of their rows."""
    d = features_dir(dataset, backbone, domain)
    try:
        meta = json.loads((d / "meta.json").read_text())
        feats = load_arrays(d / "features.npy", redo=f"dvc repro extract@{domain}")
    except FileNotFoundError as exc:
        raise StageError(f"{exc.filename}: missing; run the extract stage (dvc repro extract@{domain})") from exc
    if feats.shape[0] != len(meta["paths"]):
        raise StageError(f"{d}: features.npy has {feats.shape[0]} rows, meta.json {len(meta['paths'])} paths")
    return feats, meta["paths"]


def labels_for(dataset: str, domain: str, paths: list[str]) -> np.ndarray:
    """Labels of ``paths`` from the manifest, checking the rows are the same images in the same order."""
    rows = domain_rows(dataset, domain)
    if rows["path"].tolist() != list(paths):
        raise StageError(
            f"features of {dataset}/{domain} do not match {manifest_path(dataset)}: re-run extraction"
        )
    return rows["label"].to_numpy(dtype=np.int64)
