"""Photometric-redshift tools: probabilistic scores, a photometric error model and baselines.

Scores follow the photo-z literature (e.g. Schmidt et al. 2020, MNRAS 499, 1587, the LSST-DESC
data challenge): point estimates by MAE and the :func:`~.metrics.photoz_stats` of
dz = (z_phot - z) / (1 + z); Gaussian predictive distributions by the probability integral
transform (PIT: the predictive CDF at the true redshift, uniform for a calibrated model), the
Kolmogorov-Smirnov distance of the PITs from U(0, 1), and the continuous ranked probability
score (CRPS, in units of redshift; for a point estimate it reduces to the absolute error).

The error model (Ivezic et al. 2019, ApJ 873, 111, Sec. 3.2.1) turns true magnitudes into LSST-like
observed magnitudes with errors, so that a simulated catalog can carry the same inputs
(magnitudes *and* their errors) as a survey catalog. Baselines (k nearest neighbours, random
forest; scikit-learn, imported lazily) use magnitudes, colours and errors as features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .metrics import photoz_stats

SQRT_PI = math.sqrt(math.pi)
MAG_PER_LN_FLUX = 2.5 / math.log(10.0)  # 1.0857: sigma_m = 1.0857 sigma_f / f for small errors
LSST_GAMMA = (0.038, 0.039, 0.039, 0.039, 0.039, 0.039)  # Ivezic+19 Table 2, u g r i z y
LSST_SIGMA_SYS = 0.005  # mag, systematic floor of Ivezic+19 Eq. 4
SNR_LIMIT = 5.0  # depths m5 are 5-sigma point-source limits


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(x)


def _norm_pdf(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def pit_gaussian(mu: np.ndarray, sigma: np.ndarray, z_true: np.ndarray) -> np.ndarray:
    """PIT = Phi((z - mu) / sigma): the predictive CDF evaluated at the truth, in [0, 1]."""
    return _norm_cdf((np.asarray(z_true, np.float64) - mu) / np.asarray(sigma, np.float64))


def crps_gaussian(mu: np.ndarray, sigma: np.ndarray, z_true: np.ndarray) -> np.ndarray:
    """Closed-form CRPS of N(mu, sigma^2) at z (Gneiting et al. 2005, Eq. 5), per galaxy.

    CRPS = sigma [w (2 Phi(w) - 1) + 2 phi(w) - 1 / sqrt(pi)], w = (z - mu) / sigma. Same unit as
    z; lower is better; for sigma -> 0 it tends to |z - mu|.
    """
    sigma = np.asarray(sigma, np.float64)
    w = (np.asarray(z_true, np.float64) - mu) / sigma
    return sigma * (w * (2.0 * _norm_cdf(w) - 1.0) + 2.0 * _norm_pdf(w) - 1.0 / SQRT_PI)


def ks_uniform(u: np.ndarray) -> float:
    """Kolmogorov-Smirnov statistic sup |F_n(u) - u| of samples in [0, 1] against U(0, 1)."""
    u = np.sort(np.asarray(u, np.float64))
    n = u.size
    if n == 0:
        return float("nan")
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - u), np.max(u - (i - 1) / n)))


def pit_histogram(pit: np.ndarray, n_bins: int = 10) -> list[float]:
    """Density of the PITs in ``n_bins`` equal bins of [0, 1] (1.0 everywhere when calibrated).

    A U shape means over-confident sigmas, a hump under-confident ones, a slope a biased mean.
    """
    counts, _ = np.histogram(np.clip(pit, 0.0, 1.0), bins=n_bins, range=(0.0, 1.0))
    return (counts * n_bins / max(len(pit), 1)).tolist()


def point_metrics(z_pred: np.ndarray, z_true: np.ndarray) -> dict[str, float]:
    """MAE in redshift plus bias, sigma_NMAD and outlier fraction of dz/(1+z)."""
    z_pred, z_true = np.asarray(z_pred, np.float64), np.asarray(z_true, np.float64)
    return {"mae": float(np.mean(np.abs(z_pred - z_true))), **photoz_stats(z_pred, z_true)}


def gaussian_metrics(mu: np.ndarray, sigma: np.ndarray, z_true: np.ndarray, n_bins: int = 10) -> dict:
    """Point metrics of the mean plus PIT histogram, its KS statistic and the mean CRPS."""
    pit = pit_gaussian(mu, sigma, z_true)
    return {
        **point_metrics(mu, z_true),
        "crps": float(np.mean(crps_gaussian(mu, sigma, z_true))),
        "pit_ks": ks_uniform(pit),
        "pit_histogram": pit_histogram(pit, n_bins),
    }


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
