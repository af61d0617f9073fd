"""Shared fixtures: a toy catalog and a trained tiny run, built once per session; seeded tests."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@functools.cache
def benchmark_script(name: str) -> ModuleType:
    """``benchmarks/NAME.py`` imported as a module (the scripts are not a package), once per session."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device; none on this machine")
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass


@pytest.fixture(scope="session")
def toy_catalog_dir(tmp_path_factory) -> Path:
    from toy_catalog import write_toy_catalog

    return write_toy_catalog(tmp_path_factory.mktemp("toy_catalog"))


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory, toy_catalog_dir) -> Path:
    """configs/tiny.yaml trained for 300 steps on the toy catalog (about 3 s on one core)."""
    import torch

    from mosaic_hpc.config import load_config
    from mosaic_hpc.training.runner import run_training

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("tiny_run")
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    run_training(cfg, toy_catalog_dir, run_dir, resume="none")
    return run_dir


@pytest.fixture(scope="session")
def toy_shards(toy_catalog_dir, tmp_path_factory) -> Path:
    """The toy catalog's test split (512 rows) as 8 shard files: the input of the sharded commands' tests."""
    from shard_predictions import shard_toy_split

    return shard_toy_split(toy_catalog_dir, tmp_path_factory.mktemp("shards") / "cat")
