"""benchmarks/photoz_dc2.py --quick: every method of the real benchmark runs and gives finite scores.

Toy size (a few hundred galaxies, a few steps): the numbers are checked for sanity, never timed
or compared with each other.
"""

import importlib.util
import json
import math
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.benchmark

POINT = ("mae", "bias", "sigma_nmad", "outlier_fraction")
GAUSSIAN = ("crps", "pit_ks")


def _missing_inputs() -> str:
    if importlib.util.find_spec("rail") is None:
        return "pz-rail-base (DC2 test data) is not installed"
    for mod in ("sklearn", "colossus", "speclite", "sedpy"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed"
    return ""


@pytest.mark.skipif(bool(_missing_inputs()), reason=_missing_inputs() or "inputs present")
def test_quick_benchmark_gives_finite_metrics_for_every_method(tmp_path):
    out = tmp_path / "pz"
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "photoz_dc2.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    methods = data["methods"]
    assert set(methods) >= {"knn", "random_forest", "mosaic", "mosaic_pretrained"}
    for name, m in methods.items():
        for key in POINT:
            assert math.isfinite(m[key]), (name, key)
        assert m["n"] == data["n_test"]
    for name in ("mosaic", "mosaic_pretrained"):
        for key in GAUSSIAN:
            assert math.isfinite(methods[name][key]), (name, key)
        hist = methods[name]["pit_histogram"]
        assert len(hist) == 10 and sum(hist) == pytest.approx(10.0)
    assert "## Photo-z on DC2 (RAIL test data)" in res.stdout
