"""One resolver for every ``--config``: a preset name finds the shipped file from any directory,
in a checkout and after a non-editable ``pip install .`` (configs ship as package data)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mosaic_hpc.cli import main
from mosaic_hpc.config import CONFIG_DIR, resolve_config, resolve_deepspeed_config

REPO = Path(__file__).resolve().parents[2]


def test_config_path_names_presets_and_rejects_unknown():
    assert resolve_config("tiny").name == "tiny.yaml"
    with pytest.raises(ValueError, match="presets"):
        resolve_config("no-such-preset")


def test_missing_yaml_path_is_a_missing_file_not_a_preset(tmp_path):
    with pytest.raises(FileNotFoundError, match="mine.yaml"):
        resolve_config(tmp_path / "mine.yaml")


def test_ds_config_path_finds_shipped_jsons_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a job's scratch directory, not the checkout
    assert resolve_deepspeed_config("configs/zero2.json") == CONFIG_DIR / "zero2.json"
    assert resolve_deepspeed_config("zero3") == CONFIG_DIR / "zero3.json"
    mine = tmp_path / "zero2.json"
    mine.write_text("{}")
    assert resolve_deepspeed_config("zero2.json") == Path("zero2.json")  # a file given wins
    with pytest.raises(ValueError, match="zero9.*shipped.*zero1.json"):
        resolve_deepspeed_config("zero9")


def test_the_package_configs_are_the_checkouts():
    # one source of truth: the package's configs/ is the checkout's configs/, not a copy that drifts
    assert CONFIG_DIR == (REPO / "configs").resolve()


def test_train_takes_a_preset_name_from_any_directory(tmp_path, monkeypatch, toy_catalog_dir):
    monkeypatch.chdir(tmp_path)
    rc = main(["train", "--config", "tiny", "--data", str(toy_catalog_dir), "--out", "run", "--max-steps", "2"])
    assert rc == 0
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()


def test_deepspeed_entry_point_takes_a_preset_name(tmp_path, toy_catalog_dir):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    cmd = [sys.executable, str(REPO / "mosaic_hpc" / "train.py"), "--config", "tiny"]
    cmd += ["--data", str(toy_catalog_dir), "--out", str(tmp_path / "run"), "--max-steps", "2"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()


@pytest.mark.slow
def test_non_editable_install_trains_with_a_preset(tmp_path, toy_catalog_dir):
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target)]
    subprocess.run([*pip, str(REPO)], check=True, capture_output=True, timeout=600)
    assert (target / "mosaic_hpc" / "configs" / "tiny.yaml").is_file()
    assert not (target / "mosaic_hpc" / "configs").is_symlink()  # a real copy in the installed package
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)  # the installed copy only, never the checkout
    code = (
        "import sys, mosaic_hpc; from mosaic_hpc.cli import main; "
        "assert mosaic_hpc.__file__.startswith(sys.argv[1]), mosaic_hpc.__file__; "
        "sys.exit(main(sys.argv[2:]))"
    )
    cmd = [sys.executable, "-c", code, str(target), "train", "--config", "tiny"]
    cmd += ["--data", str(toy_catalog_dir), "--out", "run", "--max-steps", "2"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (work / "run" / "checkpoints" / "latest").exists()
