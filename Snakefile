# Snakemake entry point: `snakemake --cores 8 --resources gpu=1`, or on a Slurm cluster
# `snakemake --profile workflow/profiles/slurm`.
# The rules are generated from dvc.yaml (the single source of truth) by workflow/dvcdag.py: one rule
# per resolved DVC stage, same command, same files, threads and resources (mem_mb, runtime, gpu) from the
# stage's meta.snakemake.
# Each job, once its command succeeded, commits its own stage to dvc.lock (workflow/dvcdag.py: commit_job), so
# `dvc status` agrees after any end of the run (Ctrl-C, a failed job, a killed Snakemake). A run holds DVC's own
# lock from its start to its end, so `dvc repro` refuses meanwhile, and a run refuses while DVC works
# (workflow/runguard.py); Ctrl-C prints one line and ends within seconds.
import shlex
import sys

sys.path.insert(0, workflow.basedir)

import yaml
from snakemake.utils import min_version, validate

from stages.common import StageError, check_cross_keys
from workflow import dvcdag, runguard

min_version("8.0")

# ---- validate params.yaml before anything runs (errors name the key)
PARAMS = yaml.safe_load(open(f"{workflow.basedir}/params.yaml"))
validate(PARAMS, f"{workflow.basedir}/workflow/schemas/params.schema.yaml")
try:
    check_cross_keys(PARAMS)
except StageError as exc:
    raise WorkflowError(str(exc))


def _start_run():
    """The submitting process of a real run: hold DVC's lock, quiet Ctrl-C, record what an earlier run left."""
    try:
        _start_run.lock = runguard.hold_dvc_lock(workflow.basedir)
    except runguard.ProjectBusy as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        raise SystemExit(1)
    runguard.clear_stale_snakemake_locks(workflow.basedir)  # no other run is alive: we hold DVC's lock
    runguard.install_interrupt_handler(workflow.logger_manager.get_logfile)
    try:  # jobs of a killed run that finished but did not record themselves
        committed = dvcdag.commit_stages(workflow.basedir)
    except dvcdag.CommitError as exc:
        print(str(exc), file=sys.stderr)
    else:
        if committed:
            print(f"dvc commit: recorded {len(committed)} stage(s) an earlier run had finished")


if workflow.is_main_process and not workflow.dryrun:
    _start_run()
STAGES = dvcdag.load_stages(workflow.basedir)
if workflow.is_main_process:
    # a cluster job re-reads this Snakefile to run its one rule: only the submitting process owns the stamps
    dvcdag.write_param_stamps(workflow.basedir, STAGES)
    # the mirror's content as download's dependency (stages/mirror_state.py): rewritten only when it changed
    from stages.mirror_state import refresh as _refresh_mirror_state

    _refresh_mirror_state(PARAMS, create=False)


def _global_resource(name):
    value = workflow.global_resources.get(name)
    value = getattr(value, "value", value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --resources gpu=N: N jobs at once share the local cores (dvcdag.shared_threads)
_CORES, _GPU_SLOTS = _global_resource("_cores"), _global_resource("gpu")


def _outputs(stage):
    return [directory(o) if dvcdag.is_directory_out(o) else o for o in stage.outs]


rule all:
    default_target: True
    input:
        [o for st in STAGES for o in st.outs],


for _st in STAGES:

    rule:
        name:
            _st.rule_name
        input:
            dvcdag.snakemake_inputs(_st, STAGES, workflow.basedir),
        output:
            _outputs(_st),
        params:
            # passed through params: rules made in a loop would otherwise bind the last stage
            cmd=_st.cmd,
            stage=shlex.quote(_st.name),
        threads: dvcdag.shared_threads(_st.threads, _CORES, _GPU_SLOTS)
        resources:
            **_st.resources,
        log:
            f"logs/{_st.name}.log",
        shell:
            # the job records its own stage in dvc.lock once its command succeeded (never fails the job)
            "({params.cmd}) 2>&1 | tee {log:q}; test ${{PIPESTATUS[0]}} -eq 0 "
            "&& python -m workflow.dvcdag commit {params.stage}"


onsuccess:
    runguard.cancel_timers()
    try:  # what a job could not record itself (its WARNING said so)
        committed = dvcdag.commit_stages(workflow.basedir)
    except dvcdag.CommitError as exc:
        raise WorkflowError(str(exc))
    if committed:
        print(f"dvc commit: recorded {len(committed)} stage(s) in dvc.lock")


onerror:
    runguard.cancel_timers()
    try:
        committed = dvcdag.commit_stages(workflow.basedir)
    except dvcdag.CommitError as exc:  # the run failed anyway: say it, keep snakemake's own error
        print(str(exc), file=sys.stderr)
    else:
        if committed:
            print(f"dvc commit: recorded the {len(committed)} stage(s) that finished in dvc.lock")
