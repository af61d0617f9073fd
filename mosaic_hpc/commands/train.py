"""Train MOSAIC in one process (CPU or one GPU) with the plain PyTorch engine.

--init-from RUN starts from another run's weights with a fresh optimizer (fine-tuning); the
catalog must have the same modalities as RUN's and the config the same model section.

For several GPUs or nodes use ``deepspeed mosaic_hpc/train.py --deepspeed_config ...`` or the
launchers in launchers/. Resumes from RUN/checkpoints/latest unless --resume none.

Example:
  mosaic-hpc train --config configs/tiny.yaml --data catalogs/mock --out runs/tiny --max-steps 200
  mosaic-hpc train --config configs/tiny.yaml --data catalogs/survey --out runs/ft --init-from runs/tiny
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, type=Path, help="run config YAML (see configs/)")
    p.add_argument("--data", required=True, type=Path, help="catalog directory (train.h5/test.h5 or shard dirs)")
    p.add_argument("--out", required=True, type=Path, help="run directory (created)")
    p.add_argument("--max-steps", type=int, default=None, help="override train.max_steps")
    p.add_argument("--resume", default="auto", help="auto (latest checkpoint if any), none, or a checkpoint dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument(
        "--init-from", type=Path, default=None, metavar="RUN", help="start from RUN's weights, fresh optimizer"
    )


def run(args: argparse.Namespace) -> int:
    from ..config import load_config, parse_override
    from ..training.runner import run_training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = load_config(args.config, dict(parse_override(s) for s in args.set))
    result = run_training(
        cfg, args.data, args.out, resume=args.resume, max_steps=args.max_steps, init_from=args.init_from
    )
    print(f"trained {result.steps} steps; checkpoint: {result.last_checkpoint}")
    return 0
