"""Observed-frame photometry: LSST and SPHEREx filter matrices, AB magnitudes, noise and selection.

On a log-lambda grid a redshift is a shift: observed bin j holds rest bin j - ln(1+z) R. So the
observed spectrum of a block of galaxies is a gather (with linear interpolation for the
fractional shift), and all 108 band fluxes are one matrix product with a filter matrix built
once on the observed grid. The AB magnitude of a photon-counting band is
m = -2.5 log10( int f_lambda lambda R dlambda / int (c / lambda^2) 3631 Jy lambda R dlambda ).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cache import cached_arrays, file_fingerprint
from .config import GENERATOR_VERSION, LSST_DEPTHS_5SIGMA, SPHEREX_DEPTH_NODES, MockConfig

C_AA_S = 2.99792458e18  # speed of light, Angstrom/s
JY_CGS = 1e-23  # erg/s/cm^2/Hz per Jy
AB_ZERO_JY = 3631.0
LSUN_CGS = 3.828e33  # erg/s (IAU 2015 nominal)
PC_CM = 3.0856775814913673e18
LSST_BANDS = ("u", "g", "r", "i", "z", "y")
N_SPHEREX_BANDS, N_CHANNELS_PER_BAND = 6, 17
N_SUBSAMPLES = 8  # filter samples per grid bin when integrating lambda R(lambda)


def spherex_paths() -> list[Path]:
    """The measured SPHEREx channel responses shipped in astro-sedpy (found without importing it)."""
    spec = importlib.util.find_spec("sedpy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the mock catalog needs the SPHEREx responses of astro-sedpy: pip install astro-sedpy")
    root = Path(next(iter(spec.submodule_search_locations))) / "data" / "filters"
    return [root / f"spherex_band{b}.par" for b in range(1, N_SPHEREX_BANDS + 1)]


def load_curves(cfg: MockConfig) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(wavelengths in Angstrom, responses) of the 6 LSST bands then the 102 SPHEREx channels."""
    import speclite.filters

    waves, resp = [], []
    for b in LSST_BANDS:
        f = speclite.filters.load_filter(f"{cfg.lsst_filters}-{b}")
        waves.append(np.asarray(f.wavelength, dtype=np.float64))
        resp.append(np.asarray(f.response, dtype=np.float64))
    for path in spherex_paths():
        table = np.loadtxt(path)
        for ch in range(N_CHANNELS_PER_BAND):
            waves.append(table[:, 0])
            resp.append(np.clip(table[:, 1 + ch], 0.0, None))
    return waves, resp


@dataclass(frozen=True)
class FilterSet:
    """Filter matrix on the observed-frame part of the shared log-lambda grid.

    Attributes:
        j_lo: index of the first grid bin of the observed window.
        matrix: [n_obs, n_bands] float32, int over bin of lambda R(lambda) dlambda (Angstrom^2).
        norm: [n_bands] int (c / lambda^2) 3631 Jy lambda R dlambda in erg/s/cm^2 x Angstrom,
            the AB zero point in the same units as matrix @ f_lambda.
        lsst_wave: [6] effective wavelengths (speclite), Angstrom.
        spherex_wave: [102] central wavelengths (response-weighted mean over the main lobe), Angstrom.
    """

    j_lo: int
    matrix: np.ndarray
    norm: np.ndarray
    lsst_wave: np.ndarray
    spherex_wave: np.ndarray

    @property
    def n_obs(self) -> int:
        return self.matrix.shape[0]


def _band_weights(wave: np.ndarray, resp: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-bin int lambda R dlambda on ``edges`` (midpoint rule on sub-bins) and the AB norm."""
    frac = (np.arange(N_SUBSAMPLES) + 0.5) / N_SUBSAMPLES
    lo, width = edges[:-1], np.diff(edges)
    sub = lo[:, None] + frac[None, :] * width[:, None]
    r = np.interp(sub, wave, resp, left=0.0, right=0.0)
    per_bin = (sub * r).sum(axis=1) * width / N_SUBSAMPLES
    norm = AB_ZERO_JY * JY_CGS * C_AA_S * ((r / sub).sum(axis=1) * width / N_SUBSAMPLES).sum()
    return per_bin, norm


def filter_set(cfg: MockConfig, grid_edges: np.ndarray) -> FilterSet:
    """Cached filter matrix for the bins of ``grid_edges`` that any filter touches."""
    paths = spherex_paths()

    def build() -> dict[str, np.ndarray]:
        import speclite.filters

        waves, resp = load_curves(cfg)
        w_min = min(w[r > 0].min() for w, r in zip(waves, resp, strict=True))
        w_max = max(w[r > 0].max() for w, r in zip(waves, resp, strict=True))
        j_lo = max(int(np.searchsorted(grid_edges, w_min)) - 2, 0)
        j_hi = min(int(np.searchsorted(grid_edges, w_max)) + 2, grid_edges.size - 1)
        edges = grid_edges[j_lo : j_hi + 1]
        cols, norms = [], []
        for w, r in zip(waves, resp, strict=True):
            per_bin, norm = _band_weights(w, r, edges)
            cols.append(per_bin)
            norms.append(norm)
        sph_wave = []
        for w, r in zip(waves[6:], resp[6:], strict=True):
            lobe = r >= 0.5 * r.max()
            sph_wave.append(np.sum(w[lobe] * r[lobe]) / np.sum(r[lobe]))
        lsst = speclite.filters.load_filters(*[f"{cfg.lsst_filters}-{b}" for b in LSST_BANDS])
        return {
            "j_lo": np.int64(j_lo),
            "matrix": np.stack(cols, axis=1).astype(np.float32),
            "norm": np.asarray(norms),
            "lsst_wave": np.asarray(lsst.effective_wavelengths.to_value("Angstrom")),
            "spherex_wave": np.asarray(sph_wave),
        }

    key = {
        "v": GENERATOR_VERSION,
        "lsst": cfg.lsst_filters,
        "spherex": [file_fingerprint(p) for p in paths],
        "grid": [float(grid_edges[0]), float(grid_edges[-1]), grid_edges.size],
        "sub": N_SUBSAMPLES,
    }
    a = cached_arrays("filters", key, build)
    return FilterSet(int(a["j_lo"]), a["matrix"], a["norm"], a["lsst_wave"], a["spherex_wave"])


def observed_magnitudes(
    lum: np.ndarray, z: np.ndarray, dl_cm: np.ndarray, filters: FilterSet, resolution: float
) -> np.ndarray:
    """Noise-free AB magnitudes [N, n_bands] of rest-frame spectra at redshift z.

    Args:
        lum: [N, n_wave] rest-frame L_lambda in Lsun/Angstrom on the shared log grid (IGM applied).
        z: [N] redshifts.
        dl_cm: [N] luminosity distances, cm.
        filters: the filter matrix on the same grid.
        resolution: R of the grid (bins per unit ln lambda).
    """
    shift = np.log1p(z) * resolution  # rest bin = observed bin - shift
    s0 = np.floor(shift).astype(np.int64)
    alpha = (shift - s0).astype(np.float32)[:, None]
    start = filters.j_lo - s0  # rest index of the first observed bin at shift s0
    if start.min() < 1 or start.max() + filters.n_obs > lum.shape[1]:
        raise ValueError("redshift outside the range covered by the rest-frame grid")
    # every row's observed window is a contiguous slice: gather whole windows, not elements
    windows = np.lib.stride_tricks.sliding_window_view(lum, filters.n_obs, axis=1)  # [N, n_start, n_obs] view
    rows = np.arange(lum.shape[0])
    x = windows[rows, start]  # [N, n_obs] at shift s0
    x *= 1.0 - alpha
    x += alpha * windows[rows, start - 1]  # linear interpolation of the fractional shift
    band = (x @ filters.matrix).astype(np.float64)  # Lsun/Angstrom x Angstrom^2
    scale = LSUN_CGS / (4.0 * np.pi * dl_cm**2 * (1.0 + z))  # L_lambda -> observed f_lambda
    with np.errstate(divide="ignore"):
        return -2.5 * np.log10(band * scale[:, None] / filters.norm[None, :])


def depths_5sigma(filters: FilterSet) -> np.ndarray:
    """[108] 5-sigma depths (AB): LSST 10-year coadd, then SPHEREx all-sky at each channel's wavelength."""
    nodes = np.asarray(SPHEREX_DEPTH_NODES)
    sph = np.interp(filters.spherex_wave / 1e4, nodes[:, 0], nodes[:, 1])
    return np.concatenate([np.asarray(LSST_DEPTHS_5SIGMA), sph])


def add_noise(mags: np.ndarray, depths: np.ndarray, snr_min: float, rng: np.random.Generator) -> np.ndarray:
    """Observed magnitudes: Gaussian flux noise sigma = f(depth) / 5; S/N < ``snr_min`` becomes NaN.

    NaN marks a non-detection (missing value), never a fake magnitude.
    """
    sigma = AB_ZERO_JY * 10.0 ** (-0.4 * depths) / 5.0  # Jy
    flux = AB_ZERO_JY * 10.0 ** (-0.4 * mags) + sigma * rng.standard_normal(mags.shape)
    detected = flux >= snr_min * sigma
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(detected, -2.5 * np.log10(np.where(detected, flux, 1.0) / AB_ZERO_JY), np.nan)


def sed_matrix(grid_edges: np.ndarray, out_edges: np.ndarray):
    """Sparse [n_grid, n_out] overlap matrix: bin averages of a per-Angstrom spectrum (flux conserving)."""
    from scipy import sparse

    lo = np.maximum(grid_edges[:-1, None], out_edges[None, :-1])
    hi = np.minimum(grid_edges[1:, None], out_edges[None, 1:])
    overlap = np.clip(hi - lo, 0.0, None) / np.diff(out_edges)[None, :]
    return sparse.csr_matrix(overlap.astype(np.float32))


def sed_log_jy(lum: np.ndarray, matrix, out_wave: np.ndarray, distance_pc: float, floor_jy: float) -> np.ndarray:
    """Rest-frame SED: log10 f_nu (Jy) at ``distance_pc``, from L_lambda (Lsun/Angstrom) via ``matrix``."""
    l_out = np.asarray(lum @ matrix, dtype=np.float64)  # [N, n_out] bin-averaged L_lambda
    f_lambda = l_out * LSUN_CGS / (4.0 * np.pi * (distance_pc * PC_CM) ** 2)
    f_nu_jy = f_lambda * out_wave[None, :] ** 2 / C_AA_S / JY_CGS
    return np.log10(np.maximum(f_nu_jy, floor_jy))
