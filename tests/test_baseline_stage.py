"""Stages ``baseline`` and ``evaluate`` for comparison methods, on a tiny project in a temp folder.

The project (params.yaml validated against the real schema, a ``custom`` dataset of 3 classes, a manifest,
cached 16-d features of two domains, an MLflow sqlite store) lives under tmp_path; the stage modules run
in process with every ``stages.*`` module's ``ROOT`` pointed at it. Checked: what ``baseline`` writes for a
shallow DA method (coral) and an unsupervised hashing method (itq), what ``evaluate`` makes of it, and
the honesty rule: shuffling the TARGET labels in the manifest leaves coral's outputs bit-identical.
Tests that rerun a stage do it in a private copy of the project (``own_project``), each ``baseline`` followed
by its ``evaluate`` as in the pipeline, so every MLflow run is closed and the tests pass in any order.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import stages.baseline as baseline_stage
import stages.evaluate as evaluate_stage
from dahash.eval.split import target_query_database_split
from dahash.data.manifest import write_manifest
from stages import common, tracking, tracking_store
from tests.rooted import point_stages_at

DOMAINS = ("src", "tgt")
CLASSES = ("a", "b", "c")
N = {"src": 45, "tgt": 30}
TASK = "src_tgt"
DATASET, BACKBONE = "custom", "efficientnet_lite0"  # a backbone whose cached features are already fc7-level
BITS = 8


def _features(rng: np.random.Generator, labels: np.ndarray, shift: float) -> np.ndarray:
    centres = 3.0 * np.random.default_rng(7).standard_normal((len(CLASSES), 16))
    return (centres[labels] + shift + rng.standard_normal((len(labels), 16))).astype(np.float32)


def make_project(root: Path) -> dict:
    """Write params.yaml, the class folders, the manifest and the cached features; return the params."""
    rng = np.random.default_rng(0)
    raw = root / "data" / "raw" / DATASET
    for d in DOMAINS:
        for c in CLASSES:
            (raw / d / c).mkdir(parents=True)
    rows = []
    for d_i, d in enumerate(DOMAINS):
        labels = rng.permutation(np.arange(N[d]) % len(CLASSES))
        paths = [f"{d}/{CLASSES[y]}/img_{i:03d}.jpg" for i, y in enumerate(labels)]
        fdir = root / "data" / "features" / DATASET / BACKBONE / d
        fdir.mkdir(parents=True)
        np.save(fdir / "features.npy", _features(rng, labels, 1.5 * d_i))
        (fdir / "meta.json").write_text(json.dumps({"paths": paths}))
        rows += [{"path": p, "domain": d, "label": int(y), "class_name": CLASSES[y], "width": 8, "height": 8,
                  "mode": "RGB", "status": "ok", "reason": ""} for p, y in zip(paths, labels)]
    write_manifest(pd.DataFrame(rows), root / "data" / "manifests" / f"{DATASET}.parquet")

    params = yaml.safe_load(common.PARAMS_FILE.read_text())  # the real file, only read: every other key
    params["data"].update(dataset=DATASET, domains=list(DOMAINS), mirror=str(raw))
    params["backbone"]["name"] = BACKBONE
    params["train"].update(mode="head", hash_bits=BITS, hidden_dims=[16, 16], device="cpu", gamma=5000.0)
    params["methods"] = {"dah": {}}
    params["baselines"] = {"seed": 0, "methods": {"coral": {}, "itq": {"n_iter": 5},
                                                 "suh": {"epochs": 20, "batch_size": 16, "lr": 0.01}},
                           "finetune": {}}
    params["eval"].update(max_per_class=200, query_fraction=0.2, split_seed=1)
    params["analysis"] = {"tasks": [], "max_points": 1000}
    params["tracking"]["experiment"] = "dahash-baseline-stage-test"
    params["tasks"] = {TASK: {"source": DOMAINS[0], "target": DOMAINS[1]}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return common.load_params(root / "params.yaml")  # valid against the real schema and cross-key checks


@contextmanager
def stages_rooted_at(root: Path) -> Iterator[None]:
    """Point every ``stages.*`` module's ``ROOT``, the MLflow store and ``load_params`` at project ``root``."""
    with pytest.MonkeyPatch.context() as mp:
        point_stages_at(mp, root)  # every stages.* module that bound the project root
        mp.setattr(tracking_store, "DEFAULT_DB", root / "mlflow.db")
        mp.setattr(tracking_store, "ARTIFACT_ROOT", root / "mlartifacts")
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        for mod in (baseline_stage, evaluate_stage):
            mp.setattr(mod, "load_params", lambda: common.load_params(root / "params.yaml"))
        # guard: nothing may be written into the real checkout (a pipeline may be running there)
        assert common.run_dir("models", {"data": {"dataset": DATASET}, "backbone": {"name": BACKBONE}},
                              "coral", TASK, 0).is_relative_to(root)
        assert evaluate_stage.metrics_path(DATASET, "coral", TASK, 0).is_relative_to(root)
        yield


def run_method(method: str) -> None:
    """What the pipeline runs for a comparison method: ``baseline`` (opens the MLflow run), then ``evaluate``
    (scores it and closes the run)."""
    baseline_stage.main(["--method", method, "--task", TASK])
    evaluate_stage.main(["--method", method, "--task", TASK, "--seed", "0"])


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Iterator[Path]:
    """The shared project with coral and itq run and evaluated. Read-only for the tests: a test that reruns a
    stage uses ``own_project`` (a copy), so no test sees another's outputs or MLflow runs, in any order."""
    root = tmp_path_factory.mktemp("baseline_stage") / "proj"
    root.mkdir()
    make_project(root)
    with stages_rooted_at(root):
        for method in ("coral", "itq"):
            run_method(method)
        yield root


@pytest.fixture
def own_project(project: Path, tmp_path: Path) -> Iterator[Path]:
    """A private copy of ``project`` (outputs included) with a fresh MLflow store, the stages pointed at it."""
    root = tmp_path / "proj"
    shutil.copytree(project, root, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".mlflow.lock"))
    with stages_rooted_at(root):
        yield root
    # what a test ran, it ran as the pipeline does: every MLflow run it opened is closed
    with stages_rooted_at(root):
        client = tracking.client()
        for exp in client.search_experiments():
            for run in client.search_runs([exp.experiment_id]):
                assert run.info.status in ("FINISHED", "FAILED"), (run.info.run_name, run.info.status)


def model_dir(root: Path, method: str) -> Path:
    return root / "models" / DATASET / BACKBONE / method / TASK / "seed0"


def metrics_of(root: Path, method: str) -> dict:
    return json.loads((root / "metrics" / DATASET / method / TASK / "seed0.json").read_text())


def codes_of(root: Path, method: str) -> dict[str, np.ndarray]:
    with np.load(model_dir(root, method) / "codes.npz") as z:
        return {k: z[k] for k in z.files}


def test_baseline_stage_writes_codes_and_run_record(project: Path) -> None:
    coral, itq = codes_of(project, "coral"), codes_of(project, "itq")
    assert set(coral) == {"pred_target"}
    assert coral["pred_target"].shape == (N["tgt"],) and coral["pred_target"].dtype == np.int64
    assert set(itq) == {"u_target"}
    assert itq["u_target"].shape == (N["tgt"], BITS) and itq["u_target"].dtype == np.float32
    assert set(np.unique(itq["u_target"])) <= {-1.0, 1.0}

    run = json.loads((model_dir(project, "coral") / "run.json").read_text())
    assert (run["algorithm"], run["family"], run["retrieval"], run["uses_target_labels"]) == (
        "coral", "shallow", None, False)
    assert run["seed"] == 0 and run["hash_bits"] == BITS and run["options"] == {}
    run = json.loads((model_dir(project, "itq") / "run.json").read_text())
    assert (run["algorithm"], run["family"], run["retrieval"], run["uses_target_labels"]) == (
        "itq", "hashing", "target_split", False)
    assert run["options"] == {"n_iter": 5}
    # no deep history for these methods: history.csv exists (a DVC output) but is empty
    assert (model_dir(project, "itq") / "history.csv").exists()
    assert not any(p.name.startswith(".") for p in model_dir(project, "itq").parent.iterdir())  # no temp leftovers


def test_evaluate_scores_a_classifier_and_a_hashing_method(project: Path) -> None:
    coral = metrics_of(project, "coral")
    assert coral["family"] == "shallow" and coral["algorithm"] == "coral"
    assert 0.0 <= coral["accuracy"] <= 1.0
    assert coral["map"] is None and coral["retrieval"] is None and coral["uses_target_labels"] is False
    assert coral["n_queries"] is None and coral["n_database"] is None
    assert coral["hash_bits"] == BITS and coral["n_target"] == N["tgt"] and coral["n_source"] == N["src"]
    pr = project / "plots" / "pr" / DATASET / "coral" / TASK / "seed0.csv"
    assert pr.read_text().strip() == "radius,precision,recall"  # header only: no codes, no curve

    itq = metrics_of(project, "itq")
    assert itq["family"] == "hashing" and itq["accuracy"] is None
    assert 0.0 <= itq["map"] <= 1.0 and itq["retrieval"] == "target_split" and itq["uses_target_labels"] is False
    assert (itq["n_queries"], itq["n_database"]) == (6, 24)  # round(0.2 * 30) target queries, the rest database
    assert itq["hash_bits"] == BITS
    curve = pd.read_csv(project / "plots" / "pr" / DATASET / "itq" / TASK / "seed0.csv")
    assert list(curve["radius"]) == list(range(BITS + 1)) and curve["recall"].iloc[-1] == pytest.approx(1.0)


def test_mlflow_runs_are_closed_with_their_scores(project: Path) -> None:
    client = tracking.client()
    for method, key in (("coral", "accuracy"), ("itq", "map")):
        run_id = json.loads((model_dir(project, method) / "run.json").read_text())["run_id"]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["uses_target_labels"] == "false" and run.data.tags["method"] == method
        assert key in run.data.metrics and "train_seconds" in run.data.metrics
    runs = client.search_runs([client.get_experiment_by_name("dahash-baseline-stage-test").experiment_id])
    assert sorted((r.info.run_name, r.info.status) for r in runs) == sorted(
        [(f"{m}:{TASK}:seed0", "FINISHED") for m in ("coral", "itq")]  # a run per training job (seed) ...
        + [(f"{m}:{TASK}", "FINISHED") for m in ("coral", "itq")])  # ... under a parent run per (method, task)
    assert str(tracking.tracking_uri()).endswith(str(project / "mlflow.db"))


def test_run_record_holds_no_machine_path(project: Path) -> None:
    """run.json is a DVC output (pushed, shared): the store is named relative to the project (issue 10.8)."""
    text = (model_dir(project, "coral") / "run.json").read_text()
    assert json.loads(text)["tracking_uri"] == "sqlite:///mlflow.db"
    assert str(project) not in text


def test_baseline_stage_never_reads_target_labels(own_project: Path) -> None:
    """Shuffling the target domain's labels in the manifest leaves coral's outputs bit-identical."""
    before = codes_of(own_project, "coral")
    manifest = own_project / "data" / "manifests" / f"{DATASET}.parquet"
    original = pd.read_parquet(manifest)
    df = original.copy()
    target = df["domain"] == DOMAINS[1]
    df.loc[target, "label"] = np.random.default_rng(1).permutation(df.loc[target, "label"].to_numpy())
    assert not np.array_equal(df["label"].to_numpy(), original["label"].to_numpy())
    write_manifest(df, manifest)
    run_method("coral")
    after = codes_of(own_project, "coral")
    assert before.keys() == after.keys()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])
    # the control: the SOURCE labels are read, so shuffling them does change the predictions
    src = df["domain"] == DOMAINS[0]
    df.loc[src, "label"] = np.random.default_rng(2).permutation(df.loc[src, "label"].to_numpy())
    write_manifest(df, manifest)
    run_method("coral")
    assert not np.array_equal(before["pred_target"], codes_of(own_project, "coral")["pred_target"])


def _shuffle_target_labels(df: pd.DataFrame, positions: np.ndarray, seed: int) -> pd.DataFrame:
    """``df`` with the labels of the target rows at ``positions`` (in target order) permuted."""
    out = df.copy()
    rows = np.flatnonzero((out["domain"] == DOMAINS[1]).to_numpy())[positions]
    labels = out.loc[rows, "label"].to_numpy()
    perm = np.random.default_rng(seed).permutation(len(rows))
    while np.array_equal(labels[perm], labels):  # make sure the labels really move
        perm = np.random.default_rng(seed := seed + 1).permutation(len(rows))
    out.loc[rows, "label"] = labels[perm]
    return out


def test_suh_stage_reads_only_the_target_databases_labels(own_project: Path) -> None:
    """SuH (the upper bound) is the one method given target labels, and only those of the split's database."""
    manifest = own_project / "data" / "manifests" / f"{DATASET}.parquet"
    original = pd.read_parquet(manifest)
    qi, db = target_query_database_split(N["tgt"], query_fraction=0.2, seed=1)  # eval.query_fraction/split_seed
    run_method("suh")
    before = codes_of(own_project, "suh")
    assert set(before) == {"u_target"} and before["u_target"].shape == (N["tgt"], BITS)
    run = json.loads((model_dir(own_project, "suh") / "run.json").read_text())
    assert (run["family"], run["retrieval"], run["uses_target_labels"]) == ("supervised_hashing",
                                                                           "target_split", True)
    m = metrics_of(own_project, "suh")
    assert m["uses_target_labels"] is True and m["retrieval"] == "target_split" and m["accuracy"] is None
    assert (m["n_queries"], m["n_database"]) == (len(qi), len(db)) == (6, 24)

    write_manifest(_shuffle_target_labels(original, qi, 3), manifest)  # QUERY labels: never read
    run_method("suh")
    np.testing.assert_array_equal(before["u_target"], codes_of(own_project, "suh")["u_target"])

    write_manifest(_shuffle_target_labels(original, db, 3), manifest)  # DATABASE labels: trained on
    run_method("suh")
    assert not np.array_equal(before["u_target"], codes_of(own_project, "suh")["u_target"])


def _add_domain_copy(root: Path, new: str, like: str) -> None:
    """A domain ``new`` with ``like``'s features and labels (its own manifest rows and image folders)."""
    manifest = root / "data" / "manifests" / f"{DATASET}.parquet"
    df = pd.read_parquet(manifest)
    rows = df[df["domain"] == like].copy()
    rows["domain"] = new
    rows["path"] = [new + p[len(like):] for p in rows["path"]]
    write_manifest(pd.concat([df, rows], ignore_index=True), manifest)
    src, dst = (root / "data" / "features" / DATASET / BACKBONE / d for d in (like, new))
    shutil.copytree(src, dst)
    (dst / "meta.json").write_text(json.dumps({"paths": rows["path"].tolist()}))
    for c in CLASSES:
        (root / "data" / "raw" / DATASET / new / c).mkdir(parents=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["domains"].append(new)
    params["tasks"][f"{new}_tgt"] = {"source": new, "target": DOMAINS[1]}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_one_job_runs_every_task_and_fits_a_target_only_method_once_per_target(
        own_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`baseline --method M` runs every task of params.yaml; ITQ (target features only) is fitted once for the two
    tasks sharing the target and both run folders hold the same codes, while CORAL (reads the source) is fitted per
    task. `evaluate --method M` then rebuilds the method's folders: every task scored, the records of tasks no longer in
    params.yaml and a marker left by Snakemake gone (a stale `.snakemake_timestamp` made Snakemake replan it)."""
    _add_domain_copy(own_project, "src2", like=DOMAINS[0])
    fits: list[str] = []
    real = baseline_stage.run_baseline

    def counting(name, *args, **kwargs):
        fits.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(baseline_stage, "run_baseline", counting)
    stale = own_project / "metrics" / DATASET / "itq" / "gone_task" / "seed0.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    marker = stale.parent.parent / ".snakemake_timestamp"  # what Snakemake leaves in a directory output it made
    marker.write_text("")
    tasks = [TASK, "src2_tgt"]
    for method in ("itq", "coral"):
        baseline_stage.main(["--method", method])
        evaluate_stage.main(["--method", method])
    assert fits == ["itq", "coral", "coral"]
    itq = [json.loads((own_project / "models" / DATASET / BACKBONE / "itq" / t / "seed0" / "run.json").read_text())
           for t in tasks]
    assert [r["fitted_for"] for r in itq] == [TASK, TASK] and itq[0]["run_id"] != itq[1]["run_id"]
    codes = [np.load(own_project / "models" / DATASET / BACKBONE / "itq" / t / "seed0" / "codes.npz")["u_target"]
             for t in tasks]
    np.testing.assert_array_equal(codes[0], codes[1])
    for method in ("itq", "coral"):
        scored = sorted(p.relative_to(own_project / "metrics" / DATASET / method).as_posix()
                        for p in (own_project / "metrics" / DATASET / method).rglob("*.json"))
        assert scored == sorted(f"{t}/seed0.json" for t in tasks)  # gone_task's record removed
    assert not marker.exists()  # the folder was rebuilt: an old marker would date it before the new models
    m = [json.loads((own_project / "metrics" / DATASET / "itq" / t / "seed0.json").read_text()) for t in tasks]
    assert m[0]["map"] == m[1]["map"] and m[0]["source"] != m[1]["source"]


def test_each_family_declares_exactly_the_train_keys_it_reads() -> None:
    """dvc.yaml: ``baseline`` (baselines.methods, head mode) declares no train.* schedule key, so a train.epochs
    edit reruns none of those methods; ``baseline_finetune`` declares exactly the train keys of the fine-tuned path
    (the DAHConfig fields it builds, stages.baseline_finetune.CONFIG_KEYS, and its job keys), and a train key outside
    them leaves the run's DAHConfig as it was."""
    import copy

    from stages.baseline_finetune import CONFIG_KEYS, JOB_KEYS, split_options
    from workflow import dvcdag

    stages = dvcdag.load_stages(common.PARAMS_FILE.parent)
    declared = {}
    for family in ("baseline", "baseline_finetune"):
        stage = next(s for s in stages if s.name.split("@")[0] == family)
        declared[family] = {k.split(":", 1)[1] for k in stage.params}
    assert {k for k in declared["baseline"] if k.startswith("train.")} == {"train.hash_bits", "train.hidden_dims",
                                                                          "train.device"}
    assert {k for k in declared["baseline_finetune"] if k.startswith("train.")} == {
        f"train.{k}" for k in (*CONFIG_KEYS, *JOB_KEYS)}
    train = common.load_params()["train"]
    config, _ = split_options(train, "dan", {"mmd_weight": 2.0}, 16)
    other = copy.deepcopy(train)
    unread = [k for k in train if k not in (*CONFIG_KEYS, *JOB_KEYS, "seeds")]
    assert {"eta", "gamma", "beta", "sign_zero", "bn_momentum", "mmd_layers", "entropy_gate"} <= set(unread)
    other.update(mode="head" if train["mode"] == "finetune" else "finetune")
    other.update(eta=0.0, gamma="auto", beta=3.0, sign_zero=-1.0, bn_momentum=0.5, mmd_layers=["fc8"],
                 entropy_gate=not train["entropy_gate"], similar_weight=2.0, hash_scale=1.0, reduction="mean",
                 divide_by_batch=not train["divide_by_batch"], hash_diagonal_grad=not train["hash_diagonal_grad"])
    assert set(unread) <= {k for k in other if other[k] != train[k]}  # every unread key changed here
    assert split_options(other, "dan", {"mmd_weight": 2.0}, 16)[0] == config
    for key, value in (("epochs", 7), ("new_lr_mult", [3.0, 4.0]), ("mmd_odd", "drop")):  # read ones do change it
        assert split_options({**train, key: value}, "dan", {"mmd_weight": 2.0}, 16)[0] != config, key
