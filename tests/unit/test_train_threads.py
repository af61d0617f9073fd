"""`mosaic-hpc train` chooses its CPU threads as quickstart does (issue 17, point 10): --threads N
takes N, the default 0 takes the cores idle right now (mosaic_hpc.cpu_load), at least one."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from conftest import REPO

from mosaic_hpc.cli import main


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _train(tmp_path, catalog, threads: str) -> int:
    args = ["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--data", str(catalog), "--out", str(tmp_path)]
    return main([*args, "--set", "train.max_steps=1", "--set", "train.eval_every=0", "--threads", threads])


def test_threads_flag_and_idle_core_default(tmp_path, toy_catalog_dir, caplog, restore_threads):
    caplog.set_level(logging.INFO, logger="mosaic_hpc.train")
    assert _train(tmp_path / "a", toy_catalog_dir, "3") == 0
    assert torch.get_num_threads() == 3
    assert "3 CPU thread(s) for PyTorch (--threads)" in caplog.messages
    caplog.clear()
    assert _train(tmp_path / "b", toy_catalog_dir, "0") == 0
    (line,) = [m for m in caplog.messages if "CPU thread(s)" in m]
    chosen = int(line.split()[0])
    assert line.endswith("(idle cores)") and chosen == torch.get_num_threads()
    assert 1 <= chosen <= len(os.sched_getaffinity(0))


def test_negative_threads_is_one_line(tmp_path, toy_catalog_dir, capsys, restore_threads):
    assert _train(tmp_path / "c", toy_catalog_dir, "-1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads must be >= 0" in err[0]
