"""Mixture heads (``model.mixture_components``): the math, the model's output, predictions and their files."""

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO
from scipy import stats

from mosaic_hpc import mixture
from mosaic_hpc.config import ModelConfig, load_config
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.evaluation.metrics import calibration_stats
from mosaic_hpc.evaluation.pdf import pool_members, scalar_ensemble
from mosaic_hpc.evaluation.prediction_files import flat_table, write_predictions
from mosaic_hpc.evaluation.predictor import load_run
from mosaic_hpc.loss import token_losses
from mosaic_hpc.model import ModelOutput, build_model
from mosaic_hpc.training.runner import run_training


def _components(logits, means, logvars) -> torch.Tensor:
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in (logits, means, logvars)], dim=-2)


def test_one_component_is_the_gaussian_loss_and_moments():
    mu, logvar, x = (torch.randn(50, dtype=torch.float64) for _ in range(3))
    c = _components(torch.zeros(50, 1), mu[:, None], logvar[:, None])
    torch.testing.assert_close(mixture.nll(c, x), 0.5 * (logvar + (x - mu) ** 2 * torch.exp(-logvar)))
    mean, lv = mixture.moments(c)
    torch.testing.assert_close(mean, mu)
    torch.testing.assert_close(lv, logvar)


def test_moments_and_density_of_two_components():
    c = _components([[np.log(0.8), np.log(0.2)]], [[0.0, 3.0]], [[np.log(0.25), np.log(4.0)]])
    mean, logvar = mixture.moments(c)
    assert float(mean[0]) == pytest.approx(0.6)
    second = 0.8 * (0.25 + 0) + 0.2 * (4.0 + 9.0)
    assert float(torch.exp(logvar[0])) == pytest.approx(second - 0.36)
    x = np.linspace(-6, 16, 8001)
    w, m, s = np.array([0.8, 0.2]), np.array([0.0, 3.0]), np.array([0.5, 2.0])
    density = np.exp(mixture.log_pdf(w, m, s, x))
    assert np.trapezoid(density, x) == pytest.approx(1.0, abs=1e-4)
    nll = mixture.nll(c.expand(len(x), 3, 2), torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(-nll - 0.5 * np.log(2 * np.pi), np.log(density), rtol=1e-9)
    np.testing.assert_allclose(np.gradient(mixture.cdf(w, m, s, x), x), density, atol=1e-4)
    draws = mixture.sample(np.broadcast_to(w, (1, 2)), m[None], s[None], 20000, np.random.default_rng(0))[:, 0]
    assert stats.kstest(draws, lambda t: mixture.cdf(w, m, s, np.asarray(t))).statistic < 0.015


def test_quantiles_invert_the_cdf_where_a_coarse_grid_would_not():
    rng = np.random.default_rng(0)
    w = rng.dirichlet([1.0, 1.0, 1.0], size=500)
    m = rng.uniform(0.0, 3.0, (500, 3))
    s = rng.uniform(0.005, 0.3, (500, 3))
    for q in (0.16, 0.5, 0.84):
        x = mixture.quantile(w, m, s, q)
        np.testing.assert_allclose(mixture.cdf(w, m, s, x), q, atol=1e-9)
    one = mixture.quantile(np.ones((4, 1)), np.arange(4.0)[:, None], np.ones((4, 1)), 0.5)
    np.testing.assert_allclose(one, np.arange(4.0), atol=1e-9)
    with pytest.raises(ValueError, match="quantile level"):
        mixture.quantile(w, m, s, 1.0)


def test_mixture_needs_gaussian_heads_and_a_positive_count():
    with pytest.raises(ValueError, match="model.mixture_components"):
        ModelConfig(mixture_components=2)
    with pytest.raises(ValueError, match="model.mixture_components"):
        ModelConfig(gaussian_heads=True, mixture_components=0)


def test_model_returns_components_whose_moments_are_mean_and_logvar():
    from toy_catalog import toy_schema

    schema = toy_schema()
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, gaussian_heads=True, mixture_components=3,
                      patch_size={"sed": 7})  # fmt: skip
    model = build_model(schema, cfg)
    values = {m.name: torch.randn(4, m.length) for m in schema}
    hidden = {m.name: torch.rand(4, m.length) < 0.5 for m in schema}
    out = model(values, hidden)
    for m in schema:
        assert out.components[m.name].shape == (4, m.length, 3, 3)
        mean, logvar = mixture.moments(out.components[m.name])
        torch.testing.assert_close(out.mean[m.name], mean)
        torch.testing.assert_close(out.logvar[m.name], logvar)
    single = build_model(schema, ModelConfig(d_model=16, n_layers=1, n_heads=2, gaussian_heads=True))
    assert single(values, hidden).components is None


def test_plain_variance_moves_only_the_means_by_the_weighted_loss():
    c = torch.randn(2, 3, 3, 2, requires_grad=True)
    mean, logvar = mixture.moments(c)
    out = ModelOutput(mean={"scalars": mean}, logvar={"scalars": logvar}, components={"scalars": c})

    class B:
        targets = {"scalars": torch.randn(2, 3)}

    plain = token_losses(out, B(), "scalars", nll_beta=0.5, nll_variance="plain")
    (g_plain,) = torch.autograd.grad(plain.sum(), c)
    # the means' gradient is the beta-weighted NLL's, the weights' and variances' the plain NLL's
    weighted = mixture.nll(c, B.targets["scalars"]) * torch.exp(0.5 * logvar.detach())
    (g_weighted,) = torch.autograd.grad(weighted.sum(), c)
    (g_nll,) = torch.autograd.grad(mixture.nll(c, B.targets["scalars"]).sum(), c)
    torch.testing.assert_close(g_plain[..., mixture.MEANS, :], g_weighted[..., mixture.MEANS, :])
    torch.testing.assert_close(g_plain[..., mixture.LOGITS, :], g_nll[..., mixture.LOGITS, :])
    torch.testing.assert_close(g_plain[..., mixture.LOGVARS, :], g_nll[..., mixture.LOGVARS, :])


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory, toy_catalog_dir):
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("mixture_run")
    overrides = {"train.max_steps": 150, "train.eval_every": 0, "model.gaussian_heads": True}
    overrides.update({"model.mixture_components": 2, "train.nll_beta": 0.5})
    run_training(load_config(REPO / "configs" / "tiny.yaml", overrides), toy_catalog_dir, run, resume="none")
    return run


def test_prediction_of_a_mixture_run_is_one_distribution_throughout(mixture_run, toy_catalog_dir, tmp_path):
    predictor = load_run(mixture_run)
    truth = Catalog.open(toy_catalog_dir, "test").read(0, 300)
    pred = predictor.predict({"lsst": truth["lsst"]})
    w, m, s = pred.mixture["scalars"]
    assert w.shape == m.shape == s.shape == (300, 3, 2)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(pred.values["scalars"], (w * m).sum(-1), rtol=1e-4, atol=1e-4)
    variance = (w * (s**2 + m**2)).sum(-1) - pred.values["scalars"] ** 2
    np.testing.assert_allclose(pred.sigma["scalars"], np.sqrt(variance), rtol=1e-3)
    # the PIT, the log-density and the qp file all describe the same mixture
    z = truth["scalars"]
    pit = pred.cdf("scalars", z)
    np.testing.assert_allclose(pit, mixture.cdf(w, m, s, z.astype(np.float64)), rtol=1e-6)
    cal = calibration_stats(pred, truth, predictor.schema)["redshift"]
    from scipy.stats import kstest

    assert cal["pit_ks"] == pytest.approx(kstest(pit[:, 0], "uniform").statistic)
    np.testing.assert_allclose(
        pred.log_prob({"scalars": z})["scalars"],
        mixture.log_pdf(*(a.astype(np.float64) for a in (w, m, s, z))),
        rtol=1e-9,
    )
    ens = scalar_ensemble(pred, predictor.schema, "redshift")
    np.testing.assert_allclose(ens.cdf(z[:, :1]).ravel(), pit[:, 0], rtol=1e-5, atol=1e-7)
    draws = pred.sample(4, seed=1)["scalars"]
    assert draws.shape == (4, 300, 3) and np.isfinite(draws).all()
    # files keep the components
    path = write_predictions(tmp_path / "p.h5", pred, predictor.schema, {"row": np.arange(300)}, {})
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["mixture/scalars/weight"][:], w)
        np.testing.assert_array_equal(f["mixture/scalars/sigma"][:], s)
    table = flat_table(pred, predictor.schema, {"row": np.arange(300)})
    np.testing.assert_array_equal(table["scalars_redshift_mean1"], m[:, 0, 1])


def test_pooled_members_weigh_each_member_equally():
    one = (np.zeros((2, 5)), np.ones((2, 5)), np.full((2, 5), 0.5))
    two = (np.ones((1, 5)), np.ones((1, 5)), np.ones((1, 5)))
    mus, _, weights = pool_members([one, two])
    assert mus.shape == (3, 5)
    np.testing.assert_allclose(weights.sum(0), 1.0)
    np.testing.assert_allclose(weights[2], 0.5)
