"""Driver of tests/cluster/local_slurm.sh: the real pipeline, small, through workflow/profiles/slurm.

Run by local_slurm.sh once Slurm (one node, one fake GPU) and an MLflow server are up
(``MLFLOW_TRACKING_URI`` set); ``python slurm_pipeline.py WORKDIR``. Steps:

1. a project = this checkout + the pipeline test's generated images (tests/test_pipeline.py) as a ``custom``
   dataset, one task, DAH in head mode and two comparison methods (CORAL, ITQ);
2. ``snakemake --profile workflow/profiles/slurm``; as soon as the DAH training has written its first
   checkpoint its Slurm job is killed with ``scancel`` (that run then fails);
3. the same command again: the training is resubmitted and resumes from the checkpoint;
4. checks: every rule of the DAG ran as its own Slurm batch job and COMPLETED exactly once (squeue
   --states=all, kept by MinJobAge), the killed one is CANCELLED; every stage's outputs exist; the resumed
   training reports ``resumed_epoch`` > 0, kept its MLflow run and logged every epoch; the three MLflow runs
   are FINISHED on the server; ``dvc status`` is clean (the cluster runs were committed to dvc.lock).

Exit 0 when all checks pass; an AssertionError (exit 1) names what failed. The evidence (Slurm job ids and
rule names, MLflow runs) is printed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.test_pipeline import copy_checkout, make_images  # noqa: E402  (the pipeline test's dataset)

TASK = "d1_d2"
BASELINES = {"coral": {}, "itq": {"n_iter": 5}}
# long enough to be caught between its first checkpoint and its end (a few s on an idle machine, 0.6 s per
# epoch on 2 cores shared by many processes), short enough for CI
EPOCHS = 150
CHECKPOINT_EVERY = 5
SNAKEMAKE_TIMEOUT = 420  # seconds per snakemake run
TRAIN_RULE = f"train__dah_{TASK}_0"
CKPT = Path("checkpoints/custom/efficientnet_lite0/dah") / TASK / "seed0"
MODEL = Path("models/custom/efficientnet_lite0/dah") / TASK / "seed0"


def log(msg: str) -> None:
    print(f"[slurm_pipeline {time.strftime('%H:%M:%S', time.gmtime())}] {msg}", flush=True)


def env(proj: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(PYTHONPATH=f"{proj / 'src'}:{proj}", DAHASH_OFFLINE="1", GIT_AUTHOR_NAME="dahash test",
             GIT_COMMITTER_NAME="dahash test", GIT_AUTHOR_EMAIL="test@dahash.invalid",
             GIT_COMMITTER_EMAIL="test@dahash.invalid")
    assert e.get("MLFLOW_TRACKING_URI", "").startswith("http"), "MLFLOW_TRACKING_URI must name the MLflow server"
    return e


def sh(proj: Path, *cmd: str, timeout: int = 300) -> str:
    res = subprocess.run(cmd, cwd=proj, env=env(proj), capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res.stdout


def build_project(work: Path) -> Path:
    """This checkout + generated images: one task, DAH (head mode, fixed gamma) and CORAL + ITQ."""
    proj = work / "proj"
    proj.mkdir()
    copy_checkout(proj)
    make_images(work / "images")
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["data"].update(dataset="custom", domains=["d1", "d2"], mirror=str(work / "images"))
    params["backbone"]["name"] = "efficientnet_lite0"
    params["extract"]["batch_size"] = 8
    params["train"].update(mode="head", hash_bits=16, hidden_dims=[32, 32], k_per_class=2, epochs=EPOCHS,
                           lr_start=1e-2, lr_end=1e-3, gamma=5.0, seeds=[0], checkpoint_every=CHECKPOINT_EVERY)
    params["gamma_sweep"].update(grid=[], epochs=1)  # fixed gamma: no sweep (a grid with a fixed gamma is refused)
    params["report"]["title"] = "local Slurm test"
    params["methods"] = {"dah": {}}
    params["baselines"] = {"seed": 0, "methods": BASELINES, "finetune": {}}
    params["analysis"] = {"tasks": [], "max_points": 100}
    params["tasks"] = {TASK: {"source": "d1", "target": "d2"}}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(proj, "git", "init", "-q")
    sh(proj, "git", "add", "-A")
    sh(proj, "git", "commit", "-qm", "local Slurm test project")
    return proj


def snakemake_cmd() -> list[str]:
    """README's cluster command, plus what this Slurm without accounting (slurmdbd) needs."""
    return ["snakemake", "--profile", "workflow/profiles/slurm", "--jobs", "3",
            "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2"]


def start_snakemake(proj: Path, name: str) -> tuple[subprocess.Popen, Path]:
    out = proj.parent / f"{name}.log"
    log(f"{name}: {' '.join(snakemake_cmd())} (log: {out})")
    proc = subprocess.Popen(snakemake_cmd(), cwd=proj, env=env(proj), stdout=out.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=False)
    return proc, out


def stop(proc: subprocess.Popen) -> None:
    """SIGINT (snakemake cancels its Slurm jobs and exits), then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait(proc: subprocess.Popen, out: Path, timeout: int = SNAKEMAKE_TIMEOUT) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError(f"snakemake still running after {timeout} s; tail of {out}:\n{out.read_text()[-4000:]}")


def slurm_jobs() -> list[dict[str, str]]:
    """Every job slurmctld still knows (MinJobAge=600 keeps finished ones): id, rule (from the plugin's
    ``--comment rule_<rule>...``), state."""
    fmt = "%i|%k|%T|%j"
    text = subprocess.run(["squeue", "--states=all", "-h", "-o", fmt], capture_output=True, text=True,
                          check=True).stdout
    jobs = []
    for line in text.splitlines():
        jid, comment, state, name = line.split("|", 3)
        m = re.match(r"rule_(\w+?)(_wildcards_.*)?$", comment)
        jobs.append({"id": jid, "rule": m.group(1) if m else comment, "state": state, "name": name})
    return sorted(jobs, key=lambda j: int(j["id"]))


def kill_training_mid_run(proj: Path) -> tuple[str, str, int]:
    """Run 1: scancel the DAH training's Slurm job once it has a checkpoint. Returns (job id, MLflow run id,
    newest checkpoint epoch seen before the kill)."""
    proc, out = start_snakemake(proj, "run1")
    try:
        deadline = time.monotonic() + SNAKEMAKE_TIMEOUT
        while time.monotonic() < deadline:
            ckpts = sorted((proj / CKPT).glob("epoch-*.pt")) if (proj / CKPT).exists() else []
            if ckpts:
                break
            if proc.poll() is not None:
                raise AssertionError(f"run1 ended (rc {proc.returncode}) before a checkpoint was written:\n"
                                     f"{out.read_text()[-4000:]}")
            if (proj / MODEL).exists():
                raise AssertionError("the training finished before it could be cancelled: raise EPOCHS")
            time.sleep(0.1)
        else:
            raise AssertionError(f"no checkpoint in {CKPT} after {SNAKEMAKE_TIMEOUT} s")
        running = [j for j in slurm_jobs() if j["rule"] == TRAIN_RULE and j["state"] == "RUNNING"]
        assert len(running) == 1, f"expected one running {TRAIN_RULE} job, squeue says {slurm_jobs()}"
        job_id = running[0]["id"]
        subprocess.run(["scancel", job_id], check=True)
        epoch = int(re.search(r"(\d+)", ckpts[-1].name).group(1))
        log(f"scancel {job_id} ({TRAIN_RULE}) with checkpoint {ckpts[-1].name} on disk")
        run_id = (proj / CKPT / "mlflow_run_id").read_text().strip()
        rc = wait(proc, out)
    finally:
        stop(proc)
    assert rc != 0, "run1 should fail: its training job was cancelled"
    assert not (proj / MODEL).exists(), f"{MODEL} written although its job was cancelled"
    assert any((proj / CKPT).glob("epoch-*.pt")), "the cancelled job's checkpoints are gone"
    return job_id, run_id, epoch


def slurm_request(job_id: str) -> dict[str, int]:
    """What Slurm granted job ``job_id`` (``scontrol show job``): cpus, mem_mb, runtime (minutes), gpu."""
    fields = dict(kv.split("=", 1) for kv in subprocess.run(
        ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True).stdout.split()
        if "=" in kv)
    mem = re.fullmatch(r"([\d.]+)([MGT])", fields["MinMemoryNode"])
    days, _, hms = fields["TimeLimit"].rpartition("-")
    h, m, _s = (int(x) for x in hms.split(":"))
    return {"threads": int(fields["NumCPUs"]),
            "mem_mb": round(float(mem.group(1)) * {"M": 1, "G": 1024, "T": 1024**2}[mem.group(2)]),
            "runtime": int(days or 0) * 1440 + h * 60 + m,
            "gpu": 1 if "gres:gpu:1" in fields.get("TresPerJob", "") else 0}


def check_jobs(proj: Path, cancelled_id: str) -> list[dict[str, str]]:
    """One COMPLETED Slurm job per rule, requesting the stage's declared threads, mem_mb, runtime and gpu."""
    code = ("import json; from workflow.dvcdag import load_stages; "
            "print(json.dumps({s.rule_name: [s.outs, s.threads, s.resources] for s in load_stages('.')}))")
    rules = json.loads(sh(proj, sys.executable, "-c", code).strip().splitlines()[-1])
    jobs = slurm_jobs()
    for j in jobs:
        j.update(slurm_request(j["id"]))
    log("Slurm jobs (squeue --states=all; scontrol show job):\n" + "\n".join(
        f"  {j['id']:>4}  {j['state']:<10} cpus={j['threads']} mem={j['mem_mb']}M t={j['runtime']}min "
        f"gpu={j['gpu']}  {j['rule']}" for j in jobs))
    completed = [j["rule"] for j in jobs if j["state"] == "COMPLETED"]
    assert sorted(completed) == sorted(rules), (
        f"each rule must complete as exactly one Slurm job; rules {sorted(rules)}, completed jobs {sorted(completed)}")
    others = [j for j in jobs if j["state"] != "COMPLETED"]
    assert [(j["id"], j["rule"], j["state"]) for j in others] == [(cancelled_id, TRAIN_RULE, "CANCELLED")], others
    for j in jobs:
        _outs, threads, res = rules[j["rule"]]
        want = {"threads": threads, "mem_mb": res["mem_mb"], "runtime": res["runtime"], "gpu": res.get("gpu", 0)}
        got = {k: j[k] for k in want}
        assert got == want, f"Slurm job {j['id']} ({j['rule']}) got {got}, dvc.yaml declares {want}"
    missing = [o for outs, _t, _r in rules.values() for o in outs if not (proj / o).exists()]
    assert not missing, f"outputs missing: {missing}"
    return jobs


def check_resume(proj: Path, run_id: str, epoch: int) -> dict:
    run = json.loads((proj / MODEL / "run.json").read_text())
    assert run["resumed_epoch"] >= epoch > 0, f"resumed_epoch {run['resumed_epoch']}, checkpoint seen {epoch}"
    assert run["run_id"] == run_id, "the resumed training opened a new MLflow run"
    history = (proj / MODEL / "history.csv").read_text().splitlines()
    assert len(history) == EPOCHS + 1, f"history.csv has {len(history) - 1} epochs, expected {EPOCHS}"
    assert not (proj / CKPT).exists(), "checkpoints are deleted once the model is written"
    log(f"train resumed from epoch {run['resumed_epoch']} of {EPOCHS} in MLflow run {run_id}")
    return run


def check_mlflow(proj: Path, run_id: str) -> list[dict]:
    code = (
        "import json, mlflow; c = mlflow.MlflowClient(); e = c.get_experiment_by_name('dahash-custom'); "
        "runs = [r for r in c.search_runs([e.experiment_id]) if r.data.tags.get('role') != 'parent']; "
        "print(json.dumps([dict(id=r.info.run_id, name=r.info.run_name, status=r.info.status, "
        "steps=sorted({m.step for m in c.get_metric_history(r.info.run_id, 'total')}), "
        "metrics=sorted(r.data.metrics)) for r in runs]))"
    )
    runs = json.loads(sh(proj, sys.executable, "-c", code).strip().splitlines()[-1])
    log(f"MLflow ({os.environ['MLFLOW_TRACKING_URI']}): {len(runs)} runs: "
        + ", ".join(f"{r['name']} {r['status']}" for r in runs))
    names = sorted(r["name"] for r in runs)
    assert names == sorted(f"{m}:{TASK}:seed0" for m in ["dah", *BASELINES]), names
    assert all(r["status"] == "FINISHED" for r in runs), runs
    dah = next(r for r in runs if r["name"].startswith("dah:"))
    assert dah["id"] == run_id
    assert dah["steps"] == list(range(1, EPOCHS + 1)), "the resumed run must hold one point per epoch"
    assert {"accuracy", "map", "resumed_epoch"} <= set(dah["metrics"]), dah["metrics"]
    return runs


def _interrupt(signum: int, frame: object) -> None:
    """timeout(1) sends SIGTERM to our process group: raise, so that the ``finally`` blocks stop snakemake."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(work: Path) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
    t0 = time.monotonic()
    proj = build_project(work)
    log(f"project at {proj}")
    cancelled, run_id, epoch = kill_training_mid_run(proj)
    proc, out = start_snakemake(proj, "run2")
    try:
        rc = wait(proc, out)
    finally:
        stop(proc)
    assert rc == 0, f"run2 failed ({rc}):\n{out.read_text()[-4000:]}"
    jobs = check_jobs(proj, cancelled)
    check_resume(proj, run_id, epoch)
    runs = check_mlflow(proj, run_id)
    # every stage up to date but mirror_state, which DVC runs on every repro (always_changed: the mirror's content
    # digest decides whether download reruns) and lists as its only line "always changed"
    status = sh(proj, "dvc", "status", "--json")
    stale = {name: changes for name, changes in json.loads(status or "{}").items() if changes != ["always changed"]}
    assert not stale, f"dvc status after the cluster runs:\n{status}"
    log(f"PASSED in {time.monotonic() - t0:.0f} s: {len(jobs)} Slurm jobs "
        f"({sum(j['state'] == 'COMPLETED' for j in jobs)} completed, 1 cancelled and resumed), "
        f"{len(runs)} MLflow runs")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
