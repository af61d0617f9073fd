"""Checks of command-line values shared by the subcommands, with the one-line messages of cli.py.

A negative or zero size is never meaningful (``--batch-size -3`` used to leave the output
arrays unwritten), so every size and count is checked before any work, by its flag name.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path


def add_model_source(p: argparse.ArgumentParser) -> None:
    """``--run`` or ``--model``, exactly one: where the weights come from (``encode``, ``encode-shards``)."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="run directory or checkpoint directory")
    src.add_argument("--model", type=Path, help="model directory written by `mosaic-hpc export`")


def require_at_least(checks: Mapping[str, tuple[int | None, int]]) -> None:
    """``{"--batch-size": (value, 1), ...}``: the first value below its minimum is a ``ValueError``.

    ``None`` means the option was not given and is not checked.
    """
    for flag, (value, least) in checks.items():
        if value is not None and value < least:
            raise ValueError(f"{flag} must be >= {least}, got {value}")


def refuse_to_replace(out_dir: Path, names: Sequence[str], overwrite: bool) -> None:
    """Stop before a command replaces earlier results in ``out_dir`` unless ``--overwrite`` says so."""
    if overwrite:
        return
    present = [n for n in names if (out_dir / n).exists()]
    if present:
        raise ValueError(f"{out_dir} already holds {', '.join(present)}; pass --overwrite to replace them")


STRICT_HELP = "make the out-of-distribution warnings (values outside the training range, empty modalities) errors"
