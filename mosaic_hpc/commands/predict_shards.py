"""Predict over a directory of HDF5 shards on many ranks (mpiexec, srun, torchrun, deepspeed).

Each rank reads its rank and world size from the launcher's environment and takes the shards
(sorted by name) i with i % world_size == rank; ranks never communicate. For each shard it writes
OUT/<shard>.h5 (the layout of `mosaic-hpc predict`'s .h5 output) and then OUT/manifest/<shard>.json,
both atomically. A rerun after a crash or requeue skips the shards whose record and output agree
and redoes the rest, at any world size. A bad input shard stops the run naming the file; with
--skip-bad it is recorded as bad in the manifest and the run goes on. SIGUSR1 stops a rank after
its current shard (exit 0: the launchers requeue). Each rank prints a progress bar and a closing
summary (galaxies, galaxies/s, bad shards). See docs/lifecycle.md.

Examples:
  mosaic-hpc shard-catalog --input catalogs/big --out catalogs/big-shards --n-shards 64
  mpiexec -n 8 mosaic-hpc predict-shards --run models/mosaic-small --input catalogs/big-shards/test \\
      --given lsst --out preds/
  MOSAIC_TASK=predict sbatch launchers/perlmutter.sh --run models/mosaic-small --input ... --given lsst --out preds/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .rank_shards import add_shard_arguments, run_rank


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run, checkpoint or model directory")
    add_shard_arguments(p)
    p.add_argument("--given", default=None, help="modalities (and selections) the model may see")


def run(args: argparse.Namespace) -> int:
    from ..data.configurations import parse_configuration
    from ..lifecycle.sharded import predict_shards

    def work(predictor, shards, on_shard, should_stop):
        given = parse_configuration(f"given={args.given}", predictor.schema) if args.given else None
        return predict_shards(predictor, shards, args.out, given, args.batch_size, args.skip_bad, on_shard, should_stop)

    return run_rank(args, args.run, "predict", work)
