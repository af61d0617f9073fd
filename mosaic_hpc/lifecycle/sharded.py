"""Process a directory of catalog-layout HDF5 shards on many independent ranks, crash-safely.

One code path serves ``predict-shards`` and ``encode-shards``: :func:`run_shards` owns the rank
rule, the manifest and the skip/redo/bad-shard logic; a task only says how to read a shard and how
to write its output (:func:`predict_shards` here, :func:`..encode.encode_shards` for embeddings).

Rule: the input shards, sorted by file name, are numbered 0..S-1 and shard i belongs to rank
i % world_size. Ranks never talk to each other: each writes, per finished shard, the output
``OUT/<shard>.h5`` (atomically: a temporary file renamed into place) and *then* a record
``OUT/manifest/<shard>.json`` (also renamed into place) holding the rows, the output's SHA-256
and the status. A shard counts as finished only when its record says ``ok`` and the output's
digest matches, so a rank killed at any point leaves either a finished shard or one that the
next run redoes from scratch: no row is lost, duplicated or half-written, whatever the world
size of the rerun. A shard that cannot be read or fails validation stops the run, naming the
file; with ``skip_bad`` it is recorded as ``bad`` (with the reason) and retried on the next run.
A ``should_stop`` callback (SIGUSR1 from the launcher before the walltime) ends the loop between
two shards, so the rank exits cleanly and a requeued job finishes the rest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..data.configurations import InputConfiguration
from ..evaluation.predictor import Predictor
from ..training.integrity import file_digest, write_atomic

MANIFEST_DIR = "manifest"
T = TypeVar("T")  # what a task's read() hands to its write()


def input_shards(input_dir: Path) -> list[Path]:
    """The ``*.h5`` files of ``input_dir`` in name order (the numbering of the rank rule)."""
    input_dir = Path(input_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"--input {input_dir}: not a directory of HDF5 shards")
    shards = sorted(p for p in input_dir.iterdir() if p.suffix in (".h5", ".hdf5") and p.is_file())
    if not shards:
        raise ValueError(f"--input {input_dir}: no .h5 shard files")
    return shards


def shards_of_rank(shards: list[Path], rank: int, world_size: int) -> list[Path]:
    """Shard i goes to rank i % world_size: balanced to one shard, and no coordination needed."""
    return [s for i, s in enumerate(shards) if i % world_size == rank]


def record_path(out_dir: Path, shard: Path) -> Path:
    return Path(out_dir) / MANIFEST_DIR / f"{shard.stem}.json"


def output_path(out_dir: Path, shard: Path) -> Path:
    return Path(out_dir) / f"{shard.stem}.h5"


def is_finished(out_dir: Path, shard: Path) -> bool:
    """True when the shard's record says ok and its output is the file the record describes."""
    rec, out = record_path(out_dir, shard), output_path(out_dir, shard)
    try:
        record = json.loads(rec.read_text())
    except (OSError, ValueError):
        return False
    return record.get("status") == "ok" and out.is_file() and file_digest(out) == record.get("sha256")


def _write_record(out_dir: Path, shard: Path, record: dict) -> None:
    path = record_path(out_dir, shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1))


@dataclass
class ShardSummary:
    """What one rank did: rows written, shards done now, found done, bad, and left when stopped."""

    verb: str = "processed"  # "predicted", "encoded": the closing line's word for a done shard
    rows: int = 0
    seconds: float = 0.0
    done: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)

    def line(self, rank: int) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        bad = f"{len(self.bad)} bad" + (f": {', '.join(self.bad)}" if self.bad else "")
        left = f", stopped by signal with {len(self.left)} shards left for the next run" if self.left else ""
        return (
            f"rank {rank}: {len(self.done)} shards {self.verb} ({self.rows} galaxies, {rate:.0f} galaxies/s), "
            f"{len(self.already_done)} already finished, {bad}{left}"
        )


def run_shards(
    shards: list[Path],
    out_dir: Path,
    read: Callable[[Path], T],
    write: Callable[[Path, T, Path], int],
    verb: str,
    skip_bad: bool = False,
    on_shard: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ShardSummary:
    """Process every unfinished shard of ``shards`` into ``out_dir``; see the module docstring.

    Args:
        read: ``read(shard)`` loads and checks a shard; ``ValueError`` or ``OSError`` means a bad
            input shard (stop, or with ``skip_bad`` record it and go on).
        write: ``write(shard, loaded, out_path)`` writes the output atomically and returns its rows.
            Its errors always stop the run: they are not the input's fault.
        verb: what the closing line says was done to a shard.
        on_shard: called with 1 after each shard (progress bars).
        should_stop: checked before each shard; True leaves the rest for the next run.
    """
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    summary = ShardSummary(verb=verb)
    t0 = time.perf_counter()
    for i, shard in enumerate(shards):
        if should_stop is not None and should_stop():
            summary.left = [s.name for s in shards[i:]]
            break
        if is_finished(out_dir, shard):
            summary.already_done.append(shard.name)
        else:
            _one_shard(shard, out_dir, read, write, skip_bad, summary)
        if on_shard is not None:
            on_shard(1)
    summary.seconds = time.perf_counter() - t0
    return summary


def _one_shard(
    shard: Path,
    out_dir: Path,
    read: Callable[[Path], T],
    write: Callable[[Path, T, Path], int],
    skip_bad: bool,
    summary: ShardSummary,
) -> None:
    """Read, write, then record one unfinished shard (or record it bad); counts it in ``summary``."""
    try:
        loaded = read(shard)
    except (ValueError, OSError) as err:
        if not skip_bad:
            raise ValueError(f"{shard}: bad input shard ({err}); pass --skip-bad to skip it") from None
        _write_record(out_dir, shard, {"shard": shard.name, "status": "bad", "error": str(err)})
        summary.bad.append(shard.name)
        return
    out = output_path(out_dir, shard)
    rows = write(shard, loaded, out)
    _write_record(out_dir, shard, {"shard": shard.name, "status": "ok", "rows": rows, "sha256": file_digest(out)})
    summary.rows += rows
    summary.done.append(shard.name)


def predict_shards(
    predictor: Predictor,
    shards: list[Path],
    out_dir: Path,
    given: InputConfiguration | None,
    batch_size: int = 1024,
    skip_bad: bool = False,
    on_shard: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ShardSummary:
    """Predictions of every unfinished shard (the layout of ``predict``'s .h5 output) into ``out_dir``."""
    from ..data.table_input import PredictionInput, read_catalog_file
    from ..data.validation import validate_inputs
    from ..evaluation.prediction_files import write_predictions

    def read(shard: Path) -> PredictionInput:
        source = read_catalog_file(shard, predictor.schema)
        validate_inputs(source.inputs, predictor.schema, predictor.stats, shard, given)
        return source

    def write(shard: Path, source: PredictionInput, out: Path) -> int:
        pred = predictor.predict(source.inputs, given=given, batch_size=batch_size)
        attrs = {"run": str(predictor.checkpoint), "input": str(shard), "given": given.spec if given else ""}
        write_predictions(out, pred, predictor.schema, source.columns, attrs)
        return source.n_rows

    return run_shards(shards, out_dir, read, write, "predicted", skip_bad, on_shard, should_stop)
