"""Atomic checkpoints with a ``latest`` pointer and retention of the last K.

Layout: ``RUN/checkpoints/step_00001000/`` holding the engine's files, a full-precision
``model.pt`` (state dict, loadable with ``torch.load(weights_only=True)``), ``client_state.json``
(step, data position, world size), ``config.yaml``, ``schema.json`` and ``normalization.json``,
so a checkpoint alone is enough to predict. Every rank writes into ``.tmp-<tag>``; after a barrier
rank 0 renames it into place and only then rewrites ``latest`` (itself replaced atomically) and
deletes checkpoints beyond ``keep_last``. A crash mid-save leaves the previous checkpoint and
pointer untouched; a stale ``.tmp-*`` is ignored and cleaned on the next save.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import RunConfig, save_config
from ..data.normalization import NormStats
from ..schema import CatalogSchema

LATEST = "latest"
CLIENT_STATE = "client_state.json"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_client_state(ckpt_dir: Path) -> dict[str, Any]:
    path = ckpt_dir / CLIENT_STATE
    if not path.is_file():
        raise ValueError(f"{ckpt_dir}: not a complete checkpoint ({CLIENT_STATE} missing)")
    return json.loads(path.read_text())


def write_run_metadata(target_dir: Path, config: RunConfig, schema: CatalogSchema, stats: NormStats) -> None:
    """What a run needs besides weights to be used for prediction without its catalog."""
    target_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, target_dir / "config.yaml")
    _write_atomic(target_dir / "schema.json", json.dumps(schema.to_dict()))
    _write_atomic(target_dir / "normalization.json", json.dumps(stats.to_dict()))


class CheckpointManager:
    """Saves and finds checkpoints of one run directory.

    Args:
        run_dir: the run directory (``checkpoints/`` is created inside).
        keep_last: complete checkpoints kept; older ones are deleted after a newer one lands.
        is_main: rank 0 renames, writes the pointer and prunes.
        barrier: synchronises ranks (identity in one process).
    """

    def __init__(
        self, run_dir: Path, keep_last: int = 3, is_main: bool = True, barrier: Callable[[], None] = lambda: None
    ) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last
        self.is_main = is_main
        self.barrier = barrier

    def latest(self) -> Path | None:
        pointer = self.root / LATEST
        if not pointer.is_file():
            return None
        ckpt = self.root / pointer.read_text().strip()
        if not (ckpt / CLIENT_STATE).is_file():
            raise ValueError(f"{pointer} points to {ckpt.name}, which is not a complete checkpoint")
        return ckpt

    def resolve(self, resume: str) -> Path | None:
        """``auto``: latest if any; ``none``: start fresh; otherwise a checkpoint directory path."""
        if resume == "none":
            return None
        if resume == "auto":
            return self.latest()
        path = Path(resume)
        if not (path / CLIENT_STATE).is_file():
            raise ValueError(f"--resume {resume}: not a complete checkpoint directory ({CLIENT_STATE} missing)")
        return path

    def save(
        self,
        engine,
        step: int,
        client_state: dict[str, Any],
        config: RunConfig,
        schema: CatalogSchema,
        stats: NormStats,
    ) -> Path:
        tag = f"step_{step:08d}"
        final, tmp = self.root / tag, self.root / f".tmp-{tag}"
        if self.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        self.barrier()
        engine.save(tmp, client_state)
        self.barrier()
        if self.is_main:
            write_run_metadata(tmp, config, schema, stats)
            _write_atomic(tmp / CLIENT_STATE, json.dumps(client_state, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _write_atomic(self.root / LATEST, tag)
            self._prune(keep=tag)
        self.barrier()
        return final

    def _prune(self, keep: str) -> None:
        done = sorted(p for p in self.root.glob("step_*") if p.is_dir() and (p / CLIENT_STATE).is_file())
        for old in done[: -self.keep_last]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)
        for stale in self.root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
