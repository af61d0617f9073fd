"""Photo-z scores against analytic values, the LSST error model, non-detection fill and baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from mosaic_hpc.evaluation import photoz


def _crps_numeric(mu: float, sigma: float, y: float) -> float:
    """CRPS by its definition: integral of (F(x) - 1[x >= y])^2 dx."""
    f = lambda x: (stats.norm.cdf(x, mu, sigma) - (x >= y)) ** 2
    lo, hi = min(mu, y) - 12 * sigma, max(mu, y) + 12 * sigma
    return integrate.quad(f, lo, y, limit=200)[0] + integrate.quad(f, y, hi, limit=200)[0]


def test_crps_of_gaussian_at_its_mean_is_analytic():
    # w = 0: sigma (2 phi(0) - 1/sqrt(pi)) = sigma (sqrt(2/pi) - 1/sqrt(pi))
    for sigma in (0.01, 0.1, 2.0):
        expected = sigma * (math.sqrt(2 / math.pi) - 1 / math.sqrt(math.pi))
        assert photoz.crps_gaussian(np.array([1.0]), np.array([sigma]), np.array([1.0]))[0] == pytest.approx(expected)


@pytest.mark.parametrize(("mu", "sigma", "y"), [(0.5, 0.1, 0.5), (0.5, 0.1, 0.62), (1.2, 0.3, 0.4), (2.0, 0.05, 2.3)])
def test_crps_matches_the_integral_definition(mu, sigma, y):
    got = photoz.crps_gaussian(np.array([mu]), np.array([sigma]), np.array([y]))[0]
    assert got == pytest.approx(_crps_numeric(mu, sigma, y), rel=1e-6, abs=1e-10)


def test_crps_tends_to_absolute_error_for_sharp_predictions():
    got = photoz.crps_gaussian(np.array([1.0]), np.array([1e-6]), np.array([1.3]))[0]
    assert got == pytest.approx(0.3, abs=1e-5)


def test_pit_is_uniform_for_calibrated_draws():
    rng = np.random.default_rng(1)
    n = 20_000
    mu, sigma = rng.uniform(0, 3, n), rng.uniform(0.01, 0.2, n)
    z = mu + sigma * rng.standard_normal(n)
    pit = photoz.pit_gaussian(mu, sigma, z)
    ks = photoz.ks_uniform(pit)
    assert ks < 1.63 / math.sqrt(n)  # Kolmogorov 1% critical value
    assert ks == pytest.approx(stats.kstest(pit, "uniform").statistic, abs=1e-12)
    np.testing.assert_allclose(photoz.pit_histogram(pit), 1.0, atol=0.08)
    # sigmas 3x too small: PITs pile up at 0 and 1 (U shape), far from uniform
    over = photoz.pit_gaussian(mu, sigma / 3, z)
    hist = photoz.pit_histogram(over)
    assert photoz.ks_uniform(over) > 0.2 and hist[0] > 2 and hist[-1] > 2 and hist[5] < 0.5


def test_point_and_gaussian_metrics():
    z = np.array([0.5, 1.0, 2.0, 1.5])
    zp = np.array([0.5, 1.0, 2.0, 0.5])  # one outlier: |dz| = 1 / 2.5 = 0.4
    m = photoz.point_metrics(zp, z)
    assert m["mae"] == pytest.approx(0.25) and m["outlier_fraction"] == pytest.approx(0.25) and m["n"] == 4
    g = photoz.gaussian_metrics(zp, np.full(4, 0.1), z)
    assert set(g) >= {"mae", "bias", "sigma_nmad", "outlier_fraction", "crps", "pit_ks", "pit_histogram"}
    assert len(g["pit_histogram"]) == 10


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
