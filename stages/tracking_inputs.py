"""What an MLflow run records about its origin: MLflow's source tags (script, git commit) and the data it
was trained on as dataset inputs (name, DVC md5 as digest, project-relative source)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.common import ROOT


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return out or None


def git_commit() -> str:
    """The project's current git commit, or ``unknown`` outside a git checkout."""
    return _git("rev-parse", "HEAD") or "unknown"


def source_tags(source: str) -> dict[str, str]:
    """MLflow's own source tags, which its UI shows as a run's Source and git commit.

    ``source`` is the stage's script relative to the project (``stages/train.py``); type ``LOCAL`` as
    ``mlflow.start_run`` records for a script. Outside a git checkout the commit tags are left out.
    """
    import getpass

    tags = {"mlflow.source.name": source, "mlflow.source.type": "LOCAL"}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container): MLflow leaves it out too
        pass
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["mlflow.source.git.commit"] = commit
        branch = _git("rev-parse", "--abbrev-ref", "HEAD")
        if branch and branch != "HEAD":
            tags["mlflow.source.git.branch"] = branch
    return tags


# ------------------------------------------------------------------ datasets: what a run was trained on
# the project's .dvcignore: temporaries of atomic writes, Snakemake's marker in directory outputs
_DVC_IGNORED = (".*.pid*.tmp", ".*.pid*.old", ".snakemake_timestamp")


def dvc_md5(path: Path) -> str:
    """DVC 3's md5 of ``path``, the value ``dvc.lock`` / a ``.dvc`` file records for it as an output.

    A file: the md5 of its bytes. A folder: ``<md5 of the JSON listing>.dir``, where the listing is
    ``[{"md5": <file md5>, "relpath": <posix path>}, ...]`` sorted by relpath and dumped with sorted keys
    (dvc_data.hashfile.tree.Tree.digest); files matching the project's .dvcignore patterns are skipped.
    Hand-written (15 lines) because importing dvc costs a stage about a second; tested against DVC's own hash.
    Computed by the job, never read from dvc.lock: under Snakemake the lock is committed at the END of the run,
    so while its jobs run it may still hold the previous run's features. Cost: about 0.25 s for 55 MB (the
    Office-Caltech-10 images, 2,533 files, measured on the 2-core machine); features are a few MB.
    """
    from fnmatch import fnmatch

    from stages.common import file_md5

    path = Path(path)
    if not path.is_dir():
        return file_md5(path)
    entries = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in files:
            if any(fnmatch(name, pat) for pat in _DVC_IGNORED):
                continue
            f = Path(root) / name
            entries.append({"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()})
    entries.sort(key=lambda e: e["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


@dataclass(frozen=True)
class DataInput:
    """One dataset input of a run: ``name`` (shown by the UI), ``path`` (hashed; recorded relative to the
    project), ``context`` (``source`` / ``target``: the domain's role) and a profile (rows, dims, ...)."""

    name: str
    path: Path
    context: str
    profile: Mapping[str, Any]

    def entity(self):  # -> mlflow.entities.DatasetInput
        """The MLflow DatasetInput: digest = :func:`dvc_md5` (computed here; see the module docstring)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        shown = self.path.relative_to(ROOT).as_posix() if self.path.is_relative_to(ROOT) else str(self.path)
        ds = Dataset(name=self.name, digest=dvc_md5(self.path), source_type="local",
                     source=json.dumps({"uri": shown, "digest": "DVC md5 (computed)"}),
                     profile=json.dumps(dict(self.profile)))
        return DatasetInput(ds, tags=[InputTag("mlflow.data.context", self.context)])


def feature_inputs(dataset: str, backbone: str, task: Mapping[str, str], shapes: Mapping[str, tuple[int, ...]]
                   ) -> list[DataInput]:
    """The source and target domains' cached features (``data/features/<dataset>/<backbone>/<domain>``, the
    extract stage's DVC outputs) as dataset inputs; ``shapes[side]`` = the feature array's shape."""
    from stages.paths import features_dir

    return [DataInput(f"{task[side]}-{backbone}-features", features_dir(dataset, backbone, task[side]), side,
                      {"num_rows": int(shapes[side][0]), "num_features": int(shapes[side][1]),
                       "labels_read": side == "source"})
            for side in ("source", "target")]


def image_inputs(dataset: str, task: Mapping[str, str], counts: Mapping[str, int]) -> list[DataInput]:
    """Fine-tune mode: the two domains' image folders (``data/raw/<dataset>/<domain>``) and the manifest
    (``data/manifests/<dataset>.parquet``) as dataset inputs; ``counts[side]`` = images used."""
    from stages.paths import manifest_path

    raw = ROOT / "data" / "raw" / dataset
    return [*(DataInput(f"{task[side]}-images", raw / task[side], side,
                        {"num_rows": int(counts[side]), "labels_read": side == "source"})
              for side in ("source", "target")),
            DataInput(f"{dataset}-manifest", manifest_path(dataset), "manifest",
                      {"num_rows": int(counts["source"] + counts["target"])})]
