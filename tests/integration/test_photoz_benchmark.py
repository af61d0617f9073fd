"""benchmarks/photoz_dc2.py --quick: every method of the real benchmark runs and gives finite scores.

Toy size (a few hundred galaxies, a few steps): the numbers are checked for sanity, never timed
or compared with each other. The validation rows that score MOSAIC's tuning choices must be held
out of every fit and apart from the test split.
"""

import importlib.util
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, benchmark_script

pytestmark = pytest.mark.benchmark

POINT = ("mae", "bias", "sigma_nmad", "outlier_fraction", "sigma_iqr", "outlier_rate_rail")
PDF = ("crps", "pit_ks", "pit_cvm", "pit_ad", "cde_loss", "brier")


def _missing_inputs() -> str:
    if importlib.util.find_spec("rail") is None:
        return "pz-rail-base (DC2 test data) is not installed"
    for mod in ("sklearn", "colossus", "speclite", "sedpy", "qp", "flexcode"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed"
    return ""


@pytest.mark.skipif(bool(_missing_inputs()), reason=_missing_inputs() or "inputs present")
def test_validation_split_is_the_importers_seeded_split_of_the_training_file(tmp_path):
    from mosaic_hpc.data.catalog import Catalog
    from mosaic_hpc.data.importer import SplitRule, import_catalog

    bench = benchmark_script("photoz_dc2")
    train_path, test_path = bench.dc2_paths()

    def val_rows(seed: int, out) -> np.ndarray:
        rule = SplitRule(val_fraction=0.15, seed=seed)
        import_catalog(train_path, bench.MAPPING, out, input_test=test_path, show_progress=False, split=rule)
        fit, val = Catalog.open(out, "train"), Catalog.open(out, "val")
        assert val.n_rows == round(0.15 * 10_225) and fit.n_rows + val.n_rows == 10_225
        rows = val.read_columns(0, val.n_rows)["source_row"]
        assert np.intersect1d(rows, fit.read_columns(0, fit.n_rows)["source_row"]).size == 0
        return np.sort(rows)

    a, b = val_rows(0, tmp_path / "a"), val_rows(0, tmp_path / "b")
    assert np.array_equal(a, b) and not np.array_equal(a, val_rows(1, tmp_path / "c"))
    # the DC2 file is ordered by redshift: the validation rows must span it, not be a block of it
    assert a.min() < 0.05 * 10_225 and a.max() > 0.95 * 10_225


@pytest.mark.skipif(bool(_missing_inputs()), reason=_missing_inputs() or "inputs present")
def test_quick_benchmark_gives_finite_metrics_for_every_method(tmp_path):
    out = tmp_path / "pz"
    cmd = [sys.executable, str(REPO / "benchmarks" / "photoz_dc2.py"), "--quick", "--out", str(out), "--ensemble", "2"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    methods, val_methods = data["methods"], data["val_methods"]
    expected = {"flexzboost", "knn", "random_forest", "mosaic", "mosaic_pretrained", "mosaic_pretrained_single"}
    assert set(methods) == expected | {"mock_only_default", "mock_only_survey_reweight"}
    assert data["pretrain_chosen"] in ("default", "survey+reweight")
    rw = data["mock_reweight"]["survey+reweight"]
    assert 0.0 < rw["effective_fraction"] <= 1.0 and 0.0 <= rw["auc"] <= 1.0
    assert set(val_methods) == set(methods)
    # validation rows: rows of the RAIL training file, held out of the fitting rows, scored apart from test
    val_rows = np.array(data["val_rows"])
    assert data["n_fit"] + data["n_val"] == data["n_train"] and len(val_rows) == data["n_val"] > 0
    assert len(np.unique(val_rows)) == len(val_rows) and 0 <= val_rows.min() and val_rows.max() < data["n_source_rows"]
    for name, m in methods.items():
        for key in POINT:
            assert math.isfinite(m[key]) and math.isfinite(val_methods[name][key]), (name, key)
        assert m["n"] == data["n_test"]
        assert val_methods[name]["n"] == data["n_val"]
    # one scoring path: every p(z) method (FlexZBoost through RAIL, MOSAIC) has every p(z) score
    for name in ("flexzboost", "mosaic", "mosaic_pretrained", "mock_only_default", "mock_only_survey_reweight"):
        for key in PDF:
            assert math.isfinite(methods[name][key]) and math.isfinite(val_methods[name][key]), (name, key)
        hist = methods[name]["pit_histogram"]
        assert len(hist) == 10 and sum(hist) == pytest.approx(10.0)
    # every fit (baselines, scratch and fine-tuned MOSAIC) saw only the fitting rows
    from mosaic_hpc.data.catalog import Catalog

    assert Catalog.open(out / "dc2_filled", "train").n_rows == data["n_fit"]
    assert Catalog.open(out / "dc2_filled", "test").n_rows == data["n_val"]
    for name in ("knn", "random_forest"):
        assert not set(PDF) & set(methods[name])  # point estimates only
    assert "## Photo-z on DC2 (RAIL test data)" in res.stdout and "| flexzboost |" in res.stdout
    fzb = data["flexzboost"]
    assert fzb["nbump"] == 3 and 0.02 <= fzb["bump_threshold"] <= 0.35 and 0.7 <= fzb["sharpen_alpha"] <= 2.1
    # --reuse keeps the finished MOSAIC runs (their weights untouched) and scores them again: the same numbers
    weights = [out / run / "checkpoints" / (out / run / "checkpoints" / "latest").read_text() / "model.pt"
               for run in ("run_mosaic", "run_finetune_0", "run_finetune_1")]  # fmt: skip
    stamps = [w.stat().st_mtime_ns for w in weights]
    again = subprocess.run([*cmd, "--reuse"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert [w.stat().st_mtime_ns for w in weights] == stamps
    rescored = json.loads((out / "results.json").read_text())["methods"]
    for name in ("mosaic", "mosaic_pretrained", "mosaic_pretrained_single", "mock_only_default"):
        for key in ("sigma_nmad", "outlier_fraction", "pit_ks"):
            assert rescored[name][key] == pytest.approx(methods[name][key], rel=1e-9, abs=1e-12), (name, key)
