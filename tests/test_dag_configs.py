"""Every valid params.yaml resolves and commits: every preset, and method / comparison-method subsets.

For each configuration (a preset plus ``--set`` overrides, applied with ``stages.preset`` to a copy of this
checkout in a temp git repo):

1. for a shipped preset, its FULL DAG: DVC resolves dvc.yaml, every stage's declared params exist in params.yaml (what
   ``dvc commit`` needs: a stage declaring e.g. ``methods.dah`` fails with MissingParamsError when the
   method set has no ``dah``), and the stages are the ones the params ask for (one train/evaluate per method,
   task and seed, one baseline per comparison method and task, an analysis stage per analysis task, none else);
2. every configuration cut to its first task and seed (same stage kinds, same declared params, a DAG small
   enough to go through the slower tools): the checks of 1, ``snakemake -n`` plans exactly the stages DVC
   resolved (an analysis stage only with analysis tasks); then every
   stage's outputs are written (placeholders), marked done as the Snakefile's rules do, and
   ``workflow.dvcdag.commit_stages`` (the Snakefile's end-of-run commit) records every stage: ``dvc status``
   is clean afterwards.

The end-to-end run of one of these configurations (no ``dah``) on tiny images is in tests/test_pipeline.py.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from stages.common import StageError, load_params
from stages.preset import apply_preset
from test_pipeline import copy_checkout, stage_names_from_snakemake
from workflow import dvcdag

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted(p.stem for p in (REPO_ROOT / "workflow" / "presets").glob("*.yaml"))
NOADAPT = "methods={noadapt: {eta: 0.0, gamma: 0.0}}"
# name -> (preset, --set overrides)
CONFIGS: dict[str, tuple[str, list[str]]] = {
    **{p: (p, []) for p in PRESETS},
    # the run: a no-adaptation floor alone
    "digits-without-dah": ("digits", [NOADAPT]),
    # gamma sweep in the DAG (train.gamma: auto) and no dah: the sweep must not need methods.dah
    "quickstart-auto-gamma-without-dah": ("quickstart", [NOADAPT, "train.gamma=auto", "gamma_sweep.grid=[50.0, 5000.0]",
                                                         "analysis.tasks=[]"]),
    "surf-only-comparison-methods": ("surf", ["methods={}"]),
    "paper-custom-method-names": ("paper", ["methods={floor: {eta: 0.0, gamma: 0.0}, mine: null}",
                                            "analysis.tasks=[]"]),
    "quickstart-no-comparison-methods": ("quickstart", ["baselines.methods={}", "analysis.tasks=[]"]),
    # a fine-tuned DAN (its own family, baseline_finetune) is the DAN Figure 3 reads
    "quickstart-full-dan-fine-tuned": ("quickstart-full", ["baselines.methods={itq: {}}",
                                                           "baselines.finetune={dan: {epochs: 2}}",
                                                           "image_cache.short_side=auto"]),
}


def _env(proj: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join([str(proj / "src"), str(proj)])
    return env


def make_project(base: Path, preset: str, sets: list[str]) -> Path:
    """A copy of this checkout in a fresh git repo with ``preset`` and ``sets`` applied to its params.yaml.
    (DVC names stages relative to the cwd: the tests chdir into the project, as Snakemake runs there.)"""
    proj = base / "proj"
    proj.mkdir(parents=True)
    copy_checkout(proj)
    mirror = [] if preset == "paper" else ["data.mirror=some/folder"]
    apply_preset(preset, [*mirror, *sets], proj / "params.yaml")
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    return proj


def expected_stages(params: dict) -> set[str]:
    """The stage names params.yaml asks for; a gamma sweep job per (task, gamma of the grid) only with
    ``train.gamma: auto`` (no gamma job at all with a fixed gamma)."""
    tasks, seeds = list(params["tasks"]), params["train"]["seeds"]
    if params["train"]["gamma"] == "auto":
        names = {f"gamma_sweep@{t}-{float(g)}" for t in tasks for g in params["gamma_sweep"]["grid"]}
        assert names, "train.gamma: auto without a grid passed validation"
    else:
        names = set()
    names |= {"mirror_state", "download", "weights", "preprocess", "moments", "report"} | {f"extract@{d}" for d in params["data"]["domains"]}
    names |= {f"image_cache@{d}" for d in params["data"]["domains"]}
    names |= {f"train@{m}-{t}-{seed}" for m in params["methods"] for t in tasks for seed in seeds}
    names |= {f"evaluate@{m}" for m in params["methods"]}  # one job per method: every task and seed
    names |= {f"{s}@{m}" for s in ("baseline", "evaluate_baseline") for m in params["baselines"]["methods"]}
    names |= {f"{s}@{m}" for s in ("baseline_finetune", "evaluate_finetuned") for m in params["baselines"]["finetune"]}
    return names | {f"analysis@{t}" for t in params["analysis"]["tasks"]}


def resolve_and_check_params(proj: Path) -> set[str]:
    """Resolve dvc.yaml with DVC; assert every declared param of every stage exists. Returns the stage names."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    repo = Repo(os.fspath(proj))
    try:
        names = set()
        for stage in repo.index.stages:
            names.add(stage.addressing)
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    dep.get_hash()  # what `dvc commit` does: MissingParamsError names a declared param not in the file
        return names
    finally:
        repo.close()


def write_placeholder_outputs(proj: Path) -> list[str]:
    """Write every resolved stage's outs (directories hold one file, and the folders other stages' deps name
    inside them, e.g. analysis's models/<ds>/<bb>/dan/<task>/seed0 in baseline@dan's out) and mark the stage
    done, as the Snakefile's rules do after a successful job. Returns the stage names."""
    stages = dvcdag.load_stages(proj)
    deps = {d for st in stages for d in st.deps}
    for st in stages:
        for out in st.outs:
            path = proj / out
            if dvcdag.is_directory_out(out):
                path.mkdir(parents=True, exist_ok=True)
                (path / "placeholder.txt").write_text(f"{st.name} {out}\n")
                for dep in (d for d in deps if d.startswith(out.rstrip("/") + "/")):
                    (proj / dep).mkdir(parents=True, exist_ok=True)
                    (proj / dep / "placeholder.txt").write_text(f"{st.name} {dep}\n")
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"{st.name} {out}\n")
        dvcdag.mark_done(proj, st.name)
    return [st.name for st in stages]


def touch_outputs_in_dag_order(proj: Path) -> None:
    """Give every resolved stage's outs (and the files inside directory outs) mtimes in dvc.yaml's stage order
    (upstream first, which dvc.yaml's order is), a few ms apart from now: Snakemake then sees placeholders
    written by :func:`write_placeholder_outputs` and relinked by ``dvc commit`` as up to date; DVC's hashes do not
    change."""
    base = time.time()
    for i, st in enumerate(dvcdag.load_stages(proj)):
        stamp = base + 0.01 * i
        for out in st.outs:
            path = proj / out
            for p in [*path.rglob("*"), path] if path.is_dir() else [path]:
                os.utime(p, (stamp, stamp))


def dvc_status(proj: Path) -> dict:
    from dvc.repo import Repo

    repo = Repo(os.fspath(proj))
    try:  # but for the stages DVC runs on every repro (always_changed: stages/mirror_state.py)
        return {k: v for k, v in repo.status().items() if v != ["always changed"]}
    finally:
        repo.close()


def first_task_only(params: dict) -> list[str]:
    """``--set`` overrides cutting a configuration to its first task and seed."""
    key = next(iter(params["tasks"]))
    task = params["tasks"][key]
    return [f"tasks={{{key}: {{source: {task['source']}, target: {task['target']}}}}}",
            f"train.seeds=[{params['train']['seeds'][0]}]",
            f"analysis.tasks={[t for t in params['analysis']['tasks'] if t == key]}"]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_configuration_resolves_plans_and_commits(name: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    preset, sets = CONFIGS[name]
    proj = make_project(tmp_path / "full", preset, sets)
    params = load_params(proj / "params.yaml")
    if not sets:  # a shipped preset: its whole DAG (a variant's is the same stage kinds over more tasks)
        monkeypatch.chdir(proj)
        names = resolve_and_check_params(proj)
        assert names == expected_stages(params)

    small = make_project(tmp_path / "small", preset, [*sets, *first_task_only(params)])
    monkeypatch.chdir(small)
    names = resolve_and_check_params(small)
    assert names == expected_stages(load_params(small / "params.yaml"))
    dry = subprocess.run(["snakemake", "-n"], cwd=small, env=_env(small), capture_output=True, text=True,
                         timeout=600)
    assert dry.returncode == 0, dry.stderr[-4000:]
    assert stage_names_from_snakemake(small, dry.stdout) == names
    done = write_placeholder_outputs(small)
    assert sorted(dvcdag.commit_stages(small)) == sorted(done)
    assert dvc_status(small) == {}
    lock = yaml.safe_load((small / "dvc.lock").read_text())
    assert set(lock["stages"]) == names


def test_failed_commit_names_the_stage_and_keeps_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage that cannot be committed does not stop the others; the error names it and the command to run;
    its outputs stay and its done-marker stays for a later run."""
    proj = make_project(tmp_path, "digits", [NOADAPT, "tasks={M_U: {source: mnist, target: usps}}",
                                             "train.seeds=[0]"])
    monkeypatch.chdir(proj)
    done = write_placeholder_outputs(proj)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    del params["report"]  # the report stage declares `report`: its commit fails (MissingParamsError)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(dvcdag.CommitError) as err:
        dvcdag.commit_stages(proj)
    msg = str(err.value)
    assert "report: MissingParamsError" in msg and "'report'" in msg
    assert "dvc commit -f report" in msg and "outputs are kept" in msg
    assert f"({len(done) - 1} other(s) recorded" in msg
    assert (proj / "report" / "placeholder.txt").exists()
    assert (proj / dvcdag.DONE_DIR / "report").exists()
    lock = yaml.safe_load((proj / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(done) - {"report"}


def test_analysis_needs_dah_dan_and_pretrained_features_named_in_the_error(tmp_path: Path) -> None:
    """analysis.tasks without what Figure 3 compares: refused before anything runs, naming what is missing
    and how to drop the analysis stage."""
    proj_params = tmp_path / "params.yaml"
    proj_params.write_text((REPO_ROOT / "params.yaml").read_text())
    with pytest.raises(StageError, match=r"lacks methods\.dah\..*analysis\.tasks: \[\]"):
        apply_preset("quickstart-full", ["data.mirror=x", NOADAPT], proj_params)
    with pytest.raises(StageError, match=r"lacks baselines\.methods\.dan or baselines\.finetune\.dan\b"):
        apply_preset("quickstart-full", ["data.mirror=x", "baselines.methods={itq: {}}"], proj_params)
    with pytest.raises(StageError, match=r"lacks baselines\.methods\.dan or baselines\.finetune\.dan, a backbone "
                                         r"with pretrained features"):
        apply_preset("digits", ["data.mirror=x", "analysis.tasks=[M_U]"], proj_params)
    with pytest.raises(StageError, match=r"methods\.noadapt\.gamma = 'auto'"):
        apply_preset("digits", ["data.mirror=x", "methods={noadapt: {gamma: auto}}"], proj_params)
    with pytest.raises(StageError, match="all empty"):
        apply_preset("surf", ["data.mirror=x", "methods={}", "baselines.methods={}"], proj_params)


def _planned_threads(proj: Path, *flags: str) -> dict[str, int]:
    """rule -> threads of every job `snakemake -n <flags>` plans (Snakemake prints `threads: N` for N > 1)."""
    dry = subprocess.run(["snakemake", "-n", *flags], cwd=proj, env=_env(proj), capture_output=True, text=True,
                         timeout=600)
    assert dry.returncode == 0, dry.stderr[-4000:]
    # the workflow's own profile (greedy scheduling, rare re-planning) is found: profiles/default beside the Snakefile
    assert "workflow specific profile profiles/default" in dry.stderr, dry.stderr[-2000:]
    threads, rule = {}, None
    for line in dry.stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
            threads[rule] = 1
        elif line.strip().startswith("threads:") and rule:
            threads[rule] = int(line.split()[1])
    return threads


def test_gpu_slots_share_the_cores_in_the_planned_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--cores 2 --resources gpu=2` (two trainings at once on a 2-core CPU): every job gets 1 thread, so two
    run side by side; `gpu=1` keeps the declared threads up to the cores (training: 8 -> 2)."""
    proj = make_project(tmp_path, "quickstart", [])
    monkeypatch.chdir(proj)
    shared = _planned_threads(proj, "--cores", "2", "--resources", "gpu=2")
    train = next(r for r in shared if r.startswith("train__"))
    assert shared[train] == 1 and set(shared.values()) == {1}, shared
    one = _planned_threads(proj, "--cores", "2", "--resources", "gpu=1")
    assert one[train] == 2 and one["baseline__jda"] == 2 and one["report"] == 1, one
