#!/bin/bash
# Bind each MPI rank to one GPU of its node, then exec the command:
#   mpiexec ... launchers/gpu_affinity.sh python -m mosaic_hpc.train ...
#
# Cray MPICH/PALS (Polaris) does not bind ranks to GPUs. The local rank comes from the MPI
# launcher (PALS_LOCAL_RANKID on PALS, MPI_LOCALRANKID on MPICH/Hydra, OMPI_COMM_WORLD_LOCAL_RANK
# on Open MPI, SLURM_LOCALID under srun). CUDA_VISIBLE_DEVICES then holds exactly one GPU, so
# inside the rank that GPU is cuda:0 (the trainer uses cuda:(LOCAL_RANK % device_count)).
#
# MOSAIC_GPU_AFFINITY:
#   reverse  (Polaris) local rank r -> GPU (N-1-r): on Polaris GPU 3 is closest to cores 0-7,
#            GPU 0 to cores 24-31, so with `--depth 8 --cpu-bind depth` rank r runs next to it.
#   identity (Swing)   local rank r -> GPU r.
#   none               leave CUDA_VISIBLE_DEVICES alone.
# MOSAIC_GPUS_PER_NODE: GPUs on the node (default 4). Ranks beyond it share GPUs round-robin.
set -euo pipefail

local_rank="${PALS_LOCAL_RANKID:-${MPI_LOCALRANKID:-${PMI_LOCAL_RANK:-${OMPI_COMM_WORLD_LOCAL_RANK:-${SLURM_LOCALID:-}}}}}"
if [[ -z "$local_rank" ]]; then
    echo "gpu_affinity.sh: no local rank in the environment (run it under mpiexec or srun)" >&2
    exit 1
fi
n_gpus="${MOSAIC_GPUS_PER_NODE:-4}"
# Digits only before the arithmetic below: bash would evaluate 'HOME[$(cmd)]' and run cmd.
if [[ ! "$local_rank" =~ ^[0-9]+$ || ! "$n_gpus" =~ ^[1-9][0-9]*$ ]]; then
    echo "gpu_affinity.sh: local rank '$local_rank' and MOSAIC_GPUS_PER_NODE='$n_gpus' must be whole numbers" >&2
    exit 1
fi
mode="${MOSAIC_GPU_AFFINITY:-reverse}"
case "$mode" in
    reverse) export CUDA_VISIBLE_DEVICES=$(( n_gpus - 1 - local_rank % n_gpus )) ;;
    identity) export CUDA_VISIBLE_DEVICES=$(( local_rank % n_gpus )) ;;
    none) ;;
    *)
        echo "gpu_affinity.sh: MOSAIC_GPU_AFFINITY=$mode must be reverse, identity or none" >&2
        exit 1
        ;;
esac
exec "$@"
