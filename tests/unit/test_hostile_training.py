"""Hostile training runs, plain engine (issue 15, items 3, 5, 8, 13; docs/hardening.md).

A diverging run stops before it writes a non-finite checkpoint and exits 3 from either entry
point; a resume whose config or catalog differs from the checkpoint's is refused by key unless
allowed (and an allowed change applies); one run directory takes one trainer; the quickstart
reports an early stop instead of evaluating a half-trained model; a broken validation split
stops the run instead of silently disabling validation.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from hostile import shifted_catalog

from mosaic_hpc.cli import main
from mosaic_hpc.config import load_config
from mosaic_hpc.data.catalog import CatalogError
from mosaic_hpc.training.runner import run_training
from mosaic_hpc.training.schedule import lr_factor

TINY = REPO / "configs" / "tiny.yaml"
SETTINGS = {"train.max_steps": 10, "train.save_every": 10, "train.eval_every": 0, "train.log_every": 1}


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--config", str(TINY), "--data", str(data), "--out", str(out), *extra]


@pytest.fixture
def ten_steps(tmp_path, toy_catalog_dir) -> Path:
    run = tmp_path / "run"
    run_training(load_config(TINY, SETTINGS), toy_catalog_dir, run, resume="none")
    return run


# ------------------------------------------------------------------------------ item 3


def test_a_diverging_run_exits_3_and_never_saves_nan(tmp_path, toy_catalog_dir, capsys):
    out = tmp_path / "run"
    sets = ["train.lr=300.0", "train.grad_clip=0", "train.save_every=5", "train.log_every=10", "train.eval_every=0"]
    assert main(train_args(toy_catalog_dir, out, "--max-steps", "60", *(f"--set={s}" for s in sets))) == 3
    err = capsys.readouterr().err
    assert "mosaic-hpc train: error: non-finite training state:" in err and "Traceback" not in err
    for model in (out / "checkpoints").glob("step_*/model.pt"):
        weights = torch.load(model, weights_only=True)
        assert all(torch.isfinite(w).all() for w in weights.values()), model


# ------------------------------------------------------------------------------ item 5


def test_resume_with_a_changed_learning_rate_is_refused_by_key(ten_steps, toy_catalog_dir):
    before = (ten_steps / "config.yaml").read_text()
    cfg = load_config(TINY, {**SETTINGS, "train.max_steps": 20, "train.lr": 1e8})
    with pytest.raises(ValueError, match=r"differs from the checkpoint in train\.lr \(0\.003 -> 100000000\.0\)"):
        run_training(cfg, toy_catalog_dir, ten_steps, resume="auto")
    assert (ten_steps / "config.yaml").read_text() == before  # nothing written


def test_an_allowed_learning_rate_change_really_applies(ten_steps, toy_catalog_dir):
    cfg = load_config(TINY, {**SETTINGS, "train.max_steps": 12, "train.lr": 1e-2})
    run_training(cfg, toy_catalog_dir, ten_steps, resume="auto", allow_change=("train.lr",))
    lrs = {r["step"]: r["optim/lr"] for r in map(json.loads, (ten_steps / "metrics.jsonl").read_text().splitlines())}
    # optim/lr at step s is the rate of the next update (the scheduler has already stepped)
    assert lrs[11] == pytest.approx(1e-2 * lr_factor(11, cfg.train))
    assert yaml.safe_load((ten_steps / "config.yaml").read_text())["train"]["lr"] == 1e-2


def test_a_changed_model_shape_is_one_line_not_a_traceback(ten_steps, toy_catalog_dir, capsys):
    args = train_args(toy_catalog_dir, ten_steps, "--set", "model.d_model=64", "--max-steps", "20")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "model.d_model (32 -> 64)" in err and "--allow-change" in err
    assert main([*args, "--allow-change", "model.d_model"]) == 2
    err = capsys.readouterr().err
    assert "model.pt: the weights do not fit the model of this config (size mismatch" in err
    assert "Traceback" not in err


def test_resume_on_another_catalog_is_refused_unless_allowed(ten_steps, toy_catalog_dir, tmp_path):
    other = shifted_catalog(toy_catalog_dir, tmp_path / "other", "lsst", 1.5)
    stats = json.loads((ten_steps / "normalization.json").read_text())
    cfg = load_config(TINY, {**SETTINGS, "train.max_steps": 12})
    with pytest.raises(ValueError, match="catalog: normalisation statistics of lsst"):
        run_training(cfg, other, ten_steps, resume="auto")
    assert json.loads((ten_steps / "normalization.json").read_text()) == stats
    run_training(cfg, other, ten_steps, resume="auto", allow_change=("catalog",))
    kept = json.loads((ten_steps / "normalization.json").read_text())
    assert kept["lsst"]["mean"] == stats["lsst"]["mean"]  # the run keeps what its weights were trained with


def test_allow_change_names_a_real_key(ten_steps, toy_catalog_dir):
    with pytest.raises(ValueError, match="--allow-change 'train.learning_rate': not a config key"):
        run_training(load_config(TINY, SETTINGS), toy_catalog_dir, ten_steps, allow_change=("train.learning_rate",))


# ------------------------------------------------------------------------------ item 8


def test_one_run_directory_takes_one_trainer(tmp_path, toy_catalog_dir, capsys):
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "mosaic_hpc.cli", *train_args(toy_catalog_dir, out, "--max-steps", "1000000")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not ((out / "metrics.jsonl").is_file() and (out / "metrics.jsonl").read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "the first trainer did not start"
            time.sleep(0.2)
        assert main(train_args(toy_catalog_dir, out, "--max-steps", "5")) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"is in use by another trainer (pid {first.pid} on" in err
        first.send_signal(signal.SIGKILL)  # a killed trainer leaves no stale lock behind
        first.wait(timeout=30)
        result = run_training(
            load_config(TINY, {**SETTINGS, "train.max_steps": 1}), toy_catalog_dir, out, resume="none"
        )
        assert result.steps == 1
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


# ------------------------------------------------------------------------------ item 13


def test_quickstart_reports_an_early_stop_instead_of_evaluating(tmp_path, toy_catalog_dir, capsys):
    config = tmp_path / "budget.yaml"
    data = yaml.safe_load(TINY.read_text())
    data["train"].update(max_steps=1_000_000, wall_time_budget_s=1.0)
    config.write_text(yaml.safe_dump(data))
    out = tmp_path / "qs"
    args = ["quickstart", "--out", str(out), "--catalog", str(toy_catalog_dir), "--config", str(config)]
    assert main([*args, "--engine", "plain", "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert "training stopped at step" in err and "(wall-time budget reached)" in err
    assert not (out / "report.md").exists() and not (out / "eval").exists()


@pytest.mark.parametrize("damage", ["garbage", "other statistics"])
def test_a_broken_validation_split_stops_the_run(tmp_path, toy_catalog_dir, damage):
    data = Path(shutil.copytree(toy_catalog_dir, tmp_path / "cat"))  # validation reads val.h5, never test.h5
    if damage == "garbage":
        (data / "val.h5").write_bytes(np.random.default_rng(0).bytes(4096))
    else:
        other = shifted_catalog(toy_catalog_dir, tmp_path / "other", "sed", 0.5)
        shutil.copy(other / "test.h5", data / "val.h5")
    with pytest.raises(CatalogError, match=r"val\.h5: "):
        run_training(load_config(TINY, {**SETTINGS, "train.eval_every": 5}), data, tmp_path / "run", resume="none")
