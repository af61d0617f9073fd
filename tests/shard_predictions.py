"""Helpers shared by the sharded-predict tests: a sharded toy split and reading a prediction directory."""

from __future__ import annotations

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


def assert_same_predictions(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for shard in a:
        assert sorted(a[shard]) == sorted(b[shard]), shard
        for name in a[shard]:
            assert np.array_equal(a[shard][name], b[shard][name], equal_nan=True), (shard, name)
