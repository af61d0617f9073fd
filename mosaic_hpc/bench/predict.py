"""Prediction throughput per rank: the whole predict path vs the bare model forward on the same batches.

The ratio (bare forward galaxies/s / predict galaxies/s) is what the pipeline around the model
costs: building normalised batches from physical inputs, input checks, the host-device copies
and denormalising every output. Each rank measures on its own (ranks do not communicate) and
writes RANK's numbers to --out (one JSON per rank: OUT.rankN.json when world_size > 1).
Numbers are measurements, never pass/fail.

Example:
  mosaic-hpc bench predict --run models/mosaic-small --data catalogs/mine --given lsst --n 20000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run, checkpoint or model directory")
    p.add_argument("--data", required=True, type=Path, help="catalog directory or file")
    p.add_argument("--split", default="test", help="split to read (default: test)")
    p.add_argument("--given", default="lsst", help="input configuration (default: lsst)")
    p.add_argument("--n", type=int, default=10000, help="galaxies, the first N of the split (default: 10000)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3, help="timed passes; the best is kept (default: 3)")
    p.add_argument("--out", type=Path, default=Path("bench_predict.json"), help="JSON result (default: %(default)s)")


def _best_seconds(fn, repeats: int, device) -> float:
    from .devices import synchronize

    fn()  # warm-up: allocator, kernels, caches
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


def measure(predictor, inputs, given, batch_size: int, repeats: int) -> dict[str, float]:
    """galaxies/s of ``predictor.predict`` and of the bare forward on the same pre-built batches."""
    n = next(iter(inputs.values())).shape[0]
    batches = [b.to_torch(predictor.device) for _, b in predictor.batches(inputs, given, batch_size=batch_size)]

    def bare() -> None:
        import torch

        with torch.no_grad():
            for b in batches:
                predictor.model(b.targets, b.hidden, b.absent)

    t_predict = _best_seconds(
        lambda: predictor.predict(inputs, given=given, batch_size=batch_size), repeats, predictor.device
    )
    t_bare = _best_seconds(bare, repeats, predictor.device)
    return {
        "galaxies": n,
        "predict_galaxies_per_s": n / t_predict,
        "forward_galaxies_per_s": n / t_bare,
        "forward_over_predict": t_predict / t_bare,
    }


def run(args: argparse.Namespace) -> int:
    from ..commands.arguments import require_at_least
    from ..data.catalog import Catalog
    from ..data.configurations import parse_configuration
    from ..dist_env import read_dist_env
    from ..evaluation.predictor import load_run
    from .machine import machine_info

    require_at_least({"--n": (args.n, 1), "--batch-size": (args.batch_size, 1), "--repeats": (args.repeats, 1)})
    env = read_dist_env()
    predictor = load_run(args.run)
    given = parse_configuration(f"given={args.given}", predictor.schema)
    catalog = Catalog.open(args.data, args.split)
    inputs = catalog.read(0, min(args.n, catalog.n_rows))
    result = {"rank": env.rank, "world_size": env.world_size, "given": given.spec, "batch_size": args.batch_size}
    result.update(measure(predictor, inputs, given, args.batch_size, args.repeats))
    result["machine"] = machine_info()
    out = args.out if env.world_size == 1 else args.out.with_suffix(f".rank{env.rank}.json")
    out.write_text(json.dumps(result, indent=1))
    print(
        f"rank {env.rank}: predict {result['predict_galaxies_per_s']:.3g} galaxies/s, bare forward "
        f"{result['forward_galaxies_per_s']:.3g} galaxies/s (x{result['forward_over_predict']:.2f}) -> {out}"
    )
    return 0
