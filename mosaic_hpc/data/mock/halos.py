"""Cosmology tables and (redshift, halo mass) draws from the halo mass function times volume.

A light cone to z = 3 holds halos in proportion to dn/dlnM(M, z) dV/dz: the Tinker+08 mass
function (M200m) times the comoving volume element, both from colossus with Planck18. The
density is tabulated once on a (z, ln M) grid, cached, and sampled by inverse CDF over the cells
(piecewise constant inside a cell), so a draw costs two ``searchsorted`` calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cache import cached_arrays
from .config import GENERATOR_VERSION, MockConfig

MPC_CM = 3.0856775814913673e24  # cm per Mpc
C_KMS = 299792.458  # speed of light, km/s


def _colossus(cfg: MockConfig):
    """The colossus cosmology object; ``persistence=''`` keeps colossus from writing its own cache."""
    from colossus.cosmology import cosmology

    return cosmology.setCosmology(cfg.cosmology, persistence="")


@dataclass(frozen=True)
class CosmoTables:
    """Redshift-indexed cosmological quantities, interpolated linearly in z.

    Attributes:
        z: redshift grid, from 0 to beyond ``z_max``.
        age_gyr: cosmic time at z, Gyr.
        dl_cm: luminosity distance, cm.
        t0_gyr: age of the universe today, Gyr.
        h: H0 / (100 km/s/Mpc), recorded for provenance (masses are in Msun without h).
        params: the cosmological parameters, for the catalog's ``cosmology`` attribute.
    """

    z: np.ndarray
    age_gyr: np.ndarray
    dl_cm: np.ndarray
    t0_gyr: float
    h: float
    params: dict[str, float]

    def age(self, z: np.ndarray) -> np.ndarray:
        """Cosmic time at redshift z, Gyr."""
        return np.interp(z, self.z, self.age_gyr)

    def luminosity_distance(self, z: np.ndarray) -> np.ndarray:
        """Luminosity distance in cm; linear interpolation on a 0.001 grid is exact to 1e-6."""
        return np.interp(z, self.z, self.dl_cm)

    def redshift_at_age(self, t_gyr: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`age` (age decreases with z, hence the reversal)."""
        return np.interp(t_gyr, self.age_gyr[::-1], self.z[::-1])


def cosmo_tables(cfg: MockConfig) -> CosmoTables:
    """Cached distance and age tables of the configured cosmology."""

    def build() -> dict[str, np.ndarray]:
        cosmo = _colossus(cfg)
        z = np.linspace(0.0, cfg.z_max + 0.5, int((cfg.z_max + 0.5) / 0.001) + 1)
        dl = np.zeros_like(z)
        dl[1:] = cosmo.luminosityDistance(z[1:]) / cosmo.h * MPC_CM
        return {
            "z": z,
            "age_gyr": cosmo.age(z),
            "dl_cm": dl,
            "t0_gyr": np.float64(cosmo.age(0.0)),
            "h": np.float64(cosmo.h),
            "params": np.array([cosmo.H0, cosmo.Om0, cosmo.Ode0, cosmo.Ob0, cosmo.sigma8, cosmo.ns]),
        }

    key = {"v": GENERATOR_VERSION, "cosmology": cfg.cosmology, "z_max": cfg.z_max}
    a = cached_arrays("cosmo", key, build)
    params = dict(zip(("H0", "Om0", "Ode0", "Ob0", "sigma8", "ns"), (float(v) for v in a["params"]), strict=True))
    return CosmoTables(a["z"], a["age_gyr"], a["dl_cm"], float(a["t0_gyr"]), float(a["h"]), params)


@dataclass(frozen=True)
class HaloSampler:
    """Inverse-CDF sampler of (z, log10 M200m) over a tabulated dN/dz/dlnM/dOmega.

    Attributes:
        z_edges: redshift cell edges.
        logm_edges: log10 M200m cell edges, Msun.
        cdf: cumulative probability over the flattened [z, M] cells, ending at 1.
        n_per_sr: expected number of halos in the whole range per steradian, for provenance
            (the sky area a catalog corresponds to).
    """

    z_edges: np.ndarray
    logm_edges: np.ndarray
    cdf: np.ndarray
    n_per_sr: float

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw n halos. Returns (redshift, log10 M200m in Msun)."""
        u = rng.random((3, n))
        cell = np.minimum(np.searchsorted(self.cdf, u[0], side="right"), self.cdf.size - 1)
        n_m = self.logm_edges.size - 1
        iz, im = np.divmod(cell, n_m)
        z = self.z_edges[iz] + u[1] * np.diff(self.z_edges)[iz]
        logm = self.logm_edges[im] + u[2] * np.diff(self.logm_edges)[im]
        return z, logm


def halo_sampler(cfg: MockConfig) -> HaloSampler:
    """Cached HMF x volume table. dn/dlnM is converted from (Mpc/h)^-3 per ln(Msun/h) to Mpc^-3."""

    def build() -> dict[str, np.ndarray]:
        from colossus.lss import mass_function

        cosmo = _colossus(cfg)
        h = cosmo.h
        z_edges = np.linspace(cfg.z_min, cfg.z_max, cfg.n_z_table + 1)
        logm_edges = np.linspace(cfg.log10_mhalo_min, cfg.log10_mhalo_max, cfg.n_mass_table + 1)
        zc = 0.5 * (z_edges[1:] + z_edges[:-1])
        mc = 10.0 ** (0.5 * (logm_edges[1:] + logm_edges[:-1]))  # Msun
        dens = np.empty((zc.size, mc.size))
        for i, z in enumerate(zc):
            dndlnm = mass_function.massFunction(mc * h, z, mdef=cfg.mdef, model=cfg.hmf_model, q_out="dndlnM")
            dc_mpc = cosmo.comovingDistance(z_min=0.0, z_max=z) / h
            dv_dz = C_KMS / cosmo.Hz(z) * dc_mpc**2  # Mpc^3 per unit z per steradian
            dens[i] = dndlnm * h**3 * dv_dz
        cell = dens * np.diff(z_edges)[:, None] * (np.diff(logm_edges) * np.log(10.0))[None, :]
        total = cell.sum()
        return {
            "z_edges": z_edges,
            "logm_edges": logm_edges,
            "cdf": np.cumsum(cell.ravel()) / total,
            "n_per_sr": np.float64(total),
        }

    key = {
        "v": GENERATOR_VERSION,
        "cosmology": cfg.cosmology,
        "hmf": cfg.hmf_model,
        "mdef": cfg.mdef,
        "z": [cfg.z_min, cfg.z_max, cfg.n_z_table],
        "m": [cfg.log10_mhalo_min, cfg.log10_mhalo_max, cfg.n_mass_table],
    }
    a = cached_arrays("hmf", key, build)
    return HaloSampler(a["z_edges"], a["logm_edges"], a["cdf"], float(a["n_per_sr"]))
