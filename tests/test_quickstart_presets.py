"""The first-look quickstart is a subset of quickstart-full that the full one reuses.

``quickstart`` (DAH, DAH-e, source-only, JDA, NoDA; 4 tasks, seed 0) and ``quickstart-full`` (every method, 12
tasks, 3 seeds, Figure 3) share data, features and training settings. After every quickstart job has run
(placeholder outputs, committed to dvc.lock as the Snakefile does), applying quickstart-full leaves every
extraction and training up to date for both tools: only new jobs, the report and the quickstart methods'
per-method jobs (an evaluation or a comparison method covers every task, and the tasks changed) are planned.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stages.common import load_params
from stages.preset import apply_preset
from test_dag_configs import (_env, dvc_status, expected_stages, make_project, resolve_and_check_params,
                              touch_outputs_in_dag_order, write_placeholder_outputs)
from test_pipeline import stage_names_from_snakemake
from workflow import dvcdag


def test_quickstart_is_the_first_look_subset() -> None:
    root = Path(__file__).resolve().parents[1] / "workflow" / "presets"
    import yaml

    quick, full = (yaml.safe_load((root / f"{n}.yaml").read_text()) for n in ("quickstart", "quickstart-full"))
    assert set(quick["methods"]) == {"dah", "dah_e"} and set(quick["baselines"]["methods"]) == {"source_only", "jda",
                                                                                                 "noda"}
    assert quick["train"]["seeds"] == [0] and quick["analysis"]["tasks"] == []
    assert quick["tasks"].items() <= full["tasks"].items() and len(full["tasks"]) == 12
    assert {k: v for k, v in quick["train"].items() if k != "seeds"} == {k: v for k, v in full["train"].items()
                                                                         if k != "seeds"}
    for key in ("data", "backbone", "gamma_sweep"):
        assert quick[key] == full[key], key
    for m, opts in quick["methods"].items():
        assert full["methods"][m] == opts
    for m, opts in quick["baselines"]["methods"].items():
        assert full["baselines"]["methods"][m] == opts
    assert quick["baselines"]["finetune"] == full["baselines"]["finetune"] == {}  # every comparison method in head mode


def test_quickstart_full_after_quickstart_reuses_every_training_and_extraction(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    proj = make_project(tmp_path, "quickstart", [])
    monkeypatch.chdir(proj)
    first = resolve_and_check_params(proj)
    assert first == expected_stages(load_params(proj / "params.yaml"))
    write_placeholder_outputs(proj)
    dvcdag.commit_stages(proj)
    touch_outputs_in_dag_order(proj)

    apply_preset("quickstart-full", ["data.mirror=some/folder"], proj / "params.yaml")
    full = resolve_and_check_params(proj)
    assert first < full
    per_method = {n for n in first if n.startswith(("evaluate@", "baseline@", "evaluate_baseline@"))}
    assert len(per_method) == 2 + 3 + 3  # dah, dah_e evaluated; source_only, jda, noda run and evaluated
    stale = set(dvc_status(proj))
    assert stale & first == {"report"} | per_method, sorted(stale & first)
    assert not any(n.startswith(("train@", "extract@")) for n in stale & first)
    dry = subprocess.run(["snakemake", "-n"], cwd=proj, env=_env(proj), capture_output=True, text=True, timeout=900)
    assert dry.returncode == 0, dry.stderr[-4000:]
    planned = stage_names_from_snakemake(proj, dry.stdout)
    assert planned == (full - first) | {"report"} | per_method
