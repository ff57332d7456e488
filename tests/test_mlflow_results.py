"""One MLflow run per result, and the numbers the MLflow views give are the report's (issue 27, point 3).

The tiny tracked project of tests/test_tracking_runs.py (DAH seeds 0 and 1, CORAL; trained, evaluated, tracked by
the stages themselves), then DAH seed 0 trained and evaluated AGAIN with other params (more epochs), as a
`dvc exp run` does (``DVC_EXP_NAME`` set). Oracles: the metrics files the report reads
(``metrics/<dataset>/<method>/<task>/seed<S>.json``) and numpy's mean/std (ddof = 1, as the report).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import stages.evaluate as evaluate_stage
import stages.train as train_stage
from stages import common, tracking
from tests.test_baseline_stage import DATASET, TASK, stages_rooted_at
from tests.test_tracking_runs import EXPERIMENT, build_tracked_project

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rerun(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None):
    root = tmp_path_factory.mktemp("results") / "proj"
    root.mkdir()
    build_tracked_project(root)
    with stages_rooted_at(root), pytest.MonkeyPatch.context() as mp:
        first = json.loads((root / "metrics" / DATASET / "dah" / TASK / "seed0.json").read_text())["mlflow_run_id"]
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["train"]["epochs"] = 5
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        mp.setattr(train_stage, "load_params", lambda: common.load_params(root / "params.yaml"))
        mp.setattr(train_stage, "selected_gamma", lambda params, task: 5000.0)
        mp.setenv("DVC_EXP_NAME", "epochs5")
        argv = ["--method", "dah", "--task", TASK, "--seed", "0"]
        train_stage.main(argv)
        evaluate_stage.main(argv)
        yield root, first


def _metrics(root: Path, method: str, seed: int) -> dict:
    return json.loads((root / "metrics" / DATASET / method / TASK / f"seed{seed}.json").read_text())


def test_a_rerun_supersedes_the_earlier_run_of_its_method_task_and_seed(rerun) -> None:
    root, first = rerun
    c = tracking.client()
    exp = c.get_experiment_by_name(EXPERIMENT).experiment_id
    current = c.search_runs([exp], filter_string="tags.role = 'seed'")
    names = sorted(r.info.run_name for r in current)
    assert names == [f"coral:{TASK}:seed0", f"dah:{TASK}:seed0", f"dah:{TASK}:seed1"]  # each result once
    new = _metrics(root, "dah", 0)["mlflow_run_id"]
    assert new != first and new in {r.info.run_id for r in current}
    old = c.get_run(first).data.tags
    assert old["role"] == "superseded" and old["superseded_by"] == new
    assert c.get_run(first).info.run_name == f"dah:{TASK}:seed0 (superseded)"  # as the UI lists it
    assert c.get_run(new).data.tags["dvc_experiment"] == "epochs5"
    assert c.get_run(new).data.params["train.epochs"] == "5"


def test_parents_carry_the_seed_summary_of_the_report(rerun) -> None:
    root, _ = rerun
    c = tracking.client()
    exp = c.get_experiment_by_name(EXPERIMENT).experiment_id
    parents = {r.info.run_name: r for r in c.search_runs([exp], filter_string="tags.role = 'parent'")}
    dah = parents[f"dah:{TASK}"]
    for key in ("accuracy", "map"):
        values = [_metrics(root, "dah", s)[key] for s in (0, 1)]
        assert dah.data.metrics[f"{key}_mean"] == pytest.approx(np.mean(values))
        assert dah.data.metrics[f"{key}_std"] == pytest.approx(np.std(values, ddof=1))
    for k, v in _metrics(root, "dah", 0)["precision_at_k"].items():
        mean = np.mean([_metrics(root, "dah", s)["precision_at_k"][k] for s in (0, 1)])
        assert dah.data.metrics[f"precision_at_{k}_mean"] == pytest.approx(mean), v
    assert dah.data.metrics["n_seeds"] == 2 and "accuracy" not in dah.data.metrics
    assert dah.data.params["method"] == "dah" and dah.data.params["task"] == TASK
    children = c.search_runs([exp], filter_string=f"tags.group = 'dah:{TASK}' and tags.role = 'seed'")
    assert dah.info.end_time == max(r.info.end_time for r in children)
    assert parents[f"coral:{TASK}"].data.metrics["n_seeds"] == 1


def _snippet() -> str:
    text = (REPO_ROOT / "docs" / "mlflow.md").read_text()
    return re.search(r"<!-- snippet: compare -->\n```python\n(.*?)```", text, re.S).group(1)


def test_the_documented_snippet_gives_the_reports_numbers(rerun, capsys) -> None:
    root, _ = rerun
    code = (_snippet().replace("sqlite:///mlflow.db", f"sqlite:///{root / 'mlflow.db'}")
            .replace("dahash-office_caltech10", EXPERIMENT))
    scope: dict = {}
    exec(compile(code, "docs/mlflow.md", "exec"), scope)  # noqa: S102 - the documented snippet, as a user runs it
    table = scope["table"]
    for method, seeds in (("dah", (0, 1)), ("coral", (0,))):
        row = table.loc[(method, TASK)]
        assert row[("metrics.accuracy", "count")] == len(seeds)
        assert row[("metrics.accuracy", "mean")] == pytest.approx(np.mean([_metrics(root, method, s)["accuracy"]
                                                                           for s in seeds]))
    assert row is not None and capsys.readouterr().out.strip()
