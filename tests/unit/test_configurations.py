"""Evaluation input configurations: the paper's five and user specs."""

import numpy as np
import pytest
from toy_catalog import toy_schema

from mosaic_hpc.data.configurations import paper_configurations, parse_configuration


def test_paper_configurations_name_the_given_sfh_range():
    schema = toy_schema()
    cfgs = {c.name: c for c in paper_configurations(schema)}
    assert len(cfgs) == 5
    t = np.asarray(schema["sfh"].axis)
    early = cfgs["lsst_sfh_0_10gyr"].given_mask(schema)
    np.testing.assert_array_equal(early["sfh"], t < 10)
    assert early["lsst"].all() and not early["sed"].any() and not early["scalars"].any()
    late = cfgs["lsst_sfh_10_13.8gyr"].given_mask(schema)
    np.testing.assert_array_equal(late["sfh"], t >= 10)
    sm = cfgs["stellar_mass_only"].given_mask(schema)
    np.testing.assert_array_equal(sm["scalars"], [False, False, True])


def test_user_spec_with_units_and_names():
    schema = toy_schema()
    c = parse_configuration("blue:given=sed[lambda<1um&lambda>=2000A],scalars[redshift]", schema)
    assert c.name == "blue"
    g = c.given_mask(schema)
    wl = np.asarray(schema["sed"].axis)
    np.testing.assert_array_equal(g["sed"], (wl < 1e4) & (wl >= 2000))
    np.testing.assert_array_equal(g["scalars"], [True, False, False])
    h = c.hidden_masks(schema, 3)
    assert h["lsst"].shape == (3, 6) and h["lsst"].all()


@pytest.mark.parametrize(
    "spec,match",
    [
        ("given=spectra", "unknown modality 'spectra'"),
        ("given=sfh[t>=20Gyr]", "selects no value"),
        ("given=sfh[lambda<5000A]", "axis is cosmic_time"),
        ("given=scalars[mass]", "no column 'mass'"),
        ("given=sfh[t~3]", "cannot parse condition"),
        ("given=", "gives nothing"),
    ],
)
def test_bad_specs_fail_clearly(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_configuration(spec, toy_schema())
