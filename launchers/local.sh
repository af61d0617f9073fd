#!/bin/bash
# MOSAIC training on one machine (workstation, one interactive node, CI): N rank processes.
#
#   launchers/local.sh -n 2 [TRAINER ARGS...]         # 2 ranks (GPUs if present, else CPU)
#   MOSAIC_DEVICE=cpu MOSAIC_DS_CONFIG=none launchers/local.sh -n 2 --max-steps 20
#   DRY_RUN=1 launchers/local.sh -n 4                  # print the commands, do not run
#   MOSAIC_TASK=predict launchers/local.sh -n 2 --run models/m --input shards/ --given lsst --out preds/
#                                                      # predict-shards (or encode) on 2 ranks
#
# Each rank gets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (the torchrun
# convention the trainer reads). If one rank fails the others are stopped. SIGUSR1/SIGTERM are
# forwarded to every rank (checkpoint and exit 0); MOSAIC_WALLTIME=HH:MM:SS sends SIGUSR1
# MOSAIC_SIGNAL_SECS before it. Rerunning the same command resumes from the run directory's
# latest checkpoint (set MOSAIC_RUN_DIR, or MOSAIC_RUN_NAME, so both runs use the same one).
set -euo pipefail

if [[ -z "${MOSAIC_ROOT:-}" ]]; then
    MOSAIC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fi
if [[ ! -f "$MOSAIC_ROOT/launchers/common.sh" ]]; then
    echo "mosaic: launchers/common.sh not found under MOSAIC_ROOT=$MOSAIC_ROOT" >&2
    exit 1
fi
# shellcheck source=SCRIPTDIR/common.sh
source "$MOSAIC_ROOT/launchers/common.sh"

if [[ "${1:-}" == -n ]]; then
    [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || mosaic_die "-n needs a positive number of processes"
    MOSAIC_GPUS_PER_NODE="$2"
    shift 2
fi

# ---- local defaults --------------------------------------------------------------------------
mosaic_require_count MOSAIC_GPUS_PER_NODE 1 optional  # before the arithmetic below (see common.sh)
n_gpus=0
if command -v nvidia-smi >/dev/null 2>&1; then
    n_gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
fi
if [[ "$n_gpus" -gt 0 ]]; then
    : "${MOSAIC_DEVICE:=gpu}"
else
    : "${MOSAIC_DEVICE:=cpu}"
fi
if [[ "$MOSAIC_DEVICE" == gpu ]]; then
    : "${MOSAIC_GPUS_PER_NODE:=$n_gpus}"
    : "${MOSAIC_CONFIG:=configs/base.yaml}"
else
    : "${MOSAIC_GPUS_PER_NODE:=1}"
    # The CPU demo model (minutes on a laptop); configs/tiny.yaml for seconds.
    : "${MOSAIC_CONFIG:=configs/small.yaml}"
    # One rank: the plain PyTorch engine starts faster. Several ranks need DeepSpeed (gloo).
    if (( MOSAIC_GPUS_PER_NODE > 1 )); then
        : "${MOSAIC_DS_CONFIG=configs/zero2.json}"
    else
        : "${MOSAIC_DS_CONFIG=}"
    fi
fi
# The loopback interface always works for a one-machine rendezvous.
: "${MOSAIC_MASTER_ADDR:=127.0.0.1}"
: "${MOSAIC_MODULES=}"
if [[ -z "${MOSAIC_OMP_THREADS:-}" && -z "${OMP_NUM_THREADS:-}" ]]; then
    # Share the cores between the ranks instead of oversubscribing them.
    cores="$(nproc 2>/dev/null || echo 1)"
    MOSAIC_OMP_THREADS=$(( cores / MOSAIC_GPUS_PER_NODE > 0 ? cores / MOSAIC_GPUS_PER_NODE : 1 ))
fi
MOSAIC_CONTAINER_PREFIX="apptainer exec --nv ${MOSAIC_CONTAINER:-}"

mosaic_init local "$@"
mosaic_setup_env
mosaic_prepare_run
mosaic_trainer_cmd

# Start N ranks, forward signals to all, stop the rest when one fails; status of the first
# failure (0 when all succeed). Runs as one background job under mosaic_launch.
_mosaic_local_ranks() {
    local n="$1"
    shift
    local -a pids=()
    local r
    trap 'kill -s USR1 "${pids[@]}" 2>/dev/null || true' USR1
    trap 'kill -s TERM "${pids[@]}" 2>/dev/null || true' TERM
    for (( r = 0; r < n; r++ )); do
        RANK="$r" LOCAL_RANK="$r" WORLD_SIZE="$n" LOCAL_WORLD_SIZE="$n" "$@" &
        pids+=("$!")
    done
    local rc=0 status pid
    local -a alive=("${pids[@]}") still
    while (( ${#alive[@]} > 0 )); do
        still=()
        for pid in "${alive[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then
                still+=("$pid")
                continue
            fi
            status=0
            wait "$pid" || status=$?
            if (( status != 0 && rc == 0 )); then
                rc="$status"
                echo "[mosaic] a rank exited with status $status; stopping the others" >&2
                kill -s TERM "${pids[@]}" 2>/dev/null || true
            fi
        done
        alive=("${still[@]+"${still[@]}"}")
        (( ${#alive[@]} > 0 )) && sleep 0.2
    done
    return "$rc"
}

if mosaic_is_dry_run; then
    mosaic_print_dry_run "${MOSAIC_TRAINER_CMD[@]}" | sed '$d'
    for (( rank = 0; rank < MOSAIC_NRANKS; rank++ )); do
        printf 'RANK=%d LOCAL_RANK=%d WORLD_SIZE=%d LOCAL_WORLD_SIZE=%d %s &\n' "$rank" "$rank" \
            "$MOSAIC_NRANKS" "$MOSAIC_NRANKS" "$(mosaic_quote "${MOSAIC_TRAINER_CMD[@]}")"
    done
    echo wait
    exit 0
fi
mosaic_launch _mosaic_local_ranks "$MOSAIC_NRANKS" "${MOSAIC_TRAINER_CMD[@]}"
