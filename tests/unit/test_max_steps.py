"""--max-steps sets the schedule's length (issue 17, point 2): `--max-steps N` and
`--set train.max_steps=N` train with the same learning rates, for `mosaic-hpc train` and the
launcher entry point `mosaic_hpc/train.py` (which launchers/ and quickstart's DeepSpeed path call)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from mosaic_hpc.cli import main
from mosaic_hpc.config import load_config
from mosaic_hpc.train import main as launcher_main
from mosaic_hpc.training.schedule import lr_factor

N = 12
COMMON = ["--set", "train.log_every=1", "--set", "train.eval_every=0", "--set", "train.warmup_steps=3"]


def _lrs(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["optim/lr"] for r in records if "optim/lr" in r}


def _args(catalog: Path, run: Path) -> list[str]:
    return ["--config", str(REPO / "configs" / "tiny.yaml"), "--data", str(catalog), "--out", str(run), *COMMON]


@pytest.mark.parametrize("entry", ["mosaic-hpc train", "mosaic_hpc/train.py"])
def test_max_steps_flag_and_config_key_give_the_same_learning_rates(tmp_path, toy_catalog_dir, entry):
    def train(run: Path, extra: list[str]) -> dict[int, float]:
        if entry == "mosaic-hpc train":
            assert main(["train", *_args(toy_catalog_dir, run), "--threads", "1", *extra]) == 0
        else:
            assert launcher_main([*_args(toy_catalog_dir, run), *extra]) == 0
        return _lrs(run)

    flag = train(tmp_path / "flag", ["--max-steps", str(N)])
    key = train(tmp_path / "key", ["--set", f"train.max_steps={N}"])
    assert sorted(flag) == list(range(1, N + 1))
    assert flag == key
    cfg = load_config(REPO / "configs" / "tiny.yaml", {"train.max_steps": N, "train.warmup_steps": 3})
    # the rate logged after step s is that of the next update; the cosine ends at the floor at step N
    for step, lr in flag.items():
        assert lr == pytest.approx(cfg.train.lr * lr_factor(step, cfg.train), rel=1e-9)
    assert flag[N] == pytest.approx(cfg.train.lr * cfg.train.min_lr_ratio, rel=1e-9)
    saved = yaml.safe_load((tmp_path / "flag" / "config.yaml").read_text())
    assert saved["train"]["max_steps"] == N  # the run records what it ran


def test_bad_max_steps_is_one_line(tmp_path, toy_catalog_dir, capsys):
    assert main(["train", *_args(toy_catalog_dir, tmp_path / "r"), "--max-steps", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-steps must be >= 1" in err[0]
    assert not (tmp_path / "r").exists()
