#!/usr/bin/env bash
# A real single-node Slurm on this machine, then a small version of the real pipeline through
# workflow/profiles/slurm (snakemake-executor-plugin-slurm): every rule must run as its own Slurm batch job,
# its outputs and MLflow runs (through an `mlflow server`, as on a cluster) must all be there, and a training
# job killed with scancel mid-training must be resubmitted by a rerun and resume from its checkpoint.
#
#   sudo apt-get install slurm-wlm munge            # Debian/Ubuntu packages; then, as root:
#   tests/cluster/local_slurm.sh                    # exit 0: every check passed
#
# No systemd: munged, slurmctld and slurmd are started by hand, one fake GPU as a generic resource (a character
# device made with mknod). slurm.conf must sit at the default /etc/slurm (the job-step plugin strips SLURM_*
# variables, SLURM_CONF included): the script refuses to run over an existing one, and removes its own.
# Bounded: the whole script runs under `timeout` ($DAHASH_SLURM_TIMEOUT seconds, default 900); on success,
# failure or timeout it cancels its Slurm jobs and stops every daemon it started by PID.
# Exit codes: 0 passed, 1 a check failed, 77 cannot run on this machine (the reason is printed), 124 timeout.
# DAHASH_SLURM_KEEP=1 keeps the work folder (project, logs) for inspection.
set -euo pipefail

LIMIT=${DAHASH_SLURM_TIMEOUT:-900}
if [[ -z ${_DAHASH_SLURM_BOUNDED:-} ]]; then
    export _DAHASH_SLURM_BOUNDED=1
    exec timeout -s TERM -k 60 "$LIMIT" "$0" "$@"
fi

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-python3}
CONF_DIR=/etc/slurm
MARK="# written by dahash tests/cluster/local_slurm.sh"

say() { printf '[local_slurm %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
cannot() { say "CANNOT RUN: $*"; exit 77; }

# ---- can this machine run it?
[[ $(id -u) -eq 0 ]] || cannot "needs root (writes $CONF_DIR/slurm.conf, starts slurmd, mknod a fake GPU)"
for cmd in munged munge slurmctld slurmd sbatch squeue scancel scontrol mknod setsid; do
    command -v "$cmd" >/dev/null || cannot "'$cmd' not found: apt-get install slurm-wlm munge"
done
"$PY" -c "import snakemake_executor_plugin_slurm" 2>/dev/null \
    || cannot "snakemake-executor-plugin-slurm is not installed: pip install -e ."
for f in slurm.conf gres.conf; do
    if [[ -e $CONF_DIR/$f ]] && ! grep -qF "$MARK" "$CONF_DIR/$f"; then
        cannot "$CONF_DIR/$f exists and is not ours: this machine already has a Slurm configuration"
    fi
done
if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then
    cannot "a slurmctld or slurmd is already running here"
fi

W=$(mktemp -d /tmp/dahash-slurm.XXXXXX)
chmod 755 "$W"
HOST=$(hostname -s)
DAEMONS=()            # "name:pid" of every daemon this script started (each leads its own process group)

stop_daemon() {  # stop_daemon NAME PID: SIGTERM to its process group, wait up to 15 s, then SIGKILL
    local name=$1 pid=$2
    kill -0 "$pid" 2>/dev/null || { say "$name (pid $pid) had already exited"; return 0; }
    kill -s TERM -- "-$pid" 2>/dev/null || kill -s TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || { say "stopped $name (pid $pid)"; return 0; }; sleep 0.5; done
    kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid" 2>/dev/null || true
    say "killed $name (pid $pid)"
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT TERM INT
    if [[ -n ${SLURMCTLD_UP:-} ]]; then
        local ids
        ids=$(squeue -h -t PD,R,CG,CF -o %i 2>/dev/null | tr '\n' ' ')
        if [[ -n ${ids// /} ]]; then
            say "cancelling Slurm jobs still alive: $ids"
            # shellcheck disable=SC2086
            scancel $ids
            for _ in $(seq 40); do [[ -z $(squeue -h -t PD,R,CG -o %i 2>/dev/null) ]] && break; sleep 0.5; done
        fi
    fi
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_daemon "${DAEMONS[i]%%:*}" "${DAEMONS[i]##*:}"; done
    for f in slurm.conf gres.conf; do grep -qsF "$MARK" "$CONF_DIR/$f" && rm -f "$CONF_DIR/$f"; done
    if [[ $rc -ne 0 ]]; then
        say "FAILED (exit $rc); daemon logs:"
        for f in "$W"/log/*.log; do [[ -f $f ]] && { echo "--- $f (tail)"; tail -n 15 "$f"; }; done
    fi
    if [[ -n ${DAHASH_SLURM_KEEP:-} ]]; then say "work folder kept: $W"; else rm -rf "$W"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "timed out or interrupted"; exit 124' TERM INT

start_daemon() {  # start_daemon NAME CMD...: in its own session (timeout's signal to our group must not reach it)
    local name=$1; shift
    setsid "$@" >"$W/log/$name.out" 2>&1 &
    DAEMONS+=("$name:$!")
    say "started $name (pid $!)"
}

wait_for() {  # wait_for SECONDS WHAT CMD...: poll CMD until it succeeds
    local secs=$1 what=$2; shift 2
    for _ in $(seq $((secs * 2))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.5; done
    say "gave up waiting for $what after $secs s"; return 1
}

mkdir -p "$W/log" "$W/spool/ctld" "$W/spool/d"

# ---- munge: reuse a running munged, else start one on the default socket (Slurm's auth/munge looks there)
if munge -n </dev/null >/dev/null 2>&1; then
    say "munged already running: reused"
else
    [[ -s /etc/munge/munge.key ]] || cannot "/etc/munge/munge.key is missing (the munge package creates it)"
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
    start_daemon munged runuser -u munge -- munged --foreground --force
    wait_for 20 munged munge -n
fi

# ---- one fake GPU: a character device (Slurm only checks that File= is one) as gres gpu:1
mknod "$W/fakegpu0" c 195 0 || cannot "mknod failed (no CAP_MKNOD in this container?)"
cat >"$CONF_DIR/gres.conf" <<CONF
$MARK
NodeName=$HOST Name=gpu File=$W/fakegpu0
CONF

# Node sized like a small GPU server (config_overrides: the stages' declared threads and mem_mb must fit,
# the CPUs and memory are not really there); jobs at once are bounded by snakemake --jobs below.
cat >"$CONF_DIR/slurm.conf" <<CONF
$MARK
ClusterName=dahash-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmdSpoolDir=$W/spool/d
StateSaveLocation=$W/spool/ctld
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
DefMemPerCPU=1000
MinJobAge=3600
KillWait=5
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$W/log/jobcomp.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=16 RealMemory=64000 Gres=gpu:1 State=UNKNOWN
PartitionName=gpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

start_daemon slurmctld slurmctld -D
SLURMCTLD_UP=1
wait_for 30 slurmctld scontrol ping
start_daemon slurmd slurmd -D
wait_for 60 "node idle" bash -c "sinfo -h -N -o %t | grep -qx idle"
say "Slurm up: $(sinfo -h -N -o '%N %t %c CPUs %m MB %G')"

# ---- MLflow as on a cluster: one tracking server, the jobs reach it through MLFLOW_TRACKING_URI
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$W/mlflow"
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false start_daemon mlflow mlflow server --backend-store-uri "sqlite:///$W/mlflow/mlflow.db" \
    --default-artifact-root "$W/mlflow/artifacts" --host 127.0.0.1 --port "$PORT" --workers 1
export MLFLOW_TRACKING_URI="http://127.0.0.1:$PORT"
wait_for 120 "mlflow server" "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=5)' \
    "$MLFLOW_TRACKING_URI"
say "MLflow server up at $MLFLOW_TRACKING_URI"

# ---- the pipeline (snakemake runs in our process group: timeout's SIGTERM reaches it, the driver then
# stops it with SIGINT; the Slurm jobs it leaves are cancelled by cleanup)
"$PY" "$REPO/tests/cluster/slurm_pipeline.py" "$W"
