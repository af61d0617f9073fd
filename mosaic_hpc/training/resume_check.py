"""Resuming continues the same run: same config and same catalog as the checkpoint, unless allowed.

The engine restores the optimizer's learning rate, betas and weight decay from the checkpoint,
so a config changed between two submissions used to be ignored in the run but written to
``config.yaml`` as if it had applied; a different catalog silently replaced the run's
normalisation. Resuming now compares the run config with the checkpoint's ``config.yaml`` and
the training split with its ``schema.json`` and ``normalization.json``, and refuses any
difference by name, unless the user allows it with ``--allow-change KEY`` (a dotted key, a whole
section such as ``train``, or ``catalog``). An allowed change really applies: the engines set the
optimizer's hyperparameters from the config after loading (``engine.apply_hyperparameters``),
and a run allowed to continue on another catalog keeps the run's normalisation, which is what
its weights were trained with.

Keys that only steer the bookkeeping of a run (:data:`FREE_ON_RESUME`: how long, how often to log
or save, logging sinks, worker threads) may change freely: extending ``train.max_steps`` is the
usual way to continue a finished run. So may the micro-batch size and accumulation when they keep
the global batch (micro-batch x accumulation x ranks) of the checkpoint, which is how a run
continues on fewer or more nodes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..config import RunConfig, config_from_dict
from ..data.normalization import NormStats
from ..schema import CatalogSchema
from .checkpoint import read_client_state
from .safe_load import CheckpointError

log = logging.getLogger("mosaic_hpc.train")

CATALOG = "catalog"
FREE_ON_RESUME: tuple[str, ...] = (
    "name",
    "train.max_steps",
    "train.wall_time_budget_s",
    "train.save_every",
    "train.keep_last",
    "train.log_every",
    "train.eval_every",
    "train.eval_batches",
    "train.compile",
    "data.num_workers",
    "data.prefetch_batches",
    "data.in_memory",
    "logging",
)
BATCH_SHAPE = ("data.micro_batch_size", "train.grad_accum_steps")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _covered(key: str, patterns: Iterable[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in patterns)


def _field_paths(cls: type = RunConfig, prefix: str = "") -> tuple[list[str], list[str]]:
    """Every section and field of the run config as a dotted path, and the fields that are mappings."""
    paths, mappings = [], []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        path, tp = prefix + f.name, hints[f.name]
        paths.append(path)
        if dataclasses.is_dataclass(tp):
            more, more_maps = _field_paths(tp, path + ".")
            paths += more
            mappings += more_maps
        elif typing.get_origin(tp) is dict:
            mappings.append(path)  # its entries are keys too: model.patch_size.sed
    return paths, mappings


def check_allowed_keys(keys: Iterable[str]) -> tuple[str, ...]:
    """Validate ``--allow-change`` values: config sections or keys, entries of mapping keys, or ``catalog``.

    Raises:
        ValueError: an unknown key, with the valid ones.
    """
    paths, mappings = _field_paths()
    keys = tuple(keys)
    for key in keys:
        if key != CATALOG and key not in paths and not any(key.startswith(m + ".") for m in mappings):
            raise ValueError(f"--allow-change {key!r}: not a config key or section, nor {CATALOG!r}; valid: {paths}")
    return keys


def _saved_config(ckpt: Path) -> dict[str, Any]:
    path = ckpt / "config.yaml"
    try:
        return config_from_dict(yaml.safe_load(path.read_text())).to_dict()
    except (OSError, yaml.YAMLError, ValueError, TypeError) as err:
        raise CheckpointError(path, f"cannot be read to compare with this run's config ({err})") from None


def _catalog_differences(ckpt: Path, schema: CatalogSchema, stats: NormStats) -> tuple[list[str], NormStats]:
    """What differs between the checkpoint's catalog and this one, and the checkpoint's statistics."""
    try:
        saved_schema = CatalogSchema.from_dict(json.loads((ckpt / "schema.json").read_text()))
        saved_stats = NormStats.from_dict(json.loads((ckpt / "normalization.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(ckpt, f"its schema.json / normalization.json cannot be read ({err})") from None
    found = []
    if saved_schema != schema:
        found.append(f"modalities {dict(saved_schema.lengths)} -> {dict(schema.lengths)}")
    changed = [
        n
        for n in saved_stats.mean
        if n not in stats.mean
        or not np.array_equal(saved_stats.mean[n], stats.mean[n])
        or not np.array_equal(saved_stats.std[n], stats.std[n])
    ]
    if changed:
        found.append(f"normalisation statistics of {', '.join(changed)}")
    return found, saved_stats


def _same_global_batch(before: Mapping[str, Any], now: Mapping[str, Any], ckpt: Path, world_size: int) -> bool:
    saved_world = int(read_client_state(ckpt).get("world_size", world_size))
    product = lambda c, w: int(c["data.micro_batch_size"]) * int(c["train.grad_accum_steps"]) * w
    return product(before, saved_world) == product(now, world_size)


def _config_changes(ckpt: Path, cfg: RunConfig, world_size: int):
    """(saved flat config, this flat config, changed keys, keys free to change) of a resume."""
    before, now = _flatten(_saved_config(ckpt)), _flatten(cfg.to_dict())
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    free = FREE_ON_RESUME + (BATCH_SHAPE if _same_global_batch(before, now, ckpt, world_size) else ())
    return before, now, changed, free


def config_differences(ckpt: Path, cfg: RunConfig, world_size: int = 1) -> list[str]:
    """The config keys a resume from ``ckpt`` would refuse, as ``key (old -> new)`` (empty: the same run)."""
    before, now, changed, free = _config_changes(ckpt, cfg, world_size)
    return [f"{k} ({before.get(k)!r} -> {now.get(k)!r})" for k in changed if not _covered(k, free)]


def check_resume(
    ckpt: Path,
    cfg: RunConfig,
    schema: CatalogSchema,
    stats: NormStats,
    allow_change: Iterable[str] = (),
    world_size: int = 1,
) -> NormStats:
    """Refuse a resume whose config or catalog differs from the checkpoint's, unless allowed.

    Args:
        ckpt: the verified checkpoint to resume from.
        cfg, schema, stats: this run's config and training split.
        allow_change: ``--allow-change`` values (checked with :func:`check_allowed_keys`).
        world_size: this run's ranks (compared with the checkpoint's for the global batch).

    Returns:
        The normalisation to train with: the checkpoint's (equal to ``stats`` unless a catalog
        change was allowed, in which case the run keeps the one its weights know).

    Raises:
        ValueError: a difference that was not allowed, naming every differing key.
    """
    allowed = check_allowed_keys(allow_change)
    before, now, changed, free = _config_changes(ckpt, cfg, world_size)
    refused = [k for k in changed if not _covered(k, free + allowed)]
    catalog, saved_stats = _catalog_differences(ckpt, schema, stats)
    problems = [f"{k} ({before.get(k)!r} -> {now.get(k)!r})" for k in refused]
    if catalog and CATALOG not in allowed:
        problems.append(f"{CATALOG}: {'; '.join(catalog)}")
    if problems:
        raise ValueError(
            f"resume from {ckpt}: this run differs from the checkpoint in {', '.join(problems)}; pass "
            f"--allow-change KEY for each change you mean (with {CATALOG!r} the run keeps its normalisation), "
            "or start a new run (--resume none, or another --out)"
        )
    applied = [f"{k} ({before.get(k)!r} -> {now.get(k)!r})" for k in changed if _covered(k, allowed)]
    if applied or catalog:
        log.warning("resuming %s with allowed changes: %s", ckpt, ", ".join(applied + catalog))
    return saved_stats
