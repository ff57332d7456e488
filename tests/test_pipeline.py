"""End to end: really run snakemake and dvc on tiny generated images in a temp git repo.

One module-scoped project is built once (copy of this checkout + generated images as a ``custom``
dataset + a tiny training config) and snakemake runs the whole DAG on it (DAH, DAH-e, one comparison method of
each family, the feature analysis, the report); the fixture keeps snakemake's output and the MLflow runs of
that first run. The tests then check, in any order: what the run produced; every run is in MLflow; a training
param edit -> ``snakemake -n`` and ``dvc repro`` agree on exactly the train/evaluate/analysis/report stages
(the one test that changes the shared project, leaving it consistent: both tools see nothing to do);
push/pull through the remote and offline ``dvc plots show``, and the target-label honesty check, each on a
private copy of the project (they delete or rewrite outputs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

pytestmark = pytest.mark.pipeline

REPO_ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ["d1", "d2"]
CLASSES = ["circle", "cross", "square"]
TASKS = {"d1_d2": {"source": "d1", "target": "d2"}, "d2_d1": {"source": "d2", "target": "d1"}}
METHODS = ["dah", "dah_e"]
# comparison methods, one per family: deep (DAN), shallow (CORAL), unsupervised hashing (ITQ), upper bound (SuH)
BASELINES = {"dan": {"epochs": 2}, "coral": {}, "itq": {"n_iter": 5}, "suh": {"epochs": 2}}


def _env(proj: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = str(proj / "src")
    env["DAHASH_OFFLINE"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "dahash test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@dahash.invalid"
    return env


#: hang guard of one command (not a speed target): a whole-DAG run took over 15 min on a loaded 2-core machine
COMMAND_TIMEOUT_S = 3600


def run(proj: Path, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command in the temp project; on failure show its output."""
    res = subprocess.run(cmd, cwd=proj, env=_env(proj), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return res


def copy_checkout(dest: Path) -> None:
    """Copy the tracked + untracked-but-not-ignored files of this checkout to ``dest``."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for rel in filter(None, files):
        if rel == "dvc.lock":  # this machine's own runs: the test project starts without a lock
            continue
        src = REPO_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def tiny_project(base: Path, per_class: int = 6) -> tuple[Path, dict]:
    """A copy of this checkout at ``base/proj`` whose dataset is the custom one of :data:`DOMAINS` with
    ``per_class`` images a class (:func:`make_images`, its mirror ``base/images``), on EfficientNet-Lite0 with
    extraction batches of 8. Returns ``(proj, params)``: its params.yaml loaded, for the caller to set and write."""
    proj = base / "proj"
    proj.mkdir()
    copy_checkout(proj)
    make_images(base / "images", per_class=per_class)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["data"].update(dataset="custom", domains=DOMAINS, mirror=str(base / "images"))
    params["backbone"]["name"] = "efficientnet_lite0"
    params["extract"]["batch_size"] = 8
    return proj, params


def make_images(root: Path, per_class: int = 6) -> None:
    """Tiny shape images per domain; d2 is a darker, noisier version of d1 (a domain shift)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    masks = {
        "circle": (yy - 24) ** 2 + (xx - 24) ** 2 < 15**2,
        "cross": (abs(yy - 24) < 5) | (abs(xx - 24) < 5),
        "square": (abs(yy - 24) < 14) & (abs(xx - 24) < 14),
    }
    for d_i, domain in enumerate(DOMAINS):
        for cls, mask in masks.items():
            for i in range(per_class):
                img = np.full((48, 48, 3), 30 + 60 * d_i, np.float64)
                img[mask] = [220 - 80 * d_i, 120 + 20 * i, 40]
                img += rng.normal(0, 8 + 10 * d_i, img.shape)
                out = root / domain / cls / f"{cls}_{i}.jpg"
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(out)


def stage_names_from_snakemake(proj: Path, out: str) -> set[str]:
    """DVC stage names of the jobs in `snakemake -n`'s "Job stats" table (rule train__dah_d1_d2_0 -> train@dah-d1_d2-0)."""
    code = ("import json; from workflow.dvcdag import load_stages; "
            "print(json.dumps({s.rule_name: s.name for s in load_stages('.')}))")
    rules = json.loads(run(proj, sys.executable, "-c", code).stdout.strip().splitlines()[-1])
    jobs = set()
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", out, re.S)
    if m:
        for line in m.group(1).splitlines():
            name = line.split()[0]
            if name != "all":
                jobs.add(rules[name])
    return jobs


#: stages DVC runs on every repro and lists in `dvc status` as "always changed" (dvc.yaml: always_changed)
ALWAYS_CHANGED = {"mirror_state"}


def dvc_stale(proj: Path) -> set[str]:
    """Stages `dvc status` lists as stale, but for the always-changed ones (their only line is "always changed")."""
    out = run(proj, "dvc", "status").stdout
    if "up to date" in out:
        return set()
    blocks = re.findall(r"^(\S+):\n((?:\t.*\n?)*)", out, re.M)
    return {name for name, body in blocks if body.strip() != "always changed"}


MLFLOW_DUMP = (
    "import json, mlflow; from stages.tracking import tracking_uri; "
    "c = mlflow.MlflowClient(tracking_uri()); e = c.get_experiment_by_name('dahash-custom'); "
    "runs = c.search_runs([e.experiment_id]); "
    "print(json.dumps([dict(name=r.info.run_name, status=r.info.status, metrics=r.data.metrics, "
    "params=r.data.params, tags=r.data.tags, id=r.info.run_id, start=r.info.start_time, end=r.info.end_time, "
    "hist=len(c.get_metric_history(r.info.run_id, 'total')), "
    "arts=[a.path for a in c.list_artifacts(r.info.run_id)]) for r in runs]))"
)


@dataclass(frozen=True)
class Pipeline:
    """The shared project after its first full snakemake run."""

    root: Path
    log: str  # snakemake's stdout + stderr of that run
    mlflow_runs: list[dict]  # every MLflow run right after it (MLFLOW_DUMP)


def private_copy(project: Pipeline, dest: Path) -> Path:
    """A copy of the project (outputs, DVC cache, git, snakemake metadata) with a fresh MLflow store, for a test
    that deletes or rewrites outputs."""
    shutil.copytree(project.root, dest, symlinks=True,
                    ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", ".mlflow.lock"))
    return dest


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    base = tmp_path_factory.mktemp("pipeline")
    proj, params = tiny_project(base)
    params["train"].update(mode="head", hash_bits=16, hidden_dims=[32, 32], k_per_class=2, epochs=3, lr_start=1e-2, lr_end=1e-3,
                           gamma="auto", seeds=[0], checkpoint_every=1)
    params["gamma_sweep"].update(grid=[0.5, 5.0], epochs=2)
    params["report"]["title"] = "pipeline test"
    params["methods"] = {"dah": {}, "dah_e": {"eta": 0.0}}
    params["baselines"] = {"seed": 0, "methods": BASELINES, "finetune": {}}
    params["analysis"] = {"tasks": ["d1_d2"], "max_points": 1000}
    params["tasks"] = TASKS
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(proj, "git", "init", "-q")
    run(proj, "git", "add", "-A")
    run(proj, "git", "commit", "-qm", "test project")
    res = run(proj, "snakemake", "--cores", "2", "--resources", "gpu=1")
    runs = json.loads(run(proj, sys.executable, "-c", MLFLOW_DUMP).stdout.strip().splitlines()[-1])
    return Pipeline(proj, res.stdout + res.stderr, runs)


def test_snakemake_runs_the_whole_dag(project: Pipeline) -> None:
    # each job recorded its own stage in dvc.lock: nothing left for the end of the run, no warning
    assert "is not recorded in dvc.lock" not in project.log and "dvc commit failed" not in project.log
    root = project.root
    html = (root / "report" / "index.html").read_text()
    for method in METHODS:
        for key in TASKS:
            assert key in html
            metrics = json.loads((root / "metrics" / "custom" / method / key / "seed0.json").read_text())
            assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["map"] <= 1.0
            assert metrics["hash_bits"] == 16 and metrics["n_target"] == len(CLASSES) * 6
    for key in TASKS:  # comparison methods: null where the method has no classifier / no codes
        get = lambda m: json.loads((root / "metrics" / "custom" / m / key / "seed0.json").read_text())  # noqa: E731
        for m in ("dan", "coral"):
            assert 0.0 <= get(m)["accuracy"] <= 1.0 and get(m)["map"] is None and get(m)["retrieval"] is None
        for m in ("itq", "suh"):
            assert get(m)["accuracy"] is None and 0.0 <= get(m)["map"] <= 1.0
            assert get(m)["retrieval"] == "target_split" and get(m)["n_queries"] == round(0.1 * len(CLASSES) * 6)
        assert get("suh")["uses_target_labels"] and not get("itq")["uses_target_labels"]
    analysis = json.loads((root / "analysis" / "custom" / "d1_d2" / "analysis.json").read_text())
    assert set(analysis["a_distance"]) == {"backbone", "dan", "dah"}
    assert all((root / "analysis" / "custom" / "d1_d2" / f"tsne_{k}.png").exists() for k in analysis["a_distance"])
    assert "Table 4" in html or "mAP" in html
    import torch

    for key in TASKS:  # gamma = auto: per task the swept gamma with the largest held-out domain error
        sweep = root / "sweeps" / "gamma" / "custom" / "efficientnet_lite0" / key
        errors = {r["gamma"]: r["domain_error"] for r in (json.loads(p.read_text()) for p in sweep.glob("*.json"))}
        assert set(errors) == {0.5, 5.0}
        model = root / "models" / "custom" / "efficientnet_lite0" / "dah" / key / "seed0" / "model.pt"
        chosen = torch.load(model, weights_only=True)["config"]["gamma"]
        assert errors[chosen] == max(errors.values()), (chosen, errors)
    assert not (root / "checkpoints").exists() or not any((root / "checkpoints").rglob("*.pt"))
    assert (root / "report" / "results.md").exists()
    # snakemake's run was recorded in dvc.lock: DVC sees nothing to do
    assert dvc_stale(root) == set()
    dry = run(root, "snakemake", "-n")
    assert stage_names_from_snakemake(root, dry.stdout) == set(), dry.stdout


def test_code_caches_written_later_leave_the_dag_up_to_date(project: Pipeline, tmp_path: Path) -> None:
    """Python and numba write caches beside the code while jobs run (src/dahash/baselines/__pycache__: .pyc, numba's
    .nbi/.nbc; a fresh clone has none): neither Snakemake nor DVC may take them for a change of the code folder
    the comparison methods depend on (Snakemake dates a folder by its newest file; DVC hashes its files)."""
    root = private_copy(project, tmp_path / "proj")
    cache = root / "src" / "dahash" / "baselines" / "__pycache__"
    cache.mkdir(exist_ok=True)
    for name in ("probe.cpython-311.pyc", "probe.kernel-1.py311.nbi", "probe.kernel-1.py311.1.nbc"):
        (cache / name).write_bytes(b"written after the run")
    assert stage_names_from_snakemake(root, run(root, "snakemake", "-n").stdout) == set()
    assert dvc_stale(root) == set()
    (root / "src" / "dahash" / "baselines" / "probe.py").write_text("# a new module: a change of the code\n")
    planned = stage_names_from_snakemake(root, run(root, "snakemake", "-n").stdout)
    assert {f"baseline@{m}" for m in BASELINES} <= planned
    assert {f"baseline@{m}" for m in BASELINES} <= dvc_stale(root)


def test_editing_the_hamming_kernel_reruns_the_evaluations(project: Pipeline, tmp_path: Path) -> None:
    """The mAP is computed in src/dahash/eval/_hamming_kernel.py: after an edit of it both tools list every
    evaluation (DAH methods and comparison methods), Snakemake also the report that reads their metrics; no
    training, extraction or comparison-method fit (dvc.yaml's code deps are the stages' import closures)."""
    root = private_copy(project, tmp_path / "proj")
    kernel = root / "src" / "dahash" / "eval" / "_hamming_kernel.py"
    kernel.write_text(kernel.read_text() + "\n# an edit of the ranking kernel\n")
    evaluations = {f"evaluate@{m}" for m in METHODS} | {f"evaluate_baseline@{m}" for m in BASELINES}
    assert dvc_stale(root) == evaluations
    dry = run(root, "snakemake", "-n").stdout
    assert stage_names_from_snakemake(root, dry) == evaluations | {"report"}, dry


def test_every_training_run_is_in_mlflow(project: Pipeline) -> None:
    parents = {r["name"]: r for r in project.mlflow_runs if r["tags"].get("role") == "parent"}
    runs = [r for r in project.mlflow_runs if r["tags"].get("role") != "parent"]
    assert set(parents) == {f"{m}:{k}" for m in [*METHODS, *BASELINES] for k in TASKS}  # one per (method, task)
    assert {r["name"] for r in runs} == {f"{m}:{k}:seed0" for m in [*METHODS, *BASELINES] for k in TASKS}
    for r in runs:
        assert r["tags"]["mlflow.parentRunId"] == parents[r["name"].rsplit(":", 1)[0]]["id"]
        assert r["start"] <= r["end"]
        assert r["status"] == "FINISHED"
        if r["name"].split(":")[0] in BASELINES:
            assert r["params"]["algorithm"] == r["name"].split(":")[0] and "train_seconds" in r["metrics"]
            assert any(a.endswith(".json") for a in r["arts"])
            continue
        assert {"accuracy", "map", "hash", "quantization", "entropy", "mmd", "total"} <= set(r["metrics"])
        assert r["hist"] == 3  # one point per epoch
        assert r["params"]["train.epochs"] == "3"
        assert any(a.endswith(".json") for a in r["arts"]) and any(a.endswith(".png") for a in r["arts"])
    assert (project.root / "mlflow.db").exists()


#: what a `train.epochs` edit reruns: the DAH trainings; every comparison method (a fine-tuned one trains for
#: train.epochs, and DVC declares params per stage family, not per method: docs/dvc.md); their evaluations; the
#: analysis (it reads the DAH and DAN models); the report (it prints the epochs in its protocol)
# a train.epochs edit: the DAH trainings and the report declare it; the comparison methods here are all in head mode
# (baselines.methods), which reads no train schedule key: none of them reruns (docs/dvc.md)
EPOCHS_STALE = {f"train@{m}-{k}-0" for m in METHODS for k in TASKS} | {"report"}
EPOCHS_PLAN = EPOCHS_STALE | {f"evaluate@{m}" for m in METHODS} | {"analysis@d1_d2"}


def test_param_edit_reruns_what_reads_it_in_both_tools(project: Pipeline) -> None:
    root = project.root
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["epochs"] = 4
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    expected = EPOCHS_PLAN

    dry = run(root, "snakemake", "-n")
    assert stage_names_from_snakemake(root, dry.stdout) == expected, dry.stdout
    assert dvc_stale(root) == EPOCHS_STALE  # the stages whose own params changed

    # DVC's plan of the whole run (downstream included) is Snakemake's (docs/dvc.md)
    plan = run(root, sys.executable, "-m", "workflow.dvcdag", "plan").stdout
    assert {line.split()[0] for line in plan.splitlines() if line.strip()} == expected, plan

    repro = run(root, "dvc", "repro")
    ran = set(re.findall(r"Running stage '([^']+)'", repro.stdout))
    assert ran == expected | ALWAYS_CHANGED, repro.stdout
    # and now both tools agree that nothing is stale
    assert stage_names_from_snakemake(root, run(root, "snakemake", "-n").stdout) == set()
    assert dvc_stale(root) == set()
    metrics = json.loads((root / "metrics" / "custom" / "dah" / "d1_d2" / "seed0.json").read_text())
    assert metrics["epochs"] == 4


def test_dvc_metrics_plots_and_remote(project: Pipeline, tmp_path: Path) -> None:
    root = private_copy(project, tmp_path / "proj")
    shown = run(root, "dvc", "metrics", "show").stdout
    print(f"dvc metrics show:\n{shown}")
    # the table a person reads after a run: per method, mean accuracy and mAP over tasks and seeds; the manifest's
    # per-class counts (class names as columns) and the per-run files are not in it
    rows = {line.split()[0]: line.split()[1:] for line in shown.splitlines()[1:] if line.strip()}
    header = shown.splitlines()[0].split()
    assert header == ["Path", "accuracy", "map", "runs"], shown
    assert set(rows) == {f"metrics/summary/custom/{m}.json" for m in [*METHODS, *BASELINES]}, shown
    dah = json.loads((root / "metrics" / "summary" / "custom" / "dah.json").read_text())
    runs = [json.loads((root / "metrics" / "custom" / "dah" / k / "seed0.json").read_text()) for k in TASKS]
    assert dah == {"accuracy": pytest.approx(np.mean([r["accuracy"] for r in runs])),
                   "map": pytest.approx(np.mean([r["map"] for r in runs])), "runs": len(TASKS)}
    assert not any(c in shown for c in CLASSES)
    per_run = run(root, "dvc", "metrics", "show", "-R", "metrics/custom").stdout  # on demand
    assert "dah/d1_d2/seed0.json" in per_run and "accuracy" in per_run
    out = root / "plots-html"
    shown_plots = run(root, "dvc", "plots", "show", "-o", str(out))
    assert "failed to load" not in shown_plots.stdout + shown_plots.stderr  # no .snakemake_timestamp read as a plot
    page = (out / "index.html").read_text()
    assert ".snakemake_timestamp" not in page
    # each chart titled with its file: method, task and seed (A-distance: task)
    # DVC writes the title as {"text": ...} (DVC 3) or as a plain string (older)
    title = r'"title":\s*(?:\{{"text":\s*)?"{}"'
    for plot in ("plots/pr/custom/dah/d1_d2/seed0.csv", "plots/pr/custom/suh/d2_d1/seed0.csv",
                 "plots/a_distance/custom/d1_d2.csv"):
        assert re.search(title.format(re.escape(plot)), page), plot
    titles = re.findall(title.format(r"(plots/[^\"]+)"), page)
    assert len(titles) == len(set(titles)) == 9, titles  # 8 PR curves (dah, dah_e, itq, suh x 2 tasks) + 1
    assert "<script src=" not in page and "cdn.jsdelivr" not in page  # offline: vega inlined (workflow/vega)
    assert "a_distance" in page and "precision" in page
    # push to the default local remote, delete the features, pull them back
    run(root, "dvc", "push")
    feats = root / "data" / "features" / "custom" / "efficientnet_lite0" / "d1" / "features.npy"
    before = feats.read_bytes()
    shutil.rmtree(root / "data" / "features")
    run(root, "dvc", "pull")
    assert feats.read_bytes() == before


def test_dvc_experiment_with_another_epoch_count(project: Pipeline, tmp_path: Path) -> None:
    """`dvc exp run --set-param train.epochs=...` reruns what depends on it and `dvc exp show` lists the
    experiment's accuracy and mAP (the per-method summary, the metrics kept in git) beside the baseline's."""
    root = private_copy(project, tmp_path / "proj")
    run(root, "git", "add", "-A")  # the first run's dvc.lock and summary metrics: the experiment's baseline
    run(root, "git", "commit", "-qm", "first run")
    res = run(root, "dvc", "exp", "run", "--name", "epochs5", "--set-param", "train.epochs=5")
    ran = set(re.findall(r"Running stage '([^']+)'", res.stdout))
    assert ran == EPOCHS_PLAN | ALWAYS_CHANGED, res.stdout
    table = run(root, "dvc", "exp", "show", "--csv").stdout
    print(f"dvc exp show --csv:\n{table}")
    columns = table.splitlines()[0].split(",")
    for m in METHODS:
        assert {f"metrics/summary/custom/{m}.json:accuracy", f"metrics/summary/custom/{m}.json:map"} <= set(columns)
    shown = json.loads(run(root, "dvc", "exp", "show", "--json").stdout)
    baseline = shown[1] if shown[0]["rev"] == "workspace" else shown[0]
    exp = baseline["experiments"][0]["revs"][0]
    assert exp["name"] == "epochs5"
    assert exp["data"]["params"]["params.yaml"]["data"]["train"]["epochs"] == 5
    for rev in (baseline, exp):
        dah = rev["data"]["metrics"]["metrics/summary/custom/dah.json"]["data"]
        assert 0.0 <= dah["accuracy"] <= 1.0 and 0.0 <= dah["map"] <= 1.0
    after = json.loads((root / "metrics" / "custom" / "dah" / "d1_d2" / "seed0.json").read_text())
    assert after["epochs"] == 5
    # the MLflow runs the experiment made carry its name (tag dvc_experiment, from DVC_EXP_NAME)
    runs = json.loads(run(root, sys.executable, "-c", MLFLOW_DUMP).stdout.strip().splitlines()[-1])
    trained = [r for r in runs if r["name"] in {f"{m}:{k}:seed0" for m in METHODS for k in TASKS}]
    assert len(trained) == len(METHODS) * len(TASKS), [r["name"] for r in runs]
    assert {r["tags"].get("dvc_experiment") for r in trained} == {"epochs5"}


def test_main_job_stops_at_download_with_instructions(tmp_path: Path) -> None:
    """Default params (Office-Home, VGG-F) without network: a clear stop, nothing half-written."""
    proj = tmp_path / "proj"
    proj.mkdir()
    copy_checkout(proj)
    run(proj, sys.executable, "-m", "stages.preset", "paper")  # whatever preset the checkout has now
    run(proj, "git", "init", "-q")
    # --keep-going: the weights job (imagenet-vgg-f.mat) may fail first; the download job must still say what to do
    res = run(proj, "snakemake", "--cores", "2", "--resources", "gpu=1", "--keep-going", check=False)
    text = res.stdout + res.stderr
    assert res.returncode != 0
    assert "OfficeHomeDataset_10072016.zip" in text
    assert "downloads" in text and "md5" in text
    assert "imagenet-vgg-f.mat" in text
    assert not (proj / "data" / "raw" / "office_home").exists()
    # the only file written is the (complete) mirror-state record the download stage depends on
    leftovers = [p.relative_to(proj).as_posix() for p in (proj / "data").rglob("*") if p.is_file()
                 and p.parent.name != "mirror-state"] if (proj / "data").exists() else []
    assert leftovers == []


def test_training_never_reads_target_labels(project: Pipeline, tmp_path: Path) -> None:
    """Shuffling the target domain's labels in the manifest leaves the trained codes bit-identical."""
    import pandas as pd

    root = private_copy(project, tmp_path / "proj")
    manifest = root / "data" / "manifests" / "custom.parquet"
    codes = root / "models" / "custom" / "efficientnet_lite0" / "dah" / "d1_d2" / "seed0" / "codes.npz"
    dan = root / "models" / "custom" / "efficientnet_lite0" / "dan" / "d1_d2" / "seed0" / "codes.npz"
    before, dan_before = dict(np.load(codes)), dict(np.load(dan))
    # the retraining must see the params the codes were trained with (a test that edits params.yaml of the shared
    # project reruns it before it ends; if it failed half-way, this says so instead of a false label leak)
    stale = dvc_stale(root) & {"train@dah-d1_d2-0", "baseline@dan"}
    assert not stale, f"precondition: {sorted(stale)} not up to date in the shared project (an earlier test failed?)"
    df = pd.read_parquet(manifest)
    target = df["domain"] == "d2"
    df.loc[target, "label"] = np.random.default_rng(1).permutation(df.loc[target, "label"].to_numpy())
    df.to_parquet(manifest)
    run(root, sys.executable, "-m", "stages.train", "--method", "dah", "--task", "d1_d2", "--seed", "0")
    run(root, sys.executable, "-m", "stages.baseline", "--method", "dan", "--task", "d1_d2")
    for old, path in ((before, codes), (dan_before, dan)):
        after = dict(np.load(path))
        assert old.keys() == after.keys()
        for k in old:
            assert np.array_equal(old[k], after[k]), (path, k)


def test_a_method_set_without_dah_ends_green_and_committed(tmp_path: Path) -> None:
    """A no-adaptation floor alone (no `dah`, no comparison methods, no analysis): every job runs, the end-of-run
    commit records them (it used to fail on a `methods.dah` param), DVC and Snakemake agree there is nothing to
    do, and the method's own gamma (0) is what it trained with, not train.gamma."""
    proj, params = tiny_project(tmp_path, per_class=4)
    params["train"].update(hash_bits=16, hidden_dims=[32, 32], k_per_class=2, epochs=2, lr_start=1e-2, lr_end=1e-3,
                           gamma=5.0, seeds=[0], checkpoint_every=1)
    params["methods"] = {"noadapt": {"eta": 0.0, "gamma": 0.0}}
    params["baselines"] = {"seed": 0, "methods": {}, "finetune": {}}
    params["analysis"] = {"tasks": [], "max_points": 1000}
    params["tasks"] = {"d1_d2": TASKS["d1_d2"]}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(proj, "git", "init", "-q")
    run(proj, "git", "add", "-A")
    run(proj, "git", "commit", "-qm", "test project")

    res = run(proj, "snakemake", "--cores", "2", "--resources", "gpu=1")
    assert "is not recorded in dvc.lock" not in res.stdout + res.stderr  # each job recorded its own stage
    assert dvc_stale(proj) == set()
    assert stage_names_from_snakemake(proj, run(proj, "snakemake", "-n").stdout) == set()
    lock = yaml.safe_load((proj / "dvc.lock").read_text())
    assert {"train@noadapt-d1_d2-0", "evaluate@noadapt", "report"} <= set(lock["stages"])
    assert not any(n.startswith(("analysis", "baseline")) for n in lock["stages"])
    import torch

    model = torch.load(proj / "models" / "custom" / "efficientnet_lite0" / "noadapt" / "d1_d2" / "seed0" / "model.pt",
                       weights_only=True)
    assert model["config"]["gamma"] == 0.0 and model["config"]["eta"] == 0.0
    metrics = json.loads((proj / "metrics" / "custom" / "noadapt" / "d1_d2" / "seed0.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert "noadapt" in (proj / "report" / "results.md").read_text()
