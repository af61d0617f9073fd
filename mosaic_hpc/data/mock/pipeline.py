"""One chunk of the mock catalog, from halo draws to catalog rows: the physics pipeline.

``MockContext`` gathers the cached tables (cosmology, HMF sampler, SSP templates, filters, IGM);
``simulate_chunk`` draws a chunk of halos from its own random streams, gives them galaxies,
skips those that cannot reach the magnitude cut, synthesises the rest in blocks and returns the
rows of the selected galaxies. Orchestration (splits, writers, MPI) is in ``generator.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...schema import CatalogSchema, paper_schema
from .cache import cached_arrays
from .config import GENERATOR_VERSION, MockConfig
from .halos import CosmoTables, HaloSampler, cosmo_tables, halo_sampler
from .photometry import (
    LSST_BANDS,
    FilterSet,
    add_noise,
    depths_5sigma,
    filter_set,
    observed_magnitudes,
    sed_log_jy,
    sed_matrix,
)
from .relations import MZR_SCATTER_DEX, behroozi13_log_mstar, dust_av, mean_log_metallicity, quenched_fraction
from .sfh import SFHParams, bin_mass, coarse_sfh, draw_sfh_params, fine_sfr_shape, surviving_mass
from .spectra import CALZETTI_RV, calzetti_k, igm_table, igm_transmission, synthesize
from .ssp import NebularTemplates, SSPTemplates, nebular_templates, ssp_templates
from .variants import SEDDraws, SurveyVariant, draw_sed, lsst_photerr, randomise_galaxies, scatter_sfh, tilted_k


@dataclass(frozen=True)
class MockContext:
    """Everything a chunk needs, built once per process from the (cached) tables."""

    cfg: MockConfig
    cosmo: CosmoTables
    halos: HaloSampler
    ssp: SSPTemplates
    filters: FilterSet
    n_steps: int
    k_over_rv: np.ndarray  # float32 [n_wave]
    igm_z: np.ndarray
    igm_trans: np.ndarray
    n_uv: int
    sed_matrix: Any  # scipy.sparse matrix [n_wave, n_sed]
    sed_wave: np.ndarray
    sfh_edges: np.ndarray  # Gyr, [n_sfh + 1]
    depths: np.ndarray  # [108] 5-sigma AB
    i_index: int
    variant: SurveyVariant | None = None  # an opt-in recipe variant (variants.py); None = the default
    nebular: NebularTemplates | None = None  # the variant's nebular light, scaled per galaxy

    @classmethod
    def build(cls, cfg: MockConfig, variant: SurveyVariant | None = None) -> MockContext:
        cosmo = cosmo_tables(cfg)
        n_steps = int(np.ceil(cosmo.t0_gyr * 1e3 / cfg.sfh_step_myr))
        ssp = ssp_templates(cfg, n_steps)
        filters = filter_set(cfg, ssp.wave_edges)
        igm_z, igm_trans, n_uv = igm_table(cfg, ssp.wave)
        sed_edges = np.geomspace(cfg.sed_wave_min, cfg.sed_wave_max, cfg.sed_n_bins + 1)
        return cls(
            cfg=cfg,
            cosmo=cosmo,
            halos=halo_sampler(cfg),
            ssp=ssp,
            filters=filters,
            n_steps=n_steps,
            k_over_rv=(calzetti_k(ssp.wave) / CALZETTI_RV).astype(np.float32),
            igm_z=igm_z,
            igm_trans=igm_trans,
            n_uv=n_uv,
            sed_matrix=sed_matrix(ssp.wave_edges, sed_edges),
            sed_wave=np.sqrt(sed_edges[1:] * sed_edges[:-1]),
            sfh_edges=np.linspace(0.0, cosmo.t0_gyr, cfg.sfh_n_bins + 1),
            depths=depths_5sigma(filters),
            i_index=LSST_BANDS.index(cfg.selection_band),
            variant=variant,
            nebular=None if variant is None else nebular_templates(cfg, ssp),
        )

    def schema(self) -> CatalogSchema:
        """The catalog schema (modality order of the paper, Fig. 1)."""
        sfh_centres = 0.5 * (self.sfh_edges[1:] + self.sfh_edges[:-1])
        n_sph = self.filters.spherex_wave.size
        return paper_schema(
            axes={
                "lsst": tuple(self.filters.lsst_wave),
                "spherex": tuple(self.filters.spherex_wave),
                "sfh": tuple(sfh_centres),
                "sed": tuple(self.sed_wave),
            },
            columns={
                "lsst": LSST_BANDS,
                "spherex": tuple(f"spherex_b{1 + i // 17}_ch{1 + i % 17:02d}" for i in range(n_sph)),
            },
        )


@dataclass
class Galaxies:
    """Physical properties of a block of galaxies (arrays of length N)."""

    z: np.ndarray
    log_mhalo: np.ndarray
    log_mstar: np.ndarray
    quenched: np.ndarray
    log_z: np.ndarray
    av: np.ndarray

    def take(self, idx: np.ndarray) -> Galaxies:
        return Galaxies(**{k: v[idx] for k, v in self.__dict__.items()})


def draw_galaxies(ctx: MockContext, rng_halo: np.random.Generator, rng_gal: np.random.Generator, n: int) -> Galaxies:
    """Halos from the HMF, then stellar mass (Behroozi+13 with scatter), quenching, Z and dust."""
    z, log_mh = ctx.halos.sample(rng_halo, n)
    a = 1.0 / (1.0 + z)
    scatter = ctx.cfg.shmr_scatter_dex - 0.023 * (a - 1.0)  # Behroozi+13: xi = 0.218 - 0.023 (a - 1)
    g = rng_gal.standard_normal((2, n))
    log_ms = behroozi13_log_mstar(log_mh, z) + scatter * g[0]
    quenched = rng_gal.random(n) < quenched_fraction(log_ms, z)
    log_z = mean_log_metallicity(log_ms, z) + MZR_SCATTER_DEX * g[1]
    return Galaxies(z, log_mh, log_ms, quenched, log_z, dust_av(log_ms, quenched, rng_gal))


def _synthesize_params(
    ctx: MockContext, gal: Galaxies, params: SFHParams, sed: SEDDraws | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fine SFRs normalised so the surviving mass is the stellar mass, and the spectra they make.

    ``sed``: a variant's per-galaxy dust curves, birth-cloud factors and nebular scales.
    """
    step_gyr = ctx.cfg.sfh_step_myr * 1e-3
    sfr = fine_sfr_shape(params, ctx.n_steps, step_gyr)
    mass_bins = bin_mass(sfr, ctx.ssp.edges_steps, step_gyr * 1e9)
    iz, wz = ctx.ssp.metallicity_weights(gal.log_z)
    norm = 10.0**gal.log_mstar / surviving_mass(mass_bins, ctx.ssp, iz, wz)  # surviving mass = M*
    sfr *= norm[:, None]
    mass_bins *= norm[:, None]
    if sed is None:
        lum = synthesize(mass_bins, iz, wz, gal.av, ctx.ssp, ctx.k_over_rv, ctx.cfg.dust_eta)
    else:
        k = tilted_k(ctx.k_over_rv, ctx.ssp.wave, sed.dust_slope)
        lum = synthesize(mass_bins, iz, wz, gal.av, ctx.ssp, k, sed.eta, ctx.nebular, sed.nebular_scale)
    return sfr, lum


def synthesize_block(
    ctx: MockContext,
    gal: Galaxies,
    rng_sfh: np.random.Generator,
    sed: SEDDraws | None = None,
    rng_variant: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw SFHs, normalise them to the stellar mass, and make dust-attenuated rest-frame spectra.

    With a variant (``ctx.variant``), its SFH scatter is drawn from ``rng_variant`` and ``sed``
    holds its per-galaxy SED choices.

    Returns:
        (sfr_fine [N, n_steps] float32 Msun/yr, lum [N, n_wave] float32 Lsun/Angstrom without
        IGM, t_obs [N] Gyr).
    """
    t_obs = ctx.cosmo.age(gal.z)
    params = draw_sfh_params(rng_sfh, gal.log_mstar, t_obs, gal.quenched)
    if ctx.variant is not None:
        params = scatter_sfh(params, ctx.variant, rng_variant)
    sfr, lum = _synthesize_params(ctx, gal, params, sed)
    return sfr, lum, t_obs


def photometry_block(
    ctx: MockContext, gal: Galaxies, lum: np.ndarray, igm_scale: np.ndarray | None = None
) -> np.ndarray:
    """Noise-free observed AB magnitudes [N, 108] (LSST then SPHEREx), IGM applied.

    ``igm_scale``: a variant's per-sightline factor on the IGM optical depth (transmission ** scale).
    """
    with_igm = lum.copy()
    if igm_scale is None:
        with_igm[:, : ctx.n_uv] *= igm_transmission(gal.z, ctx.igm_z, ctx.igm_trans)
    else:
        with_igm[:, : ctx.n_uv] *= igm_transmission(gal.z, ctx.igm_z, ctx.igm_trans) ** igm_scale[:, None]
    dl = ctx.cosmo.luminosity_distance(gal.z)
    return observed_magnitudes(with_igm, gal.z, dl, ctx.filters, ctx.cfg.resolution)


def preselection_limit(ctx: MockContext) -> tuple[np.ndarray, np.ndarray]:
    """Stellar mass below which no galaxy of this recipe can pass the magnitude cut, per redshift.

    Why: 88% of halo-mass-function draws are fainter than i = 25.3, and synthesising them would
    dominate the cost. The brightest galaxy per unit stellar mass the recipe can make is dust
    free and as young as the SFH family allows (peak at 1.5 t_obs, width 0.3; 1.0 and 0.6 also
    tried) at any grid metallicity; its magnitude at 10^10 Msun gives, per redshift, the mass
    that would reach the cut plus ``preselect_margin_mag`` (noise, interpolation). Candidates
    below it are skipped before synthesis; the final cut is always on the synthesised magnitude.
    A unit test checks that no galaxy above the cut is lost.

    Returns:
        (z grid, log10 M* limit in Msun).
    """
    cfg = ctx.cfg

    def build() -> dict[str, np.ndarray]:
        z = np.linspace(cfg.z_min, cfg.z_max, 151)
        combos = [(x, w, lz) for x in (1.0, 1.5) for w in (0.3, 0.6) for lz in ctx.ssp.log_z]
        n = z.size * len(combos)
        zz = np.repeat(z, len(combos))
        x, w, lz = (np.tile(np.array(c), z.size) for c in zip(*combos, strict=True))
        gal = Galaxies(zz, np.zeros(n), np.full(n, 10.0), np.zeros(n, bool), lz, np.zeros(n))
        t_obs = ctx.cosmo.age(zz)
        params = SFHParams(t_obs, x * t_obs, w, np.full(n, np.inf), np.ones(n))
        lum = _synthesize_params(ctx, gal, params)[1]
        mag_i = photometry_block(ctx, gal, lum)[:, ctx.i_index].reshape(z.size, len(combos)).min(axis=1)
        # conservative in z: the brightest of each grid point and its neighbours
        padded = np.pad(mag_i, 1, mode="edge")
        mag_i = np.minimum.reduce([padded[:-2], padded[1:-1], padded[2:]])
        return {"z": z, "log_mstar": 10.0 + (mag_i - cfg.selection_max_mag - cfg.preselect_margin_mag) / 2.5}

    key = {"v": GENERATOR_VERSION, "cfg": json.loads(cfg.provenance()["mock_config"])}
    a = cached_arrays("preselect", key, build)
    return a["z"], a["log_mstar"]


def noisy_magnitudes(ctx: MockContext, mags: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy magnitudes (NaN = non-detection) of the noise model ``lsst10``.

    Default recipe: Gaussian flux noise at the LSST 10-year and SPHEREx depths for all bands
    (``add_noise``). The survey variant observes the LSST bands through photerr's LSST error model
    instead, SPHEREx as before.
    """
    if ctx.variant is None or ctx.variant.lsst_noise != "photerr":
        return add_noise(mags, ctx.depths, ctx.cfg.detection_snr, rng)
    n_lsst = len(LSST_BANDS)
    sph = add_noise(mags[:, n_lsst:], ctx.depths[n_lsst:], ctx.cfg.detection_snr, rng)
    return np.concatenate([lsst_photerr(mags[:, :n_lsst], rng)[0], sph], axis=1)


def simulate_chunk(
    ctx: MockContext, seq: np.random.SeedSequence, noise: str, limit: tuple[np.ndarray, np.ndarray]
) -> dict[str, np.ndarray]:
    """One chunk of candidates, from halos to catalog rows of the galaxies that pass the cut.

    Four independent streams (halos, galaxy properties, SFHs, noise) are spawned from ``seq``,
    so e.g. switching the noise off leaves every galaxy's physics unchanged.

    Returns:
        Rows keyed by modality, in candidate order.
    """
    cfg = ctx.cfg
    if ctx.variant is None:
        rng_halo, rng_gal, rng_sfh, rng_noise = (np.random.default_rng(s) for s in seq.spawn(4))
        rng_variant = None
    else:  # a fifth stream: the first four (and so halos and masses) are those of the default recipe
        rng_halo, rng_gal, rng_sfh, rng_noise, rng_variant = (np.random.default_rng(s) for s in seq.spawn(5))
    gal = draw_galaxies(ctx, rng_halo, rng_gal, cfg.chunk_candidates)
    if ctx.variant is not None:
        gal = randomise_galaxies(gal, ctx.variant, rng_variant)
    keep = np.flatnonzero(gal.log_mstar >= np.interp(gal.z, *limit))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, keep.size, cfg.sps_block):
        g = gal.take(keep[start : start + cfg.sps_block])
        sed = None if ctx.variant is None else draw_sed(ctx.variant, rng_variant, g.z.size)
        sfr, lum, t_obs = synthesize_block(ctx, g, rng_sfh, sed, rng_variant)
        mags = photometry_block(ctx, g, lum, None if sed is None else sed.igm_scale)
        if noise == "lsst10":
            mags = noisy_magnitudes(ctx, mags, rng_noise)
        mags[~np.isfinite(mags)] = np.nan  # zero flux (e.g. fully absorbed by the IGM) is a non-detection
        sel = np.flatnonzero(mags[:, ctx.i_index] < cfg.selection_max_mag)  # NaN never passes
        if sel.size == 0:
            continue
        parts.append(
            {
                "scalars": np.stack([g.z, g.log_mhalo, g.log_mstar], axis=1)[sel],
                "lsst": mags[sel, : len(LSST_BANDS)],
                "spherex": mags[sel, len(LSST_BANDS) :],
                "sfh": coarse_sfh(sfr[sel], t_obs[sel], cfg.sfh_step_myr * 1e-3, ctx.sfh_edges, cfg.sfr_floor),
                "sed": sed_log_jy(lum[sel], ctx.sed_matrix, ctx.sed_wave, cfg.sed_distance_pc, cfg.sed_floor_jy),
            }
        )
    schema = ctx.schema()
    if not parts:
        return {m.name: np.empty((0, m.length)) for m in schema}
    return {m.name: np.concatenate([p[m.name] for p in parts]) for m in schema}
