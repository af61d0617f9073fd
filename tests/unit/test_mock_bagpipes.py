"""Cross-check against an independent implementation: bagpipes' ``model_galaxy``.

For a few galaxies with the same SFH, metallicity, dust (Calzetti, birth-cloud eta) and nebular
settings, our grizy magnitudes must agree with bagpipes' (its photometric sampling raised to
R = 2000) within 0.05 mag, after correcting for bagpipes' own cosmology (H0 = 70, Om = 0.3) in
the luminosity distance. bagpipes runs in a subprocess: importing it writes an IGM table into
site-packages, which must not happen inside the test process. Its IGM table is then compared
with our Inoue+14 implementation too.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mosaic_hpc.data.mock.config import MockConfig
from mosaic_hpc.data.mock.pipeline import Galaxies, MockContext, photometry_block
from mosaic_hpc.data.mock.sfh import bin_mass, lookback_steps
from mosaic_hpc.data.mock.spectra import _igm_coefficients, inoue14_tau, synthesize
from mosaic_hpc.data.mock.ssp import grid_dir

pytestmark = pytest.mark.slow  # about 10 s: bagpipes import and five model_galaxy calls at R = 2000

BAGPIPES_SIDE = """
import json, sys
import numpy as np
import bagpipes
bagpipes.config.R_phot = 2000.0
cases = json.load(open(sys.argv[1]))
out = []
for c in cases:
    comps = {
        "redshift": c["z"],
        "custom": {"history": np.c_[c["ages_yr"], c["sfr"]], "massformed": 10.0, "metallicity": c["zmet"]},
        "dust": {"type": "Calzetti", "Av": c["av"], "eta": c["eta"]},
        "nebular": {"logU": c["logu"]},
        "t_bc": c["t_bc_gyr"],
    }
    model = bagpipes.model_galaxy(comps, filt_list=c["filters"], phot_units="mujy")
    dl = bagpipes.config.cosmo.luminosity_distance(c["z"]).to("cm").value
    out.append({"mags": (-2.5 * np.log10(model.photometry * 1e-6 / 3631.0)).tolist(), "dl_cm": float(dl)})
print(json.dumps(out))
"""

# (redshift, SFH shape, Z/Zsun, A_V): star-forming, quenched and constant SFHs, dust or not
CASES = [
    (0.3, "lognormal", 1.0, 0.0),
    (0.3, "quenched", 1.0, 0.2),
    (0.8, "lognormal", 0.4, 0.5),
    (0.8, "quenched", 2.5, 0.0),
    (1.5, "constant", 0.2, 0.3),
]


def _sfr(age_gyr: np.ndarray, t_obs: float, shape: str) -> np.ndarray:
    """SFR (arbitrary units) at lookback ages; zero in the first 0.3 Gyr (both cosmologies agree there)."""
    t = np.maximum(t_obs - age_gyr, 1e-3)
    if shape == "lognormal":
        s = np.exp(-((np.log(t) - np.log(0.6 * t_obs) - 0.36) ** 2) / 0.72) / t
    elif shape == "quenched":
        s = np.exp(-((np.log(t) - np.log(0.4 * t_obs) - 0.25) ** 2) / 0.5) / t
        s *= np.exp(-np.maximum(t - 0.7 * t_obs, 0.0) / 0.2)
    else:
        s = np.ones_like(t)
    return np.where(t_obs - age_gyr > 0.3, s, 0.0)


def _our_magnitudes(ctx: MockContext, z: float, shape: str, zmet: float, av: float) -> np.ndarray:
    t_obs = float(ctx.cosmo.age(np.array([z]))[0])
    step_gyr = ctx.cfg.sfh_step_myr * 1e-3
    sfr = _sfr(lookback_steps(ctx.n_steps, step_gyr), t_obs, shape)[None, :].astype(np.float32)
    mass = bin_mass(sfr, ctx.ssp.edges_steps, step_gyr * 1e9)
    mass *= 1e10 / mass.sum()  # bagpipes normalises the mass formed
    iz, wz = ctx.ssp.metallicity_weights(np.log10([zmet]))
    lum = synthesize(mass, iz, wz, np.array([av]), ctx.ssp, ctx.k_over_rv, ctx.cfg.dust_eta)
    gal = Galaxies(np.array([z]), np.zeros(1), np.zeros(1), np.zeros(1, bool), np.log10([zmet]), np.array([av]))
    return photometry_block(ctx, gal, lum)[0, :6]


@pytest.fixture(scope="module")
def bagpipes_run(tmp_path_factory) -> tuple[MockContext, list[dict]]:
    if importlib.util.find_spec("bagpipes") is None:
        pytest.skip("bagpipes is not installed")
    import speclite.filters

    tmp = tmp_path_factory.mktemp("bagpipes")
    ctx = MockContext.build(MockConfig())
    filters = []
    for band in "ugrizy":
        f = speclite.filters.load_filter(f"{ctx.cfg.lsst_filters}-{band}")
        path = tmp / f"lsst_{band}.dat"
        np.savetxt(path, np.c_[f.wavelength, f.response])
        filters.append(str(path))
    cases = []
    for z, shape, zmet, av in CASES:
        t_obs = float(ctx.cosmo.age(np.array([z]))[0])
        ages_yr = np.concatenate([[0.0], np.geomspace(1e5, t_obs * 1e9, 3000)])
        cases.append(
            {
                "z": z,
                "ages_yr": ages_yr.tolist(),
                "sfr": _sfr(ages_yr / 1e9, t_obs, shape).tolist(),
                "zmet": zmet,
                "av": av,
                "eta": ctx.cfg.dust_eta,
                "logu": ctx.cfg.log_u,
                "t_bc_gyr": ctx.cfg.birth_cloud_myr / 1e3,
                "filters": filters,
            }
        )
    (tmp / "cases.json").write_text(json.dumps(cases))
    (tmp / "side.py").write_text(BAGPIPES_SIDE)
    res = subprocess.run(
        [sys.executable, str(tmp / "side.py"), str(tmp / "cases.json")], capture_output=True, text=True, cwd=tmp
    )
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        if "ImportError" in res.stderr or "ModuleNotFoundError" in res.stderr:
            pytest.skip(f"bagpipes does not import here (installed without its dependencies?): {last}")
        pytest.fail(f"bagpipes model_galaxy failed: {last}")
    return ctx, json.loads(res.stdout.strip().splitlines()[-1])


def test_grizy_magnitudes_agree_with_bagpipes(bagpipes_run) -> None:
    ctx, results = bagpipes_run
    for (z, shape, zmet, av), res in zip(CASES, results, strict=True):
        ours = _our_magnitudes(ctx, z, shape, zmet, av)
        dl_ours = float(ctx.cosmo.luminosity_distance(np.array([z]))[0])
        ours_at_their_distance = ours + 5.0 * np.log10(res["dl_cm"] / dl_ours)
        diff = np.asarray(res["mags"]) - ours_at_their_distance
        assert np.abs(diff[1:]).max() < 0.05, (z, shape, zmet, av, diff.round(3))


def test_igm_agrees_with_the_bagpipes_table(bagpipes_run) -> None:
    """bagpipes tabulates Inoue+14 on import; ours is an independent implementation of the paper."""
    from astropy.io import fits

    table = Path(grid_dir()) / "d_igm_grid_inoue14.fits"
    if not table.exists():
        pytest.skip("bagpipes wrote no IGM table")
    with fits.open(table) as hdul:
        trans, wave, zred = hdul["TRANS"].data, hdul["WAVS"].data, hdul["ZRED"].data
    coeffs = _igm_coefficients()
    rest = (wave > 500) & (wave < 1210)
    for z in (0.5, 1.5, 2.2, 3.0):
        iz = int(np.argmin(np.abs(zred - z)))
        ours = np.exp(-inoue14_tau(wave[rest] * (1 + zred[iz]), zred[iz], coeffs))
        np.testing.assert_allclose(ours, trans[iz][rest], atol=1e-3)
