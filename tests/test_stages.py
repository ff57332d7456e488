"""The stage layer's own logic: params validation, presets, atomic writes, the DVC -> Snakemake bridge."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import pytest
import yaml

from stages.common import PARAMS_FILE, StageError, atomic_path, check_cross_keys, load_params, write_json
from stages.preset import apply_preset
from workflow import dvcdag


@pytest.fixture
def params(tmp_path: Path) -> dict:
    """The paper's params (whatever preset the checkout's params.yaml currently has)."""
    target = tmp_path / "paper.yaml"
    target.write_text(PARAMS_FILE.read_text())
    apply_preset("paper", [], target)
    return yaml.safe_load(target.read_text())


def _write(tmp_path: Path, params: dict) -> Path:
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return p


def _leaves(tree: dict, prefix: tuple = ()) -> dict[tuple, object]:
    """``{("train", "epochs"): 100, ...}``; ``tasks`` and ``methods`` mappings are leaves (replaced whole)."""
    out: dict[tuple, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("tasks", "methods"):
            out.update(_leaves(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def _get(tree: dict, path: tuple) -> object:
    for key in path:
        tree = tree[key]
    return tree


def test_shipped_params_and_presets_are_valid(tmp_path: Path) -> None:
    """params.yaml and every preset in workflow/presets/ load (schema + cross-key checks); an applied preset
    holds exactly the preset's values and ``--set``'s, every other key keeps params.yaml's value."""
    shipped = load_params(PARAMS_FILE)
    presets = sorted(p.stem for p in (PARAMS_FILE.parent / "workflow" / "presets").glob("*.yaml"))
    assert {"paper", "paper-head", "quickstart", "surf", "digits"} <= set(presets)
    for name in presets:
        target = tmp_path / f"{name}.yaml"
        target.write_text(PARAMS_FILE.read_text())
        preset = yaml.safe_load((PARAMS_FILE.parent / "workflow" / "presets" / f"{name}.yaml").read_text())
        sets = ["data.mirror=some/folder"] if not name.startswith("paper") else []
        apply_preset(name, sets, target)
        got = load_params(target)
        expected = _leaves(preset)
        if sets:
            expected[("data", "mirror")] = "some/folder"
        for path, value in expected.items():
            assert _get(got, path) == value, (name, path)
        for path, value in _leaves(shipped).items():
            if not any(path[: len(q)] == q for q in expected):
                assert _get(got, path) == value, (name, path)


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (("train", "epochs"), 0, "train.epochs"),
        (("train", "reduction"), "median", "train.reduction"),
        (("data", "dataset"), "imagenet", "data.dataset"),
        (("extract", "device"), "tpu", "extract.device"),
    ],
)
def test_schema_errors_name_the_key(tmp_path: Path, params: dict, path: tuple, value, needle: str) -> None:
    params[path[0]][path[1]] = value
    with pytest.raises(StageError, match=needle.replace(".", r"\.")):
        load_params(_write(tmp_path, params))


def test_unknown_key_is_rejected(tmp_path: Path, params: dict) -> None:
    params["train"]["learning_rate"] = 0.1
    with pytest.raises(StageError, match="learning_rate"):
        load_params(_write(tmp_path, params))


def _refused(params: dict, edit, match: str) -> dict:
    """A copy of ``params`` changed by ``edit(copy)``; check_cross_keys must refuse it with ``match``."""
    bad = copy.deepcopy(params)
    edit(bad)
    with pytest.raises(StageError, match=match):
        check_cross_keys(bad)
    return bad


def test_cross_key_checks(params: dict) -> None:
    _refused(params, lambda p: p["tasks"]["Ar_Cl"].update(target="Sketch"), r"tasks\.Ar_Cl\.target")
    _refused(params, lambda p: p["data"].update(domains=["amazon", "webcam"]), "not domains of office_home")
    _refused(params, lambda p: p["data"].update(dataset="custom"), "data.mirror")
    _refused(params, lambda p: p["baselines"]["methods"].update(dah={"algorithm": "tca"}),
             "both methods and baselines.methods")
    bad = _refused(params, lambda p: (p["backbone"].update(name="smallcnn"), p["train"].update(mode="finetune")),
                   "comparison methods need a backbone with pretrained weights")
    bad["baselines"]["methods"], bad["analysis"]["tasks"] = {}, []
    _refused(bad, lambda p: None, "comparison methods need a backbone")  # the fine-tuned ones too
    bad["baselines"]["finetune"] = {}
    check_cross_keys(bad)  # digits-like: fine-tuned from scratch, no comparison methods
    bad["methods"]["dah_head"] = {"mode": "head"}
    with pytest.raises(StageError, match="smallcnn has no pretrained weights"):
        check_cross_keys(bad)
    ok = copy.deepcopy(params)
    ok["train"]["mode"] = "finetune"  # the paper: fine-tuned DAH beside comparison methods on cached features
    check_cross_keys(ok)
    _refused(params, lambda p: p["backbone"].update(name="surf800"), "surf800")
    _refused(params, lambda p: p["baselines"]["finetune"].pop("dan"), "analysis.tasks")
    moved = copy.deepcopy(params)  # Figure 3 reads DAN under either dict
    moved["baselines"]["methods"]["dan"] = moved["baselines"]["finetune"].pop("dan")
    check_cross_keys(moved)


def test_comparison_method_modes_are_the_dict_it_is_in(params: dict) -> None:
    """baselines.methods (head mode) and baselines.finetune (end to end) name disjoint methods; the former
    ``mode`` key is refused in one line naming it and saying where the method goes; only the algorithms that can be
    fine-tuned are under baselines.finetune, and the schema lists exactly those."""
    from dahash.baselines.modes import FINETUNE_METHODS
    from stages.common import comparison_methods, finetune_algorithms, producer_stage

    assert tuple(finetune_algorithms()) == FINETUNE_METHODS
    assert comparison_methods(params) == {**{m: "head" for m in ("gfk", "tca", "coral", "jda", "itq", "kmh", "ba",
                                                                   "bdnn")},
                                          **{m: "finetune" for m in FINETUNE_METHODS}}
    assert [producer_stage(params, m) for m in ("dah", "coral", "dan")] == ["train", "baseline", "baseline_finetune"]
    _refused(params, lambda p: p["baselines"]["methods"].update(noda={"mode": "finetune"}),
             r"params\.yaml: baselines\.methods\.noda\.mode: the key is gone; to fine-tune noda end to end move it "
             r"under baselines\.finetune, else drop `mode`$")
    _refused(params, lambda p: p["baselines"]["finetune"].update(noda={"mode": "finetune"}),
             r"baselines\.finetune\.noda\.mode: the key is gone .*drop it$")
    _refused(params, lambda p: p["baselines"]["methods"].update(dan={}),
             r"\['dan'\] in both baselines\.methods and baselines\.finetune")
    _refused(params, lambda p: p["baselines"]["finetune"].update(coral={}),
             r"baselines\.finetune\.coral: coral cannot be fine-tuned; .*move coral under baselines\.methods")
    _refused(params, lambda p: p["baselines"]["finetune"].update(mine={"algorithm": "itq"}),
             r"baselines\.finetune\.mine: itq cannot be fine-tuned")
    ok = copy.deepcopy(params)
    ok["baselines"]["finetune"]["dan_w2"] = {"algorithm": "dan", "mmd_weight": 2.0}
    check_cross_keys(ok)
    _refused(params, lambda p: p["analysis"].update(tasks=["Xx_Yy"]), "analysis.tasks has 'Xx_Yy'")


def test_baseline_options_resolve_algorithm_and_refuse_unknown_keys(params: dict) -> None:
    from stages.baseline import baseline_options

    p = copy.deepcopy(params)
    p["baselines"]["methods"] = {"nn1": {"algorithm": "shallow_source_only", "classifier": "svm"},
                                 "dan": {}, "tca": {"dims": 3}, "mystery": {}}
    assert baseline_options(p, "nn1") == ("shallow_source_only", {"classifier": "svm"})
    assert baseline_options(p, "dan") == ("dan", {"hidden_dims": [4096, 4096]})  # the same head as DAH
    with pytest.raises(StageError, match=r"baselines.methods.tca: .*unknown option\(s\) \['dims'\].*'dim'"):
        baseline_options(p, "tca")
    with pytest.raises(StageError, match="algorithm 'mystery' unknown"):
        baseline_options(p, "mystery")
    with pytest.raises(StageError, match="baselines.methods.gfk not defined"):
        baseline_options(p, "gfk")
    p["baselines"]["finetune"] = {"dan2": {"algorithm": "dan", "mmd_weight": 2.0, "epochs": 3},
                                  "suh": {"eta": 0.5, "dim": 3}}
    assert baseline_options(p, "dan2", "finetune") == ("dan", {"mmd_weight": 2.0, "epochs": 3,
                                                               "hidden_dims": [4096, 4096]})
    with pytest.raises(StageError,
                       match=r"baselines\.finetune\.suh: suh: unknown option\(s\) \['dim'\] \(finetune mode\)"):
        baseline_options(p, "suh", "finetune")
    with pytest.raises(StageError, match=r"baselines\.methods\.dan2 not defined; .*dan2 is under baselines\.finetune: "
                                         r"its stage is baseline_finetune@dan2"):
        baseline_options(p, "dan2")


def test_preset_keeps_comments_replaces_tasks_and_rejects_bad_input(tmp_path: Path) -> None:
    tmp_path = tmp_path / "p"
    tmp_path.mkdir()
    target = tmp_path / "params.yaml"
    target.write_text(PARAMS_FILE.read_text())
    apply_preset("quickstart-full", ["train.epochs=7", "data.mirror=x"], target)
    text = target.read_text()
    assert "# dahash parameters" in text and "# MK-MMD weight" in text
    p = yaml.safe_load(text)
    assert p["data"]["dataset"] == "office_caltech10" and p["train"]["epochs"] == 7
    assert set(p["tasks"]) == {f"{s}_{t}" for s in "ACDW" for t in "ACDW" if s != t}
    assert p["methods"] == {"dah": {}, "dah_e": {"eta": 0.0}}
    apply_preset("digits", [], target)  # methods are replaced as a whole, like tasks
    p = yaml.safe_load(target.read_text())
    assert p["methods"] == {"dah": {}, "noadapt": {"eta": 0.0, "gamma": 0.0}}
    assert set(p["tasks"]) == {"M_U", "U_M"} and p["train"]["mode"] == "finetune"
    before = target.read_text()
    with pytest.raises(StageError, match="not a key"):
        apply_preset("quickstart", ["train.nope=1"], target)
    with pytest.raises(StageError, match="train.epochs"):
        apply_preset("quickstart", ["train.epochs=-3"], target)
    with pytest.raises(StageError, match="no preset"):
        apply_preset("nonexistent", [], target)
    assert target.read_text() == before  # nothing half-written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_atomic_path_keeps_old_content_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "out.json"
    write_json(dest, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert json.loads(dest.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    d = tmp_path / "dir"
    d.mkdir()
    (d / "old").write_text("x")
    with atomic_path(d) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("y")
    assert [p.name for p in d.iterdir()] == ["new"]


def _stage(name: str, deps=(), outs=(), params=None) -> dvcdag.DvcStage:
    return dvcdag.DvcStage(name=name, cmd=f"run {name}", deps=list(deps), outs=list(outs), params=params or {})


def test_directory_deps_expand_to_other_stages_outs() -> None:
    ev = [_stage(f"evaluate@{k}", outs=[f"metrics/ds/{k}.json"]) for k in ("a", "b")]
    rep = _stage("report", deps=["metrics/ds", "stages/report.py"], outs=["report"])
    inputs = dvcdag.snakemake_inputs(rep, [*ev, rep])
    assert inputs == ["metrics/ds/a.json", "metrics/ds/b.json", "stages/report.py", rep.stamp]
    assert dvcdag.is_directory_out("models/ds/x") and not dvcdag.is_directory_out("metrics/x.json")
    assert _stage("train@A-W").rule_name == "train__A_W"


def test_a_dep_inside_another_stages_directory_out_is_that_out() -> None:
    """analysis reads models/ds/bb/dan/A_W/seed0, which baseline@dan writes as part of its out models/ds/bb/dan:
    Snakemake matches inputs to outputs by exact path, so the input is the out (once, however many deps)."""
    dan = _stage("baseline@dan", outs=["models/ds/bb/dan"])
    dah = _stage("train@dah-A_W-0", outs=["models/ds/bb/dah/A_W/seed0"])
    ana = _stage("analysis@A_W", deps=["models/ds/bb/dah/A_W/seed0", "models/ds/bb/dan/A_W/seed0",
                                       "models/ds/bb/dan/A_C/seed0", "models/ds/bb/danx/A_W", "stages/analysis.py"],
                 outs=["analysis/ds/A_W"])
    assert dvcdag.snakemake_inputs(ana, [dan, dah, ana]) == [
        "models/ds/bb/dah/A_W/seed0", "models/ds/bb/dan", "models/ds/bb/danx/A_W", "stages/analysis.py", ana.stamp]
    own = _stage("own", deps=["out/x"], outs=["out"])  # a stage's own out is never its input
    assert dvcdag.snakemake_inputs(own, [own]) == ["out/x", own.stamp]


def test_a_source_folder_dep_is_its_files_without_code_caches(tmp_path: Path) -> None:
    """A folder no stage writes (src/dahash/baselines) reaches Snakemake as its files, without __pycache__, .pyc and
    numba's .nbi/.nbc (written while jobs run; Snakemake dates a folder input by its newest file)."""
    pkg = tmp_path / "src" / "pkg"
    (pkg / "sub" / "__pycache__").mkdir(parents=True)
    (pkg / "__pycache__").mkdir()
    for f in ("a.py", "sub/b.py", "sub/data.json", "__pycache__/a.cpython-311.pyc", "sub/__pycache__/k-1.py311.nbi",
              "sub/__pycache__/k-1.py311.1.nbc", "stray.pyc"):
        (pkg / f).write_text("x")
    user = _stage("baseline@m", deps=["src/pkg", "stages/baseline.py", "data/raw/ds"], outs=["models/m"])
    download = _stage("download", outs=["data/raw/ds"])  # a folder another stage writes stays that out
    (tmp_path / "data" / "raw" / "ds" / "d1").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "ds" / "d1" / "x.jpg").write_text("x")
    assert dvcdag.snakemake_inputs(user, [download, user], root=tmp_path) == [
        "src/pkg/a.py", "src/pkg/sub/b.py", "src/pkg/sub/data.json", "stages/baseline.py", "data/raw/ds", user.stamp]


def test_gpu_slots_share_the_cores() -> None:
    """--resources gpu=N: every job gets at most cores // N threads (at least 1); no N or no cores: as declared."""
    assert dvcdag.shared_threads(8, cores=2, gpu_slots=2) == 1  # two trainings side by side on 2 cores
    assert dvcdag.shared_threads(8, cores=16, gpu_slots=1) == 8  # one GPU: the declared threads
    assert dvcdag.shared_threads(4, cores=64, gpu_slots=8) == 4
    assert dvcdag.shared_threads(8, cores=64, gpu_slots=16) == 4
    assert dvcdag.shared_threads(2, cores=3, gpu_slots=4) == 1
    assert dvcdag.shared_threads(8, cores=None, gpu_slots=2) == 8 == dvcdag.shared_threads(8, cores=2, gpu_slots=None)


def test_directory_deps_expand_like_a_plain_path_comparison() -> None:
    """The bisection index finds exactly the outs a pathlib comparison finds (siblings that share a prefix:
    ``ds-x``, ``ds.json``, ``ds2``, ``ds0`` sort around ``ds/`` and must stay out)."""
    outs = ["metrics/ds/a.json", "metrics/ds/b/c.json", "metrics/ds-x/a.json", "metrics/ds.json", "metrics/ds2/a.json",
            "metrics/ds0/a.json", "metrics/d/a.json", "models/ds/m", "report"]
    stages = [_stage(f"s@{i}", outs=[o]) for i, o in enumerate(outs)]
    for dep in ("metrics/ds", "metrics", "metrics/ds/b", "models", "report", "nothing", "metrics/d"):
        user = _stage("user", deps=[dep], outs=["u"])
        naive = [o for o in outs if o != dep and Path(o).is_relative_to(dep)]
        assert dvcdag.snakemake_inputs(user, [*stages, user]) == sorted(naive or [dep]) + [user.stamp], dep


def test_param_stamps_follow_dvc_lock(tmp_path: Path) -> None:
    st = _stage("train@a", params={"params.yaml:train": {"epochs": 3}})
    stamp = tmp_path / st.stamp
    dvcdag.write_param_stamps(tmp_path, [st])
    assert stamp.stat().st_mtime == 0  # no lock entry yet: never forces a rerun
    lock = {"schema": "2.0", "stages": {"train@a": {"params": {"params.yaml": {"train": {"epochs": 3}}}}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    dvcdag.write_param_stamps(tmp_path, [st])
    assert stamp.stat().st_mtime == 0  # agrees with dvc.lock
    changed = _stage("train@a", params={"params.yaml:train": {"epochs": 4}})
    dvcdag.write_param_stamps(tmp_path, [changed])
    assert stamp.stat().st_mtime > 1e9  # differs from dvc.lock: newer than any output
    assert json.loads(stamp.read_text()) == {"params.yaml:train": {"epochs": 4}}


def test_param_stamps_read_dvc_lock_floats_as_dvc_writes_them(tmp_path: Path) -> None:
    """DVC writes YAML 1.2 (``lr_end: 1e-05``, no dot), which YAML 1.1 (PyYAML) reads as a string: every stage
    declaring such a float looked params-stale to Snakemake after a run (all quickstart trainings replanned)."""
    st = _stage("train@a", params={"params.yaml:train.lr_end": 1e-05, "params.yaml:train.lr_start": 0.0001})
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  train@a:\n    params:\n      params.yaml:\n"
                                       "        train.lr_end: 1e-05\n        train.lr_start: 0.0001\n")
    assert dvcdag.locked_params(tmp_path) == {"train@a": st.params}
    dvcdag.write_param_stamps(tmp_path, [st])
    assert (tmp_path / st.stamp).stat().st_mtime == 0


def test_snakefile_rules_match_dvc_stages() -> None:
    """The Snakefile is generated from dvc.yaml: every resolved stage becomes a rule with its command."""
    stages = dvcdag.load_stages(PARAMS_FILE.parent)
    names = [s.name for s in stages]
    params = load_params()
    assert names[:4] == ["mirror_state", "download", "weights", "preprocess"]
    runs = {(m, t, s) for m in params["methods"] for t in params["tasks"] for s in params["train"]["seeds"]}
    assert {f"train@{m}-{t}-{s}" for m, t, s in runs} == {n for n in names if n.startswith("train@")}
    assert {f"evaluate@{m}" for m in params["methods"]} == {n for n in names if n.startswith("evaluate@")}
    train = next(s for s in stages if s.name.startswith("train@"))
    assert train.resources == {"gpu": 1, "mem_mb": 32000, "runtime": 720} and train.threads == 8
    method, task, seed = train.name.split("@")[1].split("-")
    assert shlex.split(train.cmd) == ["python", "-m", "stages.train", "--method", method, "--task", task, "--seed", seed]
    assert train.outs[0].endswith(f"/{method}/{task}/seed{seed}")
    assert "sweeps" in train.deps  # the gamma sweep's records (train.gamma: auto), a folder kept in git
    # every train key but seeds is a param of the training job: adding a seed keeps the trained ones
    declared = {k.split(":", 1)[1] for k in train.params}
    assert {f"train.{k}" for k in params["train"] if k != "seeds"} <= declared and "train.seeds" not in declared


def test_every_stage_declares_its_cluster_resources() -> None:
    """dvc.yaml's meta.snakemake sizes every stage for a Slurm job; the GPU goes to extraction and training only
    (the comparison methods' jobs included: baseline_finetune fine-tunes end to end, baseline's deep methods train
    their heads on train.device)."""
    stages = dvcdag.load_stages(PARAMS_FILE.parent)
    gpu_stages = {s.name.split("@")[0] for s in stages if s.resources.get("gpu")}
    assert {"extract", "train", "baseline", "baseline_finetune"} <= gpu_stages <= {"extract", "gamma_sweep", "train",
                                                                                  "baseline", "baseline_finetune"}
    for s in stages:
        assert s.threads >= 1 and s.resources["mem_mb"] >= 1000 and s.resources["runtime"] >= 1, s
        assert set(s.resources) <= {"mem_mb", "runtime", "gpu"}, s


@pytest.mark.parametrize(
    ("meta", "error"),
    [
        ({"snakemake": {"threads": 0}}, "meta.snakemake.threads must be a positive integer, got 0"),
        ({"snakemake": {"resources": {"runtime": "2h"}}}, "meta.snakemake.resources.runtime must be a positive integer, got '2h'"),
        ({"snakemake": {"resources": {"gpu": True}}}, "meta.snakemake.resources.gpu must be a positive integer, got True"),
        ({"snakemake": {"thread": 4}}, "meta.snakemake may hold only ['resources', 'threads'], got {'thread': 4}"),
    ],
)
def test_snakemake_meta_is_checked_with_stage_and_key_named(meta: dict, error: str) -> None:
    with pytest.raises(ValueError) as err:
        dvcdag.snakemake_meta("train@dah-A_W-0", meta)
    assert str(err.value) == f"dvc.yaml, stage train@dah-A_W-0: {error}"


def test_snakemake_meta_reads_threads_and_resources() -> None:
    meta = {"snakemake": {"threads": 4, "resources": {"mem_mb": 8000, "runtime": 30, "gpu": 1}}}
    assert dvcdag.snakemake_meta("s", meta) == (4, {"mem_mb": 8000, "runtime": 30, "gpu": 1})
    assert dvcdag.snakemake_meta("s", None) == (1, {})
    assert dvcdag.snakemake_meta("s", {"other_tool": {"x": 1}}) == (1, {})


def test_slurm_profile_requests_what_the_stages_declare() -> None:
    """The cluster profile: the Slurm executor, and defaults only for what a stage does not declare."""
    profile = yaml.safe_load((PARAMS_FILE.parent / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["jobs"] >= 1
    assert {"slurm_partition", "mem_mb", "runtime"} <= set(profile["default-resources"])
    assert "resources" not in profile and "cores" not in profile  # the cluster schedules, not a local cap


def test_surf_weights_come_from_the_mirror_checked_or_stop_with_instructions(tmp_path: Path, monkeypatch) -> None:
    """backbone surf800: the mirror's features/ files are copied only when their sha256 matches the registry;
    offline without a copy the stage stops naming the file and its URL."""
    from dahash.data.datasets import SURF800_FILES
    from dahash.data.download import DownloadError
    from stages.weights import fetch_surf

    monkeypatch.setenv("DAHASH_OFFLINE", "1")
    mirror = tmp_path / "mirror"
    rel = "surf/amazon.mat"
    (mirror / "features" / "surf").mkdir(parents=True)
    (mirror / "features" / rel).write_bytes(b"not the SURF file")
    params = {"data": {"mirror": str(mirror), "cache_dir": str(tmp_path / "cache"),
                       "manual_dir": str(tmp_path / "downloads")}}
    with pytest.raises(StageError, match=r"amazon\.mat: sha256 .* must have sha256:df32548b"):
        fetch_surf(tmp_path / "out", params)
    (mirror / "features" / rel).unlink()
    with pytest.raises(DownloadError, match="amazon.mat") as err:
        fetch_surf(tmp_path / "out", params)
    assert SURF800_FILES[rel].url in str(err.value)
    assert "raw.githubusercontent.com/redhat12345/OfficeCaltechDomainAdaptation" in SURF800_FILES[rel].url


def test_a_resumed_training_logs_the_restored_epochs_its_killed_attempt_never_sent() -> None:
    """Killed after its epoch-5 checkpoint, before its first 10-epoch flush to MLflow: the resumed job gets
    epochs 1-5 from the checkpoint (on_epoch sees only 6..): they are logged from the restored history, and
    epochs MLflow already holds are not sent twice."""
    from stages.train import restored_unlogged

    history = [{"epoch": e, "total": float(e)} for e in range(1, 9)]
    assert [h["epoch"] for h in restored_unlogged(history, logged=set(), resumed=5)] == [1, 2, 3, 4, 5]
    assert [h["epoch"] for h in restored_unlogged(history, logged={1, 2, 3}, resumed=5)] == [4, 5]
    assert restored_unlogged(history, logged=set(range(1, 11)), resumed=5) == []
    assert restored_unlogged(history, logged=set(), resumed=0) == []  # a fresh run logs through on_epoch
