"""Empirical galaxy relations: stellar-to-halo mass, quenched fraction, metallicity and dust.

Each function is vectorised over galaxies and cites the relation it implements. They are the
"truth" the validation tests recover from a finished catalog.
"""

from __future__ import annotations

import numpy as np

# Behroozi, Wechsler & Conroy 2013, ApJ 770, 57, Sec. 5 best-fit parameters (their Table / eq. 4).
_B13 = {
    "m1": (11.514, -1.793, -0.251),  # log10 M1: M1_0, M1_a, M1_z
    "eps": (-1.777, -0.006, -0.000, -0.119),  # log10 epsilon: e_0, e_a, e_z, e_a2
    "alpha": (-1.412, 0.731),
    "delta": (3.508, 2.608, -0.043),
    "gamma": (0.316, 1.319, 0.279),
}


def behroozi13_log_mstar(log_mhalo: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Median log10 stellar mass (Msun) at halo mass log10 Mh (Msun) and redshift z.

    Behroozi+13 eqs. 3-4: log M* = log(eps M1) + f(log(Mh/M1)) - f(0), with
    f(x) = -log10(10^(alpha x) + 1) + delta (log10(1 + e^x))^gamma / (1 + exp(10^-x)).
    Their halo masses are Bryan & Norman virial masses; we apply the relation to M200m, which
    differs by less than about 0.1 dex over our range (an approximation, documented).
    """
    z = np.asarray(z, dtype=np.float64)
    a = 1.0 / (1.0 + z)
    nu = np.exp(-4.0 * a * a)
    m10, m1a, m1z = _B13["m1"]
    e0, ea, ez, ea2 = _B13["eps"]
    a0, aa = _B13["alpha"]
    d0, da, dz = _B13["delta"]
    g0, ga, gz = _B13["gamma"]
    log_m1 = m10 + (m1a * (a - 1.0) + m1z * z) * nu
    log_eps = e0 + (ea * (a - 1.0) + ez * z) * nu + ea2 * (a - 1.0)
    alpha = a0 + aa * (a - 1.0) * nu
    delta = d0 + (da * (a - 1.0) + dz * z) * nu
    gamma = g0 + (ga * (a - 1.0) + gz * z) * nu

    def f(x: np.ndarray) -> np.ndarray:
        return -np.log10(10.0 ** (alpha * x) + 1.0) + delta * np.log10(1.0 + np.exp(x)) ** gamma / (
            1.0 + np.exp(10.0 ** (-x))
        )

    return log_eps + log_m1 + f(np.asarray(log_mhalo) - log_m1) - f(np.zeros_like(log_m1))


def quenched_fraction(log_mstar: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Probability that a galaxy is quenched: a logistic in log M* whose midpoint rises with z.

    Midpoint 10.45 + 0.35 z (log Msun), width 0.30 dex: about 50% quenched at 3e10 Msun today
    and at 1e11 Msun at z = 2, qualitatively following Peng et al. 2010 and Muzzin et al. 2013.
    """
    mid = 10.45 + 0.35 * np.asarray(z)
    return 1.0 / (1.0 + np.exp(-(np.asarray(log_mstar) - mid) / 0.30))


# Gallazzi et al. 2005 (MNRAS 362, 41), Table 2: median log10(Z*/Zsun) at log10 M* (Msun).
_G05_LOGM = np.array(
    [8.91, 9.11, 9.31, 9.51, 9.72, 9.91, 10.11, 10.31, 10.51, 10.72, 10.91, 11.11, 11.31, 11.51, 11.72, 11.91]
)
_G05_LOGZ = np.array(
    [-0.60, -0.61, -0.65, -0.61, -0.52, -0.41, -0.23, -0.11, -0.01, 0.04, 0.07, 0.10, 0.12, 0.13, 0.14, 0.15]
)
MZR_SCATTER_DEX = 0.15
MZR_DLOGZ_DZ = -0.10  # assumed mild evolution to higher z (lower Z at fixed mass); an approximation


def mean_log_metallicity(log_mstar: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Median log10(Z/Zsun) at log M* and z; constant beyond the tabulated mass range.

    Below 10^8.9 Msun the Gallazzi+05 table ends; we extend it with a 0.3 dex/dex slope, which
    keeps dwarfs metal-poor instead of flat.
    """
    log_mstar = np.asarray(log_mstar)
    logz = np.interp(log_mstar, _G05_LOGM, _G05_LOGZ)
    low = log_mstar < _G05_LOGM[0]
    logz = np.where(low, _G05_LOGZ[0] + 0.3 * (log_mstar - _G05_LOGM[0]), logz)
    return logz + MZR_DLOGZ_DZ * np.asarray(z)


def dust_av(log_mstar: np.ndarray, quenched: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """V-band attenuation A_V (mag) of the stellar continuum (Calzetti curve applied elsewhere).

    Star-forming galaxies: A_V = 0.6 + 0.4 (log M* - 10) with 0.25 mag scatter, clipped to [0, 2.5],
    the rise of attenuation with mass of Garn & Best 2010 (MNRAS 409, 421). Quenched galaxies:
    |N(0, 0.15)|. Approximate, not a fit.
    """
    noise = rng.standard_normal(np.shape(log_mstar))
    sf = np.clip(0.6 + 0.4 * (np.asarray(log_mstar) - 10.0) + 0.25 * noise, 0.0, 2.5)
    return np.where(quenched, np.abs(0.15 * noise), sf)
