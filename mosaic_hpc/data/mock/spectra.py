"""Rest-frame galaxy spectra: SSP matrix product, Calzetti dust, and the Inoue+14 IGM table.

For a block of galaxies the spectrum is one matrix product: the mass formed in each SSP age bin
at the two grid metallicities bracketing the galaxy's (weights linear in log Z) times the binned
templates. Young bins (birth clouds, with their nebular emission) and old bins are summed
separately because the birth cloud adds extra attenuation (``dust_eta``).
"""

from __future__ import annotations

import numpy as np

from .cache import cached_arrays, file_fingerprint
from .config import GENERATOR_VERSION, MockConfig
from .ssp import IGM_COEFFS, LYMAN_LIMIT_A, NebularTemplates, SSPTemplates, grid_dir

CALZETTI_RV = 4.05


def calzetti_k(wave_a: np.ndarray) -> np.ndarray:
    """Calzetti et al. 2000 (eqs. 4-5) attenuation curve k(lambda) = A_lambda / E(B-V).

    Defined on 0.12-2.2 micron; extended blueward linearly with the slope at 0.12-0.125 micron
    (common practice) and redward by the 0.63-2.2 micron formula, clipped at zero (beyond about
    3 micron, where attenuation is negligible anyway).
    """
    lam = np.asarray(wave_a, dtype=np.float64) / 1e4  # micron

    def blue(x: np.ndarray) -> np.ndarray:
        return 2.659 * (-2.156 + 1.509 / x - 0.198 / x**2 + 0.011 / x**3) + CALZETTI_RV

    def red(x: np.ndarray) -> np.ndarray:
        return 2.659 * (-1.857 + 1.040 / x) + CALZETTI_RV

    k = np.where(lam < 0.63, blue(np.maximum(lam, 0.12)), red(lam))
    slope = (blue(np.array(0.12)) - blue(np.array(0.125))) / 0.005
    k = np.where(lam < 0.12, blue(np.array(0.12)) + slope * (0.12 - lam), k)
    return np.maximum(k, 0.0)


def _igm_coefficients() -> np.ndarray:
    """Inoue+14 Table 2: [n_lines, 6] = (lambda_j, A_LAF_1..3, A_DLA_1..2); read from the bagpipes data file."""
    table = np.loadtxt(grid_dir() / IGM_COEFFS)
    return table[:, 1:]


def inoue14_tau(wave_obs: np.ndarray, z: float, coeffs: np.ndarray) -> np.ndarray:
    """IGM optical depth at observed wavelengths (Angstrom) for a source at redshift z < 4.7.

    Lyman-series (LAF eq. 21, DLA eq. 22) plus Lyman-continuum (LAF eqs. 25-26, DLA eqs. 28-29)
    terms of Inoue et al. 2014, MNRAS 442, 1805, implemented from the paper.
    """
    lo = np.asarray(wave_obs, dtype=np.float64)
    zp1 = 1.0 + z
    tau = np.zeros_like(lo)
    for lam_j, a1, a2, a3, d1, d2 in coeffs:
        x = lo / lam_j
        inside = (lo > lam_j) & (lo < lam_j * zp1)
        laf = np.where(x < 2.2, a1 * x**1.2, np.where(x < 5.7, a2 * x**3.7, a3 * x**5.5))
        dla = np.where(x < 3.0, d1 * x**2.0, d2 * x**3.0)
        tau += np.where(inside, laf + dla, 0.0)
    x = lo / LYMAN_LIMIT_A
    lc_inside = (x > 1.0) & (x < zp1)
    if z < 1.2:
        laf_c = 0.325 * (x**1.2 - zp1**-0.9 * x**2.1)
    else:
        laf_c = np.where(
            x < 2.2,
            2.55e-2 * zp1**1.6 * x**2.1 + 0.325 * x**1.2 - 0.250 * x**2.1,
            2.55e-2 * (zp1**1.6 * x**2.1 - x**3.7),
        )
    if z < 2.0:
        dla_c = 0.211 * zp1**2 - 7.66e-2 * zp1**2.3 * x**-0.3 - 0.135 * x**2
    else:
        dla_c = np.where(
            x < 3.0,
            0.634 + 4.70e-2 * zp1**3 - 1.78e-2 * zp1**3.3 * x**-0.3 - 0.135 * x**2 - 0.291 * x**-0.3,
            4.70e-2 * zp1**3 - 1.78e-2 * zp1**3.3 * x**-0.3 - 2.92e-2 * x**3.0,
        )
    tau += np.where(lc_inside, laf_c + dla_c, 0.0)
    return tau


def igm_table(cfg: MockConfig, rest_wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Cached IGM transmission on a redshift grid for the rest-frame bins blueward of Ly-alpha.

    Returns:
        (z_grid [n_z], transmission [n_z, n_uv] float32, n_uv): the first n_uv rest bins are
        affected (rest wavelength < 1216 Angstrom); redder bins have transmission 1.
    """
    n_uv = int(np.searchsorted(rest_wave, 1216.0))
    gdir = grid_dir()

    def build() -> dict[str, np.ndarray]:
        coeffs = _igm_coefficients()
        z_grid = np.arange(0.0, cfg.z_max + cfg.igm_dz + 1e-9, cfg.igm_dz)
        trans = np.stack([np.exp(-inoue14_tau(rest_wave[:n_uv] * (1.0 + z), z, coeffs)) for z in z_grid])
        return {"z": z_grid, "trans": trans.astype(np.float32)}

    key = {
        "v": GENERATOR_VERSION,
        "file": file_fingerprint(gdir / IGM_COEFFS),
        "wave": [float(rest_wave[0]), float(rest_wave[-1]), rest_wave.size],
        "z": [cfg.z_max, cfg.igm_dz],
    }
    a = cached_arrays("igm", key, build)
    return a["z"], a["trans"], n_uv


def igm_transmission(z: np.ndarray, z_grid: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """[N, n_uv] transmission at each galaxy's redshift, linear between tabulated redshifts."""
    x = np.clip(z / (z_grid[1] - z_grid[0]), 0.0, z_grid.size - 1.000001)
    i = x.astype(np.int64)
    f = (x - i).astype(np.float32)[:, None]
    return (1.0 - f) * trans[i] + f * trans[i + 1]


def synthesize(
    mass_bins: np.ndarray,
    iz: np.ndarray,
    wz: np.ndarray,
    av: np.ndarray,
    ssp: SSPTemplates,
    k_over_rv: np.ndarray,
    eta: float | np.ndarray,
    nebular: NebularTemplates | None = None,
    nebular_scale: np.ndarray | None = None,
) -> np.ndarray:
    """Dust-attenuated rest-frame L_lambda (Lsun/Angstrom), [N, n_wave] float32.

    Galaxies are grouped by their lower grid metallicity; each group is two matrix products
    (old and young bins) of [n, 2 n_bins] weights (mass x (1 - w), mass x w) with the stacked
    templates of the two bracketing metallicities ``ssp.pair_templates``.

    Args:
        mass_bins: [N, n_bins] mass formed per SSP age bin, Msun.
        iz, wz: lower metallicity index and upper weight (``SSPTemplates.metallicity_weights``).
        av: [N] V-band attenuation of the stellar continuum, mag.
        ssp: binned templates.
        k_over_rv: Calzetti k(lambda) / R_V on the template grid, [n_wave], or [N, n_wave] per
            galaxy (a variant's tilted curves).
        eta: extra factor on A_V for the young (birth-cloud) bins, or [N] per galaxy.
        nebular, nebular_scale: a variant's nebular templates and [N] factors on the nebular
            light (already part of the young templates once: ``scale - 1`` times more is added).
    """
    n = mass_bins.shape[0]
    out = np.empty((n, ssp.spectra.shape[2]), dtype=np.float32)
    order = np.argsort(iz, kind="stable")
    bounds = np.searchsorted(iz[order], np.arange(ssp.log_z.size))
    m = mass_bins[order].astype(np.float32)
    w_hi = wz[order].astype(np.float32)[:, None]
    ln10 = np.float32(-0.4 * np.log(10.0))
    k = k_over_rv if k_over_rv.ndim == 1 else k_over_rv[order]
    tau = (ln10 * av[order].astype(np.float32))[:, None] * k  # [N, n_wave] old-star optical depth
    eta_rows = None if np.ndim(eta) == 0 else np.asarray(eta, np.float32)[order][:, None]
    extra_neb = None if nebular is None else (np.asarray(nebular_scale, np.float32)[order] - 1.0)[:, None]
    for i in range(ssp.log_z.size - 1):
        lo, hi = bounds[i], bounds[i + 1]
        if lo == hi:
            continue
        old, young = ssp.pair_templates(i)
        mi, wi = m[lo:hi], w_hi[lo:hi]
        spec_old = np.concatenate([mi[:, ~ssp.young] * (1 - wi), mi[:, ~ssp.young] * wi], axis=1) @ old
        young_weights = np.concatenate([mi[:, ssp.young] * (1 - wi), mi[:, ssp.young] * wi], axis=1)
        spec_young = young_weights @ young
        if extra_neb is not None:
            spec_young += extra_neb[lo:hi] * (young_weights @ nebular.pair_templates(i))
        t = tau[lo:hi]
        spec_old *= np.exp(t)
        spec_young *= np.exp((np.float32(eta) if eta_rows is None else eta_rows[lo:hi]) * t)
        out[order[lo:hi]] = spec_old + spec_young
    return out
