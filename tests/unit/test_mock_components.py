"""Unit tests of the mock generator's physical components, each against a known answer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mosaic_hpc.data.mock.config import MockConfig
from mosaic_hpc.data.mock.photometry import AB_ZERO_JY, C_AA_S, JY_CGS, LSUN_CGS, add_noise, observed_magnitudes
from mosaic_hpc.data.mock.pipeline import (
    MockContext,
    draw_galaxies,
    photometry_block,
    preselection_limit,
    simulate_chunk,
    synthesize_block,
)
from mosaic_hpc.data.mock.relations import behroozi13_log_mstar, mean_log_metallicity, quenched_fraction
from mosaic_hpc.data.mock.sfh import SFHParams, coarse_sfh, fine_sfr_shape
from mosaic_hpc.data.mock.spectra import _igm_coefficients, calzetti_k, inoue14_tau
from mosaic_hpc.data.mock.ssp import rebin_matrix_rows


@pytest.fixture(scope="module")
def ctx() -> MockContext:
    return MockContext.build(MockConfig())


def test_behroozi13_known_values() -> None:
    # Behroozi+13 Fig. 7 at z = 0: M* ~ 10^10.4-10.5 in a Milky-Way halo, a steep low-mass end
    ms = behroozi13_log_mstar(np.array([11.0, 12.0, 14.0]), np.zeros(3))
    assert 10.3 < ms[1] < 10.6
    assert ms[1] - ms[0] > 1.5  # slope > 1.5 below the pivot
    assert ms[2] - ms[1] < 1.0  # shallow above it


def test_quenched_fraction_and_metallicity_rise_with_mass() -> None:
    m = np.linspace(8.0, 12.0, 9)
    assert np.all(np.diff(quenched_fraction(m, np.zeros_like(m))) > 0)
    assert np.all(quenched_fraction(m, np.full_like(m, 2.0)) < quenched_fraction(m, np.zeros_like(m)))
    assert np.all(np.diff(mean_log_metallicity(np.linspace(9.5, 11.5, 5), np.zeros(5))) > 0)


def test_calzetti_curve() -> None:
    k = calzetti_k(np.array([5500.0, 4400.0, 1500.0, 22000.0, 50000.0]))
    assert k[0] == pytest.approx(4.05, abs=0.02)  # k(V) = R_V
    assert k[1] - k[0] == pytest.approx(1.0, abs=0.05)  # k(B) - k(V) = 1 by definition of E(B-V)
    assert k[2] > k[1] > k[3] > k[4] >= 0.0


def test_igm_transmission() -> None:
    coeffs = _igm_coefficients()
    rest = np.array([1100.0, 1200.0, 1300.0, 850.0])
    tau2, tau3 = (inoue14_tau(rest * (1 + z), z, coeffs) for z in (2.0, 3.0))
    assert tau2[2] == 0.0 and tau3[2] == 0.0  # no absorption redward of Ly-alpha
    assert 0.0 < tau2[0] < tau3[0]  # the Ly-alpha forest deepens with redshift
    # mean Ly-alpha forest transmission near z ~ 3 is about 0.6-0.75 (e.g. Becker+13), LyC is dark
    assert 0.55 < np.exp(-tau3[1]) < 0.8
    assert np.exp(-tau3[3]) < np.exp(-tau3[1])  # the Lyman continuum is darker than the forest


def test_rebin_conserves_flux() -> None:
    wave = np.linspace(1000.0, 2000.0, 3001)
    flux = 1.0 + np.sin(wave / 37.0) ** 2
    edges = np.geomspace(1100.0, 1900.0, 200)
    out = rebin_matrix_rows(wave, flux[None, :], edges)[0]
    inside = (wave >= edges[0]) & (wave <= edges[-1])
    assert np.sum(out * np.diff(edges)) == pytest.approx(np.trapezoid(flux[inside], wave[inside]), rel=1e-4)


def test_flat_fnu_spectrum_has_its_ab_magnitude_in_every_band(ctx: MockContext) -> None:
    # f_nu = 3631 Jy x 10^(-0.4 m) at every wavelength must give m in all 108 bands (zero points)
    m_true, z = 20.0, np.array([0.5])
    dl = ctx.cosmo.luminosity_distance(z)
    wave_obs = ctx.ssp.wave * (1 + z[0])
    f_lambda_obs = AB_ZERO_JY * JY_CGS * 10 ** (-0.4 * m_true) * C_AA_S / wave_obs**2
    lum = (f_lambda_obs * 4 * np.pi * dl[0] ** 2 * (1 + z[0]) / LSUN_CGS).astype(np.float32)[None, :]
    mags = observed_magnitudes(lum, z, dl, ctx.filters, ctx.cfg.resolution)
    np.testing.assert_allclose(mags[0], m_true, atol=2e-3)


def test_noise_matches_depth() -> None:
    rng = np.random.default_rng(0)
    depth = np.array([25.0])
    at_depth = add_noise(np.full((20000, 1), 25.0), depth, 1.0, rng)
    assert np.nanstd(at_depth) == pytest.approx(2.5 / np.log(10) / 5, rel=0.1)  # S/N = 5 at the depth
    faint = add_noise(np.full((20000, 1), 30.0), depth, 1.0, rng)
    assert np.isnan(faint).mean() == pytest.approx(0.84, abs=0.02)  # S/N < 1 for a ~zero flux: P = Phi(1)


def test_coarse_sfh_nan_after_cosmic_time_and_floor() -> None:
    t_obs = np.array([3.0, 13.0])
    p = SFHParams(t_obs, 0.5 * t_obs, np.full(2, 0.3), np.array([np.inf, 5.0]), np.full(2, 0.1))
    sfr = fine_sfr_shape(p, 2760, 0.005) * 10.0
    out = coarse_sfh(sfr, t_obs, 0.005, np.linspace(0.0, 13.8, 118), floor=1e-4)
    centres = 0.5 * (np.linspace(0.0, 13.8, 118)[1:] + np.linspace(0.0, 13.8, 118)[:-1])
    assert np.all(np.isnan(out[0, centres > 3.0 + 0.06]))
    assert np.all(np.isfinite(out[0, centres < 3.0 - 0.06]))
    assert np.nanmin(out) == pytest.approx(-4.0)  # the quenched galaxy hits the floor
    assert out[1][np.isfinite(out[1])][-1] == pytest.approx(-4.0)  # its latest bin


def test_halo_draws_follow_the_mass_function(ctx: MockContext) -> None:
    z, logm = ctx.halos.sample(np.random.default_rng(1), 50000)
    assert z.min() >= ctx.cfg.z_min and z.max() <= ctx.cfg.z_max
    counts = np.histogram(logm, bins=[10.5, 11.0, 11.5, 12.0, 12.5])[0]
    assert np.all(np.diff(counts) < 0)  # steeply falling mass function
    slope = np.log10(counts[0] / counts[2]) / 1.0  # dN/dlogM ~ M^-0.9 at low mass
    assert 0.6 < slope < 1.2


def test_preselection_loses_no_selected_galaxy(ctx: MockContext) -> None:
    """The cheap stellar-mass pre-cut must be conservative: synthesise candidates below it too."""
    z_lim, m_lim = preselection_limit(ctx)
    rng = np.random.default_rng(5)
    gal = draw_galaxies(ctx, rng, rng, 6000)
    below = np.flatnonzero(gal.log_mstar < np.interp(gal.z, z_lim, m_lim))
    g = gal.take(below[:3000])
    _, lum, _ = synthesize_block(ctx, g, rng)
    mags = photometry_block(ctx, g, lum)
    assert np.nanmin(mags[:, ctx.i_index]) > ctx.cfg.selection_max_mag + 0.3


def test_chunks_are_reproducible(ctx: MockContext) -> None:
    limit = preselection_limit(ctx)
    small = dataclasses.replace(ctx, cfg=dataclasses.replace(ctx.cfg, chunk_candidates=3000))
    a = simulate_chunk(small, np.random.SeedSequence(3).spawn(1)[0], "lsst10", limit)
    b = simulate_chunk(small, np.random.SeedSequence(3).spawn(1)[0], "lsst10", limit)
    c = simulate_chunk(small, np.random.SeedSequence(4).spawn(1)[0], "lsst10", limit)
    assert a["scalars"].shape[0] > 100
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["scalars"][:10], c["scalars"][:10])
