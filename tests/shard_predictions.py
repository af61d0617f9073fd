"""Helpers shared by the sharded-predict tests: a sharded toy split and reading a prediction directory."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from mosaic_hpc.cli import main


def shard_toy_split(toy_catalog_dir: Path, out_dir: Path, n_shards: int = 8) -> Path:
    """``shard-catalog`` of the toy catalog's test split into ``n_shards`` files; returns the shard directory."""
    argv = ["shard-catalog", "--input", str(toy_catalog_dir), "--out", str(out_dir), "--n-shards", str(n_shards)]
    assert main([*argv, "--split", "test"]) == 0
    return out_dir / "test"


def read_predictions(out_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{shard file: {dataset path: values}}`` for every predicted shard of a directory."""
    found = {}
    for path in sorted(Path(out_dir).glob("*.h5")):
        with h5py.File(path) as f:
            arrays: dict[str, np.ndarray] = {}
            f.visititems(
                lambda name, obj, a=arrays: a.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
            found[path.name] = arrays
    return found


def assert_two_ranks_equal_one(monkeypatch, capsys, run: Callable[[], int], out: Path, reference: dict, verb: str):
    """``run()`` writing into ``out`` once as rank 0 and once as rank 1 of 2 (ranks by environment, as torchrun
    gives them) splits the 8 shards 4 + 4 and writes exactly ``reference``, one ``ok`` record a shard."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert run() == 0
    summary = capsys.readouterr().out
    assert f"rank 0: 4 shards {verb} (256 galaxies" in summary and f"rank 1: 4 shards {verb}" in summary
    assert len(reference) == 8
    assert_same_predictions(read_predictions(out), reference)
    records = manifest_records(out)
    assert len(records) == 8 and all(r["status"] == "ok" and r["rows"] == 64 for r in records)


def manifest_records(out_dir: Path) -> list[dict]:
    """Every record of ``out_dir/manifest``."""
    return [json.loads(p.read_text()) for p in (Path(out_dir) / "manifest").glob("*.json")]


def assert_bad_shard_stops_or_is_skipped(
    run: Callable[[Path, Path, Sequence[str]], int], shards: Path, tmp_path: Path, capsys
) -> str:
    """A copy of ``shards`` with shard 3 not HDF5: ``run(input, out, extra_args)`` stops with one line
    naming it and ``--skip-bad``; with ``--skip-bad`` it is recorded bad and the other 7 are written.
    Returns the second run's stdout."""
    data = tmp_path / "in"
    shutil.copytree(shards, data)
    bad = sorted(data.glob("*.h5"))[3]
    bad.write_bytes(b"not hdf5")
    out = tmp_path / "out"
    assert run(data, out, ()) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and bad.name in err and "--skip-bad" in err
    assert run(data, out, ("--skip-bad",)) == 0
    summary = capsys.readouterr().out
    assert "1 bad: " + bad.name in summary
    record = json.loads((out / "manifest" / f"{bad.stem}.json").read_text())
    assert record["status"] == "bad" and record["error"]
    assert len(read_predictions(out)) == 7
    return summary


def assert_same_predictions(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for shard in a:
        assert sorted(a[shard]) == sorted(b[shard]), shard
        for name in a[shard]:
            assert np.array_equal(a[shard][name], b[shard][name], equal_nan=True), (shard, name)
