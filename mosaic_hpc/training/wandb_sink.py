"""Weights & Biases metrics sink (rank 0 only); the only module that imports wandb.

Compute nodes on HPC systems usually have no internet access, so the sink runs offline unless
told otherwise: the run lands in ``RUN/wandb/offline-run-*`` and is uploaded later with
``wandb sync RUN/wandb/offline-run-*``. The W&B run id is kept in ``RUN/wandb_id.txt`` so a
requeued job continues the same W&B run instead of starting a new one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import LoggingConfig, RunConfig

MODES = ("online", "offline", "disabled")
DEFAULT_PROJECT = LoggingConfig().wandb_project


def resolve_mode(configured: str, environ: Mapping[str, str] | None = None) -> str:
    """``logging.wandb_mode`` if set, else ``WANDB_MODE``, else offline without ``WANDB_API_KEY``.

    Raises:
        ValueError: an unknown mode.
    """
    environ = os.environ if environ is None else environ
    mode = configured or environ.get("WANDB_MODE", "") or ("online" if environ.get("WANDB_API_KEY") else "offline")
    if mode == "dryrun":  # wandb's legacy name for offline
        mode = "offline"
    if mode not in MODES:
        raise ValueError(f"logging.wandb_mode / WANDB_MODE must be one of {MODES}, got {mode!r}")
    return mode


def resolve_settings(cfg: RunConfig, environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Mode, project, entity and group for ``wandb.init``.

    Config ``logging.*`` first; WANDB_PROJECT / WANDB_ENTITY / WANDB_RUN_GROUP fill what it
    leaves at its default (the default project ``mosaic-hpc`` counts as not set, so a site-wide
    WANDB_PROJECT applies to runs that do not name one).
    """
    environ = os.environ if environ is None else environ
    lc = cfg.logging
    project = lc.wandb_project
    if project == DEFAULT_PROJECT:
        project = environ.get("WANDB_PROJECT") or project
    return {
        "mode": resolve_mode(lc.wandb_mode, environ),
        "project": project,
        "entity": lc.wandb_entity or environ.get("WANDB_ENTITY") or None,
        "group": lc.wandb_group or environ.get("WANDB_RUN_GROUP") or None,
    }


class WandbSink:
    """Logs each metric record as one W&B history row at its training step.

    Args:
        cfg: run config (``logging.*`` and the config saved with the run).
        run_dir: run directory; W&B files go to ``run_dir/wandb``.
    """

    def __init__(self, cfg: RunConfig, run_dir: Path) -> None:
        import wandb

        settings = resolve_settings(cfg)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        id_path = run_dir / "wandb_id.txt"
        run_id = id_path.read_text().strip() if id_path.is_file() else uuid.uuid4().hex[:12]
        id_path.write_text(run_id)
        self.mode = settings["mode"]
        self._run = wandb.init(
            project=settings["project"],
            entity=settings["entity"],
            group=settings["group"],
            name=cfg.name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            mode=self.mode,
            config=cfg.to_dict(),
        )
        self.run_path = Path(self._run.dir).parent if self._run is not None and self._run.dir else None

    def log(self, record: dict[str, Any]) -> None:
        data = {k: v for k, v in record.items() if k != "step"}
        self._run.log(data, step=int(record["step"]))

    def close(self) -> None:
        self._run.finish()
