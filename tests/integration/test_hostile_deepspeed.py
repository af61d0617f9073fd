"""Hostile DeepSpeed checkpoints (issue 15, items 1, 6, 10; docs/hardening.md).

DeepSpeed unpickles its own files (``mp_rank_00_model_states.pt``, the ZeRO optimizer shards)
with ``weights_only=False``: a ``__reduce__`` payload planted in one ran a shell command on
resume. Now every file is verified with the restricted unpickler before DeepSpeed's loader sees
it, and DeepSpeed's reads themselves run restricted. Real DeepSpeed (ZeRO-1, CPU, one rank:
every file kind is there) started as a user starts it: ``python -m mosaic_hpc.train``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from hostile import forge_manifest, plant_payload
from test_deepspeed_train import BIN, REPO, TINY, _launch

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (BIN / "deepspeed").exists(), reason="deepspeed not installed"),
]

SETTINGS = ["--max-steps", "20", "--set", "train.save_every=10", "--set", "train.eval_every=0"]


def train(data: Path, out: Path, *extra: str):
    cmd = [sys.executable, "-m", "mosaic_hpc.train", "--deepspeed_config", str(REPO / "configs" / "zero1.json")]
    return _launch([*cmd, "--config", str(TINY), "--data", str(data), "--out", str(out), *SETTINGS, *extra])


@pytest.fixture(scope="module")
def ds_run(toy_catalog_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile_ds") / "run"
    proc = train(toy_catalog_dir, out)
    assert proc.returncode == 0, proc.log
    return out


@pytest.fixture
def run(ds_run, tmp_path) -> Path:
    return Path(shutil.copytree(ds_run, tmp_path / "run"))


def ckpt(run: Path, step: int) -> Path:
    return run / "checkpoints" / f"step_{step:08d}"


def test_code_planted_in_the_model_states_never_runs(run, toy_catalog_dir, tmp_path):
    marker = tmp_path / "PWNED"
    plant_payload(ckpt(run, 20) / "mp_rank_00_model_states.pt", marker)
    forge_manifest(ckpt(run, 20))
    proc = train(toy_catalog_dir, run, "--resume", str(ckpt(run, 20)), "--max-steps", "25")
    assert not marker.exists(), "the payload ran"
    assert proc.returncode == 2, proc.log
    last = proc.stderr.strip().splitlines()[-1]
    assert "mp_rank_00_model_states.pt: refused: it names the Python object posix.system" in last, proc.log


def test_a_tampered_optimizer_shard_is_set_aside_and_resume_falls_back(run, toy_catalog_dir, tmp_path):
    marker = tmp_path / "PWNED"
    plant_payload(ckpt(run, 20) / "zero_pp_rank_0_mp_rank_00_optim_states.pt", marker)
    forge_manifest(ckpt(run, 20))
    proc = train(toy_catalog_dir, run, "--max-steps", "25")
    assert not marker.exists(), "the payload ran"
    assert proc.returncode == 0, proc.log
    assert "cannot resume from step_00000020" in proc.stderr and "at step 10," in proc.stderr
    assert (run / "checkpoints" / ".damaged-step_00000020").is_dir()
    assert (run / "checkpoints" / "latest").read_text() == "step_00000025"


def test_a_model_shape_change_on_resume_is_one_line(run, toy_catalog_dir):
    proc = train(toy_catalog_dir, run, "--set", "model.d_model=64", "--allow-change", "model.d_model")
    assert proc.returncode == 2, proc.log
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "DeepSpeed could not load it (RuntimeError:" in errors[0], proc.log
    assert "Traceback" not in proc.stderr
