"""predict-shards in one process: the rank rule, skip-finished, redo-partial and bad shards."""

from __future__ import annotations

import pytest
from shard_predictions import (
    assert_bad_shard_stops_or_is_skipped,
    assert_same_predictions,
    assert_two_ranks_equal_one,
    read_predictions,
)

from mosaic_hpc.cli import main
from mosaic_hpc.lifecycle.sharded import output_path, record_path, shards_of_rank


@pytest.fixture(scope="module")
def shards(toy_shards):
    return toy_shards


def _predict(run, shards, out, extra=()):
    argv = ["predict-shards", "--run", str(run), "--input", str(shards), "--out", str(out), "--given", "lsst"]
    return main([*argv, "--no-progress", "--batch-size", "32", *extra])


@pytest.fixture(scope="module")
def reference(tiny_run_dir, shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    assert _predict(tiny_run_dir, shards, out) == 0
    return read_predictions(out)


def test_shard_i_goes_to_rank_i_mod_world():
    names = [f"s{i}" for i in range(8)]
    assert shards_of_rank(names, 1, 3) == ["s1", "s4", "s7"]
    assert sorted(s for r in range(3) for s in shards_of_rank(names, r, 3)) == names


def test_two_ranks_by_environment_equal_one_rank(tiny_run_dir, shards, reference, tmp_path, monkeypatch, capsys):
    assert_two_ranks_equal_one(
        monkeypatch, capsys, lambda: _predict(tiny_run_dir, shards, tmp_path), tmp_path, reference, "predicted"
    )


def test_rerun_skips_finished_and_redoes_damaged_or_unrecorded(tiny_run_dir, shards, reference, tmp_path, capsys):
    assert _predict(tiny_run_dir, shards, tmp_path) == 0
    files = sorted(shards.glob("*.h5"))
    output_path(tmp_path, files[2]).write_bytes(b"half-written")  # damaged output
    record_path(tmp_path, files[5]).unlink()  # crashed between output and record
    capsys.readouterr()
    assert _predict(tiny_run_dir, shards, tmp_path) == 0
    summary = capsys.readouterr().out
    assert "2 shards predicted" in summary and "6 already finished" in summary
    assert_same_predictions(read_predictions(tmp_path), reference)


def test_bad_shard_stops_naming_the_file_or_is_skipped_and_recorded(tiny_run_dir, shards, tmp_path, capsys):
    assert_bad_shard_stops_or_is_skipped(
        lambda data, out, extra: _predict(tiny_run_dir, data, out, extra), shards, tmp_path, capsys
    )
