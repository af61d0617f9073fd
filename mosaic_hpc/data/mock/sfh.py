"""Star-formation histories: log-normal in cosmic time, with downsizing and quenching.

Every SFH is integrated on a fine grid of lookback-time steps (``sfh_step_myr``, 5 Myr) and
normalised so its *surviving* stellar mass (mass formed times the BC03 surviving fraction at
each age and the galaxy's metallicity) equals the catalog's stellar mass exactly. The spectra
are built from this fine SFH (through the SSP age bins); the stored 117-bin SFH is derived from
it and never drives the synthesis (the coarse bins would shift u-band magnitudes by ~0.4 mag).

Shape (Gladders et al. 2013; Diemer et al. 2017): SFR(t) ~ exp(-(ln t - T0)^2 / (2 tau^2)) / t,
with peak time t_peak = exp(T0 - tau^2). Downsizing: t_peak / t_obs falls with stellar mass, so
massive galaxies are older. Quenched galaxies additionally decline as exp(-(t - t_q) / tau_q)
after a quenching time t_q.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ssp import SSPTemplates


@dataclass(frozen=True)
class SFHParams:
    """Per-galaxy SFH parameters (arrays of length N); times in Gyr."""

    t_obs: np.ndarray  # cosmic time at the galaxy's redshift
    t_peak: np.ndarray
    width: np.ndarray  # tau, in ln(t)
    t_quench: np.ndarray  # +inf for star-forming galaxies
    tau_quench: np.ndarray


def draw_sfh_params(
    rng: np.random.Generator, log_mstar: np.ndarray, t_obs: np.ndarray, quenched: np.ndarray
) -> SFHParams:
    """Draw SFH parameters given stellar mass (log Msun), cosmic time (Gyr) and quenched flag.

    Star-forming: t_peak / t_obs = 0.75 - 0.15 (log M* - 10) + N(0, 0.12), in [0.1, 1.5]
    (a peak after t_obs is a still-rising SFH, typical of dwarfs). Quenched: t_peak / t_obs =
    0.45 - 0.10 (log M* - 10.5) + N(0, 0.10), in [0.1, 0.8]; quenched at t_q = t_obs x U(0.35, 0.9)
    with e-folding tau_q ~ U(0.1, 0.5) Gyr. Width tau = 0.6 + N(0, 0.1), in [0.3, 1.0].
    """
    n = log_mstar.size
    g = rng.standard_normal((3, n))
    u = rng.random((2, n))
    x_sf = np.clip(0.75 - 0.15 * (log_mstar - 10.0) + 0.12 * g[0], 0.1, 1.5)
    x_q = np.clip(0.45 - 0.10 * (log_mstar - 10.5) + 0.10 * g[0], 0.1, 0.8)
    x = np.where(quenched, x_q, x_sf)
    t_q = np.where(quenched, t_obs * (0.35 + 0.55 * u[0]), np.inf)
    return SFHParams(
        t_obs=t_obs,
        t_peak=x * t_obs,
        width=np.clip(0.6 + 0.1 * g[1], 0.3, 1.0),
        t_quench=t_q,
        tau_quench=0.1 + 0.4 * u[1],
    )


def lookback_steps(n_steps: int, step_gyr: float) -> np.ndarray:
    """Midpoints of the fine lookback-time steps, Gyr."""
    return (np.arange(n_steps) + 0.5) * step_gyr


def fine_sfr_shape(p: SFHParams, n_steps: int, step_gyr: float) -> np.ndarray:
    """Unnormalised SFR on the fine lookback grid, [N, n_steps] float32; zero before the Big Bang.

    float32 and in-place arithmetic: this [N, 2758] evaluation is the largest elementwise cost
    of the generator, and the SFR needs no more than 7 significant digits.
    """
    t = (p.t_obs[:, None] - lookback_steps(n_steps, step_gyr)[None, :]).astype(np.float32)  # cosmic time, Gyr
    valid = t > 0.0
    np.maximum(t, np.float32(1e-6), out=t)
    w = p.width.astype(np.float32)[:, None]
    t0 = (np.log(p.t_peak) + p.width**2).astype(np.float32)[:, None]
    after_q = np.maximum(t - p.t_quench.astype(np.float32)[:, None], np.float32(0.0))
    after_q /= p.tau_quench.astype(np.float32)[:, None]
    log_t = np.log(t)
    y = log_t - t0
    y *= y
    y /= -2.0 * w * w
    y -= log_t
    y -= after_q
    y[~valid] = -np.inf
    y -= y.max(axis=1, keepdims=True)  # peak at 1: exp never under/overflows; normalised later
    return np.exp(y, out=y)


def bin_mass(sfr_fine: np.ndarray, edges_steps: np.ndarray, step_yr: float) -> np.ndarray:
    """Mass formed (Msun, if SFR is in Msun/yr) in each SSP age bin, [N, n_bins]."""
    # reduceat sums each bin's steps directly (a cumulative sum would cancel catastrophically
    # for the tiny late-time SFRs of quenched galaxies)
    return np.add.reduceat(sfr_fine, edges_steps[:-1], axis=1, dtype=np.float64) * step_yr


def surviving_mass(mass_bins: np.ndarray, ssp: SSPTemplates, iz: np.ndarray, wz: np.ndarray) -> np.ndarray:
    """Mass in living stars at observation (Msun) of the mass formed per age bin at metallicity (iz, wz)."""
    frac = (1.0 - wz)[:, None] * ssp.surviving[iz] + wz[:, None] * ssp.surviving[iz + 1]
    return (mass_bins * frac).sum(axis=1)


def coarse_sfh(
    sfr_fine: np.ndarray, t_obs: np.ndarray, step_gyr: float, t_edges: np.ndarray, floor: float
) -> np.ndarray:
    """The stored SFH: log10 mean SFR (Msun/yr) in cosmic-time bins, NaN after the galaxy's time.

    A bin's value is the mass formed in the fine steps whose midpoints fall in it divided by
    their duration; a bin holding no step (it starts after t_obs, or within the last 5 Myr) is
    NaN. Values below ``floor`` are clipped to it (quenched and not-yet-formed epochs).
    """
    n, k = sfr_fine.shape
    n_bins = t_edges.size - 1
    t = t_obs[:, None] - lookback_steps(k, step_gyr)[None, :]
    valid = t > 0.0
    width = (t_edges[-1] - t_edges[0]) / n_bins  # equal bins: the index is a division, no search
    j = np.clip(((t - t_edges[0]) / width).astype(np.int64), 0, n_bins - 1)
    flat = (np.arange(n)[:, None] * n_bins + j)[valid]
    mass = np.bincount(flat, weights=sfr_fine[valid], minlength=n * n_bins).reshape(n, n_bins)
    count = np.bincount(flat, minlength=n * n_bins).reshape(n, n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = mass / count
    return np.where(count > 0, np.log10(np.maximum(mean, floor)), np.nan)
