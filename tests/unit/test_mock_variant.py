"""The opt-in ``survey`` mock variant: per-galaxy SED randomisation, photerr noise, default untouched."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest

from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.data.mock import make_mock_catalog, pipeline
from mosaic_hpc.data.mock.config import MockConfig
from mosaic_hpc.data.mock.spectra import synthesize
from mosaic_hpc.data.mock.variants import SurveyVariant, draw_sed, lsst_photerr, tilted_k, variant_config


@pytest.fixture(scope="module")
def ctx() -> pipeline.MockContext:
    return pipeline.MockContext.build(MockConfig(), SurveyVariant())


def test_per_galaxy_synthesis_with_neutral_draws_equals_the_default(ctx: pipeline.MockContext) -> None:
    """Arrays of the default values (no tilt, the config's eta, nebular x 1) give the default spectra."""
    rng = np.random.default_rng(0)
    gal = pipeline.draw_galaxies(ctx, rng, rng, 400)
    n_bins = ctx.ssp.edges_steps.size - 1
    mass = rng.uniform(0.0, 1e8, (gal.z.size, n_bins))
    iz, wz = ctx.ssp.metallicity_weights(gal.log_z)
    default = synthesize(mass, iz, wz, gal.av, ctx.ssp, ctx.k_over_rv, ctx.cfg.dust_eta)
    n = gal.z.size
    k = tilted_k(ctx.k_over_rv, ctx.ssp.wave, np.zeros(n))
    eta = np.full(n, ctx.cfg.dust_eta)
    neutral = synthesize(mass, iz, wz, gal.av, ctx.ssp, k, eta, ctx.nebular, np.ones(n))
    np.testing.assert_allclose(neutral, default, rtol=2e-5, atol=1e-30)
    # twice the nebular light adds exactly the nebular templates once more
    brighter = synthesize(mass, iz, wz, np.zeros(n), ctx.ssp, k, eta, ctx.nebular, np.full(n, 2.0))
    plain = synthesize(mass, iz, wz, np.zeros(n), ctx.ssp, k, eta)
    assert np.all(brighter >= plain * (1 - 1e-6)) and (brighter > plain * 1.01).any()


def test_tilt_keeps_a_v_and_steepens_the_uv(ctx: pipeline.MockContext) -> None:
    k = tilted_k(ctx.k_over_rv, ctx.ssp.wave, np.array([-0.5, 0.0, 0.3]))
    v = np.argmin(np.abs(ctx.ssp.wave - 5500.0))
    uv = np.argmin(np.abs(ctx.ssp.wave - 1500.0))
    np.testing.assert_allclose(k[:, v], ctx.k_over_rv[v], rtol=2e-3)
    assert k[0, uv] > k[1, uv] > k[2, uv]  # a negative delta is steeper (SMC-like)


def test_draws_span_their_ranges() -> None:
    v = SurveyVariant()
    d = draw_sed(v, np.random.default_rng(1), 20000)
    for values, (lo, hi) in ((d.dust_slope, v.dust_slope), (d.eta, v.birth_cloud_eta), (d.igm_scale, v.igm_tau_scale)):
        assert lo <= values.min() < lo + 0.05 * (hi - lo) and hi - 0.05 * (hi - lo) < values.max() <= hi
    assert np.std(np.log10(d.nebular_scale)) == pytest.approx(v.nebular_scale_sigma_dex, rel=0.05)


def test_photerr_noise_at_the_depth_is_a_fifth_of_a_magnitude() -> None:
    m5 = np.array([25.5, 27.0, 27.1, 26.6, 26.0, 25.0])
    true = np.tile(m5, (4000, 1))
    mag, err = lsst_photerr(true, np.random.default_rng(2), m5)
    # S/N = 5 at the 5-sigma depth: 2.5 log10(1 + 1/5) = 0.198 mag (photerr reports the error of the observed flux)
    np.testing.assert_allclose(np.nanmedian(err, axis=0), 0.198, rtol=0.15)
    np.testing.assert_allclose(np.nanstd(mag, axis=0), 0.2, rtol=0.25)
    faint = np.tile(m5 + 3.0, (4000, 1))  # S/N 0.3: many non-positive fluxes, which are NaN, never 99 or inf
    fmag, ferr = lsst_photerr(faint, np.random.default_rng(3), m5)
    assert np.isnan(fmag).mean() > 0.2 and np.isfinite(fmag[~np.isnan(fmag)]).all()
    assert np.array_equal(np.isnan(fmag), np.isnan(ferr))


def test_the_variant_loses_no_galaxy_to_the_preselection(ctx: pipeline.MockContext) -> None:
    """The pre-cut is the default recipe's; the variant's brightest draws must still fall below the cut."""
    z_lim, m_lim = pipeline.preselection_limit(ctx)
    rng = np.random.default_rng(5)
    gal = pipeline.draw_galaxies(ctx, rng, rng, 6000)
    below = np.flatnonzero(gal.log_mstar < np.interp(gal.z, z_lim, m_lim))[:3000]
    g = gal.take(below)
    sed = draw_sed(ctx.variant, rng, below.size)
    _, lum, _ = pipeline.synthesize_block(ctx, g, rng, sed, rng)
    mags = pipeline.photometry_block(ctx, g, lum, sed.igm_scale)
    assert np.nanmin(mags[:, ctx.i_index]) > ctx.cfg.selection_max_mag


def test_chunks_are_reproducible_and_photerr_noisy(ctx: pipeline.MockContext) -> None:
    limit = pipeline.preselection_limit(ctx)
    small = dataclasses.replace(ctx, cfg=dataclasses.replace(ctx.cfg, chunk_candidates=3000))
    a = pipeline.simulate_chunk(small, np.random.SeedSequence(3).spawn(1)[0], "lsst10", limit)
    b = pipeline.simulate_chunk(small, np.random.SeedSequence(3).spawn(1)[0], "lsst10", limit)
    assert a["scalars"].shape[0] > 100
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_survey_catalog_is_broader_and_says_so(tmp_path: Path) -> None:
    for variant in ("default", "survey"):
        make_mock_catalog(tmp_path / variant, 1500, seed=4, noise="none", progress=False, variant=variant)
    colours = {}
    for variant in ("default", "survey"):
        rows = Catalog.open(tmp_path / variant, "train").read_all(["lsst"])["lsst"]
        colours[variant] = rows[:, 1] - rows[:, 2]  # g - r
        with h5py.File(tmp_path / variant / "train.h5") as f:
            assert ("mock_variant" in f.attrs) == (variant == "survey")
            if variant == "survey":
                assert f.attrs["mock_variant"] == "survey" and "dust_slope" in f.attrs["mock_variant_config"]
    spread = {v: np.subtract(*np.percentile(c, [95, 5])) for v, c in colours.items()}
    assert spread["survey"] > 1.2 * spread["default"], spread
    with pytest.raises(ValueError, match="mock variant must be one of"):
        variant_config("cosmos")
