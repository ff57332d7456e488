"""The gamma sweep in the DAG only with ``train.gamma: auto``: validation, the per-task choice, and both tools.

* ``gamma_sweep.grid`` must be non-empty exactly when ``train.gamma`` is ``auto``; either key alone is refused
  before anything runs, naming the key (params.yaml is left as it was);
* :func:`stages.gamma_select.selected_gamma`: the fixed gamma, or the grid's gamma whose held-out domain error is
  the largest (records of gammas no longer in the grid ignored), a clear error when a record is missing;
* in one small project: with a fixed gamma neither ``dvc`` nor ``snakemake -n`` has a gamma job; after the edit
  to ``auto`` both have the sweep jobs; back to the fixed gamma, both see nothing to do.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stages import gamma_sweep
from stages.common import StageError, load_params
from stages.gamma_select import selected_gamma
from stages.preset import apply_preset
from test_dag_configs import (_env, dvc_status, expected_stages, make_project, resolve_and_check_params,
                              touch_outputs_in_dag_order, write_placeholder_outputs)
from test_pipeline import stage_names_from_snakemake
from workflow import dvcdag
import stages.paths

REPO_ROOT = Path(__file__).resolve().parents[1]
AUTO = ["train.gamma=auto", "gamma_sweep.grid=[50.0, 500.0, 5000.0]"]


def test_inconsistent_gamma_keys_are_refused_naming_the_key(tmp_path: Path) -> None:
    params_file = tmp_path / "params.yaml"
    params_file.write_text((REPO_ROOT / "params.yaml").read_text())
    before = params_file.read_text()
    with pytest.raises(StageError, match=r"train\.gamma = auto needs gamma_sweep\.grid.*gamma_sweep\.grid=\[50\.0"):
        apply_preset("quickstart", ["data.mirror=x", "train.gamma=auto"], params_file)
    with pytest.raises(StageError, match=r"gamma_sweep\.grid = \[50\.0\] but train\.gamma = 5000\.0 is fixed"):
        apply_preset("quickstart", ["data.mirror=x", "gamma_sweep.grid=[50.0]"], params_file)
    assert params_file.read_text() == before
    apply_preset("quickstart", ["data.mirror=x", *AUTO], params_file)
    params = load_params(params_file)
    assert params["train"]["gamma"] == "auto" and params["gamma_sweep"]["grid"] == [50.0, 500.0, 5000.0]
    apply_preset("quickstart", ["data.mirror=x"], params_file)  # a preset turns the sweep off again
    assert load_params(params_file)["gamma_sweep"]["grid"] == []


def _params(gamma: object, grid: list[float]) -> dict:
    return {"data": {"dataset": "custom"}, "backbone": {"name": "bb"}, "train": {"gamma": gamma},
            "gamma_sweep": {"grid": grid}}


def test_selected_gamma_is_the_largest_domain_error_of_the_grid(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stages.paths, "ROOT", tmp_path)
    assert selected_gamma(_params(5000.0, []), "A_W") == 5000.0  # fixed: no record read
    folder = tmp_path / "sweeps" / "gamma" / "custom" / "bb" / "A_W"
    folder.mkdir(parents=True)
    # hand-made records: 500 separates the domains worst (0.41); 7.0 is larger but no longer in the grid
    for g, err in ((50.0, 0.20), (500.0, 0.41), (5000.0, 0.33), (7.0, 0.49)):
        (folder / f"{g}.json").write_text(json.dumps({"task": "A_W", "gamma": g, "domain_error": err}))
    assert selected_gamma(_params("auto", [50.0, 500.0, 5000.0]), "A_W") == 500.0
    assert selected_gamma(_params("auto", [50.0, 5000.0]), "A_W") == 5000.0
    with pytest.raises(StageError, match=r"A_W: gamma sweep records for \[50000\.0\] missing.*gamma_sweep@A_W-50000\.0"):
        selected_gamma(_params("auto", [50.0, 50000.0]), "A_W")


def _plans(proj: Path) -> tuple[set[str], set[str]]:
    """(stage names DVC resolves, stage names of the jobs ``snakemake -n`` plans)."""
    names = resolve_and_check_params(proj)
    dry = subprocess.run(["snakemake", "-n"], cwd=proj, env=_env(proj), capture_output=True, text=True, timeout=600)
    assert dry.returncode == 0, dry.stderr[-4000:]
    return names, stage_names_from_snakemake(proj, dry.stdout)


def test_fixed_gamma_has_no_gamma_job_auto_has_them_in_both_tools(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cut = ["tasks={A_W: {source: amazon, target: webcam}}", "train.seeds=[0]", "analysis.tasks=[]",
           "baselines.methods={jda: {}}"]
    proj = make_project(tmp_path, "quickstart", cut)
    monkeypatch.chdir(proj)
    names, planned = _plans(proj)
    assert names == planned == expected_stages(load_params(proj / "params.yaml"))
    assert not any(n.startswith("gamma") for n in names | planned)
    write_placeholder_outputs(proj)
    dvcdag.commit_stages(proj)
    touch_outputs_in_dag_order(proj)
    assert dvc_status(proj) == {} and _plans(proj)[1] == set()

    apply_preset("quickstart", [*cut, "data.mirror=some/folder", *AUTO], proj / "params.yaml")
    names, planned = _plans(proj)
    sweep = {f"gamma_sweep@A_W-{g}" for g in (50.0, 500.0, 5000.0)}
    assert {n for n in names if n.startswith("gamma")} == sweep == {n for n in planned if n.startswith("gamma")}
    assert names == expected_stages(load_params(proj / "params.yaml"))
    # DVC: the new sweep jobs and the trainings (train.gamma changed); Snakemake also plans what follows them
    stale = set(dvc_status(proj))
    assert sweep | {"train@dah-A_W-0", "train@dah_e-A_W-0"} <= stale <= planned
    assert {"evaluate@dah", "report"} <= planned and "baseline@jda" not in planned

    apply_preset("quickstart", [*cut, "data.mirror=some/folder"], proj / "params.yaml")  # back to gamma 5000
    names, planned = _plans(proj)
    assert not any(n.startswith("gamma") for n in names) and planned == set() and dvc_status(proj) == {}
