"""Hostile checkpoints, plain engine (issue 15, items 1, 3, 6, 10, 14; docs/hardening.md).

No file we load may execute code; a damaged checkpoint is found by name and resume falls back to
the previous intact one; ``latest`` never names anything but a checkpoint of its own directory;
files reach the disk before the rename that publishes them. The DeepSpeed side of the same
layer is tests/integration/test_hostile_deepspeed.py.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO
from hostile import flip_byte, forge_manifest, plant_payload, truncate, write_inputs

from mosaic_hpc.cli import main
from mosaic_hpc.config import load_config
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.training.runner import run_training

TINY = REPO / "configs" / "tiny.yaml"
SETTINGS = {"train.max_steps": 20, "train.save_every": 10, "train.eval_every": 0, "train.log_every": 5}


def ckpt(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step_{step:08d}"


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_catalog_dir) -> Path:
    """A finished plain-engine run with checkpoints at steps 10 and 20."""
    run = tmp_path_factory.mktemp("hostile") / "run"
    run_training(load_config(TINY, SETTINGS), toy_catalog_dir, run, resume="none")
    return run


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.fixture
def lsst_input(toy_catalog_dir, tmp_path) -> Path:
    return write_inputs(tmp_path / "in.h5", lsst=Catalog.open(toy_catalog_dir, "test").read(0, 20)["lsst"])


def predict(run_or_ckpt: Path, inputs: Path, out: Path) -> int:
    return main(["predict", "--run", str(run_or_ckpt), "--input", str(inputs), "--out", str(out)])


# ------------------------------------------------------------------------------ item 1 / 10


def test_predict_refuses_weights_that_would_run_code(run, lsst_input, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    plant_payload(ckpt(run, 20) / "model.pt", marker)
    forge_manifest(ckpt(run, 20))  # checksums find damage, not malice: the unpickler must refuse it
    assert predict(run, lsst_input, tmp_path / "p.h5") == 2
    err = one_line(capsys)
    assert "step_00000020/model.pt: refused: it names the Python object posix.system" in err
    assert "weights_only" not in err  # torch's own message suggests weights_only=False
    assert not marker.exists() and not (tmp_path / "p.h5").exists()


def test_resume_sets_aside_a_checkpoint_that_would_run_code(run, toy_catalog_dir, tmp_path, caplog):
    marker = tmp_path / "PWNED"
    plant_payload(ckpt(run, 20) / "engine.pt", marker)
    forge_manifest(ckpt(run, 20))
    cfg = load_config(TINY, {**SETTINGS, "train.max_steps": 25})
    result = run_training(cfg, toy_catalog_dir, run, resume="auto")
    assert not marker.exists()
    assert result.steps == 25
    assert "engine.pt: refused: it names the Python object posix.system" in caplog.text
    assert (run / "checkpoints" / ".damaged-step_00000020" / "engine.pt").is_file()  # kept, not deleted


def test_deepspeeds_own_loads_are_restricted_too(tmp_path):
    """DeepSpeed calls torch.load(..., weights_only=False); inside restricted_loading that cannot run code."""
    from mosaic_hpc.training.safe_load import restricted_loading

    marker, path = tmp_path / "PWNED", tmp_path / "states.pt"
    torch.save({"module": {"w": torch.ones(2)}}, path)
    plant_payload(path, marker)
    with restricted_loading(), pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=False)
    assert not marker.exists()
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ  # restored afterwards


# ------------------------------------------------------------------------------ item 6


def test_truncated_weights_resume_from_the_previous_checkpoint(run, toy_catalog_dir, caplog):
    truncate(ckpt(run, 20) / "model.pt")
    cfg = load_config(TINY, {**SETTINGS, "train.max_steps": 25, "train.log_every": 1})
    result = run_training(cfg, toy_catalog_dir, run, resume="auto")
    assert result.steps == 25
    assert "step_00000020/model.pt: has" in caplog.text and "truncated" in caplog.text
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert 11 in steps and steps.index(11) > steps.index(10)  # steps 11-25 trained again from step 10


def test_flipped_byte_is_found_and_the_intact_checkpoint_named(run, lsst_input, tmp_path, capsys):
    flip_byte(ckpt(run, 20) / "model.pt")
    assert predict(run, lsst_input, tmp_path / "p.h5") == 2
    err = one_line(capsys)
    assert "step_00000020/model.pt: SHA-256 differs from the manifest" in err
    assert f"the older checkpoint {ckpt(run, 10)} is intact" in err
    assert predict(ckpt(run, 10), lsst_input, tmp_path / "p.h5") == 0


def test_explicit_resume_from_a_damaged_checkpoint_is_one_line(run, toy_catalog_dir, capsys):
    truncate(ckpt(run, 20) / "engine.pt")
    args = ["train", "--config", str(TINY), "--data", str(toy_catalog_dir), "--out", str(run)]
    assert main([*args, "--resume", str(ckpt(run, 20)), "--max-steps", "25"]) == 2
    assert "step_00000020/engine.pt: has" in one_line(capsys)


# ------------------------------------------------------------------------------ item 3


def test_nan_weights_are_refused_not_predicted(run, lsst_input, tmp_path, capsys):
    """A diverged run's checkpoint (every weight NaN, as written before the guard existed)."""
    weights = ckpt(run, 20) / "model.pt"
    state = torch.load(weights, weights_only=True)
    torch.save({k: torch.full_like(v, float("nan")) for k, v in state.items()}, weights)
    forge_manifest(ckpt(run, 20))
    assert predict(ckpt(run, 20), lsst_input, tmp_path / "p.h5") == 2
    assert f"model.pt: {len(state)} of {len(state)} weight tensors hold NaN or inf" in one_line(capsys)


# ------------------------------------------------------------------------------ item 14


@pytest.mark.parametrize("pointer", ["../../elsewhere/step_00000010", "/etc", "step_00000010/../../x"])
def test_latest_must_name_a_checkpoint_of_its_own_directory(run, lsst_input, tmp_path, capsys, pointer):
    (run / "checkpoints" / "latest").write_text(pointer)
    assert predict(run, lsst_input, tmp_path / "p.h5") == 2
    assert "checkpoints/latest: holds" in one_line(capsys)


@pytest.fixture
def watch_latest(monkeypatch):
    """Record every removal or rename of the directory ``latest`` names at that moment."""
    seen: list[str] = []

    def target(path: Path) -> Path | None:
        pointer = Path(path).parent / "latest"
        return pointer.parent / pointer.read_text().strip() if pointer.is_file() else None

    real_rmtree, real_replace = shutil.rmtree, os.replace

    def rmtree(path, *args, **kwargs):
        if target(Path(path)) == Path(path):
            seen.append(f"rmtree {path}")
        return real_rmtree(path, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if Path(src).is_dir() and target(Path(src)) == Path(src):
            seen.append(f"rename {src}")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", rmtree)
    monkeypatch.setattr(os, "replace", replace)
    return seen


def test_resaving_a_finished_run_never_leaves_latest_dangling(run, toy_catalog_dir, watch_latest):
    cfg = load_config(TINY, SETTINGS)
    result = run_training(cfg, toy_catalog_dir, run, resume="auto")  # finished: nothing to train
    assert result.steps == 20 and result.last_checkpoint == ckpt(run, 20)
    # A run resumed from further back saves step 20 again, over the old step 20.
    run_training(cfg, toy_catalog_dir, run, resume=str(ckpt(run, 10)))
    assert watch_latest == []
    assert (run / "checkpoints" / "latest").read_text() == "step_00000020"


def test_checkpoint_files_reach_the_disk_before_the_rename(tmp_path, toy_catalog_dir, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append(("rename", str(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    run = tmp_path / "run"
    run_training(load_config(TINY, {**SETTINGS, "train.max_steps": 10}), toy_catalog_dir, run, resume="none")
    final = ckpt(run, 10)
    published = events.index(("rename", str(final)))
    synced_before = {Path(p).name for kind, p in events[:published] if kind == "fsync" and ".tmp-step" in p}
    assert {p.name for p in final.iterdir()} <= synced_before | {"manifest.json"}
    assert ("fsync", str(final.parent / ".tmp-step_00000010")) in events[:published]  # its directory entries
    assert ("fsync", str(final.parent)) in events[published:]  # and the rename itself


def test_metrics_hold_each_step_once_after_a_crash_and_resume(run, toy_catalog_dir):
    """kill -9 after step 20 was logged but before its checkpoint: on disk, latest is step 10."""
    shutil.rmtree(ckpt(run, 20))
    (run / "checkpoints" / "latest").write_text("step_00000010")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 21, "loss/to')  # the line the kill cut off
    run_training(load_config(TINY, {**SETTINGS, "train.max_steps": 25}), toy_catalog_dir, run, resume="auto")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 25, steps


def test_a_checkpoint_alone_still_predicts_after_verification(trained, lsst_input, tmp_path):
    """Control: an intact checkpoint passes every check and predicts finite values."""
    out = tmp_path / "p.h5"
    assert predict(trained, lsst_input, out) == 0
    with h5py.File(out) as f:
        assert np.isfinite(f["predictions/sed"][()]).all()
