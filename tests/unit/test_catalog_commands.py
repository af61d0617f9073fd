"""mosaic-hpc shard-catalog and check-catalog: round trips, summaries and bad input (exit 2, one line)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from mosaic_hpc.cli import main
from mosaic_hpc.config import DataConfig
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.data.reader import ShardedReader


@pytest.fixture(scope="module")
def sharded(toy_catalog_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sharded") / "cat"
    assert main(["shard-catalog", "--input", str(toy_catalog_dir), "--out", str(out), "--n-shards", "3"]) == 0
    return out


def one_line_error(capsys) -> str:
    """The error message: one line, the last on stderr (progress bars may precede it)."""
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("mosaic-hpc ")]
    assert len(err) == 1, err
    return err[0]


def test_shards_hold_the_same_rows_stats_and_attrs(toy_catalog_dir, sharded):
    for split in ("train", "test"):
        original = Catalog.open(toy_catalog_dir, split)
        shards = Catalog.open(sharded, split)
        assert len(shards.paths) == 3
        sizes = shards.file_rows
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == original.n_rows
        assert shards.schema == original.schema
        a, b = original.read_all(), shards.read_all()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])  # same rows, same order, NaN included
            np.testing.assert_array_equal(original.stats.mean[name], shards.stats.mean[name])  # copied
            np.testing.assert_array_equal(original.stats.std[name], shards.stats.std[name])
        assert shards.attrs["source"] == original.attrs["source"]
        assert shards.paths[0].name == f"{split}-00000-of-00003.h5"
    assert not list(sharded.glob("*.partial"))


def test_reader_over_shards_serves_the_same_rows_as_over_one_file(toy_catalog_dir, sharded):
    cfg = DataConfig(micro_batch_size=32, block_rows=128, shuffle_buffer=256)
    one = ShardedReader(Catalog.open(toy_catalog_dir), cfg, 1, 2, shuffle=False)
    many = ShardedReader(Catalog.open(sharded), cfg, 1, 2, shuffle=False)
    np.testing.assert_array_equal(one.rank_rows(0), many.rank_rows(0))
    x, y = next(iter(one)), next(iter(many))
    np.testing.assert_array_equal(x.targets["sed"], y.targets["sed"])


def test_shard_refuses_to_overwrite_unless_asked(toy_catalog_dir, sharded, tmp_path, capsys):
    args = ["shard-catalog", "--input", str(toy_catalog_dir), "--out", str(sharded), "--n-shards", "2"]
    assert main(args) == 2
    assert "exists; pass --overwrite" in one_line_error(capsys)
    out = tmp_path / "again"
    shutil.copytree(sharded, out)
    args[4] = str(out)
    assert main([*args, "--overwrite", "--split", "test"]) == 0
    assert len(Catalog.open(out, "test").paths) == 2
    assert len(Catalog.open(out, "train").paths) == 3  # untouched split


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n-shards", "0"], "--n-shards must be >= 1"),
        (["--n-shards", "100000"], "rows cannot fill 100000 shards"),
        (["--n-shards", "2", "--chunk-rows", "0"], "--chunk-rows must be >= 1"),
    ],
)
def test_shard_bad_counts_exit_2(toy_catalog_dir, tmp_path, capsys, extra, message):
    assert main(["shard-catalog", "--input", str(toy_catalog_dir), "--out", str(tmp_path / "o"), *extra]) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "o" / "train").exists()


def test_shard_missing_input_exits_2(tmp_path, capsys):
    assert main(["shard-catalog", "--input", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--n-shards", "2"])
    assert "does not exist" in one_line_error(capsys)


def test_shard_a_single_file_keeps_its_split_name(toy_catalog_dir, tmp_path):
    args = ["shard-catalog", "--input", str(toy_catalog_dir / "test.h5"), "--n-shards", "4"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert len(Catalog.open(tmp_path / "a", "test").paths) == 4
    assert main([*args, "--out", str(tmp_path / "b"), "--split", "train"]) == 0
    assert Catalog.open(tmp_path / "b", "train").n_rows == 512


def test_check_reports_rows_modalities_and_nan_fractions(toy_catalog_dir, tmp_path, capsys):
    summary_path = tmp_path / "summary.json"
    assert main(["check-catalog", str(toy_catalog_dir), "--json", str(summary_path)]) == 0
    out = capsys.readouterr().out
    assert "train: 2,048 rows in 1 file(s)" in out and "catalog OK" in out
    summary = json.loads(summary_path.read_text())
    sfh = Catalog.open(toy_catalog_dir).read_all()["sfh"]
    train = summary["train"]
    assert train["rows"] == 2048 and summary["test"]["rows"] == 512
    assert train["modalities"]["sfh"]["length"] == 20
    assert train["modalities"]["sfh"]["nan_fraction"] == pytest.approx(np.isnan(sfh).mean())
    assert train["modalities"]["sed"]["nan_fraction"] == 0.0
    assert set(train["chunk_rows"]) == {"scalars", "lsst", "spherex", "sfh", "sed"}


def test_check_a_shard_directory(sharded, capsys):
    assert main(["check-catalog", str(sharded / "train")]) == 0
    assert "train: 2,048 rows in 3 file(s)" in capsys.readouterr().out


def test_check_truncated_shard_exits_2_naming_it(sharded, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(sharded, broken)
    victim = broken / "train" / "train-00001-of-00003.h5"
    os.truncate(victim, victim.stat().st_size // 3)
    assert main(["check-catalog", str(broken)]) == 2
    assert "train-00001-of-00003.h5: file: cannot be opened, truncated or corrupt" in one_line_error(capsys)


def test_check_finds_corrupt_values_in_the_middle(sharded, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(sharded, broken)
    victim = broken / "train" / "train-00002-of-00003.h5"
    with h5py.File(victim, "r") as f:
        chunk = f["modalities/spherex"].id.get_chunk_info(0)
    with open(victim, "r+b") as f:
        f.seek(chunk.byte_offset + chunk.size // 2)
        f.write(np.full(8, np.inf, dtype="<f4").tobytes())
    assert main(["check-catalog", str(broken)]) == 2
    err = one_line_error(capsys)
    # chunks are checksummed (fletcher32), so HDF5 refuses the read; unchecksummed files are
    # caught by the value check ("row ... inf"). Either way: file and dataset named, exit 2.
    assert "train-00002-of-00003.h5: /modalities/spherex:" in err
    assert ("row" in err and "inf" in err) or "read of rows" in err


def test_check_mixed_schemas_exit_2_naming_the_odd_shard(sharded, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(sharded, broken)
    with h5py.File(broken / "test" / "test-00002-of-00003.h5", "r+") as f:
        f["modalities/sed"].attrs["unit"] = "erg/s"
    assert main(["check-catalog", str(broken)]) == 2
    assert "test-00002-of-00003.h5: /modalities: schema differs" in one_line_error(capsys)


def test_check_bad_paths_exit_2(tmp_path, capsys):
    assert main(["check-catalog", str(tmp_path / "nope")]) == 2
    assert "does not exist" in one_line_error(capsys)
    assert main(["check-catalog", str(tmp_path)]) == 2
    assert "holds no *.h5 file" in one_line_error(capsys)
    (tmp_path / "x.h5").write_text("not hdf5")
    assert main(["check-catalog", str(tmp_path / "x.h5")]) == 2
    assert "x.h5: file: is not an HDF5 file" in one_line_error(capsys)
