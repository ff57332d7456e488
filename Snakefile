# Snakemake entry point: `snakemake --cores 8 --resources gpu=1`, or on a Slurm cluster
# `snakemake --profile workflow/profiles/slurm`.
# The rules are generated from dvc.yaml (the single source of truth) by workflow/dvcdag.py: one rule
# per resolved DVC stage, same command, same files, threads and resources (mem_mb, runtime, gpu) from the
# stage's meta.snakemake.
# After the run, every stage Snakemake executed is committed to dvc.lock, so `dvc status` agrees.
import shlex
import sys

sys.path.insert(0, workflow.basedir)

import yaml
from snakemake.utils import min_version, validate

from stages.common import StageError, check_cross_keys
from workflow import dvcdag

min_version("8.0")

# ---- validate params.yaml before anything runs (errors name the key)
PARAMS = yaml.safe_load(open(f"{workflow.basedir}/params.yaml"))
validate(PARAMS, f"{workflow.basedir}/workflow/schemas/params.schema.yaml")
try:
    check_cross_keys(PARAMS)
except StageError as exc:
    raise WorkflowError(str(exc))

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
            done=shlex.quote(f"{dvcdag.DONE_DIR}/{_st.name}"),
        threads: dvcdag.shared_threads(_st.threads, _CORES, _GPU_SLOTS)
        resources:
            **_st.resources,
        log:
            f"logs/{_st.name}.log",
        shell:
            "({params.cmd}) 2>&1 | tee {log:q}; test ${{PIPESTATUS[0]}} -eq 0 "
            "&& mkdir -p " + str(dvcdag.DONE_DIR) + " && touch {params.done}"


onsuccess:
    try:
        committed = dvcdag.commit_stages(workflow.basedir)
    except dvcdag.CommitError as exc:
        raise WorkflowError(str(exc))
    if committed:
        print(f"dvc commit: recorded {len(committed)} stage(s) in dvc.lock")


onerror:
    try:
        committed = dvcdag.commit_stages(workflow.basedir)
    except dvcdag.CommitError as exc:  # the run failed anyway: say it, keep snakemake's own error
        print(str(exc), file=sys.stderr)
    else:
        if committed:
            print(f"dvc commit: recorded the {len(committed)} stage(s) that finished in dvc.lock")
