"""Fit a preset to the catalog it trains on: per-modality settings for absent modalities go.

The shipped presets name the modalities of the mock catalog (``tiny`` and ``small`` patch
``spherex``, ``sfh`` and ``sed``; ``photoz_dc2`` weights the masking of ``lsst_err``). A user's
table of redshifts and magnitudes has none of them, and a setting for a modality that is not
there has nothing to act on, so it is dropped, with one info line naming what went, instead of
stopping the run: every preset then trains on any schema. The fitted config is the one saved in
the run directory and its checkpoints, so a run reloads without its preset or catalog.

Settings for modalities the catalog has are never changed, and a typo in a modality name still
drops only that entry (the info line shows it), so check the line when a setting seems ignored.
"""

from __future__ import annotations

import dataclasses
import logging

from ..config import RunConfig
from ..schema import CatalogSchema

log = logging.getLogger("mosaic_hpc.train")

# (section, key) of every config field that is a mapping modality name -> setting
PER_MODALITY_KEYS: tuple[tuple[str, str], ...] = (
    ("model", "patch_size"),
    ("masking", "p_modality_overrides"),
    ("train", "loss_weights"),
)


def fit_config_to_schema(cfg: RunConfig, schema: CatalogSchema) -> tuple[RunConfig, dict[str, list[str]]]:
    """``cfg`` without per-modality settings for modalities ``schema`` lacks.

    Returns:
        The fitted config, and per dotted key (e.g. ``model.patch_size``) the dropped modality
        names (empty when nothing was dropped).
    """
    dropped: dict[str, list[str]] = {}
    for section_name, key in PER_MODALITY_KEYS:
        section = getattr(cfg, section_name)
        settings: dict = getattr(section, key)
        absent = sorted(n for n in settings if n not in schema)
        if absent:
            dropped[f"{section_name}.{key}"] = absent
            kept = {n: v for n, v in settings.items() if n in schema}
            cfg = dataclasses.replace(cfg, **{section_name: dataclasses.replace(section, **{key: kept})})
    return cfg, dropped


def fit_and_report(cfg: RunConfig, schema: CatalogSchema) -> RunConfig:
    """:func:`fit_config_to_schema`, with one info line when something was dropped."""
    cfg, dropped = fit_config_to_schema(cfg, schema)
    if dropped:
        what = "; ".join(f"{key}[{', '.join(names)}]" for key, names in dropped.items())
        log.info(
            "config %s: dropped settings for modalities not in this catalog %s: %s", cfg.name, list(schema.names), what
        )
    return cfg
