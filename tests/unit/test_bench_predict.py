"""bench predict: writes its measurements with consistent arithmetic (never asserts a timing)."""

from __future__ import annotations

import json

import pytest

from mosaic_hpc.cli import main


def test_bench_predict_writes_rates_and_their_ratio(tiny_run_dir, toy_catalog_dir, tmp_path):
    out = tmp_path / "b.json"
    argv = ["bench", "predict", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--n", "64"]
    assert main([*argv, "--batch-size", "16", "--repeats", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["galaxies"] == 64 and r["rank"] == 0 and r["given"] == "given=lsst"
    assert r["forward_over_predict"] == pytest.approx(r["forward_galaxies_per_s"] / r["predict_galaxies_per_s"])


def test_bench_predict_rejects_zero_repeats(tiny_run_dir, toy_catalog_dir, tmp_path, capsys):
    argv = ["bench", "predict", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--repeats", "0"]
    assert main([*argv, "--out", str(tmp_path / "b.json")]) == 2
    assert "--repeats" in capsys.readouterr().err
