"""Hostile and careless configs and step counts (issue 15, items 7, 10, 14; docs/hardening.md).

``1e-3`` is a number wherever a number is expected (the README writes it so); values that are not
finite, YAML that does not parse and empty files are one-line errors; ``--max-steps`` below one is
refused before anything is written.
"""

from __future__ import annotations

import pytest
from conftest import REPO

from mosaic_hpc.cli import main
from mosaic_hpc.config import load_config, parse_override

TINY = REPO / "configs" / "tiny.yaml"


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------ item 7


def test_the_readmes_learning_rate_override_is_a_number():
    cfg = load_config(TINY, dict([parse_override("train.lr=1e-3")]))
    assert cfg.train.lr == 1e-3


def test_exponent_notation_without_a_dot_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(TINY.read_text().replace("lr: 3.0e-3", "lr: 3e-3") + "\n")
    assert "lr: 3e-3" in path.read_text()
    assert load_config(path).train.lr == 3e-3


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ValueError, match="train.lr must be a finite number"):
        load_config(TINY, dict([parse_override(f"train.lr={value}")]))


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_train_refuses_max_steps_below_one_before_writing(toy_catalog_dir, tmp_path, capsys, steps):
    out = tmp_path / "run"
    args = ["train", "--config", str(TINY), "--data", str(toy_catalog_dir), "--out", str(out), "--max-steps", steps]
    assert main(args) == 2
    assert f"--max-steps must be >= 1, got {steps}" in one_line(capsys)
    assert not out.exists()


# ------------------------------------------------------------------------------ items 10 / 14


def test_invalid_yaml_in_set_is_one_line(toy_catalog_dir, tmp_path, capsys):
    args = ["train", "--config", str(TINY), "--data", str(toy_catalog_dir), "--out", str(tmp_path / "run")]
    assert main([*args, "--set", "train.betas=[0.9,"]) == 2
    assert "--set train.betas=[0.9,: the value is not valid YAML" in one_line(capsys)


def test_an_empty_config_file_is_refused(toy_catalog_dir, tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here yet\n")
    args = ["train", "--config", str(empty), "--data", str(toy_catalog_dir), "--out", str(tmp_path / "run")]
    assert main(args) == 2
    assert "empty.yaml: the file is empty" in one_line(capsys)
    assert not (tmp_path / "run").exists()
