"""What ``predict-shards`` and ``encode-shards`` share on one rank: flags, rank, device, progress, stop, summary.

Both commands run as many independent ranks under mpiexec, srun, torchrun, deepspeed or the
launchers (``MOSAIC_TASK=predict|encode``). This module holds the rank-side frame once so the two
differ only in the task they hand to :func:`..lifecycle.sharded.run_shards`:

- rank and world size come from the launcher's environment (:func:`..dist_env.read_dist_env`);
- on GPUs, rank r of a node takes ``cuda:(LOCAL_RANK % visible GPUs)``
  (:func:`..devices.choose_device`): Perlmutter's srun shows every rank the node's four GPUs,
  and without this all four ranks would share ``cuda:0``;
- SIGUSR1 (what the launchers forward before the walltime) stops the rank after the shard in
  hand, so it exits 0 and a requeued job finishes the rest; SIGTERM keeps its default (stop now:
  the shard in hand is redone on the next run);
- one progress bar per rank (shards) and one closing line per rank.
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .arguments import require_at_least

if TYPE_CHECKING:
    from ..evaluation.predictor import Predictor
    from ..lifecycle.sharded import ShardSummary

# work(predictor, my shards, on_shard, should_stop) -> the rank's summary
ShardWork = Callable[["Predictor", list[Path], Callable[[int], None], Callable[[], bool]], "ShardSummary"]


def add_shard_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of every sharded command: input and output directories, batch size, bad shards, progress."""
    p.add_argument("--input", required=True, type=Path, help="directory of catalog-layout .h5 shards")
    p.add_argument("--out", required=True, type=Path, help="output directory (one .h5 per shard + manifest/)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--skip-bad", action="store_true", help="record unreadable shards in the manifest and go on")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def rank_device(local_rank: int) -> str | None:
    """``cuda:<local_rank mod visible GPUs>``, or None (the predictor's default: CPU) without CUDA."""
    from ..devices import choose_device

    device = choose_device(local_rank=local_rank)
    return None if device.type == "cpu" else str(device)


@contextmanager
def stop_on_sigusr1() -> Iterator[Callable[[], bool]]:
    """Inside: SIGUSR1 sets a flag (returned as ``should_stop``) instead of killing the process."""
    stopped = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: stopped.set())
    try:
        yield stopped.is_set
    finally:
        signal.signal(signal.SIGUSR1, previous)


def run_rank(args: argparse.Namespace, source: Path, desc: str, work: ShardWork) -> int:
    """This rank's shards of ``args.input`` through ``work`` with the model at ``source``; prints the summary."""
    from tqdm import tqdm

    from ..dist_env import read_dist_env
    from ..evaluation.predictor import load_run
    from ..lifecycle.sharded import input_shards, shards_of_rank

    require_at_least({"--batch-size": (args.batch_size, 1)})
    env = read_dist_env()
    mine = shards_of_rank(input_shards(args.input), env.rank, env.world_size)
    # From before the model loads: a walltime signal then still ends the rank with exit 0.
    with stop_on_sigusr1() as should_stop:
        predictor = load_run(source, device=rank_device(env.local_rank))
        label = f"{desc} rank {env.rank}"
        with tqdm(total=len(mine), unit="shard", desc=label, position=env.rank, disable=args.no_progress) as bar:
            summary = work(predictor, mine, bar.update, should_stop)
    print(summary.line(env.rank), flush=True)
    return 0
