"""Photo-z scores (qp/RAIL metrics) against analytic values, the LSST error model, non-detection fill and baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from mosaic_hpc.evaluation import pdf, photoz


def _crps_numeric(mu: float, sigma: float, y: float) -> float:
    """CRPS by its definition: integral of (F(x) - 1[x >= y])^2 dx."""
    f = lambda x: (stats.norm.cdf(x, mu, sigma) - (x >= y)) ** 2
    lo, hi = min(mu, y) - 12 * sigma, max(mu, y) + 12 * sigma
    return integrate.quad(f, lo, y, limit=200)[0] + integrate.quad(f, y, hi, limit=200)[0]


def _gaussians(mu, sigma):
    return pdf.gaussian_ensemble(np.atleast_1d(mu), np.atleast_1d(sigma))


def test_crps_of_gaussian_at_its_mean_is_analytic():
    # w = 0: sigma (2 phi(0) - 1/sqrt(pi)) = sigma (sqrt(2/pi) - 1/sqrt(pi))
    grid = np.linspace(-10.0, 12.0, 200_001)
    for sigma in (0.01, 0.1, 2.0):
        expected = sigma * (math.sqrt(2 / math.pi) - 1 / math.sqrt(math.pi))
        got = photoz.crps_from_cdf(_gaussians(1.0, sigma), np.array([1.0]), grid)[0]
        assert got == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(("mu", "sigma", "y"), [(0.5, 0.1, 0.5), (0.5, 0.1, 0.62), (1.2, 0.3, 0.4), (2.0, 0.05, 2.3)])
def test_crps_matches_the_integral_definition(mu, sigma, y):
    # the scores' 0.01 grid: the cell holding the truth is split there, so what is left is the
    # trapezoid rule's smooth error, about dz^2 / (12 sigma) (0.7% at sigma = 0.1, dz = 0.01)
    got = photoz.crps_from_cdf(_gaussians(mu, sigma), np.array([y]), np.linspace(-2.0, 5.0, 701))[0]
    assert got == pytest.approx(_crps_numeric(mu, sigma, y), rel=1e-2)
    fine = photoz.crps_from_cdf(_gaussians(mu, sigma), np.array([y]), np.linspace(-2.0, 5.0, 70_001))[0]
    assert fine == pytest.approx(_crps_numeric(mu, sigma, y), rel=1e-6)


def test_crps_tends_to_absolute_error_for_sharp_predictions():
    got = photoz.crps_from_cdf(_gaussians(1.0, 1e-4), np.array([1.3]), np.linspace(0.0, 3.0, 300_001))[0]
    assert got == pytest.approx(0.3, abs=1e-4)


def test_pit_is_uniform_for_calibrated_draws():
    rng = np.random.default_rng(1)
    n = 20_000
    mu, sigma = rng.uniform(0.3, 2.7, n), rng.uniform(0.01, 0.1, n)
    z = mu + sigma * rng.standard_normal(n)
    m = photoz.pdf_metrics(_gaussians(mu, sigma), z)
    assert m["pit_ks"] < 1.63 / math.sqrt(n)  # Kolmogorov 1% critical value
    assert m["pit_ks"] == pytest.approx(stats.kstest(stats.norm.cdf(z, mu, sigma), "uniform").statistic, abs=1e-9)
    np.testing.assert_allclose(m["pit_histogram"], 1.0, atol=0.08)
    # sigmas 3x too small: PITs pile up at 0 and 1 (U shape), far from uniform; every score is worse
    over = photoz.pdf_metrics(_gaussians(mu, sigma / 3), z)
    hist = over["pit_histogram"]
    assert over["pit_ks"] > 0.2 and hist[0] > 2 and hist[-1] > 2 and hist[5] < 0.5
    for key in ("pit_ks", "pit_cvm", "pit_ad", "cde_loss", "brier", "crps"):
        assert over[key] > m[key], key


def test_brier_uses_bin_probabilities():
    grid = np.linspace(0.0, 3.0, 301)
    # all mass in the true bin scores 0, all mass in one wrong bin 2 (the maximum): half and half, 1
    n = 200
    mu = 0.005 + 0.01 * np.arange(n)  # bin centres, one galaxy per bin, sigma a tenth of the bin
    inside = mu + np.clip(0.001 * np.random.default_rng(3).standard_normal(n), -0.004, 0.004)
    z = np.where(np.arange(n) % 2 == 0, inside, mu + 0.5)
    sharp = photoz.pdf_metrics(_gaussians(mu, np.full(n, 1e-3)), z, grid)
    assert sharp["brier"] == pytest.approx(1.0, abs=1e-4)
    p = photoz.bin_probabilities(_gaussians([0.0, 1.5], [0.1, 0.3]), grid)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)  # the tail below z = 0 is renormalised away


def test_cde_loss_is_the_izbicki_lee_estimate():
    # one Gaussian per galaxy: int f^2 = 1 / (2 sigma sqrt(pi)), minus twice the density at the truth
    rng = np.random.default_rng(2)
    grid = np.linspace(0.0, 3.0, 3001)
    mu, sigma = rng.uniform(0.5, 2.5, 300), rng.uniform(0.05, 0.2, 300)
    z = mu + sigma * rng.standard_normal(300)
    expected = np.mean(1 / (2 * sigma * math.sqrt(math.pi)) - 2 * stats.norm.pdf(z, mu, sigma))
    got = photoz.pdf_metrics(_gaussians(mu, sigma), z, grid)["cde_loss"]
    assert got == pytest.approx(expected, rel=2e-3)


def test_point_metrics_and_one_scoring_path():
    z = np.array([0.5, 1.0, 2.0, 1.5])
    zp = np.array([0.5, 1.0, 2.0, 0.5])  # one outlier: |dz| = 1 / 2.5 = 0.4
    m = photoz.point_metrics(zp, z)
    assert m["mae"] == pytest.approx(0.25) and m["outlier_fraction"] == pytest.approx(0.25) and m["n"] == 4
    assert m["outlier_rate_rail"] == pytest.approx(0.25) and m["sigma_iqr"] >= 0
    assert photoz.score(zp, None, z) == m
    z, zp = np.tile(z, 50), np.tile(zp, 50)
    g = photoz.score(zp, _gaussians(zp, np.linspace(0.05, 0.15, 200)), z)
    assert set(g) >= {*m, "crps", "pit_ks", "pit_cvm", "pit_ad", "cde_loss", "brier", "pit_histogram"}
    assert len(g["pit_histogram"]) == 10 and g["sigma_nmad"] == pytest.approx(photoz.point_metrics(zp, z)["sigma_nmad"])


def test_error_model_gives_0p2_mag_at_the_depth_and_recovers_fitted_depths():
    m5 = np.array([25.2, 26.9, 27.1, 26.7, 26.0, 25.1])
    at_depth = photoz.lsst_mag_error(m5[None, :], m5)
    np.testing.assert_allclose(at_depth, math.sqrt(0.04 + photoz.LSST_SIGMA_SYS**2))  # Ivezic+19: x = 1
    rng = np.random.default_rng(0)
    true = rng.uniform(20, 26, (3000, 6))
    mag, err = photoz.observe(true, m5, rng)
    np.testing.assert_allclose(photoz.fit_depths(mag, err), m5, atol=0.02)
    # non-detections only where the noise can make the flux negative: faint, never bright
    missing = np.isnan(mag)
    assert np.isnan(err[missing]).all() and np.isfinite(err[~missing]).all()
    assert not missing[true < m5 - 1.0].any()


def test_nondetection_fill_and_features():
    fill = photoz.NonDetectionFill.from_depths(np.array([25.0, 26.0]))
    np.testing.assert_allclose(fill.mag, [25.0 + 2.5 * math.log10(5), 26.0 + 2.5 * math.log10(5)])
    mag = np.array([[24.0, np.nan], [np.nan, 23.0]])
    err = np.array([[0.1, np.nan], [np.nan, 0.05]])
    m, e = fill.apply(mag, err)
    assert m[0, 1] == fill.mag[1] and m[1, 0] == fill.mag[0] and e[0, 1] == pytest.approx(1.0857, abs=1e-4)
    x = photoz.photometric_features(m, e)
    assert x.shape == (2, 5) and x[0, 2] == pytest.approx(24.0 - fill.mag[1])
    with pytest.raises(ValueError, match="NonDetectionFill"):
        photoz.photometric_features(mag, err)


def test_baselines_learn_a_smooth_relation():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2000, 4))
    z = 2.0 * x[:, 0] + 0.5 * x[:, 1] ** 2
    models = photoz.fit_baselines(x[:1500], z[:1500], n_trees=30)
    for name, model in models.items():
        mae = np.mean(np.abs(model.predict(x[1500:]) - z[1500:]))
        assert mae < 0.08, name
    assert models["knn"][-1].n_neighbors in (5, 10, 20, 40)
