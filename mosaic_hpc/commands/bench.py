"""Benchmarks: measured numbers as JSON plus a printed table (never pass/fail timings).

  mosaic-hpc bench throughput  samples/s, TFLOP/s, MFU, memory over configs and batch sizes
  mosaic-hpc bench dataloader  raw h5py vs reader vs reader + masking, 1 and 2 MPI ranks
  mosaic-hpc bench scaling     weak and strong scaling over 1..N ranks
  mosaic-hpc bench predict     prediction galaxies/s per rank vs the bare model forward

Run ``mosaic-hpc bench KIND --help`` for each benchmark's options.
"""

from __future__ import annotations

import argparse
import importlib

KINDS = {
    "throughput": "mosaic_hpc.bench.throughput",
    "dataloader": "mosaic_hpc.bench.dataloader",
    "scaling": "mosaic_hpc.bench.scaling",
    "predict": "mosaic_hpc.bench.predict",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, module_name in KINDS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(kind, help=module.__doc__.splitlines()[0], description=module.__doc__)
        module.add_arguments(sp)


def run(args: argparse.Namespace) -> int:
    return int(importlib.import_module(KINDS[args.kind]).run(args) or 0)
