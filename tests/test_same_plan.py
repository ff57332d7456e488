"""Snakemake and DVC plan the same work after any params edit (issue 27, point 1).

`snakemake -n` lists every job the run will execute: the stages whose own inputs changed AND everything downstream
of them (their inputs will be rewritten). `dvc status` and `dvc repro --dry` list only the first kind: DVC decides
about a downstream stage after its upstream ran and changed its outputs, which a retraining always does. So the
DVC plan to compare (the one docs/dvc.md gives) is `python -m workflow.dvcdag plan`: `dvc status`'s stages (but
the always-changed mirror_state, which rewrites nothing unless the mirror changed) and everything downstream of
them in DVC's graph. After a params edit the two must be the same set of stages.

Projects: every shipped preset cut to its first task and seed (tests/test_dag_configs.py's helpers), every stage's
outputs written as placeholders, recorded in dvc.lock and dated in DAG order (both tools: nothing to do); then one
params edit: `train.epochs` for every preset, and on the full quickstart a set of single-key edits (train.*, eval.*,
analysis.*, a method's and a comparison method's options), and on the paper preset edits read by the fine-tuned
comparison methods only.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from stages.common import load_params
from stages.preset import apply_preset
from test_dag_configs import (PRESETS, _env, first_task_only, make_project, touch_outputs_in_dag_order,
                              write_placeholder_outputs)
from test_pipeline import stage_names_from_snakemake
from workflow import dvcdag

pytestmark = pytest.mark.pipeline


def _run(proj: Path, *cmd: str) -> str:
    res = subprocess.run(cmd, cwd=proj, env=_env(proj), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(cmd)}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


def plans(proj: Path) -> tuple[set[str], set[str], set[str]]:
    """(snakemake -n, DVC's plan: `python -m workflow.dvcdag plan`, `dvc status` but the always-changed stage)."""
    smk = stage_names_from_snakemake(proj, _run(proj, "snakemake", "-n"))
    dvc = {line.split()[0] for line in _run(proj, sys.executable, "-m", "workflow.dvcdag", "plan").splitlines()
           if line.strip()}
    status = set(re.findall(r"^(\S+):$", _run(proj, "dvc", "status"), re.M)) - {"mirror_state"}
    return smk, dvc, status


def committed_project(base: Path, preset: str, sets: list[str], monkeypatch: pytest.MonkeyPatch
                      ) -> tuple[Path, list[str]]:
    """``preset`` (cut to its first task and seed) + ``sets``, every stage done and recorded; returns the project
    (the working directory now: DVC names stages relative to it) and the --set list that rebuilds its params."""
    full = make_project(base / "full", preset, sets)
    cut = [*sets, *first_task_only(load_params(full / "params.yaml"))]
    proj = make_project(base / "proj", preset, cut)
    monkeypatch.chdir(proj)
    write_placeholder_outputs(proj)
    dvcdag.commit_stages(proj)
    touch_outputs_in_dag_order(proj)
    return proj, cut


def edit(proj: Path, preset: str, cut: list[str], change: str) -> None:
    mirror = [] if preset == "paper" else ["data.mirror=some/folder"]
    apply_preset(preset, [*mirror, *cut, change], proj / "params.yaml")


def assert_same_plan(proj: Path, change: str) -> set[str]:
    smk, dvc, status = plans(proj)
    assert smk, f"{change}: nothing to do?"
    assert smk == dvc, f"{change}: only snakemake {sorted(smk - dvc)}, only dvc {sorted(dvc - smk)}"
    assert status <= smk, f"{change}: {sorted(status - smk)}"
    return smk


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_after_an_epochs_edit(preset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj, cut = committed_project(tmp_path, preset, [], monkeypatch)
    assert plans(proj) == (set(), set(), set())
    epochs = load_params(proj / "params.yaml")["train"]["epochs"]
    edit(proj, preset, cut, f"train.epochs={epochs + 1}")
    planned = assert_same_plan(proj, "train.epochs")
    assert {s for s in planned if s.startswith("train@")}  # the trainings, and what reads them
    # exactly what reads train.epochs: the fine-tuned comparison methods, none of those on the features
    params = load_params(proj / "params.yaml")
    assert not {s for s in planned if s.startswith(("baseline@", "evaluate_baseline@"))}, sorted(planned)
    assert {f"{s}@{m}" for s in ("baseline_finetune", "evaluate_finetuned")
            for m in params["baselines"]["finetune"]} <= planned


# quickstart-full cut to A_C: dah, dah_e, 13 comparison methods, the A_C analysis. One edit per kind of key
# (train.*, eval.*, analysis.*, a method's options, a comparison method's options): the test takes minutes.
EDITS = ["train.lr_start=0.002", "eval.query_fraction=0.2", "analysis.max_points=500", "methods.dah_e.eta=0.5",
         "baselines.methods.jda={dim: 20}"]


def test_single_key_edits_on_the_full_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj, cut = committed_project(tmp_path, "quickstart-full", [], monkeypatch)
    for change in EDITS:
        edit(proj, "quickstart-full", cut, change)
        assert_same_plan(proj, change)


def test_fine_tuned_comparison_method_edits_on_the_paper_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    """The paper preset (cut to Ar_Cl) fine-tunes source_only, dan, dann, noda, suh (baselines.finetune): a train key
    only the fine-tuning reads (train.new_lr_mult) reruns the DAH trainings and those five, no method on the
    features; a fine-tuned method's options rerun that method, its evaluation and what reads it."""
    proj, cut = committed_project(tmp_path, "paper", [], monkeypatch)
    params = load_params(proj / "params.yaml")
    finetuned = set(params["baselines"]["finetune"])
    edit(proj, "paper", cut, "baselines.finetune.dan={mmd_weight: 2.0}")
    planned = assert_same_plan(proj, "baselines.finetune.dan")
    assert planned == {"baseline_finetune@dan", "evaluate_finetuned@dan", "analysis@Ar_Cl", "report"}, sorted(planned)
    edit(proj, "paper", cut, "train.new_lr_mult=[1.0, 3.0]")  # on top of the edit above (a preset keeps --set keys)
    planned = assert_same_plan(proj, "train.new_lr_mult")
    assert {s.split("@")[1] for s in planned if s.startswith("baseline_finetune@")} == finetuned
    assert not {s for s in planned if s.startswith(("baseline@", "evaluate_baseline@"))}, sorted(planned)
    assert {"train@dah-Ar_Cl-0", "train@dah_e-Ar_Cl-0"} <= planned
