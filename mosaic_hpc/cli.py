"""The ``mosaic-hpc`` command: one console script, one subcommand per module.

Each entry of ``COMMANDS`` names a module exposing ``add_arguments(parser)`` and ``run(args) ->
int``, plus a one-line summary; the module's docstring is the subcommand's help text. Modules are
imported only when their subcommand runs, so ``mosaic-hpc --help`` does not import torch,
DeepSpeed or mpi4py. ``ValueError`` (bad input) becomes a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "make-catalog": ("mosaic_hpc.commands.make_catalog", "generate a mock galaxy catalog (HDF5)"),
    "import-catalog": ("mosaic_hpc.commands.import_catalog", "import HDF5, Parquet or CSV columns via a YAML mapping"),
    "check-catalog": ("mosaic_hpc.commands.check_catalog", "validate a catalog file or directory and summarise it"),
    "shard-catalog": ("mosaic_hpc.commands.shard_catalog", "split a catalog into N shard files with the same layout"),
    "train": ("mosaic_hpc.commands.train", "train MOSAIC in one process (CPU or one GPU)"),
    "evaluate": ("mosaic_hpc.commands.evaluate", "Table 1 metrics for the paper's and user input configurations"),
    "predict": (
        "mosaic_hpc.commands.predict",
        "predict every modality from a subset (catalog or table in, HDF5/Parquet/CSV out)",
    ),
    "export": ("mosaic_hpc.commands.export", "write a run's checkpoint as a self-contained model directory"),
    "encode": ("mosaic_hpc.commands.encode", "per-modality and pooled embeddings of a catalog split (HDF5)"),
    "predict-shards": (
        "mosaic_hpc.commands.predict_shards",
        "multi-rank, restartable predict over a directory of shards",
    ),
    "encode-shards": (
        "mosaic_hpc.commands.encode_shards",
        "multi-rank, restartable encode over a directory of shards",
    ),
    "bench": ("mosaic_hpc.commands.bench", "throughput, data loader and scaling benchmarks"),
    "embed": ("mosaic_hpc.commands.embed", "UMAP of the hidden states per input configuration (paper Fig. 3)"),
    "quickstart": ("mosaic_hpc.commands.quickstart", "mock catalog, train, evaluate, embed and report in one go"),
}


def _load(name: str):
    module_name, _ = COMMANDS[name]
    return importlib.import_module(module_name)


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    """Top-level parser; only the module of ``load`` (the subcommand being run) is imported."""
    parser = argparse.ArgumentParser(
        prog="mosaic-hpc",
        description="MOSAIC: multi-modal foundation models of galaxies on HPC systems.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, summary) in COMMANDS.items():
        if name == load:
            module = _load(name)
            p = sub.add_parser(
                name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
            )
            module.add_arguments(p)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        print(f"mosaic-hpc: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    parser = build_parser(load=command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(_load(args.command).run(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"mosaic-hpc {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mosaic-hpc {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
