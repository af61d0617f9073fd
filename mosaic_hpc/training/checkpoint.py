"""Atomic, verified checkpoints with a ``latest`` pointer and retention of the last K.

Layout: ``RUN/checkpoints/step_00001000/`` holding the engine's files, a full-precision
``model.pt`` (state dict, loadable with ``torch.load(weights_only=True)``), ``client_state.json``
(step, data position, world size), ``config.yaml``, ``schema.json``, ``normalization.json`` and
``manifest.json`` (size and SHA-256 of every other file, see :mod:`.integrity`), so a checkpoint
alone is enough to predict. Every rank writes into ``.tmp-<tag>``; after a barrier rank 0 writes
the manifest (reading back and fsyncing every file), renames the directory into place, fsyncs
the parent and only then rewrites ``latest`` (itself replaced atomically) and deletes
checkpoints beyond ``keep_last``. A crash mid-save leaves the previous checkpoint and pointer
untouched; a stale ``.tmp-*`` is ignored and cleaned on the next save.

Resuming trusts nothing on disk: ``latest`` must name a checkpoint of this directory, and the
checkpoint must pass :func:`.integrity.verify_checkpoint`. With ``--resume auto`` a damaged
checkpoint is set aside (renamed ``.damaged-<tag>``, never deleted) and the next older intact one
is used, with a warning naming the damaged file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunConfig, save_config
from ..data.normalization import NormStats
from ..schema import CatalogSchema
from .integrity import INFERENCE_FILES, fsync_dir, verify_checkpoint, write_atomic, write_manifest
from .safe_load import CheckpointError, SafeGlobals

if TYPE_CHECKING:  # for the annotation only: the engines import this module (read_client_state)
    from .engine import Engine

log = logging.getLogger("mosaic_hpc.train")

LATEST = "latest"
CLIENT_STATE = "client_state.json"
TAG_RE = re.compile(r"^step_(\d{8,})$")
DAMAGED_PREFIX = ".damaged-"
REPLACED_PREFIX = ".replaced-"


def read_client_state(ckpt_dir: Path) -> dict[str, Any]:
    path = Path(ckpt_dir) / CLIENT_STATE
    if not path.is_file():
        raise CheckpointError(ckpt_dir, f"not a complete checkpoint ({CLIENT_STATE} missing)")
    try:
        state = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(path, f"not valid JSON ({err})") from None
    if not isinstance(state, dict):
        raise CheckpointError(path, "must hold a JSON object")
    return state


def write_run_metadata(target_dir: Path, config: RunConfig, schema: CatalogSchema, stats: NormStats) -> None:
    """What a run needs besides weights to be used for prediction without its catalog."""
    target_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, target_dir / "config.yaml")
    write_atomic(target_dir / "schema.json", json.dumps(schema.to_dict()))
    write_atomic(target_dir / "normalization.json", json.dumps(stats.to_dict()))


def _same(flag: bool) -> bool:
    return flag


def _no_op() -> None:
    return None


@dataclass(frozen=True)
class Ranks:
    """This process among the ranks that write and read one checkpoint, and the collectives needed.

    Attributes:
        rank, world_size: this rank and the number of ranks.
        barrier: synchronises the ranks (nothing in one process).
        any_rank: True on every rank when any rank passes True (an all-reduce of a flag), so
            that all ranks take the same decision about a checkpoint one of them found damaged.
    """

    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = _no_op
    any_rank: Callable[[bool], bool] = _same

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def checkpoint_step(ckpt_dir: Path) -> int:
    """The step a checkpoint directory was written at, from its name."""
    found = TAG_RE.match(Path(ckpt_dir).name)
    return int(found.group(1)) if found else -1


class CheckpointManager:
    """Saves, finds and verifies checkpoints of one run directory.

    Args:
        run_dir: the run directory (``checkpoints/`` is created inside).
        keep_last: complete checkpoints kept; older ones are deleted after a newer one lands.
        ranks: this rank's place and collectives; rank 0 renames, writes the pointer and prunes.
    """

    def __init__(self, run_dir: Path, keep_last: int = 3, ranks: Ranks = Ranks()) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last
        self.ranks = ranks

    # -------------------------------------------------------------------------------- finding

    def pointer(self) -> str | None:
        """The tag ``latest`` names, checked to be a checkpoint name of this directory."""
        path = self.root / LATEST
        if not path.is_file():
            return None
        tag = path.read_text().strip()
        if not TAG_RE.match(tag):
            raise CheckpointError(
                path, f"holds {tag[:80]!r}, not the name of a checkpoint in this directory (step_NNNNNNNN)"
            )
        return tag

    def latest(self) -> Path | None:
        """The checkpoint ``latest`` points to (complete), or None before the first save."""
        tag = self.pointer()
        if tag is None:
            return None
        ckpt = self.root / tag
        if not (ckpt / CLIENT_STATE).is_file():
            raise CheckpointError(self.root / LATEST, f"points to {tag}, which is not a complete checkpoint")
        return ckpt

    def complete(self) -> list[Path]:
        """Complete checkpoints (``client_state.json`` written last, so present means complete), oldest first."""
        if not self.root.is_dir():
            return []
        done = [p for p in self.root.iterdir() if TAG_RE.match(p.name) and (p / CLIENT_STATE).is_file()]
        return sorted(done, key=checkpoint_step)

    def _candidates(self) -> list[Path]:
        """What ``--resume auto`` may use, best first: the pointer's target, then newest first."""
        tag = self.pointer()
        others = self.complete()[::-1]
        first = [c for c in others if c.name == tag]
        if tag is not None and not first:
            log.warning(
                "%s names %s, which is missing or incomplete; trying older checkpoints", self.root / LATEST, tag
            )
        return first + [c for c in others if c.name != tag]

    def resolve(self, resume: str, safe_globals: SafeGlobals = ()) -> Path | None:
        """The verified checkpoint to resume from.

        ``auto``: the latest intact checkpoint if any (damaged ones set aside with a warning);
        ``none``: start fresh; otherwise a checkpoint directory path, which must be intact.

        Raises:
            CheckpointError: the named checkpoint is damaged, or every checkpoint of the run is.
        """
        if resume == "none":
            return None
        if resume != "auto":
            path = Path(resume)
            if not (path / CLIENT_STATE).is_file():
                raise ValueError(f"--resume {resume}: not a complete checkpoint directory ({CLIENT_STATE} missing)")
            self.verify(path, safe_globals)
            return path
        candidates = self._candidates()
        if not candidates and self.pointer() is not None:
            raise CheckpointError(self.root / LATEST, "names a missing checkpoint and no other one is complete")
        damaged: list[tuple[Path, str]] = []
        for ckpt in candidates:
            try:
                self.verify(ckpt, safe_globals)
            except CheckpointError as err:
                damaged.append((ckpt, str(err)))
                log.warning("cannot resume from %s: %s", ckpt.name, err)
                continue
            if damaged:
                self._set_aside(damaged, ckpt)
            return ckpt
        if not damaged:
            return None
        raise CheckpointError(
            self.root,
            "no intact checkpoint to resume from (" + "; ".join(r for _, r in damaged) + "); "
            "--resume none starts the run again from step 0",
        )

    def verify(self, ckpt: Path, safe_globals: SafeGlobals = ()) -> None:
        """Verify ``ckpt`` (split over the ranks); raises on every rank when any rank finds a problem."""
        problem: CheckpointError | None = None
        try:
            verify_checkpoint(ckpt, safe_globals=safe_globals, share=(self.ranks.rank, self.ranks.world_size))
        except CheckpointError as err:
            problem = err
        if self.ranks.any_rank(problem is not None):
            raise problem or CheckpointError(ckpt, "failed verification on another rank (see that rank's log)")

    def _set_aside(self, damaged: list[tuple[Path, str]], chosen: Path) -> None:
        """Rename damaged checkpoints newer than ``chosen`` out of the way and point ``latest`` at it."""
        if self.ranks.is_main:
            for ckpt, reason in damaged:
                aside = ckpt.with_name(DAMAGED_PREFIX + ckpt.name)
                shutil.rmtree(aside, ignore_errors=True)
                os.replace(ckpt, aside)
                log.warning("resuming from %s; the damaged checkpoint is kept as %s (%s)", chosen.name, aside, reason)
            write_atomic(self.root / LATEST, chosen.name)
        self.ranks.barrier()

    # -------------------------------------------------------------------------------- writing

    def save(
        self,
        engine: Engine,
        step: int,
        client_state: dict[str, Any],
        config: RunConfig,
        schema: CatalogSchema,
        stats: NormStats,
    ) -> Path:
        tag = f"step_{step:08d}"
        final, tmp = self.root / tag, self.root / f".tmp-{tag}"
        if self.ranks.is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        self.ranks.barrier()
        engine.save(tmp, client_state)
        self.ranks.barrier()
        if self.ranks.is_main:
            write_run_metadata(tmp, config, schema, stats)
            write_atomic(tmp / CLIENT_STATE, json.dumps(client_state, indent=1))
            write_manifest(tmp)
            if final.exists():
                self._move_out_of_the_way(final)
            os.replace(tmp, final)
            fsync_dir(self.root)
            write_atomic(self.root / LATEST, tag)
            self._prune(keep=tag)
        self.ranks.barrier()
        return final

    def _move_out_of_the_way(self, final: Path) -> None:
        """An older checkpoint of the same step (a run resumed from further back): keep ``latest`` valid.

        ``latest`` is first pointed at the newest other complete checkpoint, so it never names a
        directory that is being replaced; the old one is renamed aside and pruned afterwards.
        """
        others = [c for c in self.complete() if c.name != final.name]
        if self.pointer() == final.name and others:
            write_atomic(self.root / LATEST, others[-1].name)
        aside = final.with_name(REPLACED_PREFIX + final.name)
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)

    def _prune(self, keep: str) -> None:
        for old in self.complete()[: -self.keep_last]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)
        for stale in [*self.root.glob(".tmp-*"), *self.root.glob(REPLACED_PREFIX + "*")]:
            shutil.rmtree(stale, ignore_errors=True)


def verify_for_inference(ckpt: Path) -> None:
    """Check the files prediction reads; name an older intact checkpoint of the run when this one fails.

    Raises:
        CheckpointError: naming the damaged file and, where one exists, the checkpoint to use instead.
    """
    try:
        verify_checkpoint(ckpt, files=INFERENCE_FILES)
    except CheckpointError as err:
        siblings = CheckpointManager(ckpt.parent.parent).complete()
        for candidate in reversed([c for c in siblings if checkpoint_step(c) < checkpoint_step(ckpt)]):
            try:
                verify_checkpoint(candidate, files=INFERENCE_FILES)
            except CheckpointError:
                continue
            raise CheckpointError(
                err.path, f"{err.reason}; the older checkpoint {candidate} is intact: use it"
            ) from None
        raise


def resolve_checkpoint(path: Path | str) -> Path:
    """A checkpoint directory from a run directory (its latest checkpoint) or the directory itself."""
    path = Path(path)
    if (path / "model.pt").is_file() and (path / "schema.json").is_file():
        return path
    if not path.exists():
        raise FileNotFoundError(f"run {path} does not exist")
    latest = CheckpointManager(path).latest()
    if latest is None:
        raise ValueError(f"{path}: no checkpoint found (expected checkpoints/latest or model.pt + schema.json)")
    return latest
