#!/bin/bash
# MOSAIC training on NERSC Perlmutter GPU nodes (SLURM): 4 A100 per node, one rank per GPU.
#
#   sbatch -A mXXXX launchers/perlmutter.sh [TRAINER ARGS...]        # #SBATCH lines as defaults
#   sbatch -A mXXXX -N 8 -t 06:00:00 launchers/perlmutter.sh --max-steps 20000
#   MOSAIC_ACCOUNT=mXXXX MOSAIC_NODES=8 launchers/perlmutter.sh      # from a login node: builds
#                                                                    # and runs the sbatch line
#   DRY_RUN=1 ...                                                    # print, do not run
#   MOSAIC_TASK=predict sbatch launchers/perlmutter.sh --run models/m --input shards/ --given lsst --out preds/
#                                        # predict-shards (MOSAIC_TASK=encode: encode-shards) on every rank
#
# Options given to sbatch override the #SBATCH lines below; MOSAIC_* variables (docs/hpc.md,
# exported to the job by sbatch) set everything else. On a CPU-only cluster (tests):
#   MOSAIC_MODULES= sbatch --gpus-per-node=0 -c 1 --ntasks-per-node=2 launchers/perlmutter.sh
# Walltime: SLURM sends SIGUSR1 to this script 300 s before the end
# (--signal=B:USR1@300); it is forwarded to the ranks, which checkpoint and exit 0, and the job
# is requeued (same job id and run directory) to resume from RUN_DIR/checkpoints/latest.
#
#SBATCH --job-name=mosaic
#SBATCH --constraint=gpu
#SBATCH --qos=regular
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=02:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
# No --account line: NERSC charges your default project; pass -A mXXXX (or SBATCH_ACCOUNT,
# MOSAIC_ACCOUNT) to charge another.
set -euo pipefail

# The checkout: MOSAIC_ROOT, else this file's directory; sbatch runs a spooled copy, so inside a
# job ask SLURM where the submitted script lives, else fall back to the submission directory.
if [[ -z "${MOSAIC_ROOT:-}" ]]; then
    MOSAIC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [[ ! -f "$MOSAIC_ROOT/launchers/common.sh" && -n "${SLURM_JOB_ID:-}" ]]; then
        submitted="$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')"
        MOSAIC_ROOT="$(cd "$(dirname "${submitted:-.}")/.." 2>/dev/null && pwd || true)"
    fi
    if [[ ! -f "$MOSAIC_ROOT/launchers/common.sh" ]]; then
        MOSAIC_ROOT="${SLURM_SUBMIT_DIR:-$PWD}"
    fi
fi
if [[ ! -f "$MOSAIC_ROOT/launchers/common.sh" ]]; then
    echo "mosaic: launchers/common.sh not found under MOSAIC_ROOT=$MOSAIC_ROOT" >&2
    exit 1
fi
# shellcheck source=SCRIPTDIR/common.sh
source "$MOSAIC_ROOT/launchers/common.sh"

# ---- Perlmutter defaults (each one overridable from the environment) -----------------------
# The GPU-size model (configs/base.yaml); configs/paper.yaml for the published setting.
: "${MOSAIC_CONFIG:=configs/base.yaml}"
# Ranks per node = GPUs per node; inside a job, what sbatch allocated.
: "${MOSAIC_GPUS_PER_NODE:=${SLURM_NTASKS_PER_NODE:-4}}"
# A job submitted with --gpus-per-node=0 runs on CPU (tests, debugging on CPU nodes).
if [[ "${SLURM_GPUS_PER_NODE:-}" == 0 ]]; then
    : "${MOSAIC_DEVICE:=cpu}"
fi
# NERSC's PyTorch module (CUDA, NCCL with the Slingshot plugin, mpi4py); "" to skip.
: "${MOSAIC_MODULES=pytorch}"
# Write runs to $SCRATCH (Lustre), not to $HOME.
if [[ -n "${SCRATCH:-}" ]]; then
    : "${MOSAIC_RUNS_ROOT:=$SCRATCH/mosaic-hpc/runs}"
fi
# srun --cpu-bind (NERSC recommends cores with -c 32); "" to leave binding to SLURM.
: "${MOSAIC_CPU_BIND=cores}"
# Shifter container (MOSAIC_CONTAINER=docker:registry/image:tag): GPU and NCCL-plugin modules.
: "${MOSAIC_SHIFTER_MODULES:=gpu,nccl-plugin}"
MOSAIC_CONTAINER_PREFIX="shifter --image=${MOSAIC_CONTAINER:-} --module=$MOSAIC_SHIFTER_MODULES"

mosaic_init perlmutter "$@"

if [[ "$MOSAIC_SCHEDULER" == none ]]; then
    # On a login node: submit this script (same arguments) with MOSAIC_* as sbatch options.
    mosaic_submit_slurm "$MOSAIC_ROOT/launchers/perlmutter.sh" "$@"
    exit $?
fi
[[ "$MOSAIC_SCHEDULER" == slurm ]] || mosaic_die "perlmutter.sh runs under SLURM (found a $MOSAIC_SCHEDULER job)"

mosaic_setup_env
mosaic_slingshot_nccl_env
mosaic_prepare_run

# CPUs per rank: srun does not inherit sbatch's --cpus-per-task (SLURM >= 22.05), so pass it.
cpus_per_task="${MOSAIC_CPUS_PER_TASK:-${SLURM_CPUS_PER_TASK:-}}"
mosaic_require_count cpus_per_task 1 optional
if [[ -z "$MOSAIC_OMP_THREADS" && -z "${OMP_NUM_THREADS:-}" ]]; then
    # One OpenMP thread per physical core of the rank (2 hardware threads per core).
    threads=$(( ${cpus_per_task:-2} / 2 ))
    export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
fi

srun_cmd=(srun --nodes="$MOSAIC_NNODES" --ntasks="$MOSAIC_NRANKS" --ntasks-per-node="$MOSAIC_PPN"
    --kill-on-bad-exit=1)
[[ -n "$cpus_per_task" ]] && srun_cmd+=(--cpus-per-task="$cpus_per_task")
[[ -n "$MOSAIC_CPU_BIND" ]] && srun_cmd+=(--cpu-bind="$MOSAIC_CPU_BIND")
if [[ "$MOSAIC_DEVICE" == gpu ]]; then
    # Every rank sees the node's 4 GPUs and picks cuda:LOCAL_RANK (SLURM_LOCALID); keeping them
    # all visible lets NCCL use NVLink peer-to-peer between the ranks of a node.
    srun_cmd+=(--gpus-per-node="$MOSAIC_PPN")
fi
if [[ -n "${MOSAIC_SRUN_ARGS:-}" ]]; then
    read -r -a srun_more <<<"$MOSAIC_SRUN_ARGS"
    srun_cmd+=("${srun_more[@]}")
fi

mosaic_trainer_cmd
mosaic_launch "${srun_cmd[@]}" "${MOSAIC_TRAINER_CMD[@]}"
