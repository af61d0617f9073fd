"""Predict over a directory of catalog-layout HDF5 shards on many independent ranks, crash-safely.

Rule: the input shards, sorted by file name, are numbered 0..S-1 and shard i belongs to rank
i % world_size. Ranks never talk to each other: each writes, per finished shard, the output
``OUT/<shard>.h5`` (atomically: a temporary file renamed into place) and *then* a record
``OUT/manifest/<shard>.json`` (also renamed into place) holding the rows, the output's SHA-256
and the status. A shard counts as finished only when its record says ``ok`` and the output's
digest matches, so a rank killed at any point leaves either a finished shard or one that the
next run redoes from scratch: no row is lost, duplicated or half-written, whatever the world
size of the rerun. A shard that cannot be read or fails validation stops the run, naming the
file; with ``skip_bad`` it is recorded as ``bad`` (with the reason) and retried on the next run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..data.configurations import InputConfiguration
from ..evaluation.predictor import Predictor
from ..training.integrity import file_digest, write_atomic

MANIFEST_DIR = "manifest"


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
    """What one rank did: rows predicted, shards done now, found done, and bad."""

    rows: int = 0
    seconds: float = 0.0
    done: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    def line(self, rank: int) -> str:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        bad = f"{len(self.bad)} bad" + (f": {', '.join(self.bad)}" if self.bad else "")
        return (
            f"rank {rank}: {len(self.done)} shards predicted ({self.rows} galaxies, {rate:.0f} galaxies/s), "
            f"{len(self.already_done)} already finished, {bad}"
        )


def predict_shards(
    predictor: Predictor,
    shards: list[Path],
    out_dir: Path,
    given: InputConfiguration | None,
    batch_size: int = 1024,
    skip_bad: bool = False,
    on_shard: Callable[[int], None] | None = None,
) -> ShardSummary:
    """Predict every unfinished shard of ``shards`` into ``out_dir``; see the module docstring."""
    from ..data.table_input import read_catalog_file
    from ..data.validation import validate_inputs
    from ..evaluation.prediction_files import write_predictions

    summary = ShardSummary()
    t0 = time.perf_counter()
    for shard in shards:
        if is_finished(out_dir, shard):
            summary.already_done.append(shard.name)
        else:
            try:
                source = read_catalog_file(shard, predictor.schema)
                validate_inputs(source.inputs, predictor.schema, predictor.stats, shard, given)
            except (ValueError, OSError) as err:
                if not skip_bad:
                    raise ValueError(f"{shard}: bad input shard ({err}); pass --skip-bad to skip it") from None
                _write_record(out_dir, shard, {"shard": shard.name, "status": "bad", "error": str(err)})
                summary.bad.append(shard.name)
                continue
            pred = predictor.predict(source.inputs, given=given, batch_size=batch_size)
            out = output_path(out_dir, shard)
            attrs = {"run": str(predictor.checkpoint), "input": str(shard), "given": given.spec if given else ""}
            write_predictions(out, pred, predictor.schema, source.columns, attrs)
            record = {"shard": shard.name, "status": "ok", "rows": source.n_rows, "sha256": file_digest(out)}
            _write_record(out_dir, shard, record)
            summary.rows += source.n_rows
            summary.done.append(shard.name)
        if on_shard is not None:
            on_shard(1)
    summary.seconds = time.perf_counter() - t0
    return summary
