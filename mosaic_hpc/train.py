"""Train MOSAIC under any launcher: ``deepspeed``, ``torchrun``, ``srun``, ``mpiexec`` or none.

Examples:
  deepspeed --num_gpus 4 mosaic_hpc/train.py --deepspeed_config configs/zero2.json \\
      --config configs/tiny.yaml --data catalogs/mock --out runs/tiny
  srun -n 8 python mosaic_hpc/train.py --deepspeed_config configs/zero3.json --config ... --data ... --out ...
  python mosaic_hpc/train.py --config configs/tiny.yaml --data ... --out ...   (one process, plain engine)

Rank, world size, local rank and master address come from the launcher's environment
(mosaic_hpc.dist_env). Without --deepspeed_config a one-process run uses the plain engine.

Exit codes (the requeue protocol of launchers/common.sh and docs/hpc.md):
  0  finished, or stopped cleanly by SIGTERM/SIGUSR1 or train.wall_time_budget_s after saving a
     checkpoint; a wall-time-budget stop also writes RUN/REQUEUE to ask the launcher to continue
  2  bad input (config, DeepSpeed JSON, data, launcher environment): one line on stderr
  3  the loss, the gradients or the weights became NaN/inf: training stopped, the last good
     checkpoint is untouched
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (`deepspeed mosaic_hpc/train.py`): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mosaic_hpc.config import RunConfig, load_config, parse_override, resolve_config, resolve_deepspeed_config
from mosaic_hpc.dist_env import DistEnv, read_dist_env

PROG = "mosaic_hpc/train.py"
ALLOW_CHANGE_HELP = (
    "resume although KEY (a config key or section, or 'catalog') differs from the checkpoint's (repeatable)"
)
EXIT_BAD_INPUT = 2
EXIT_NONFINITE = 3
REQUEUE_FILE = "REQUEUE"


def add_trainer_arguments(p: argparse.ArgumentParser) -> None:
    """The trainer's options, shared by this launcher entry point and ``mosaic-hpc train``: one meaning for both."""
    p.add_argument("--config", required=True, help="run config YAML, or a preset name: tiny, small, base, ...")
    p.add_argument(
        "--data", required=True, type=Path, help="catalog directory (train.h5, val.h5, test.h5 or shard dirs)"
    )
    p.add_argument("--out", required=True, type=Path, help="run directory (created)")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="steps to train: sets train.max_steps, so the LR schedule follows (= --set train.max_steps=K)",
    )
    p.add_argument("--resume", default="auto", help="auto (latest checkpoint if any), none, or a checkpoint dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument(
        "--init-from", type=Path, default=None, metavar="RUN", help="start from RUN's weights, fresh optimizer"
    )
    p.add_argument("--allow-change", action="append", default=[], metavar="KEY", help=ALLOW_CHANGE_HELP)


def run_config(args: argparse.Namespace) -> RunConfig:
    """The run config the trainer's options name: --config (file or preset) with the --set overrides."""
    return load_config(resolve_config(args.config), dict(parse_override(s) for s in args.set))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_trainer_arguments(p)
    p.add_argument(
        "--deepspeed_config",
        "--deepspeed-config",
        type=Path,
        default=None,
        help="DeepSpeed JSON (configs/zero{1,2,3}.json); without it: the plain engine, one process only",
    )
    # The deepspeed launcher appends --local_rank=N; the value comes from the environment anyway.
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    return p


def _setup_logging(env: DistEnv) -> None:
    level = logging.INFO if env.is_main else logging.WARNING  # one copy of each message, not one per rank
    logging.basicConfig(level=level, format=f"%(asctime)s [rank {env.rank}] %(name)s: %(message)s", force=True)


def _fail(msg: str, code: int) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        env = read_dist_env()
    except ValueError as err:
        return _fail(f"inconsistent launcher environment: {err}", EXIT_BAD_INPUT)
    _setup_logging(env)
    try:
        cfg = run_config(args)
        if args.max_steps is not None and args.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {args.max_steps}")
        if args.deepspeed_config is None:
            from mosaic_hpc.training.runner import plain_engine_factory

            factory = plain_engine_factory  # refuses world size > 1 with a clear message
        else:
            from mosaic_hpc.training.deepspeed_engine import deepspeed_engine_factory

            ds_config = resolve_deepspeed_config(args.deepspeed_config)
            # Deferred: DeepSpeed is initialised once the runner knows what it resumes from.
            factory = deepspeed_engine_factory(ds_config, yaml_source=str(args.config), defer_initialize=True)
        return _train(args, cfg, env, factory)
    except (ValueError, FileNotFoundError) as err:
        return _fail(str(err), EXIT_BAD_INPUT)


def _train(args: argparse.Namespace, cfg, env: DistEnv, factory) -> int:
    from mosaic_hpc.training.loop import NonFiniteLossError
    from mosaic_hpc.training.runner import run_training

    sinks = []
    if cfg.logging.wandb and env.is_main:
        from mosaic_hpc.training.wandb_sink import WandbSink

        sinks.append(WandbSink(cfg, args.out))
    requeue = args.out / REQUEUE_FILE
    try:
        result = run_training(
            cfg,
            args.data,
            args.out,
            env,
            factory,
            resume=args.resume,
            max_steps=args.max_steps,
            extra_sinks=sinks,
            init_from=args.init_from,
            allow_change=tuple(args.allow_change),
        )
    except NonFiniteLossError as err:
        return _fail(f"non-finite training state: {err}", EXIT_NONFINITE)
    if env.is_main:
        if result.reason == "wall-time budget reached":
            requeue.write_text(f"stopped at step {result.steps}: {result.reason}\n")
        print(f"trained {result.steps} steps ({result.reason or 'completed'}); checkpoint: {result.last_checkpoint}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
