"""Train MOSAIC in one process (CPU or one GPU) with the plain PyTorch engine.

--init-from RUN starts from another run's weights with a fresh optimizer (fine-tuning); the
catalog must have the same modalities as RUN's and the config the same model section.

For several GPUs or nodes use ``deepspeed mosaic_hpc/train.py --deepspeed_config ...`` or the
launchers in launchers/. Resumes from RUN/checkpoints/latest unless --resume none.

Threads (--threads 0, the default): the cores idle right now, as `mosaic-hpc quickstart` does
(mosaic_hpc.cpu_load): PyTorch's OpenMP threads spin at every barrier, so taking every core of a
machine that other jobs also use runs 3-5x slower per step than taking the idle ones.

Presets fit any catalog: settings for modalities the catalog lacks (the mock's spherex, sfh, sed
in configs/tiny.yaml) are dropped with one info line, so `--config tiny` trains on a table of
magnitudes and redshifts as it does on the mock. Training validates on the catalog's val split.

Example:
  mosaic-hpc train --config tiny --data catalogs/mock --out runs/tiny --max-steps 200
  mosaic-hpc train --config configs/small.yaml --data catalogs/mine --out runs/mine
  mosaic-hpc train --config tiny --data catalogs/survey --out runs/ft --init-from runs/tiny
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..train import EXIT_NONFINITE, add_trainer_arguments, run_config
from .arguments import require_at_least


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_trainer_arguments(p)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for PyTorch (default 0: the idle cores)")


def set_threads(requested: int) -> int:
    """Give PyTorch ``requested`` threads, or the idle cores for 0; logs the choice once."""
    import torch

    from ..cpu_load import choose_threads

    threads = choose_threads(requested)
    torch.set_num_threads(threads)
    logging.getLogger("mosaic_hpc.train").info(
        "%d CPU thread(s) for PyTorch (%s)", threads, "--threads" if requested else "idle cores"
    )
    return threads


def run(args: argparse.Namespace) -> int:
    from ..training.loop import NonFiniteLossError
    from ..training.runner import run_training

    require_at_least({"--max-steps": (args.max_steps, 1), "--threads": (args.threads, 0)})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = run_config(args)
    set_threads(args.threads)
    try:
        result = run_training(
            cfg,
            args.data,
            args.out,
            resume=args.resume,
            max_steps=args.max_steps,
            init_from=args.init_from,
            allow_change=tuple(args.allow_change),
        )
    except NonFiniteLossError as err:  # the exit code of mosaic_hpc/train.py (docs/hpc.md)
        print(f"mosaic-hpc train: error: non-finite training state: {err}", file=sys.stderr)
        return EXIT_NONFINITE
    print(f"trained {result.steps} steps; checkpoint: {result.last_checkpoint}")
    return 0
