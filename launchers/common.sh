# shellcheck shell=bash
# Shared logic of the mosaic-hpc launchers (perlmutter.sh, polaris.pbs, swing.pbs, local.sh).
# Sourced, never executed. The site scripts only set their site defaults and call, in order:
#
#   mosaic_init SITE "$@"        defaults for every MOSAIC_* variable, trainer arguments
#   mosaic_submit ...            (outside a job) build the sbatch/qsub command and submit it
#   mosaic_setup_env             modules, venv, setup script, container prefix
#   mosaic_prepare_run           nodes, MASTER_ADDR/PORT, run directory, hostfile, resume
#   mosaic_launch CMD...         run (or, with DRY_RUN=1, print) the launch; requeue logic
#
# MOSAIC_TASK chooses what every rank runs: train (default: python -m mosaic_hpc.train), predict
# or encode (python -m mosaic_hpc.cli predict-shards / encode-shards, restartable per shard: see
# docs/lifecycle.md). The script's arguments, after MOSAIC_EXTRA_ARGS, go to that command.
#
# Requeue protocol (documented in docs/hpc.md, "Walltime, requeue and resume"):
#   1. The scheduler (SLURM --signal=B:USR1@SECS) or our own watchdog (PBS, local; from
#      MOSAIC_WALLTIME) sends SIGUSR1 to this shell MOSAIC_SIGNAL_SECS before the walltime.
#   2. The shell forwards SIGUSR1 to the launcher (srun / mpiexec / the local rank processes),
#      which forward it to every rank.
#   3. The trainer saves a checkpoint on every rank, points RUN_DIR/checkpoints/latest at it
#      and exits 0.
#   4. Exit 0 after a forwarded SIGUSR1, or exit 0 with a RUN_DIR/REQUEUE file present (the
#      trainer may write it to ask for a continuation itself), requeues the job: SLURM
#      `scontrol requeue $SLURM_JOB_ID` (same job id, same run directory); PBS a resubmission
#      of the same script with `qsub -W depend=afterany:$PBS_JOBID` and the same MOSAIC_RUN_DIR.
#   5. The next run starts the trainer with --resume auto, which loads checkpoints/latest.
#   A non-zero exit never requeues. MOSAIC_MAX_REQUEUES bounds the chain.

# ----------------------------------------------------------------------------------- helpers

mosaic_log() {
    printf '[mosaic %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2
}

mosaic_die() {
    mosaic_log "error: $*"
    exit 1
}

mosaic_is_dry_run() {
    [[ "${DRY_RUN:-0}" != 0 && -n "${DRY_RUN:-}" ]]
}

# Print a command as one shell-quoted line (what DRY_RUN shows, and what the log records).
mosaic_quote() {
    local out="" arg
    for arg in "$@"; do
        out+="$(printf '%q' "$arg") "
    done
    printf '%s\n' "${out% }"
}

# Resolve a path the user gave: absolute as is; relative against the submission directory when
# it exists there, else against the repository root (where configs/ lives).
mosaic_resolve_path() {
    local path="$1"
    if [[ -z "$path" || "$path" == /* ]]; then
        printf '%s\n' "$path"
    elif [[ -e "$MOSAIC_SUBMIT_DIR/$path" ]]; then
        printf '%s\n' "$MOSAIC_SUBMIT_DIR/$path"
    else
        printf '%s\n' "$MOSAIC_ROOT/$path"
    fi
}

# mosaic_require_count VAR MIN [optional]: VAR must hold a whole number (decimal digits) >= MIN;
# with "optional" an empty or unset VAR is accepted. Every number from the environment passes
# here before any arithmetic: bash evaluates a variable's text as an expression inside (( )),
# $(( )) and [[ -lt ]], so a value such as 'HOME[$(cmd)]' would run cmd, DRY_RUN or not.
mosaic_require_count() {
    local var="$1" least="$2" value="${!1:-}"
    if [[ -z "$value" && "${3:-}" == optional ]]; then
        return 0
    fi
    [[ "$value" =~ ^[0-9]+$ ]] || mosaic_die "$var='$value' must be a whole number"
    (( 10#$value >= least )) || mosaic_die "$var=$value must be >= $least"
}

# Walltime "HH:MM:SS", "MM:SS", "D-HH:MM:SS" or plain seconds -> seconds.
mosaic_walltime_seconds() {
    [[ "$1" =~ ^([0-9]+-)?[0-9]+(:[0-9]+){0,2}$ ]] || return 1
    local text="$1" days=0 h=0 m=0 s=0
    if [[ "$text" == *-* ]]; then
        days="${text%%-*}"
        text="${text#*-}"
    fi
    local -a parts
    IFS=: read -r -a parts <<<"$text"
    case "${#parts[@]}" in
        1) s="${parts[0]}" ;;
        2) m="${parts[0]}"; s="${parts[1]}" ;;
        3) h="${parts[0]}"; m="${parts[1]}"; s="${parts[2]}" ;;
        *) return 1 ;;
    esac
    printf '%d\n' "$(( ((10#$days * 24 + 10#$h) * 60 + 10#$m) * 60 + 10#$s ))"
}

# ------------------------------------------------------------------------------------ init

# mosaic_init SITE [TRAINER ARGS...]
# Sets every MOSAIC_* default that does not depend on the site (the site script sets its own
# first, with ${VAR:=...}); collects the extra trainer arguments into MOSAIC_TRAIN_ARGS.
mosaic_init() {
    MOSAIC_SITE="$1"
    shift
    : "${MOSAIC_ROOT:?MOSAIC_ROOT must be set before sourcing common.sh}"
    MOSAIC_ROOT="$(cd "$MOSAIC_ROOT" && pwd)"
    # Where the user submitted from (relative paths are resolved against it first).
    MOSAIC_SUBMIT_DIR="${SLURM_SUBMIT_DIR:-${PBS_O_WORKDIR:-$PWD}}"

    # Scheduler in charge: slurm | pbs | none (local run or submission from a login node).
    if [[ -n "${SLURM_JOB_ID:-}" ]]; then
        MOSAIC_SCHEDULER=slurm
        MOSAIC_JOB_ID="$SLURM_JOB_ID"
    elif [[ -n "${PBS_JOBID:-}" ]]; then
        MOSAIC_SCHEDULER=pbs
        MOSAIC_JOB_ID="$PBS_JOBID"
    else
        MOSAIC_SCHEDULER=none
        MOSAIC_JOB_ID="local-$(date -u +%Y%m%d-%H%M%S)-$$"
    fi

    : "${MOSAIC_TASK:=train}"                 # train | predict | encode: what every rank runs
    case "$MOSAIC_TASK" in
        train | predict | encode) ;;
        *) mosaic_die "MOSAIC_TASK=$MOSAIC_TASK must be train, predict or encode" ;;
    esac
    : "${MOSAIC_DEVICE:=gpu}"                 # gpu | cpu (cpu: no GPU request, no binding)
    case "$MOSAIC_DEVICE" in
        gpu | cpu) ;;
        *) mosaic_die "MOSAIC_DEVICE=$MOSAIC_DEVICE must be gpu or cpu" ;;
    esac
    : "${MOSAIC_GPUS_PER_NODE:=4}"            # = ranks per node (one rank per GPU)
    : "${MOSAIC_CONFIG:=configs/tiny.yaml}"
    : "${MOSAIC_DATA:=data/catalog}"
    # Unset -> ZeRO-2; set to "" or "none" -> the plain PyTorch engine.
    : "${MOSAIC_DS_CONFIG=configs/zero2.json}"
    [[ "$MOSAIC_DS_CONFIG" == none ]] && MOSAIC_DS_CONFIG=""
    : "${MOSAIC_RESUME:=auto}"                # auto | none | PATH of a checkpoint
    : "${MOSAIC_MAX_STEPS:=}"
    : "${MOSAIC_EXTRA_ARGS:=}"
    : "${MOSAIC_PYTHON:=python}"
    : "${MOSAIC_MODULES:=}"
    : "${MOSAIC_VENV:=}"
    : "${MOSAIC_SETUP:=}"
    : "${MOSAIC_CONTAINER:=}"
    MOSAIC_RUN_DIR_GIVEN="${MOSAIC_RUN_DIR:-}${MOSAIC_RUN_NAME:-}${MOSAIC_RUNS_ROOT:-}"
    : "${MOSAIC_RUNS_ROOT:=$MOSAIC_ROOT/runs}"
    if [[ "$MOSAIC_TASK" == train ]]; then
        : "${MOSAIC_RUN_NAME:=$(basename "${MOSAIC_CONFIG%.*}")-${MOSAIC_JOB_ID%%.*}}"
    else
        : "${MOSAIC_RUN_NAME:=$MOSAIC_TASK-${MOSAIC_JOB_ID%%.*}}"
    fi
    : "${MOSAIC_RUN_DIR:=$MOSAIC_RUNS_ROOT/$MOSAIC_RUN_NAME}"
    : "${MOSAIC_SIGNAL_SECS:=300}"            # checkpoint this long before the walltime
    : "${MOSAIC_WALLTIME:=}"
    : "${MOSAIC_MAX_REQUEUES:=20}"
    : "${MOSAIC_REQUEUE_COUNT:=0}"            # PBS: resubmissions so far (set by the chain)
    : "${MOSAIC_OMP_THREADS:=}"
    : "${MOSAIC_TASK_WRAPPER:=}"              # command put before python on every rank
    mosaic_require_count MOSAIC_GPUS_PER_NODE 1
    mosaic_require_count MOSAIC_SIGNAL_SECS 0
    mosaic_require_count MOSAIC_MAX_REQUEUES 0
    mosaic_require_count MOSAIC_REQUEUE_COUNT 0
    local var
    for var in MOSAIC_NODES MOSAIC_OMP_THREADS MOSAIC_CPUS_PER_TASK MOSAIC_DEPTH MOSAIC_MASTER_PORT \
        MOSAIC_MAX_STEPS; do
        mosaic_require_count "$var" 1 optional
    done

    MOSAIC_CONFIG="$(mosaic_resolve_path "$MOSAIC_CONFIG")"
    MOSAIC_DATA="$(mosaic_resolve_path "$MOSAIC_DATA")"
    if [[ -n "$MOSAIC_DS_CONFIG" ]]; then
        MOSAIC_DS_CONFIG="$(mosaic_resolve_path "$MOSAIC_DS_CONFIG")"
    fi
    if [[ "$MOSAIC_RUN_DIR" != /* ]]; then
        MOSAIC_RUN_DIR="$MOSAIC_SUBMIT_DIR/$MOSAIC_RUN_DIR"
    fi
    if [[ "$MOSAIC_RESUME" != auto && "$MOSAIC_RESUME" != none ]]; then
        MOSAIC_RESUME="$(mosaic_resolve_path "$MOSAIC_RESUME")"
    fi

    # Arguments after the script name go to the trainer (or MOSAIC_TASK's command), after MOSAIC_EXTRA_ARGS.
    MOSAIC_TRAIN_ARGS=()
    if [[ -n "$MOSAIC_EXTRA_ARGS" ]]; then
        local -a extra
        read -r -a extra <<<"$MOSAIC_EXTRA_ARGS"
        MOSAIC_TRAIN_ARGS+=("${extra[@]}")
    fi
    MOSAIC_TRAIN_ARGS+=("$@")
    declare -g -a MOSAIC_SITE_EXPORTS
    MOSAIC_FORWARDED_SIGNAL=""
    MOSAIC_CHILD_PID=""
    MOSAIC_WATCHDOG_PID=""
}

# --------------------------------------------------------------------------- environment

# Run a site command (module, conda, a sourced file) with `set -eu` relaxed: Lmod, Environment
# Modules and conda's shell functions read unset variables and return non-zero on warnings.
_mosaic_relaxed() {
    local rc=0 flags="$-"
    set +eu
    "$@" || rc=$?
    if [[ "$flags" == *e* ]]; then set -e; fi
    if [[ "$flags" == *u* ]]; then set -u; fi
    return "$rc"
}

_mosaic_source() {
    # shellcheck disable=SC1090  # site, venv or user file, known only at run time
    source "$1"
}

# Load modules, activate a conda env or venv, source a setup script; define the container
# prefix. MOSAIC_MODULES is a space-separated list for `module load`; an entry "use:DIR" runs
# `module use DIR` (e.g. "use:/soft/modulefiles conda"). Under DRY_RUN only logged.
mosaic_setup_env() {
    local -a modules
    read -r -a modules <<<"$MOSAIC_MODULES"
    if [[ "${#modules[@]}" -gt 0 ]] && mosaic_is_dry_run; then
        mosaic_log "dry run: would load modules: ${modules[*]}"
    elif [[ "${#modules[@]}" -gt 0 ]]; then
        if ! declare -F module >/dev/null; then
            local init
            for init in "${MODULESHOME:-/usr/share/lmod/lmod}/init/bash" \
                /usr/share/lmod/lmod/init/bash /etc/profile.d/modules.sh; do
                if [[ -r "$init" ]]; then
                    _mosaic_relaxed _mosaic_source "$init" || true
                    break
                fi
            done
        fi
        declare -F module >/dev/null || mosaic_die "MOSAIC_MODULES is set but 'module' is unavailable"
        local mod
        for mod in "${modules[@]}"; do
            if [[ "$mod" == use:* ]]; then
                _mosaic_relaxed module use "${mod#use:}" || mosaic_die "module use ${mod#use:} failed"
            else
                _mosaic_relaxed module load "$mod" || mosaic_die "module load $mod failed"
            fi
        done
    fi
    if [[ -n "${MOSAIC_CONDA_ENV:-}" ]]; then
        if mosaic_is_dry_run; then
            mosaic_log "dry run: would activate conda env $MOSAIC_CONDA_ENV"
        else
            if ! declare -F conda >/dev/null; then
                command -v conda >/dev/null 2>&1 \
                    || mosaic_die "MOSAIC_CONDA_ENV is set but conda is unavailable (module load conda?)"
                local hook
                hook="$(conda shell.bash hook)" || mosaic_die "conda shell.bash hook failed"
                _mosaic_relaxed eval "$hook" || true
            fi
            _mosaic_relaxed conda activate "$MOSAIC_CONDA_ENV" \
                || mosaic_die "conda activate $MOSAIC_CONDA_ENV failed"
        fi
    fi
    if [[ -n "$MOSAIC_VENV" ]]; then
        [[ -r "$MOSAIC_VENV/bin/activate" ]] || mosaic_die "MOSAIC_VENV=$MOSAIC_VENV has no bin/activate"
        _mosaic_relaxed _mosaic_source "$MOSAIC_VENV/bin/activate" || mosaic_die "activating $MOSAIC_VENV failed"
    fi
    if [[ -n "$MOSAIC_SETUP" ]]; then
        [[ -r "$MOSAIC_SETUP" ]] || mosaic_die "MOSAIC_SETUP=$MOSAIC_SETUP is not readable"
        _mosaic_relaxed _mosaic_source "$MOSAIC_SETUP" || mosaic_die "sourcing $MOSAIC_SETUP failed"
    fi
    # The package is importable from the checkout even when not pip-installed.
    export PYTHONPATH="$MOSAIC_ROOT${PYTHONPATH:+:$PYTHONPATH}"
    # HDF5 file locking fails or serialises on Lustre/DVS/NFS; the catalog is read-only.
    export HDF5_USE_FILE_LOCKING="${HDF5_USE_FILE_LOCKING:-FALSE}"
    # Unbuffered output so the job log shows progress as it happens.
    export PYTHONUNBUFFERED=1
    if [[ -n "$MOSAIC_OMP_THREADS" ]]; then
        export OMP_NUM_THREADS="$MOSAIC_OMP_THREADS"
    fi
    # The site sets MOSAIC_CONTAINER_PREFIX (e.g. shifter/apptainer) from MOSAIC_CONTAINER.
    MOSAIC_CONTAINER_CMD=()
    if [[ -n "$MOSAIC_CONTAINER" && -n "${MOSAIC_CONTAINER_PREFIX:-}" ]]; then
        read -r -a MOSAIC_CONTAINER_CMD <<<"$MOSAIC_CONTAINER_PREFIX"
    fi
}

# ------------------------------------------------------------------------------- the run

# Expand a SLURM node list ("nid[001000-001002,001007],login01") into one host per line, like
# `scontrol show hostnames` but without a controller (works in containers and dry runs).
mosaic_expand_nodelist() {
    local list="$1" item="" depth=0 ch i
    local -a items=()
    # Split on the commas outside brackets.
    for (( i = 0; i < ${#list}; i++ )); do
        ch="${list:i:1}"
        case "$ch" in
            '[') depth=$(( depth + 1 )); item+="$ch" ;;
            ']') depth=$(( depth - 1 )); item+="$ch" ;;
            ,) if (( depth == 0 )); then items+=("$item"); item=""; else item+="$ch"; fi ;;
            *) item+="$ch" ;;
        esac
    done
    [[ -n "$item" ]] && items+=("$item")
    local prefix ranges suffix range lo hi n
    local -a parts
    for item in "${items[@]}"; do
        if [[ "$item" =~ ^([^[]*)\[([^]]*)\](.*)$ ]]; then
            prefix="${BASH_REMATCH[1]}"
            ranges="${BASH_REMATCH[2]}"
            suffix="${BASH_REMATCH[3]}"
            IFS=, read -r -a parts <<<"$ranges"
            for range in "${parts[@]}"; do
                lo="${range%-*}"
                hi="${range#*-}"
                for (( n = 10#$lo; n <= 10#$hi; n++ )); do
                    printf '%s%0*d%s\n' "$prefix" "${#lo}" "$n" "$suffix"
                done
            done
        else
            printf '%s\n' "$item"
        fi
    done
}

# Unique hosts of the allocation, one per line, in allocation order.
mosaic_hosts() {
    case "$MOSAIC_SCHEDULER" in
        slurm)
            mosaic_expand_nodelist "${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-${SLURMD_NODENAME:-$(hostname)}}}"
            ;;
        pbs)
            [[ -r "${PBS_NODEFILE:-}" ]] || mosaic_die "PBS_NODEFILE=${PBS_NODEFILE:-} is not readable"
            awk 'NF && !seen[$1]++ {print $1}' "$PBS_NODEFILE"
            ;;
        *)
            hostname
            ;;
    esac
}

# Nodes, ranks, master address and port; run directory with hostfile and launch record.
mosaic_prepare_run() {
    mapfile -t MOSAIC_HOST_LIST < <(mosaic_hosts)
    [[ "${#MOSAIC_HOST_LIST[@]}" -ge 1 ]] || mosaic_die "no hosts found for this job"
    MOSAIC_NNODES="${#MOSAIC_HOST_LIST[@]}"
    if [[ -n "${MOSAIC_NODES:-}" && "$MOSAIC_NODES" -lt "$MOSAIC_NNODES" ]]; then
        # Use the first MOSAIC_NODES hosts of a bigger allocation (scaling studies).
        MOSAIC_NNODES="$MOSAIC_NODES"
        MOSAIC_HOST_LIST=("${MOSAIC_HOST_LIST[@]:0:$MOSAIC_NNODES}")
    fi
    MOSAIC_PPN="$MOSAIC_GPUS_PER_NODE"
    MOSAIC_NRANKS=$(( MOSAIC_NNODES * MOSAIC_PPN ))

    # Rank 0 runs on the first host; torch.distributed rendezvous there.
    export MASTER_ADDR="${MOSAIC_MASTER_ADDR:-${MOSAIC_HOST_LIST[0]}}"
    if [[ -z "${MOSAIC_MASTER_PORT:-}" ]]; then
        # Derived from the job id so two jobs sharing a node do not collide.
        local digits="${MOSAIC_JOB_ID//[!0-9]/}"
        MOSAIC_MASTER_PORT=$(( 29500 + 10#${digits:-0} % 20000 ))
    fi
    export MASTER_PORT="$MOSAIC_MASTER_PORT"
    export MOSAIC_RUN_DIR

    MOSAIC_HOSTFILE="$MOSAIC_RUN_DIR/hostfile"
    if ! mosaic_is_dry_run; then
        mkdir -p "$MOSAIC_RUN_DIR/logs" || mosaic_die "cannot create $MOSAIC_RUN_DIR"
        # DeepSpeed/pdsh style: "host slots=N", one line per node.
        local host i
        for host in "${MOSAIC_HOST_LIST[@]}"; do
            printf '%s slots=%s\n' "$host" "$MOSAIC_PPN"
        done >"$MOSAIC_HOSTFILE"
        # MPI style: one line per rank.
        for host in "${MOSAIC_HOST_LIST[@]}"; do
            for (( i = 0; i < MOSAIC_PPN; i++ )); do printf '%s\n' "$host"; done
        done >"$MOSAIC_RUN_DIR/hostfile.mpi"
    fi
    # Training's inputs; predict and encode name theirs in their own arguments (checked there).
    if [[ "$MOSAIC_TASK" == train ]] && ! mosaic_is_dry_run; then
        [[ -f "$MOSAIC_CONFIG" ]] || mosaic_die "config $MOSAIC_CONFIG not found (set MOSAIC_CONFIG)"
        [[ -e "$MOSAIC_DATA" ]] || mosaic_die "data $MOSAIC_DATA not found (set MOSAIC_DATA)"
        if [[ -n "$MOSAIC_DS_CONFIG" && ! -f "$MOSAIC_DS_CONFIG" ]]; then
            mosaic_die "DeepSpeed config $MOSAIC_DS_CONFIG not found (MOSAIC_DS_CONFIG=none for plain PyTorch)"
        fi
    fi
    if [[ "$MOSAIC_TASK" == train && "$MOSAIC_RESUME" == auto && -f "$MOSAIC_RUN_DIR/checkpoints/latest" ]]; then
        mosaic_log "resuming from checkpoint $(<"$MOSAIC_RUN_DIR/checkpoints/latest") in $MOSAIC_RUN_DIR"
    fi
    mosaic_log "task=$MOSAIC_TASK site=$MOSAIC_SITE job=$MOSAIC_JOB_ID nodes=$MOSAIC_NNODES ranks=$MOSAIC_NRANKS" \
        "(${MOSAIC_PPN}/node, $MOSAIC_DEVICE) master=$MASTER_ADDR:$MASTER_PORT run_dir=$MOSAIC_RUN_DIR"
}

# The per-rank command: [wrapper] [container] python -m mosaic_hpc.train ARGS, or for
# MOSAIC_TASK=predict|encode [wrapper] [container] python -m mosaic_hpc.cli predict-shards|encode-shards
# ARGS (MOSAIC_TRAIN_ARGS: MOSAIC_EXTRA_ARGS, then the script's arguments).
mosaic_trainer_cmd() {
    MOSAIC_TRAINER_CMD=()
    if [[ -n "$MOSAIC_TASK_WRAPPER" ]]; then
        local -a wrapper
        read -r -a wrapper <<<"$MOSAIC_TASK_WRAPPER"
        MOSAIC_TRAINER_CMD+=("${wrapper[@]}")
    fi
    MOSAIC_TRAINER_CMD+=("${MOSAIC_CONTAINER_CMD[@]}")
    local -a python
    read -r -a python <<<"$MOSAIC_PYTHON"
    if [[ "$MOSAIC_TASK" != train ]]; then
        MOSAIC_TRAINER_CMD+=("${python[@]}" -m mosaic_hpc.cli "$MOSAIC_TASK-shards" "${MOSAIC_TRAIN_ARGS[@]}")
        return 0
    fi
    MOSAIC_TRAINER_CMD+=("${python[@]}" -m mosaic_hpc.train
        --config "$MOSAIC_CONFIG" --data "$MOSAIC_DATA" --out "$MOSAIC_RUN_DIR"
        --resume "$MOSAIC_RESUME")
    if [[ -n "$MOSAIC_DS_CONFIG" ]]; then
        MOSAIC_TRAINER_CMD+=(--deepspeed_config "$MOSAIC_DS_CONFIG")
    fi
    if [[ -n "$MOSAIC_MAX_STEPS" ]]; then
        MOSAIC_TRAINER_CMD+=(--max-steps "$MOSAIC_MAX_STEPS")
    fi
    MOSAIC_TRAINER_CMD+=("${MOSAIC_TRAIN_ARGS[@]}")
}

# Print the environment a dry run would launch with, then the command (a runnable script).
mosaic_print_dry_run() {
    printf '# mosaic dry run: task=%s site=%s scheduler=%s job=%s nodes=%s ranks=%s ppn=%s device=%s\n' \
        "$MOSAIC_TASK" "$MOSAIC_SITE" "$MOSAIC_SCHEDULER" "$MOSAIC_JOB_ID" "$MOSAIC_NNODES" "$MOSAIC_NRANKS" \
        "$MOSAIC_PPN" "$MOSAIC_DEVICE"
    local var
    for var in MASTER_ADDR MASTER_PORT MOSAIC_RUN_DIR HDF5_USE_FILE_LOCKING OMP_NUM_THREADS \
        "${MOSAIC_SITE_EXPORTS[@]}"; do
        if [[ -n "${!var+set}" ]]; then
            printf 'export %s=%q\n' "$var" "${!var}"
        fi
    done
    mosaic_quote "$@"
}

# ------------------------------------------------------------------ launch, signals, requeue

_mosaic_forward_signal() {
    local sig="$1"
    MOSAIC_FORWARDED_SIGNAL="$sig"
    if [[ -n "$MOSAIC_CHILD_PID" ]]; then
        mosaic_log "received SIG$sig: forwarding to the ranks (checkpoint, then exit)"
        kill -s "$sig" "$MOSAIC_CHILD_PID" 2>/dev/null || true
    fi
}

# On PBS, take the job's walltime, project and queue from `qstat -f` unless MOSAIC_WALLTIME /
# MOSAIC_ACCOUNT / MOSAIC_QUEUE are set: the watchdog needs the walltime, and a resubmission
# should ask for the same walltime, project and queue as the job the user submitted.
_mosaic_pbs_job_attrs() {
    [[ "$MOSAIC_SCHEDULER" == pbs ]] && command -v qstat >/dev/null 2>&1 || return 0
    local attrs
    attrs="$(qstat -f "$PBS_JOBID" 2>/dev/null || true)"
    if [[ -z "$MOSAIC_WALLTIME" ]]; then
        MOSAIC_WALLTIME="$(awk -F' = ' '$1 ~ /Resource_List.walltime$/ {print $2; exit}' <<<"$attrs")"
    fi
    if [[ -z "${MOSAIC_ACCOUNT:-}" ]]; then
        MOSAIC_ACCOUNT="$(awk -F' = ' '$1 ~ /Account_Name$/ {print $2; exit}' <<<"$attrs")"
    fi
    # The queue the user submitted to (Polaris' prod routes to execution queues that do not
    # accept submissions), from the original qsub arguments.
    if [[ -z "${MOSAIC_QUEUE:-}" ]]; then
        local submitted
        submitted="$(awk -F' = ' '$1 ~ /Submit_arguments$/ {print $2; exit}' <<<"$attrs")"
        if [[ "$submitted" =~ (^|[[:space:]])-q[[:space:]]*([^[:space:]]+) ]]; then
            MOSAIC_QUEUE="${BASH_REMATCH[2]}"
        fi
    fi
}

# Before the walltime, send ourselves SIGUSR1 (PBS and local runs: SLURM does it itself via
# --signal). The walltime is MOSAIC_WALLTIME, or on PBS the job's Resource_List.walltime.
_mosaic_start_watchdog() {
    # SLURM signals the batch shell itself (#SBATCH --signal=B:USR1@SECS).
    [[ "$MOSAIC_SCHEDULER" == slurm ]] && return 0
    local walltime="$MOSAIC_WALLTIME"
    [[ -n "$walltime" ]] || return 0
    local total
    total="$(mosaic_walltime_seconds "$walltime")" || mosaic_die "cannot parse walltime '$walltime'"
    local delay=$(( total - MOSAIC_SIGNAL_SECS ))
    (( delay < 1 )) && delay=1
    mosaic_log "walltime ${walltime}: SIGUSR1 to the ranks in ${delay}s"
    local shell_pid=$$
    # The sleep runs as a child the watchdog kills when it is stopped, so no stray process
    # outlives the job (or holds a caller's output pipe open).
    (
        trap - USR1
        sleep_pid=""
        trap 'if [[ -n "$sleep_pid" ]]; then kill "$sleep_pid" 2>/dev/null; fi; exit 0' TERM
        sleep "$delay" &
        sleep_pid=$!
        wait "$sleep_pid" && kill -s USR1 "$shell_pid" 2>/dev/null
    ) >/dev/null 2>&1 &
    MOSAIC_WATCHDOG_PID=$!
}

# mosaic_launch CMD...: run the launch command (or print it under DRY_RUN), forwarding SIGUSR1
# and SIGTERM to it, then requeue when the protocol above says so. Exits with its status.
mosaic_launch() {
    if mosaic_is_dry_run; then
        mosaic_print_dry_run "$@"
        return 0
    fi
    {
        printf '# %s job=%s\n' "$(date -u +%FT%TZ)" "$MOSAIC_JOB_ID"
        mosaic_quote "$@"
    } >>"$MOSAIC_RUN_DIR/logs/launch.txt"
    rm -f "$MOSAIC_RUN_DIR/REQUEUE"
    # The trainer runs from the checkout; predict and encode from where the user submitted, so
    # relative paths in their arguments mean what they mean there (PYTHONPATH finds the package).
    local workdir="$MOSAIC_ROOT"
    [[ "$MOSAIC_TASK" == train ]] || workdir="$MOSAIC_SUBMIT_DIR"
    cd "$workdir" || mosaic_die "cannot cd to $workdir"

    trap '_mosaic_forward_signal USR1' USR1
    trap '_mosaic_forward_signal TERM' TERM
    "$@" &
    MOSAIC_CHILD_PID=$!
    _mosaic_pbs_job_attrs
    _mosaic_start_watchdog
    local rc=0
    while true; do
        rc=0
        wait "$MOSAIC_CHILD_PID" || rc=$?
        # `wait` returns early (status > 128) when a trapped signal arrives; keep waiting.
        if ! kill -0 "$MOSAIC_CHILD_PID" 2>/dev/null; then
            break
        fi
    done
    if [[ -n "$MOSAIC_WATCHDOG_PID" ]]; then
        kill "$MOSAIC_WATCHDOG_PID" 2>/dev/null || true
        wait "$MOSAIC_WATCHDOG_PID" 2>/dev/null || true
    fi
    trap - USR1 TERM
    MOSAIC_CHILD_PID=""
    mosaic_log "launcher exited with status $rc"

    if [[ "$rc" == 0 ]] && { [[ "$MOSAIC_FORWARDED_SIGNAL" == USR1 ]] || [[ -f "$MOSAIC_RUN_DIR/REQUEUE" ]]; }; then
        rm -f "$MOSAIC_RUN_DIR/REQUEUE"
        mosaic_requeue
    fi
    return "$rc"
}

# Continue the run in a new allocation (see the protocol at the top of this file).
mosaic_requeue() {
    local count
    case "$MOSAIC_SCHEDULER" in
        slurm) count="${SLURM_RESTART_COUNT:-0}" ;;
        *) count="$MOSAIC_REQUEUE_COUNT" ;;
    esac
    mosaic_require_count count 0
    if (( count >= MOSAIC_MAX_REQUEUES )); then
        mosaic_log "not requeueing: $count requeues reached MOSAIC_MAX_REQUEUES=$MOSAIC_MAX_REQUEUES"
        return 0
    fi
    if [[ -n "${MOSAIC_REQUEUE_CMD:-}" ]]; then
        # Site or test override, run through bash with the job's environment.
        mosaic_log "requeue: $MOSAIC_REQUEUE_CMD"
        MOSAIC_REQUEUE_COUNT=$(( count + 1 )) bash -c "$MOSAIC_REQUEUE_CMD" \
            || mosaic_log "requeue command failed; resubmit by hand to resume"
        return 0
    fi
    case "$MOSAIC_SCHEDULER" in
        slurm)
            mosaic_log "requeue: scontrol requeue $SLURM_JOB_ID (restart $(( count + 1 )))"
            # The job goes back to pending with the same id and options; this shell is ended.
            scontrol requeue "$SLURM_JOB_ID" || mosaic_log "scontrol requeue failed; resubmit by hand"
            ;;
        pbs)
            # qrerun needs operator privilege on PBS Pro: resubmit the same script instead,
            # to start after this job ends, continuing in the same run directory.
            MOSAIC_REQUEUE_COUNT=$(( count + 1 ))
            mosaic_submit_pbs -W "depend=afterany:$PBS_JOBID" \
                || mosaic_log "qsub resubmission failed; resubmit by hand to resume"
            ;;
        *)
            mosaic_log "no scheduler: rerun the same command to resume from $MOSAIC_RUN_DIR"
            ;;
    esac
}

# ------------------------------------------------------------------------- submission

# Variables forwarded to a job submitted by mosaic_submit (PBS needs them listed with -v).
MOSAIC_FORWARD_VARS=(MOSAIC_ROOT MOSAIC_TASK MOSAIC_DEVICE MOSAIC_GPUS_PER_NODE MOSAIC_CONFIG MOSAIC_DATA
    MOSAIC_DS_CONFIG MOSAIC_RESUME MOSAIC_MAX_STEPS MOSAIC_EXTRA_ARGS MOSAIC_PYTHON
    MOSAIC_MODULES MOSAIC_CONDA_ENV MOSAIC_VENV MOSAIC_SETUP MOSAIC_CONTAINER MOSAIC_RUN_DIR
    MOSAIC_SIGNAL_SECS MOSAIC_WALLTIME MOSAIC_MAX_REQUEUES MOSAIC_REQUEUE_COUNT MOSAIC_REQUEUE_CMD
    MOSAIC_OMP_THREADS MOSAIC_TASK_WRAPPER MOSAIC_NODES MOSAIC_ACCOUNT MOSAIC_QUEUE MOSAIC_PROXY
    MOSAIC_FILESYSTEMS MOSAIC_GPU_AFFINITY MOSAIC_CPU_BIND MOSAIC_DEPTH MOSAIC_MPIEXEC
    MOSAIC_MPIEXEC_FLAVOR MOSAIC_MPIEXEC_ARGS MOSAIC_SUBMIT_ARGS)
# Variables whose empty value means "none" (not "the default"): forwarded even when empty.
MOSAIC_FORWARD_EMPTY=(MOSAIC_MODULES MOSAIC_CONDA_ENV MOSAIC_PROXY MOSAIC_CPU_BIND MOSAIC_FILESYSTEMS)

# Run or print (DRY_RUN) a submission command.
mosaic_run_submit() {
    if mosaic_is_dry_run; then
        mosaic_quote "$@"
        return 0
    fi
    mosaic_log "submitting: $(mosaic_quote "$@")"
    "$@"
}

# "VAR=value,VAR=value" of the forwarded variables that are set (qsub -v). PBS splits on
# commas, so values must not contain any. MOSAIC_RUN_DIR is passed only when the user chose it
# or when a job continues its own run (requeue); otherwise the new job names its own.
mosaic_pbs_var_list() {
    local var value out=""
    for var in "${MOSAIC_FORWARD_VARS[@]}"; do
        value="${!var:-}"
        if [[ "$var" == MOSAIC_DS_CONFIG && -z "$value" ]]; then
            value=none
        fi
        if [[ "$var" == MOSAIC_RUN_DIR && "$MOSAIC_SCHEDULER" == none && -z "$MOSAIC_RUN_DIR_GIVEN" ]]; then
            continue
        fi
        if [[ -n "$value" ]] || { [[ -n "${!var+set}" ]] && [[ " ${MOSAIC_FORWARD_EMPTY[*]} " == *" $var "* ]]; }; then
            [[ "$value" == *,* ]] && mosaic_die "$var='$value' contains a comma, which qsub -v cannot pass"
            out+="$var=$value,"
        fi
    done
    printf '%s\n' "${out%,}"
}

# mosaic_submit_slurm SCRIPT [TRAINER ARGS...]: sbatch the site script from a login node. The
# script's #SBATCH lines are the defaults; MOSAIC_* values given here become sbatch options,
# which take precedence over them. The environment is exported to the job (sbatch default).
mosaic_submit_slurm() {
    local script="$1"
    shift
    local -a cmd=(sbatch)
    [[ -n "${MOSAIC_ACCOUNT:-}" ]] && cmd+=(--account="$MOSAIC_ACCOUNT")
    [[ -n "${MOSAIC_QUEUE:-}" ]] && cmd+=(--qos="$MOSAIC_QUEUE")
    [[ -n "${MOSAIC_CONSTRAINT:-}" ]] && cmd+=(--constraint="$MOSAIC_CONSTRAINT")
    [[ -n "${MOSAIC_NODES:-}" ]] && cmd+=(--nodes="$MOSAIC_NODES")
    cmd+=(--ntasks-per-node="$MOSAIC_GPUS_PER_NODE")
    if [[ "$MOSAIC_DEVICE" == cpu ]]; then
        cmd+=(--gpus-per-node=0)
    else
        cmd+=(--gpus-per-node="$MOSAIC_GPUS_PER_NODE")
    fi
    [[ -n "${MOSAIC_CPUS_PER_TASK:-}" ]] && cmd+=(--cpus-per-task="$MOSAIC_CPUS_PER_TASK")
    [[ -n "$MOSAIC_WALLTIME" ]] && cmd+=(--time="$MOSAIC_WALLTIME")
    cmd+=(--signal="B:USR1@$MOSAIC_SIGNAL_SECS")
    if [[ -n "${MOSAIC_SUBMIT_ARGS:-}" ]]; then
        local -a more
        read -r -a more <<<"$MOSAIC_SUBMIT_ARGS"
        cmd+=("${more[@]}")
    fi
    cmd+=("$script" "$@")
    mosaic_run_submit "${cmd[@]}"
}

# mosaic_submit_pbs [QSUB OPTIONS...]: qsub the site script (MOSAIC_SCRIPT) with resources
# from MOSAIC_* and the site's MOSAIC_PBS_SELECT_SUFFIX; forwards the MOSAIC_* variables with
# -v (qsub does not export the environment). Also used to resubmit a job for requeue.
mosaic_submit_pbs() {
    local nodes="${MOSAIC_NODES:-${MOSAIC_NNODES:-1}}"
    local -a cmd=(qsub)
    [[ -n "${MOSAIC_ACCOUNT:-}" ]] && cmd+=(-A "$MOSAIC_ACCOUNT")
    [[ -n "${MOSAIC_QUEUE:-}" ]] && cmd+=(-q "$MOSAIC_QUEUE")
    cmd+=(-l "select=${nodes}${MOSAIC_PBS_SELECT_SUFFIX:-}")
    [[ -n "$MOSAIC_WALLTIME" ]] && cmd+=(-l "walltime=$MOSAIC_WALLTIME")
    [[ -n "${MOSAIC_FILESYSTEMS:-}" ]] && cmd+=(-l "filesystems=$MOSAIC_FILESYSTEMS")
    if [[ -n "${MOSAIC_SUBMIT_ARGS:-}" ]]; then
        local -a more
        read -r -a more <<<"$MOSAIC_SUBMIT_ARGS"
        cmd+=("${more[@]}")
    fi
    cmd+=("$@")
    local vars
    vars="$(mosaic_pbs_var_list)"
    [[ -n "$vars" ]] && cmd+=(-v "$vars")
    cmd+=("$MOSAIC_SCRIPT")
    mosaic_run_submit "${cmd[@]}"
}

# ------------------------------------------------------------------------ site building blocks

# NCCL over HPE Slingshot 11 (Perlmutter, Polaris: A100 nodes with one Cassini NIC per GPU and
# the aws-ofi-nccl plugin over libfabric's cxi provider). Each value is only a default: anything
# already in the environment (the site's modules, the user) wins.
mosaic_slingshot_nccl_env() {
    [[ "$MOSAIC_DEVICE" == gpu ]] || return 0
    # Use GPUDirect RDMA when GPU and NIC share a PCIe host bridge (each A100 has its own NIC on
    # its PCIe switch): NIC reads/writes GPU memory without a bounce through host memory.
    export NCCL_NET_GDR_LEVEL="${NCCL_NET_GDR_LEVEL:-PHB}"
    # Let rings/trees use a different NIC on each node: all NICs are on the same fabric.
    export NCCL_CROSS_NIC="${NCCL_CROSS_NIC:-1}"
    # Bootstrap/out-of-band sockets on the high-speed network (hsn0..3), not the management
    # Ethernet (nmn0), which is slow and may not route between all nodes.
    export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-hsn}"
    # Require the libfabric plugin: fail loudly instead of silently falling back to TCP sockets.
    export NCCL_NET="${NCCL_NET:-AWS Libfabric}"
    # libfabric cxi: do not register host memory with the NIC's own mechanism; with CUDA this
    # causes hangs/corruption (HPE's recommendation for NCCL on Slingshot).
    export FI_CXI_DISABLE_HOST_REGISTER="${FI_CXI_DISABLE_HOST_REGISTER:-1}"
    # Memory-registration cache invalidation via userfaultfd (memhooks misses CUDA frees and
    # can hand out stale registrations).
    export FI_MR_CACHE_MONITOR="${FI_MR_CACHE_MONITOR:-userfaultfd}"
    # Larger completion queues: the default overflows with many peers at scale.
    export FI_CXI_DEFAULT_CQ_SIZE="${FI_CXI_DEFAULT_CQ_SIZE:-131072}"
    MOSAIC_SITE_EXPORTS+=(NCCL_NET_GDR_LEVEL NCCL_CROSS_NIC NCCL_SOCKET_IFNAME NCCL_NET
        FI_CXI_DISABLE_HOST_REGISTER FI_MR_CACHE_MONITOR FI_CXI_DEFAULT_CQ_SIZE)
}

# Which mpiexec: pals (Cray PALS, Polaris), hydra (MPICH), openmpi. MOSAIC_MPIEXEC_FLAVOR wins.
mosaic_mpiexec_flavor() {
    if [[ -n "${MOSAIC_MPIEXEC_FLAVOR:-}" ]]; then
        printf '%s\n' "$MOSAIC_MPIEXEC_FLAVOR"
        return 0
    fi
    local version
    version="$("$MOSAIC_MPIEXEC" --version 2>&1 || true)"
    case "$version" in
        *HYDRA* | *Hydra*) echo hydra ;;
        *"Open MPI"* | *OpenRTE* | *"Open RTE"*) echo openmpi ;;
        *) echo pals ;;
    esac
}

# mosaic_mpiexec_cmd TASK CMD...: MOSAIC_LAUNCH_CMD = mpiexec over the PBS allocation, one rank
# per GPU (MOSAIC_PPN per node), in the syntax of the mpiexec found.
mosaic_mpiexec_cmd() {
    local flavor
    flavor="$(mosaic_mpiexec_flavor)"
    MOSAIC_LAUNCH_CMD=("$MOSAIC_MPIEXEC")
    case "$flavor" in
        pals)
            MOSAIC_LAUNCH_CMD+=(-n "$MOSAIC_NRANKS" --ppn "$MOSAIC_PPN" --hostfile "$MOSAIC_NODEFILE")
            if [[ -n "${MOSAIC_CPU_BIND:-}" ]]; then
                # depth: each rank gets MOSAIC_DEPTH consecutive hardware threads.
                MOSAIC_LAUNCH_CMD+=(--depth="$MOSAIC_DEPTH" --cpu-bind "$MOSAIC_CPU_BIND")
            fi
            ;;
        hydra)
            MOSAIC_LAUNCH_CMD+=(-n "$MOSAIC_NRANKS" -ppn "$MOSAIC_PPN" -f "$MOSAIC_NODEFILE")
            ;;
        openmpi)
            MOSAIC_LAUNCH_CMD+=(-n "$MOSAIC_NRANKS" --map-by "ppr:$MOSAIC_PPN:node"
                --hostfile "$MOSAIC_NODEFILE" -x MASTER_ADDR -x MASTER_PORT)
            ;;
        *) mosaic_die "unknown MOSAIC_MPIEXEC_FLAVOR=$flavor (pals, hydra or openmpi)" ;;
    esac
    if [[ -n "${MOSAIC_MPIEXEC_ARGS:-}" ]]; then
        local -a more
        read -r -a more <<<"$MOSAIC_MPIEXEC_ARGS"
        MOSAIC_LAUNCH_CMD+=("${more[@]}")
    fi
    MOSAIC_LAUNCH_CMD+=("$@")
}

# The PBS sites (Polaris, Swing): one rank per GPU through mpiexec, CUDA_VISIBLE_DEVICES per
# local rank from gpu_affinity.sh, requeue by resubmission. SITE_SCRIPT is the job script.
mosaic_run_pbs_site() {
    if [[ "$MOSAIC_SCHEDULER" == none ]]; then
        mosaic_submit_pbs
        return $?
    fi
    [[ "$MOSAIC_SCHEDULER" == pbs ]] || mosaic_die "$MOSAIC_SITE expects a PBS job (found $MOSAIC_SCHEDULER)"
    mosaic_setup_env
    mosaic_prepare_run
    : "${MOSAIC_MPIEXEC:=mpiexec}"
    # PALS places ranks from PBS_NODEFILE; a MOSAIC_NODES subset uses our trimmed copy.
    MOSAIC_NODEFILE="$PBS_NODEFILE"
    if [[ "$MOSAIC_NNODES" -lt "$(awk 'NF && !seen[$1]++' "$PBS_NODEFILE" | wc -l)" ]]; then
        MOSAIC_NODEFILE="$MOSAIC_RUN_DIR/nodefile"
        mosaic_is_dry_run || printf '%s\n' "${MOSAIC_HOST_LIST[@]}" >"$MOSAIC_NODEFILE"
    fi
    mosaic_trainer_cmd
    local -a task=()
    if [[ "$MOSAIC_DEVICE" == gpu && "${MOSAIC_GPU_AFFINITY:-}" != none ]]; then
        task=("$MOSAIC_ROOT/launchers/gpu_affinity.sh")
        export MOSAIC_GPU_AFFINITY MOSAIC_GPUS_PER_NODE
        MOSAIC_SITE_EXPORTS+=(MOSAIC_GPU_AFFINITY MOSAIC_GPUS_PER_NODE)
    fi
    mosaic_mpiexec_cmd "${task[@]}" "${MOSAIC_TRAINER_CMD[@]}"
    mosaic_launch "${MOSAIC_LAUNCH_CMD[@]}"
}

# Proxy for compute nodes that reach the internet only through one (W&B, pip).
mosaic_proxy_env() {
    [[ -n "${MOSAIC_PROXY:-}" ]] || return 0
    export http_proxy="${http_proxy:-$MOSAIC_PROXY}"
    export https_proxy="${https_proxy:-$MOSAIC_PROXY}"
    export HTTP_PROXY="${HTTP_PROXY:-$MOSAIC_PROXY}"
    export HTTPS_PROXY="${HTTPS_PROXY:-$MOSAIC_PROXY}"
    MOSAIC_SITE_EXPORTS+=(http_proxy https_proxy HTTP_PROXY HTTPS_PROXY)
}
