"""Predict over a directory of HDF5 shards on many ranks (mpiexec, srun, torchrun, deepspeed).

Each rank reads its rank and world size from the launcher's environment and takes the shards
(sorted by name) i with i % world_size == rank; ranks never communicate. For each shard it writes
OUT/<shard>.h5 (the layout of `mosaic-hpc predict`'s .h5 output) and then OUT/manifest/<shard>.json,
both atomically. A rerun after a crash or requeue skips the shards whose record and output agree
and redoes the rest, at any world size. A bad input shard stops the run naming the file; with
--skip-bad it is recorded as bad in the manifest and the run goes on. Each rank prints a progress
bar and a closing summary (galaxies, galaxies/s, bad shards). See docs/lifecycle.md.

Examples:
  mosaic-hpc shard-catalog --input catalogs/big --out catalogs/big-shards --n-shards 64
  mpiexec -n 8 mosaic-hpc predict-shards --run models/mosaic-small --input catalogs/big-shards/test \\
      --given lsst --out preds/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import require_at_least


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run, checkpoint or model directory")
    p.add_argument("--input", required=True, type=Path, help="directory of catalog-layout .h5 shards")
    p.add_argument("--out", required=True, type=Path, help="output directory (one .h5 per shard + manifest/)")
    p.add_argument("--given", default=None, help="modalities (and selections) the model may see")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--skip-bad", action="store_true", help="record unreadable shards in the manifest and go on")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.configurations import parse_configuration
    from ..dist_env import read_dist_env
    from ..evaluation.predictor import load_run
    from ..lifecycle.sharded import input_shards, predict_shards, shards_of_rank

    require_at_least({"--batch-size": (args.batch_size, 1)})
    env = read_dist_env()
    mine = shards_of_rank(input_shards(args.input), env.rank, env.world_size)
    predictor = load_run(args.run)
    given = parse_configuration(f"given={args.given}", predictor.schema) if args.given else None
    args.out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(mine), unit="shard", desc=f"rank {env.rank}", position=env.rank, disable=args.no_progress)
    with bar:
        summary = predict_shards(predictor, mine, args.out, given, args.batch_size, args.skip_bad, bar.update)
    print(summary.line(env.rank), flush=True)
    return 0
