"""encode-shards in one process: ranks by environment, equality with `encode`, bad shards, stopping by SIGUSR1.

The skip-finished and redo-damaged logic is the one code path of predict-shards
(tests/unit/test_predict_shards.py); here only what encode adds, and the frame both commands share.
"""

from __future__ import annotations

import os
import signal

import h5py
import numpy as np
import pytest
from shard_predictions import (
    assert_bad_shard_stops_or_is_skipped,
    assert_same_predictions,
    assert_two_ranks_equal_one,
    read_predictions,
)

import mosaic_hpc
from mosaic_hpc.cli import main
from mosaic_hpc.commands.rank_shards import rank_device, stop_on_sigusr1
from mosaic_hpc.data.configurations import parse_configuration
from mosaic_hpc.lifecycle.encode import encode_shards
from mosaic_hpc.lifecycle.sharded import input_shards


def _encode(run, shards, out, extra=()):
    argv = ["encode-shards", "--run", str(run), "--input", str(shards), "--out", str(out), "--given", "lsst"]
    return main([*argv, "--no-progress", "--batch-size", "32", "--chunk-rows", "40", *extra])


@pytest.fixture(scope="module")
def reference(tiny_run_dir, toy_shards, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    assert _encode(tiny_run_dir, toy_shards, out) == 0
    return read_predictions(out)


def test_two_ranks_by_environment_equal_one_rank(tiny_run_dir, toy_shards, reference, tmp_path, monkeypatch, capsys):
    assert_two_ranks_equal_one(
        monkeypatch, capsys, lambda: _encode(tiny_run_dir, toy_shards, tmp_path), tmp_path, reference, "encoded"
    )


def test_shard_files_hold_what_encode_writes_for_the_whole_split(tiny_run_dir, toy_catalog_dir, reference, tmp_path):
    whole = tmp_path / "whole.h5"
    argv = ["encode", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--given", "lsst"]
    assert main([*argv, "--out", str(whole), "--batch-size", "32", "--no-progress"]) == 0
    shards = [reference[name] for name in sorted(reference)]  # shard-catalog: contiguous rows, in order
    with h5py.File(whole) as f:
        for name in ["pooled", *(f"embeddings/{m}" for m in f["embeddings"])]:
            np.testing.assert_allclose(np.concatenate([s[name] for s in shards]), f[name][:], rtol=1e-5, atol=1e-6)
    assert all(np.array_equal(s["row"], np.arange(64)) for s in shards)  # the row of the shard file


def test_bad_shard_stops_naming_the_file_or_is_skipped_and_recorded(tiny_run_dir, toy_shards, tmp_path, capsys):
    summary = assert_bad_shard_stops_or_is_skipped(
        lambda data, out, extra: _encode(tiny_run_dir, data, out, extra), toy_shards, tmp_path, capsys
    )
    assert "4 shards encoded" in summary and "3 already finished" in summary  # 0-2 were done before the stop


def test_a_stop_between_shards_leaves_the_rest_to_the_next_run(tiny_run_dir, toy_shards, reference, tmp_path):
    predictor = mosaic_hpc.load_run(tiny_run_dir)
    given = parse_configuration("lsst", predictor.schema)
    shards = input_shards(toy_shards)
    done = []
    stop_after_3 = lambda: len(done) >= 3
    first = encode_shards(predictor, shards, tmp_path, given, 40, 32, on_shard=done.append, should_stop=stop_after_3)
    assert len(first.done) == 3 and len(first.left) == 5
    assert "stopped by signal with 5 shards left" in first.line(0)
    second = encode_shards(predictor, shards, tmp_path, given, 40, 32)
    assert len(second.already_done) == 3 and len(second.done) == 5 and not second.left
    assert_same_predictions(read_predictions(tmp_path), reference)


def test_sigusr1_sets_the_stop_flag_instead_of_killing():
    before = signal.getsignal(signal.SIGUSR1)
    with stop_on_sigusr1() as should_stop:
        assert not should_stop()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert should_stop()
    assert signal.getsignal(signal.SIGUSR1) is before


def test_each_rank_of_a_node_takes_its_own_gpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rank_device(3) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [rank_device(r) for r in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # CUDA_VISIBLE_DEVICES: one GPU per rank
    assert rank_device(3) == "cuda:0"
