"""Photometric-redshift tools: scores (qp/RAIL metrics), a photometric error model and baselines.

Scores follow the photo-z literature (Schmidt et al. 2020, MNRAS 499, 1587, the LSST-DESC data
challenge) and are computed, where they exist there, by the libraries RAIL users score with:
point estimates by MAE, the :func:`~.metrics.photoz_stats` of dz = (z_phot - z) / (1 + z)
(sigma_NMAD and the LSST SRD outlier fraction |dz| > 0.15, kept because every photo-z table
quotes them) and RAIL's point metrics (``qp.metrics``: sigma_IQR, and the Science Book outlier
rate |dz| > max(0.06, 3 sigma_IQR)); predictive distributions, given as ``qp.Ensemble`` whatever
the method (Gaussian, mixture, FlexZBoost's gridded p(z)), by the probability integral transform
(PIT: the predictive CDF at the true redshift, uniform for a calibrated model) and its KS, CvM
and AD statistics against U(0, 1) (``qp.metrics.PIT``), the conditional density estimation loss
(Izbicki & Lee 2017, ``qp.metrics.CDELossMetric``), the Brier score (``qp.metrics.brier.Brier``
over the grid's bins) and the continuous ranked probability score (CRPS, redshift units; qp has none, so it is
integrated here from the ensemble's CDF on the same grid).

The error model (Ivezic et al. 2019, ApJ 873, 111, Sec. 3.2.1) turns true magnitudes into LSST-like
observed magnitudes with errors, so that a simulated catalog can carry the same inputs
(magnitudes *and* their errors) as a survey catalog. Baselines (k nearest neighbours, random
forest; scikit-learn, imported lazily) use magnitudes, colours and errors as features.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .metrics import photoz_stats

MAG_PER_LN_FLUX = 2.5 / math.log(10.0)  # 1.0857: sigma_m = 1.0857 sigma_f / f for small errors
LSST_GAMMA = (0.038, 0.039, 0.039, 0.039, 0.039, 0.039)  # Ivezic+19 Table 2, u g r i z y
LSST_SIGMA_SYS = 0.005  # mag, systematic floor of Ivezic+19 Eq. 4
SNR_LIMIT = 5.0  # depths m5 are 5-sigma point-source limits
# Redshift grid of the distribution scores: RAIL's DC2 defaults (zmin 0, zmax 3, 301 points), the
# grid FlexZBoost evaluates its p(z) on; 0.01 in z, finer than any sigma scored here.
Z_GRID = np.linspace(0.0, 3.0, 301)


def pit_histogram(pit: np.ndarray, n_bins: int = 10) -> list[float]:
    """Density of the PITs in ``n_bins`` equal bins of [0, 1] (1.0 everywhere when calibrated).

    A U shape means over-confident sigmas, a hump under-confident ones, a slope a biased mean.
    """
    counts, _ = np.histogram(np.clip(pit, 0.0, 1.0), bins=n_bins, range=(0.0, 1.0))
    return (counts * n_bins / max(len(pit), 1)).tolist()


def point_metrics(z_pred: np.ndarray, z_true: np.ndarray) -> dict[str, float]:
    """MAE in redshift; bias, sigma_NMAD and SRD outlier fraction of dz/(1+z); RAIL's point metrics."""
    from qp.metrics import PointOutlierRate, PointSigmaIQR

    z_pred, z_true = np.asarray(z_pred, np.float64), np.asarray(z_true, np.float64)
    return {
        "mae": float(np.mean(np.abs(z_pred - z_true))),
        **photoz_stats(z_pred, z_true),
        "sigma_iqr": float(PointSigmaIQR().evaluate(z_pred, z_true)),
        "outlier_rate_rail": float(PointOutlierRate().evaluate(z_pred, z_true)),
    }


def bin_probabilities(ens: Any, z_grid: np.ndarray = Z_GRID) -> np.ndarray:
    """[N, G - 1] probability of each galaxy's redshift in each bin of ``z_grid``, from the CDF.

    Rows are renormalised to the mass inside the grid (a Gaussian's tail below z = 0 is not a
    redshift). These, not densities, are what a Brier score compares with the one-hot truth:
    ``qp.metrics.calculate_brier`` passes the pdf values on the grid instead (densities of order
    1 / sigma, so its score grows with the sharpness of the p(z) and qp warns that they do not sum
    to 1), hence qp's ``Brier`` is called here on the bin probabilities.
    """
    p = np.clip(np.diff(np.asarray(ens.cdf(z_grid), np.float64).reshape(ens.npdf, -1), axis=1), 0.0, None)
    return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)


def crps_from_cdf(ens: Any, z_true: np.ndarray, z_grid: np.ndarray = Z_GRID) -> np.ndarray:
    """CRPS = int (F(z) - 1[z > z_true])^2 dz per galaxy, trapezoid rule on ``z_grid``.

    The grid cell holding z_true is split there (F evaluated at z_true), so the step of the
    indicator costs no discretisation error of order the grid step. Same unit as z, lower is
    better; for a point mass it is the absolute error. Mass outside the grid is not scored.
    """
    z_true = np.asarray(z_true, np.float64)
    cdf = np.asarray(ens.cdf(z_grid), np.float64).reshape(z_true.size, z_grid.size)  # [N, G]
    step = (z_grid[None, :] > z_true[:, None]).astype(np.float64)  # 0 at z_grid[k] <= z_true (below)
    crps = np.trapezoid((cdf - step) ** 2, z_grid, axis=1)
    k = np.searchsorted(z_grid, z_true, side="right") - 1  # z_grid[k] <= z_true < z_grid[k + 1]
    inside = np.flatnonzero((k >= 0) & (k < z_grid.size - 1))
    k = k[inside]
    f_lo, f_hi = cdf[inside, k], cdf[inside, k + 1]
    f_at = np.asarray(ens.cdf(z_true[:, None]), np.float64).reshape(-1)[inside]  # each galaxy at its truth
    lo, hi, y = z_grid[k], z_grid[k + 1], z_true[inside]
    crps[inside] += (
        0.5 * (y - lo) * (f_lo**2 + f_at**2)
        + 0.5 * (hi - y) * ((1.0 - f_at) ** 2 + (1.0 - f_hi) ** 2)
        - 0.5 * (hi - lo) * (f_lo**2 + (1.0 - f_hi) ** 2)
    )
    return crps


def pdf_metrics(ens: Any, z_true: np.ndarray, z_grid: np.ndarray = Z_GRID, n_bins: int = 10) -> dict[str, Any]:
    """Scores of predictive distributions (a ``qp.Ensemble``, one per galaxy) against true redshifts.

    qp's PIT builds a quantile ensemble of the PITs, so score at least ~100 galaxies.

    Returns:
        ``pit_ks``, ``pit_cvm``, ``pit_ad`` (statistics of the PITs against U(0, 1), qp's
        ``PIT``), ``pit_outlier_rate`` (PIT < 1e-4 or > 0.9999), ``pit_histogram``,
        ``cde_loss`` (lower is better, negative), ``brier`` (in [0, 2], lower is better) and mean
        ``crps``, all on ``z_grid``.
    """
    from qp.metrics import CDELossMetric
    from qp.metrics.brier import Brier
    from qp.metrics.pit import PIT

    z_true = np.asarray(z_true, np.float64)
    pit = PIT(ens, z_true)
    with warnings.catch_warnings():  # scipy's AD k-sample test warns when p is capped at 0.001 or 0.25
        warnings.simplefilter("ignore", UserWarning)
        meta = pit.calculate_pit_meta_metrics()
    truth_bin = np.clip(np.searchsorted(z_grid, z_true, side="right") - 1, 0, z_grid.size - 2)
    one_hot = np.zeros((z_true.size, z_grid.size - 1))
    one_hot[np.arange(z_true.size), truth_bin] = 1.0
    return {
        "pit_ks": float(meta["ks"].statistic),
        "pit_cvm": float(meta["cvm"].statistic),
        "pit_ad": float(meta["ad"].statistic),
        "pit_outlier_rate": float(meta["outlier_rate"]),
        "pit_histogram": pit_histogram(pit.pit_samps, n_bins),
        "cde_loss": float(CDELossMetric(eval_grid=z_grid).evaluate(ens, z_true)),
        "brier": float(Brier(bin_probabilities(ens, z_grid), one_hot).evaluate()),
        "crps": float(np.mean(crps_from_cdf(ens, z_true, z_grid))),
    }


def score(z_point: np.ndarray, ens: Any | None, z_true: np.ndarray) -> dict[str, Any]:
    """The one scoring path of every photo-z method: point metrics, plus distribution metrics if any."""
    out = point_metrics(z_point, z_true)
    return out if ens is None else {**out, **pdf_metrics(ens, z_true)}


# --------------------------------------------------------------------------------------------
# LSST photometric error model
# --------------------------------------------------------------------------------------------


def lsst_mag_error(
    mag: np.ndarray, m5: np.ndarray, gamma: np.ndarray | tuple = LSST_GAMMA, sigma_sys: float = LSST_SIGMA_SYS
) -> np.ndarray:
    """1-sigma magnitude error of Ivezic+19 Eq. 4-5 (mag), for [N, B] magnitudes and [B] depths.

    sigma^2 = sigma_sys^2 + (0.04 - gamma) x + gamma x^2, with x = 10^(0.4 (m - m5)); the x term
    is sky-dominated noise, the x^2 term source noise. Depths m5 are 5-sigma limits (AB mag).
    """
    gamma = np.asarray(gamma, np.float64)
    x = 10.0 ** (0.4 * (np.asarray(mag, np.float64) - np.asarray(m5, np.float64)))
    return np.sqrt(sigma_sys**2 + (0.04 - gamma) * x + gamma * x * x)


def fit_depths(mag: np.ndarray, err: np.ndarray, gamma: np.ndarray | tuple = LSST_GAMMA) -> np.ndarray:
    """Per-band 5-sigma depths m5 (AB) that best reproduce observed (magnitude, error) pairs.

    Least squares in log error over detections (finite values), searched on a 0.05 mag grid over
    22-30 and refined on a 0.005 mag grid around the best value: a survey's effective depth
    differs from the design value (DC2's u band is shallower than 26.1), and the error model
    must match the survey whose errors the model will be given.
    """
    m5 = np.empty(mag.shape[1])
    for b in range(mag.shape[1]):
        ok = np.isfinite(mag[:, b]) & np.isfinite(err[:, b]) & (err[:, b] > 0)
        if ok.sum() < 10:
            raise ValueError(f"band {b}: fewer than 10 detections to fit a depth from")
        m, log_e, g = mag[ok, b], np.log(err[ok, b]), float(np.asarray(gamma, np.float64)[b])
        coarse = _best_depth(m, log_e, g, np.arange(22.0, 30.0, 0.05))
        m5[b] = _best_depth(m, log_e, g, np.arange(coarse - 0.05, coarse + 0.0501, 0.005))
    return m5


def _best_depth(mag: np.ndarray, log_err: np.ndarray, gamma: float, grid: np.ndarray) -> float:
    """The m5 of ``grid`` with the least mean squared log-error residual (one band)."""
    x = 10.0 ** (0.4 * (mag[None, :] - grid[:, None]))  # (n_grid, N)
    model = 0.5 * np.log(LSST_SIGMA_SYS**2 + (0.04 - gamma) * x + gamma * x * x)
    return float(grid[np.argmin(np.mean((model - log_err[None, :]) ** 2, axis=1))])


def observe(
    true_mag: np.ndarray, m5: np.ndarray, rng: np.random.Generator, gamma: np.ndarray | tuple = LSST_GAMMA
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy magnitudes and their errors from true magnitudes, with NaN for non-detections.

    Noise is Gaussian in flux with sigma_f / f = sigma_m(m_true) / 1.0857; a non-positive
    observed flux has no magnitude and is a non-detection (NaN), as the 99 of the DC2 files.
    The reported error is the model error at the *observed* magnitude, as a survey pipeline
    would report it.
    """
    rel = lsst_mag_error(true_mag, m5, gamma) / MAG_PER_LN_FLUX
    flux = 1.0 + rel * rng.standard_normal(true_mag.shape)  # in units of the true flux
    detected = flux > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(detected, true_mag - 2.5 * np.log10(np.where(detected, flux, 1.0)), np.nan)
    return mag, np.where(detected, lsst_mag_error(mag, m5, gamma), np.nan)


@dataclass(frozen=True)
class NonDetectionFill:
    """Values that replace a non-detection (NaN) for every method alike.

    A non-detection means a flux below about 1 sigma, so the magnitude is set to the band's
    1-sigma limit m5 + 2.5 log10(5) and its error to 1.0857 mag (S/N = 1): the value says "this
    faint, this uncertain", unlike a training median, which would claim a typical detection.

    Attributes:
        mag: [B] fill magnitude per band (AB).
        err: fill error (mag).
    """

    mag: np.ndarray
    err: float = MAG_PER_LN_FLUX

    @classmethod
    def from_depths(cls, m5: np.ndarray) -> NonDetectionFill:
        return cls(mag=np.asarray(m5, np.float64) + 2.5 * math.log10(SNR_LIMIT))

    def apply(self, mag: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        miss = np.isnan(mag)
        return np.where(miss, self.mag[None, :], mag), np.where(miss | np.isnan(err), self.err, err)


ERR_UNIT = "log10 mag"  # unit of the magnitude errors as MOSAIC sees them (photometry_inputs)


def photometry_inputs(mag: np.ndarray, err: np.ndarray, fill: NonDetectionFill) -> tuple[np.ndarray, np.ndarray]:
    """MOSAIC's photometric inputs: non-detections filled, magnitude errors as log10(error / mag).

    Errors span 0.005 to 10 mag with a long tail (faint u-band detections): standardised as they
    are, the typical 0.01-0.1 mag errors would all map to about the same value, and a Gaussian
    head would fit them with a vanishing sigma whose NLL gradient swamps the redshift term. In
    log10 they spread over about two units. The log is monotonic, so tree baselines are unaffected.

    Returns:
        (magnitudes [N, B] float32 AB, log10 errors [N, B] float32).
    """
    mag, err = fill.apply(np.asarray(mag, np.float64), np.asarray(err, np.float64))
    return mag.astype(np.float32), np.log10(err).astype(np.float32)


def photometric_features(mag: np.ndarray, err: np.ndarray) -> np.ndarray:
    """[N, 3B - 1] features: magnitudes, adjacent colours (m_b - m_b+1) and errors (as given), no NaN."""
    if np.isnan(mag).any() or np.isnan(err).any():
        raise ValueError("features need filled non-detections (apply NonDetectionFill first)")
    return np.concatenate([mag, mag[:, :-1] - mag[:, 1:], err], axis=1)


# --------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------


def fit_baselines(
    x_train: np.ndarray,
    z_train: np.ndarray,
    seed: int = 0,
    n_jobs: int = 1,
    n_trees: int = 200,
    k_grid: tuple[int, ...] = (5, 10, 20, 40),
) -> dict[str, object]:
    """k-nearest-neighbour and random-forest regressors of redshift on the training split.

    kNN: distance-weighted mean of the k nearest training galaxies in standardised feature
    space (standardising keeps errors, of order 0.1 mag, from being ignored next to magnitudes);
    k is chosen from ``k_grid`` by 5-fold cross-validated MAE on the training split alone, so
    the test split never tunes a baseline. Random forest: ``n_trees`` trees, leaves of at least
    2 galaxies; its defaults are robust enough that it is not tuned.

    Returns:
        ``{"knn": Pipeline, "random_forest": RandomForestRegressor}``, both fitted.
    """
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    knn = make_pipeline(StandardScaler(), KNeighborsRegressor(weights="distance"))
    grid = [k for k in k_grid if k <= 0.8 * len(z_train)] or [1]
    search = GridSearchCV(
        knn,
        {"kneighborsregressor__n_neighbors": grid},
        scoring="neg_mean_absolute_error",
        cv=KFold(5, shuffle=True, random_state=seed),
        n_jobs=n_jobs,
    )
    rf = RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=2, random_state=seed, n_jobs=n_jobs)
    return {"knn": search.fit(x_train, z_train).best_estimator_, "random_forest": rf.fit(x_train, z_train)}
