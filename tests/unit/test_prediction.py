"""Prediction: missing inputs are flagged as absent; Gaussian predictive samples and log-densities."""

import numpy as np
import pytest
from toy_catalog import toy_schema

from mosaic_hpc.config import RunConfig
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.evaluation.predictor import Prediction, Predictor
from mosaic_hpc.model import build_model


def _prediction(n: int = 500) -> Prediction:
    rng = np.random.default_rng(0)
    values = {"a": rng.normal(size=(n, 3)).astype(np.float32)}
    sigma = {"a": np.array([[0.5, 1.0, 2.0]] * n, np.float32)}
    given = {"a": np.zeros((n, 3), bool)}
    given["a"][:, 0] = True
    return Prediction(values=values, sigma=sigma, given=given)


def test_samples_follow_the_predictive_gaussian_and_keep_given_values():
    pred = _prediction()
    draws = pred.sample(400, seed=1)["a"]
    assert draws.shape == (400, 500, 3) and draws.dtype == np.float32
    np.testing.assert_array_equal(draws[:, :, 0], np.broadcast_to(pred.values["a"][:, 0], (400, 500)))
    z = (draws[:, :, 1:] - pred.values["a"][None, :, 1:]) / pred.sigma["a"][None, :, 1:]
    assert abs(z.mean()) < 0.01 and z.std() == pytest.approx(1.0, abs=0.01)
    np.testing.assert_array_equal(pred.sample(3, seed=7)["a"], pred.sample(3, seed=7)["a"])


def test_log_prob_is_the_gaussian_density_of_hidden_values():
    pred = _prediction(4)
    truth = {"a": pred.values["a"] + pred.sigma["a"]}  # one sigma off everywhere
    lp = pred.log_prob(truth)["a"]
    assert np.isnan(lp[:, 0]).all()  # given: not a prediction
    expected = -0.5 - np.log(pred.sigma["a"][:, 1:]) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(lp[:, 1:], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="has shape"):
        pred.log_prob({"a": np.zeros((3, 3))})


def test_point_heads_have_no_distribution():
    pred = Prediction(values={"a": np.zeros((2, 1))}, sigma=None, given={"a": np.zeros((2, 1), bool)})
    with pytest.raises(ValueError, match="point heads"):
        pred.sample(2)
    with pytest.raises(ValueError, match="point heads"):
        pred.log_prob({"a": np.zeros((2, 1))})


def test_predictor_flags_missing_given_inputs_as_absent_never_hidden_modalities(toy_catalog_dir):
    schema = toy_schema()
    cfg = RunConfig()
    stats = Catalog.open(toy_catalog_dir, "train").stats
    predictor = Predictor(build_model(schema, cfg.model), cfg, schema, stats, device="cpu")
    truth = Catalog.open(toy_catalog_dir, "test").read(0, 64)
    assert np.isnan(truth["sfh"]).any()
    (_, batch), *_ = list(predictor.batches(truth, given=None, batch_size=64))
    np.testing.assert_array_equal(batch.absent["sfh"], np.isnan(truth["sfh"]))  # given with holes: absent
    from mosaic_hpc.data.configurations import parse_configuration

    (_, lsst), *_ = list(predictor.batches(truth, given=parse_configuration("given=lsst", schema), batch_size=64))
    assert not lsst.absent["sfh"].any() and lsst.hidden["sfh"].all()  # hidden: its missing pattern never shows


def test_calibration_stats_of_a_calibrated_and_an_overconfident_model():
    from mosaic_hpc.evaluation.metrics import calibration_stats
    from mosaic_hpc.schema import CatalogSchema, ModalitySpec

    schema = CatalogSchema((ModalitySpec("scalars", "scalars", 2, "", columns=("redshift", "mass")),))
    rng = np.random.default_rng(3)
    n = 20_000
    mu = rng.normal(size=(n, 2))
    truth = {"scalars": mu + rng.normal(size=(n, 2))}  # truth ~ N(mu, 1)
    given = np.zeros((n, 2), bool)
    given[:, 1] = True  # mass given: not a prediction, not scored
    good = Prediction({"scalars": mu}, {"scalars": np.ones((n, 2))}, {"scalars": given})
    cal = calibration_stats(good, truth, schema)
    assert set(cal) == {"redshift"}
    assert cal["redshift"]["pit_ks"] < 0.015 and cal["redshift"]["n"] == n
    assert cal["redshift"]["coverage_68"] == pytest.approx(0.68, abs=0.01)
    assert cal["redshift"]["coverage_95"] == pytest.approx(0.95, abs=0.01)
    tight = Prediction({"scalars": mu}, {"scalars": np.full((n, 2), 0.5)}, {"scalars": given})
    over = calibration_stats(tight, truth, schema)["redshift"]
    assert over["pit_ks"] > 0.1 and over["coverage_68"] < 0.45  # sigma half the true spread
    assert calibration_stats(Prediction({"scalars": mu}, None, {"scalars": given}), truth, schema) == {}
