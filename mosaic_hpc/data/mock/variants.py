"""Opt-in variants of the mock recipe; the default catalog (``variant="default"``) never passes through here.

Why a ``survey`` variant: a network pretrained on one simulator learns that simulator's colour-
redshift relation, and is wrong wherever a survey's galaxies differ (cosmoDC2's low-z galaxies
are redder than the default mock's, its z > 1.5 galaxies bluer; ``docs/mock_vs_dc2.md``). Rather
than tune one recipe to one survey, the variant draws the uncertain choices of the recipe per
galaxy from broad ranges (domain randomisation), so the pretrained model has seen colours over
the range that plausible stellar-population, dust, IGM and emission-line physics allows:

- stellar populations: quenched-fraction midpoint shifted per galaxy, metallicity scatter widened,
  SFH peak times scattered more widely (older and younger populations at fixed mass);
- dust: A_V scaled by a log-normal factor, the Calzetti curve tilted by (lambda / 5500 A)^delta
  (Noll et al. 2009, A&A 507, 1793: delta about -0.5 to +0.3 across galaxies), birth-cloud factor
  drawn per galaxy;
- IGM: the Inoue+14 optical depth scaled per sightline (its line-of-sight scatter);
- emission lines: the nebular continuum and lines scaled by a log-normal factor;
- noise (``make-catalog``): the LSST bands observed through the LSST error model of ``photerr``
  (Ivezic+19 with the LSST-DESC updates RAIL's degraders use), 10-year depths.

Every draw comes from a fifth random stream of the chunk, so the galaxies (halos, masses, SFH
draws) are those of the default catalog with the same seed, only their SEDs differ.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass

import numpy as np

from .relations import dust_av, quenched_fraction
from .sfh import SFHParams

VARIANTS: tuple[str, ...] = ("default", "survey")
V_BAND_A = 5500.0  # pivot of the dust-curve tilt: A_V is unchanged by it


@dataclass(frozen=True)
class SurveyVariant:
    """Ranges of the per-galaxy draws of the ``survey`` variant (uniform U(a, b) or log-normal sigmas)."""

    quench_shift_dex: tuple[float, float] = (-2.0, 0.3)  # added to the quenched-fraction midpoint in log M*
    mzr_extra_scatter_dex: float = 0.3  # added in quadrature to the 0.15 dex of Gallazzi+05
    sfh_peak_extra_scatter: float = 0.25  # extra scatter of t_peak / t_obs (0.12 / 0.10 in the default)
    av_scale_sigma_dex: float = 0.35  # log-normal scatter of A_V about the default relation
    dust_slope: tuple[float, float] = (-0.5, 0.3)  # Noll+09 tilt delta of the attenuation curve
    birth_cloud_eta: tuple[float, float] = (1.0, 3.0)  # extra young-star attenuation factor (default 2.27)
    igm_tau_scale: tuple[float, float] = (0.5, 1.5)  # factor on the Inoue+14 optical depth
    nebular_scale_sigma_dex: float = 0.3  # log-normal scatter of nebular continuum + line luminosity
    lsst_noise: str = "photerr"  # LSST-band noise model with noise="lsst10"

    def provenance(self) -> dict[str, str]:
        return {"mock_variant": "survey", "mock_variant_config": json.dumps(asdict(self), sort_keys=True)}


@dataclass(frozen=True)
class SEDDraws:
    """Per-galaxy SED choices of a block (arrays of length N)."""

    dust_slope: np.ndarray
    eta: np.ndarray
    igm_scale: np.ndarray
    nebular_scale: np.ndarray


def variant_config(variant: str | SurveyVariant) -> SurveyVariant | None:
    """The variant object for a name of ``VARIANTS`` (None for the default recipe), or ``variant`` itself."""
    if isinstance(variant, SurveyVariant):
        return variant
    if variant not in VARIANTS:
        raise ValueError(f"mock variant must be one of {VARIANTS}, got {variant!r}")
    return None if variant == "default" else SurveyVariant()


def survey_variant(overrides: list[str]) -> SurveyVariant:
    """``SurveyVariant`` with ``KEY=VALUE`` overrides (ranges as ``LO,HI``), e.g. ``["dust_slope=-0.7,0.3"]``."""
    fields = {f.name: f for f in dataclasses.fields(SurveyVariant)}
    values: dict[str, object] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"survey variant override {item!r}: expected KEY=VALUE with KEY in {sorted(fields)}")
        default = getattr(SurveyVariant(), key)
        try:
            if isinstance(default, tuple):
                values[key] = tuple(float(v) for v in text.split(","))
                if len(values[key]) != 2:
                    raise ValueError("a range needs LO,HI")
            else:
                values[key] = type(default)(text)
        except ValueError as err:
            raise ValueError(f"survey variant override {item!r}: {err}") from None
    return dataclasses.replace(SurveyVariant(), **values)


def randomise_galaxies(gal, variant: SurveyVariant, rng: np.random.Generator):
    """The galaxies with quenching, metallicity and dust redrawn from the variant's ranges.

    ``gal`` is a ``pipeline.Galaxies``; halos, redshifts and stellar masses are kept.
    """
    n = gal.z.size
    shift = rng.uniform(*variant.quench_shift_dex, n)
    quenched = rng.random(n) < quenched_fraction(gal.log_mstar - shift, gal.z)
    log_z = gal.log_z + variant.mzr_extra_scatter_dex * rng.standard_normal(n)
    av = dust_av(gal.log_mstar, quenched, rng) * 10.0 ** (variant.av_scale_sigma_dex * rng.standard_normal(n))
    return dataclasses.replace(gal, quenched=quenched, log_z=log_z, av=np.clip(av, 0.0, 4.0))


def draw_sed(variant: SurveyVariant, rng: np.random.Generator, n: int) -> SEDDraws:
    return SEDDraws(
        dust_slope=rng.uniform(*variant.dust_slope, n),
        eta=rng.uniform(*variant.birth_cloud_eta, n),
        igm_scale=rng.uniform(*variant.igm_tau_scale, n),
        nebular_scale=10.0 ** (variant.nebular_scale_sigma_dex * rng.standard_normal(n)),
    )


def scatter_sfh(params: SFHParams, variant: SurveyVariant, rng: np.random.Generator) -> SFHParams:
    """SFH peak times scattered further: t_peak / t_obs + N(0, extra), kept in [0.1, 1.5]."""
    x = params.t_peak / params.t_obs + variant.sfh_peak_extra_scatter * rng.standard_normal(params.t_obs.size)
    x = np.clip(x, 0.1, 1.5)
    return dataclasses.replace(params, t_peak=x * params.t_obs)


def tilted_k(k_over_rv: np.ndarray, wave: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """[N, n_wave] Calzetti k / R_V tilted per galaxy by (lambda / 5500 A)^delta (A_V unchanged)."""
    return (k_over_rv[None, :] * (wave[None, :] / V_BAND_A) ** slope[:, None]).astype(np.float32)


def lsst_photerr(
    true_mag: np.ndarray, rng: np.random.Generator, m5: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Observed LSST ugrizy magnitudes and errors from true ones through photerr's LSST error model.

    Args:
        true_mag: [N, 6] noise-free AB magnitudes.
        rng: random stream of the noise.
        m5: optional [6] coadded 5-sigma depths instead of photerr's 10-year defaults (e.g. a
            survey's depths fitted to its own magnitude errors).

    Returns:
        ([N, 6] observed magnitudes, [N, 6] errors), NaN where photerr reports a non-detection
        (non-positive observed flux).
    """
    import pandas as pd
    from photerr import LsstErrorModel

    bands = list("ugrizy")
    kwargs = {"ndFlag": np.nan, "sigLim": 0.0}
    if m5 is not None:  # coadded depths: one visit of one year at depth m5
        kwargs.update(m5=dict(zip(bands, map(float, m5), strict=True)), nVisYr=dict.fromkeys(bands, 1.0), nYrObs=1.0)
    model = LsstErrorModel(**kwargs)
    finite = np.isfinite(true_mag).all(axis=1)
    mag = np.full(true_mag.shape, np.nan)
    err = np.full(true_mag.shape, np.nan)
    if finite.any():
        out = model(pd.DataFrame(true_mag[finite], columns=bands), random_state=rng)
        mag[finite] = out[bands].to_numpy()
        err[finite] = out[[f"{b}_err" for b in bands]].to_numpy()
    bad = ~np.isfinite(mag) | ~np.isfinite(err)
    return np.where(bad, np.nan, mag), np.where(bad, np.nan, err)
