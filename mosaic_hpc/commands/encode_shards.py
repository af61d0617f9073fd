"""Embeddings of a directory of HDF5 shards on many ranks (mpiexec, srun, torchrun, deepspeed).

The multi-rank form of `mosaic-hpc encode`, with the shard rule, manifest and restart behaviour
of `predict-shards`: shard i (sorted by name) belongs to rank i % world_size; each rank writes
OUT/<shard>.h5 (encode's layout: /embeddings/<modality>, /pooled, /row = row of the shard file)
and then OUT/manifest/<shard>.json, both atomically. A rerun skips the finished shards and redoes
the rest, at any world size; a bad input shard stops the run naming the file, or with --skip-bad
is recorded as bad and skipped. SIGUSR1 stops a rank after its current shard (exit 0: the
launchers requeue). Each rank prints a progress bar and a closing summary. See docs/lifecycle.md.

Examples:
  mpiexec -n 8 mosaic-hpc encode-shards --model models/mosaic-small --input catalogs/big-shards/test \\
      --given lsst --out emb/
  MOSAIC_TASK=encode sbatch launchers/perlmutter.sh --model models/mosaic-small --input ... --given lsst --out emb/
"""

from __future__ import annotations

import argparse

from .arguments import add_model_source, require_at_least
from .rank_shards import add_shard_arguments, run_rank


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_source(p)
    add_shard_arguments(p)
    p.add_argument("--given", required=True, metavar="SPEC", help='values the model sees, e.g. "lsst" or "lsst,sfh"')
    p.add_argument("--chunk-rows", type=int, default=8192, help="galaxies per read/write chunk (default: 8192)")


def run(args: argparse.Namespace) -> int:
    from ..data.configurations import parse_configuration
    from ..lifecycle.encode import encode_shards

    require_at_least({"--chunk-rows": (args.chunk_rows, 1)})
    source = args.run or args.model

    def work(predictor, shards, on_shard, should_stop):
        configuration = parse_configuration(args.given, predictor.schema)
        return encode_shards(
            predictor,
            shards,
            args.out,
            configuration,
            chunk_rows=args.chunk_rows,
            batch_size=args.batch_size,
            skip_bad=args.skip_bad,
            on_shard=on_shard,
            should_stop=should_stop,
            attrs={"model": str(source)},
        )

    return run_rank(args, source, "encode", work)
