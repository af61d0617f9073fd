"""Figure 2 and the report: band arithmetic on known percentiles, files written, CLI switches."""

import numpy as np
import pytest
from conftest import REPO

from mosaic_hpc.cli import main
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.data.configurations import paper_configurations
from mosaic_hpc.evaluation.figures import _spans, display_axis, plot_figure2, running_percentiles, sample_rows
from mosaic_hpc.evaluation.metrics import evaluate, units
from mosaic_hpc.evaluation.predictor import load_run
from mosaic_hpc.evaluation.report import ReportImage, write_report


@pytest.fixture(scope="module")
def results(tiny_run_dir, toy_catalog_dir):
    predictor = load_run(tiny_run_dir, device="cpu")
    catalog = Catalog.open(toy_catalog_dir, "test")
    configs = paper_configurations(predictor.schema)
    return predictor, evaluate(predictor, catalog, configs, keep_outputs=True)


def test_running_percentiles_recover_known_band():
    # Ten true values 0..9; for each, predictions spread evenly over [k - 1, k + 1], whose 16th,
    # 50th and 84th percentiles are exactly k - 0.68, k and k + 0.68.
    spread = np.linspace(-1.0, 1.0, 1001)
    truth = np.repeat(np.arange(10.0), spread.size)
    pred = truth + np.tile(spread, 10)
    centers, (p16, p50, p84) = running_percentiles(truth, pred, n_bins=10)
    assert centers.shape == (10,)
    np.testing.assert_allclose(p50, np.arange(10.0), atol=1e-9)
    np.testing.assert_allclose(p16, np.arange(10.0) - 0.68, atol=1e-9)
    np.testing.assert_allclose(p84, np.arange(10.0) + 0.68, atol=1e-9)


def test_running_percentiles_gaussian_band_is_one_sigma():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 1, 200_000)
    pred = truth + rng.normal(0, 0.1, truth.size)
    centers, (p16, p50, p84) = running_percentiles(truth, pred, n_bins=8)
    # Inside a bin of width 1/8 the median tracks the bin centre; the band half-width is sigma
    # widened by the uniform spread of truth in the bin: sqrt(0.1^2 + (0.125^2 / 12)) ~= 0.1063.
    np.testing.assert_allclose(p50, centers, atol=0.01)
    np.testing.assert_allclose(0.5 * (p84 - p16), np.hypot(0.1, 0.125 / np.sqrt(12)), rtol=0.03)


def test_running_percentiles_sparse_bins_nan_and_bad_input():
    truth = np.r_[np.zeros(10), 1.0, np.full(10, 2.0), np.nan]
    pred = np.r_[np.zeros(10), 1.0, np.full(10, 2.0), 5.0]
    _, values = running_percentiles(truth, pred, n_bins=3, min_count=5)
    assert np.isnan(values[:, 1]).all() and np.isfinite(values[:, [0, 2]]).all()
    with pytest.raises(ValueError, match="truth has 3 values but pred has 2"):
        running_percentiles(np.zeros(3), np.zeros(2))


def test_spans_and_axes(results):
    assert _spans(np.array([1, 1, 0, 0, 1, 0, 1], bool)) == [(0, 2), (4, 5), (6, 7)]
    assert _spans(np.zeros(4, bool)) == []
    predictor, _ = results
    x, label, logx = display_axis(predictor.schema["sfh"])
    assert "Gyr" in label and not logx and x.shape == (predictor.schema["sfh"].length,)
    x, label, _ = display_axis(predictor.schema["spherex"])  # 0.75-5 micron in the toy schema
    assert "mu" in label and x.max() == pytest.approx(5.0)
    _, label, logx = display_axis(predictor.schema["sed"])
    assert "rest-frame" in label and "AA" in label and logx


def test_sample_rows_prefer_defined_vectors():
    truth = {"sfh": np.ones((10, 4))}
    truth["sfh"][:7, 1:] = np.nan  # only rows 7, 8, 9 are mostly defined
    np.testing.assert_array_equal(sample_rows(truth, ["sfh"], 3, seed=0), [7, 8, 9])


def test_figure2_written(results, tmp_path):
    predictor, res = results
    out = plot_figure2(res[:2], predictor.schema, tmp_path / "sub" / "fig2.png", n_plot=50)
    assert out.is_file() and out.stat().st_size > 10_000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure2_needs_kept_outputs(results, tmp_path, tiny_run_dir, toy_catalog_dir):
    predictor, res = results
    bare = evaluate(predictor, Catalog.open(toy_catalog_dir, "test"), paper_configurations(predictor.schema)[:1])
    with pytest.raises(ValueError, match="keep_outputs=True"):
        plot_figure2(bare, predictor.schema, tmp_path / "f.png")
    with pytest.raises(ValueError, match="n-plot"):
        plot_figure2(res, predictor.schema, tmp_path / "f.png", n_plot=0)


def test_report_embeds_table1_and_relative_images(results, tmp_path):
    predictor, res = results
    img = tmp_path / "eval" / "fig.png"
    img.parent.mkdir()
    img.write_bytes(b"\x89PNG fake")
    report = write_report(tmp_path / "report.md", res, units(predictor), [ReportImage("Figure 2", img, "how to read")])
    text = report.read_text()
    assert "| Input configuration |" in text and "LSST magnitudes only" in text and "sigma_NMAD" in text
    assert "![Figure 2](eval/fig.png)" in text and "how to read" in text
    assert "given=lsst,sfh[t<10Gyr]" in text and "*given*" in text  # configuration specs and the SFH note
    with pytest.raises(ValueError, match="missing or empty"):
        write_report(tmp_path / "r.md", res, units(predictor), [ReportImage("x", tmp_path / "nope.png")])


def test_evaluate_cli_figures_switch(tiny_run_dir, toy_catalog_dir, tmp_path, capsys):
    args = ["evaluate", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--max-rows", "100"]
    assert main([*args, "--out", str(tmp_path / "a"), "--n-plot", "30"]) == 0
    assert (tmp_path / "a" / "figure2.png").stat().st_size > 0
    text = (tmp_path / "a" / "report.md").read_text()
    assert "![Figure 2: predictions for each input configuration](figure2.png)" in text
    assert main([*args, "--out", str(tmp_path / "b"), "--no-figures"]) == 0
    assert (tmp_path / "b" / "table1.md").is_file() and not (tmp_path / "b" / "figure2.png").exists()
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "c"), "--n-plot", "0"]) == 2
    assert "--n-plot must be >= 1" in capsys.readouterr().err


def test_evaluate_help_mentions_figures(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert "--no-figures" in out and "--n-plot" in out
    assert (REPO / "docs" / "science_outputs.md").is_file()
