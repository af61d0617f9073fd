"""Samples/s of the DeepSpeed engine (one rank) against the plain loop, same model, batch, machine, run.

Both engines run the package's whole training loop (``run_training``: reader, masking, forward,
loss, backward, optimizer, metrics), not a bare step, so the number is what a user gets from
``mosaic-hpc train`` versus ``mosaic_hpc/train.py --deepspeed_config``. Rounds alternate plain,
DeepSpeed, plain, DeepSpeed ... in one process, so drift of the machine (thermal, other load)
hits both alike; the reported figure per engine is the median over rounds of each run's median
logging-interval throughput (the loop's own ``throughput/samples_per_s``, warm-up excluded), and
the headline ratio is the median over rounds of DeepSpeed / the plain run just before it.

Example:
  python benchmarks/bench_engines.py --config configs/tiny.yaml --ds-config configs/zero2.json \\
      --steps 300 --rounds 3 --out runs/bench/engines.json
Without --data a mock catalog (mosaic_hpc.data.mock) of --n-galaxies is generated in a temp dir.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mosaic_hpc.bench.machine import machine_info  # noqa: E402
from mosaic_hpc.config import RunConfig, load_config, parse_override  # noqa: E402
from mosaic_hpc.dist_env import DistEnv, free_port  # noqa: E402
from mosaic_hpc.training.runner import plain_engine_factory, run_training  # noqa: E402

LOG_EVERY = 20


def _interval_median(history: list[dict[str, float]]) -> float:
    rates = [h["throughput/samples_per_s"] for h in history if "throughput/samples_per_s" in h]
    if not rates:
        raise ValueError(f"no throughput was logged: raise --steps above {2 * LOG_EVERY}")
    return statistics.median(rates)


def _one_run(cfg: RunConfig, data: Path, work: Path, factory, steps: int, tag: str, port: int) -> float:
    result = run_training(cfg, data, work / tag, DistEnv(master_port=port), factory, resume="none", max_steps=steps)
    return _interval_median(result.history)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=REPO / "configs" / "tiny.yaml")
    p.add_argument("--ds-config", type=Path, default=REPO / "configs" / "zero2.json")
    p.add_argument("--data", type=Path, default=None, help="catalog directory (default: generate a mock one)")
    p.add_argument("--n-galaxies", type=int, default=8192, help="mock catalog size when --data is not given")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps per run")
    p.add_argument("--rounds", type=int, default=3, help="plain/DeepSpeed pairs, alternating")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.steps <= 2 * LOG_EVERY or args.rounds < 1:
        p.error(f"--steps must exceed {2 * LOG_EVERY} and --rounds be >= 1")

    from mosaic_hpc.training.deepspeed_engine import deepspeed_engine_factory

    overrides = {
        "train.log_every": LOG_EVERY,
        "train.eval_every": 0,
        "train.save_every": 0,
        "train.max_steps": args.steps,
        **dict(parse_override(s) for s in args.set),
    }
    cfg = load_config(args.config, overrides)
    factories = {"plain": plain_engine_factory, "deepspeed": deepspeed_engine_factory(args.ds_config)}
    with tempfile.TemporaryDirectory(prefix="bench_engines_") as tmp:
        work = Path(tmp)
        data = args.data
        if data is None:
            from mosaic_hpc.data.mock import make_mock_catalog

            data = work / "catalog"
            make_mock_catalog(data, args.n_galaxies, seed=0, progress=False)
        per_round: dict[str, list[float]] = {name: [] for name in factories}
        port = free_port()  # one rendezvous for the process: DeepSpeed initialises torch.distributed once
        for r in range(args.rounds):
            for name, factory in factories.items():
                per_round[name].append(_one_run(cfg, data, work, factory, args.steps, f"{name}-{r}", port))
                print(f"round {r} {name:9s} {per_round[name][-1]:10.1f} samples/s", flush=True)
    medians = {name: statistics.median(v) for name, v in per_round.items()}
    # Paired: each DeepSpeed run against the plain run just before it, so load that changes
    # between rounds (a shared machine) cancels; the median over rounds is the headline ratio.
    paired = [d / p for d, p in zip(per_round["deepspeed"], per_round["plain"], strict=True)]
    result = {
        "benchmark": "engines",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": str(args.config),
        "ds_config": str(args.ds_config),
        "overrides": overrides,
        "micro_batch_size": cfg.data.micro_batch_size,
        "precision": cfg.train.precision,
        "steps": args.steps,
        "rounds": args.rounds,
        "samples_per_s": per_round,
        "median_samples_per_s": medians,
        "ratio_of_medians": medians["deepspeed"] / medians["plain"],
        "paired_ratios": paired,
        "ratio_deepspeed_over_plain": statistics.median(paired),
    }
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
