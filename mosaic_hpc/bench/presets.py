"""The run config a benchmark measures: a preset name or a YAML path, plus dotted-key overrides.

Kept apart so the benchmarks resolve configs exactly as ``mosaic-hpc train`` does (the one
resolver in ``config.py``) and a bad name fails before any measurement.
"""

from __future__ import annotations

from typing import Any


def load_bench_config(name_or_path: str, overrides: dict[str, Any] | None = None):
    """The run config of a preset or file, with dotted-key overrides (e.g. ``data.micro_batch_size``)."""
    from ..config import load_config, resolve_config

    return load_config(resolve_config(name_or_path), overrides)
