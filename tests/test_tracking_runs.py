"""What the MLflow store holds after the stages ran, as its users look at it (issue 13; issue 9 target 2).

A tiny project (the baseline-stage test's: custom dataset, 16-d features, a git repository) runs what the
pipeline runs: ``train`` + ``evaluate`` of DAH for seeds 0 and 1 (seed 1 with ``tracking.log_model``), and
``baseline`` + ``evaluate`` of CORAL. Every MlflowClient call is counted. Checked against independent oracles:
the experiment's kind tag (the value MLflow's UI writes for "model training"), the source tags against
``git rev-parse``, the dataset digests against DVC's own ``dvc add``, the run's end time against the
``ended_ms`` the training recorded, and the calls each job made.
"""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import stages.baseline as baseline_stage
import stages.evaluate as evaluate_stage
import stages.train as train_stage
from stages import common, tracking, tracking_store
from tests.test_baseline_stage import BACKBONE, DATASET, TASK, make_project, stages_rooted_at

EXPERIMENT = "dahash-baseline-stage-test"


@dataclass
class Tracked:
    root: Path
    commit: str
    calls: dict[str, list[str]]  # job -> MlflowClient methods it called, in order
    times: dict[str, tuple[int, int]]  # job -> (start, end) in ms, measured around the job
    run_json: dict[str, dict]  # method:seed -> run.json


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def build_tracked_project(root: Path) -> Tracked:
    """The tiny project with DAH (2 seeds) and CORAL trained, evaluated and tracked; see the module docstring."""
    from mlflow import MlflowClient

    params = make_project(root)
    params["train"].update(epochs=3, checkpoint_every=10, seeds=[0, 1])
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _git(root, "init", "-q")
    _git(root, "add", "params.yaml")
    _git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny project")
    calls: dict[str, list[str]] = collections.defaultdict(list)
    times: dict[str, tuple[int, int]] = {}
    job = {"name": ""}
    with stages_rooted_at(root), pytest.MonkeyPatch.context() as mp:
        for name in ("create_experiment", "get_experiment_by_name", "set_experiment_tag", "search_runs",
                     "create_run", "log_batch", "log_inputs", "log_artifact", "log_artifacts", "set_terminated",
                     "get_run", "get_metric_history", "log_metric", "log_param", "set_tag"):
            real = getattr(MlflowClient, name)

            def counted(self, *a, _real=real, _name=name, **k):
                calls[job["name"]].append(_name)
                return _real(self, *a, **k)

            mp.setattr(MlflowClient, name, counted)
        mp.setattr(train_stage, "load_params", lambda: common.load_params(root / "params.yaml"))
        mp.setattr(train_stage, "selected_gamma", lambda params, task: 5000.0)
        tracking_store._checked.clear()

        def run(name: str, fn, argv: list[str]) -> None:
            job["name"] = name
            t0 = int(time.time() * 1000)
            fn(argv)
            times[name] = (t0, int(time.time() * 1000))
            time.sleep(0.01)  # the next job starts in a later millisecond

        for seed in (0, 1):
            if seed == 1:
                params["tracking"]["log_model"] = True
                (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            run(f"train:{seed}", train_stage.main, ["--method", "dah", "--task", TASK, "--seed", str(seed)])
            run(f"evaluate:{seed}", evaluate_stage.main, ["--method", "dah", "--task", TASK, "--seed", str(seed)])
        run("baseline", baseline_stage.main, ["--method", "coral", "--task", TASK])
        run("evaluate:coral", evaluate_stage.main, ["--method", "coral", "--task", TASK, "--seed", "0"])
    models = root / "models" / DATASET / BACKBONE
    run_json = {f"{m}:{s}": json.loads((models / m / TASK / f"seed{s}" / "run.json").read_text())
                for m, s in (("dah", 0), ("dah", 1), ("coral", 0))}
    return Tracked(root, _git(root, "rev-parse", "HEAD"), dict(calls), times, run_json)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Iterator[Tracked]:
    root = tmp_path_factory.mktemp("tracked") / "proj"
    root.mkdir()
    t = build_tracked_project(root)
    with stages_rooted_at(root):
        yield t


def _runs(c) -> dict[str, object]:
    exp = c.get_experiment_by_name(EXPERIMENT)
    return {r.info.run_name: r for r in c.search_runs([exp.experiment_id])}


def test_experiment_is_a_model_training_experiment(tracked: Tracked) -> None:
    c = tracking.client()
    assert c.get_experiment_by_name(EXPERIMENT).tags["mlflow.experimentKind"] == "custom_model_development"


def test_runs_carry_mlflows_source_tags(tracked: Tracked) -> None:
    runs = _runs(tracking.client())
    for name, script in ((f"dah:{TASK}:seed0", "stages/train.py"), (f"coral:{TASK}:seed0", "stages/baseline.py")):
        tags = runs[name].data.tags
        assert tags["mlflow.source.name"] == script and tags["mlflow.source.type"] == "LOCAL"
        assert tags["mlflow.source.git.commit"] == tracked.commit
        assert tags["mlflow.user"]


def test_one_parent_run_per_method_and_task_with_a_child_per_seed(tracked: Tracked) -> None:
    runs = _runs(tracking.client())
    assert set(runs) == {f"dah:{TASK}", f"dah:{TASK}:seed0", f"dah:{TASK}:seed1", f"coral:{TASK}",
                         f"coral:{TASK}:seed0"}
    for method, seeds in (("dah", (0, 1)), ("coral", (0,))):
        parent = runs[f"{method}:{TASK}"]
        assert parent.data.tags["role"] == "parent" and parent.data.params["method"] == method
        assert "method" not in parent.data.tags and "task" not in parent.data.tags  # not in the UI's method groups
        assert parent.info.status == "FINISHED"
        for s in seeds:
            child = runs[f"{method}:{TASK}:seed{s}"]
            assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
            assert child.data.tags["group"] == f"{method}:{TASK}" and child.data.tags["role"] == "seed"


def test_features_are_dataset_inputs_with_dvcs_md5(tracked: Tracked, tmp_path: Path) -> None:
    # oracle: DVC itself, on a copy of the two feature folders
    copy = tmp_path / "dvc"
    for d in ("src", "tgt"):
        shutil.copytree(tracked.root / "data" / "features" / DATASET / BACKBONE / d, copy / d)
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=copy, check=True)
    subprocess.run(["dvc", "add", "-q", "src", "tgt"], cwd=copy, check=True, capture_output=True)
    dvc_md5 = {d: yaml.safe_load((copy / f"{d}.dvc").read_text())["outs"][0]["md5"] for d in ("src", "tgt")}
    assert all(v.endswith(".dir") for v in dvc_md5.values())

    runs = _runs(tracking.client())
    for name in (f"dah:{TASK}:seed0", f"coral:{TASK}:seed0"):
        inputs = runs[name].inputs.dataset_inputs
        got = {i.dataset.name: (i.dataset.digest, {t.key: t.value for t in i.tags}["mlflow.data.context"],
                                json.loads(i.dataset.source)["uri"], json.loads(i.dataset.profile))
               for i in inputs}
        assert got == {
            f"src-{BACKBONE}-features": (dvc_md5["src"], "source", f"data/features/{DATASET}/{BACKBONE}/src",
                                         {"num_rows": 45, "num_features": 16, "labels_read": True}),
            f"tgt-{BACKBONE}-features": (dvc_md5["tgt"], "target", f"data/features/{DATASET}/{BACKBONE}/tgt",
                                         {"num_rows": 30, "num_features": 16, "labels_read": False}),
        }


def test_durations_are_the_trainings_and_the_evaluation_does_not_stretch_them(tracked: Tracked) -> None:
    runs = _runs(tracking.client())
    c = tracking.client()
    for key, train_job, eval_job in (("dah:0", "train:0", "evaluate:0"), ("dah:1", "train:1", "evaluate:1"),
                                     ("coral:0", "baseline", "evaluate:coral")):
        method, seed = key.split(":")
        run = runs[f"{method}:{TASK}:seed{seed}"]
        t0, t1 = tracked.times[train_job]
        ended = tracked.run_json[key]["ended_ms"]
        assert t0 <= run.info.start_time <= ended <= t1  # the span lies within the training job
        assert run.info.end_time == ended and run.info.status == "FINISHED"
        assert run.info.end_time < tracked.times[eval_job][0]  # the evaluation came later and did not extend it
        score = "map" if method == "dah" else "accuracy"
        assert score in run.data.metrics
        assert [m.timestamp for m in c.get_metric_history(run.info.run_id, score)] == [ended]


def test_each_job_batches_its_calls(tracked: Tracked) -> None:
    """Issue 9 target 2: one logging call where the old code made several (old evaluate: log_batch, one
    log_artifact per file (3), set_terminated; old baseline after the work: log_batch x2, later closed by
    evaluate)."""
    for job in ("evaluate:0", "evaluate:1", "evaluate:coral"):
        # the scores and files, then (issue 27) the group's current runs read once and the parent's seed summary
        assert tracked.calls[job] == ["log_batch", "log_artifacts", "get_run", "search_runs", "log_batch",
                                      "set_terminated"], job
    start = ["get_experiment_by_name", "search_runs"]
    parent = ["create_run", "log_batch", "set_terminated"]  # the parent: its group params (issue 27)
    child = ["create_run", "log_batch", "log_inputs"]
    end = ["log_batch", "set_terminated"]
    # seed 0 creates the experiment and the parent run; seed 1 finds both; seed 1 also logs its model
    assert tracked.calls["train:0"] == ["get_experiment_by_name", "create_experiment", "search_runs", *parent,
                                        *child, *end]
    assert tracked.calls["train:1"] == [*start, *child, *end, "log_artifacts"]  # the pyfunc model folder
    assert tracked.calls["baseline"] == [*start, *parent, *child, *end]


def test_model_artifact_only_when_asked(tracked: Tracked) -> None:
    c = tracking.client()
    runs = _runs(c)
    arts = {s: {a.path for a in c.list_artifacts(runs[f"dah:{TASK}:seed{s}"].info.run_id)} for s in (0, 1)}
    assert "model" not in arts[0]  # tracking.log_model: false (the default)
    assert "model" in arts[1]
    logged = {a.path for a in c.list_artifacts(runs[f"dah:{TASK}:seed1"].info.run_id, "model")}
    assert {"model/MLmodel", "model/artifacts", "model/pyfunc_model.py"} <= logged  # a pyfunc model from code
    assert {"seed0.json", "seed0.csv", f"pr_dah_{TASK}_seed0.png"} <= arts[0]


def test_a_job_whose_outputs_cannot_be_written_ends_its_run_failed(tracked: Tracked, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    root = tmp_path / "proj"
    shutil.copytree(tracked.root, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".mlflow.lock"))

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(root / "models"))

    monkeypatch.setattr(baseline_stage, "write_run", disk_full)
    with stages_rooted_at(root):
        with pytest.raises(SystemExit):
            baseline_stage.main(["--method", "coral", "--task", TASK])
        run = _runs(tracking.client())[f"coral:{TASK}:seed0"]
    assert run.info.status == "FAILED" and run.info.end_time is not None
