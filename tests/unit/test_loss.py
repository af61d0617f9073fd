"""The App. C loss against a hand computation on a small batch with missing values."""

import math

import numpy as np
import pytest
import torch

from mosaic_hpc.data.batch import Batch
from mosaic_hpc.loss import masked_regression_loss
from mosaic_hpc.model import ModelOutput


def _batch():
    nan = float("nan")
    targets = {"a": torch.tensor([[1.0, 2.0], [3.0, nan]]), "b": torch.tensor([[0.0, 1.0, 2.0], [nan, nan, nan]])}
    valid = {k: ~torch.isnan(v) for k, v in targets.items()}
    hidden = {"a": torch.tensor([[True, False], [False, True]]), "b": torch.tensor([[False, True, True], [True] * 3])}
    return Batch(
        targets={k: torch.nan_to_num(v) for k, v in targets.items()},
        valid=valid,
        hidden=hidden,
        row_ids=torch.arange(2),
    )


def test_mse_matches_hand_computation():
    batch = _batch()
    out = ModelOutput(
        mean={"a": torch.tensor([[2.0, 2.0], [1.0, 100.0]]), "b": torch.tensor([[1.0, 1.0, 0.0], [9.0] * 3])}
    )
    loss = masked_regression_loss(out, batch, "all")
    # a: valid tokens (1,2,3): errors 1, 0, 4 -> mean 5/3 ; the NaN target (pred 100) is ignored
    # b: valid tokens (0,1,2) of row 0: errors 1, 0, 4 -> 5/3 ; row 1 is all missing
    assert math.isclose(loss.per_modality["a"].item(), 5 / 3, rel_tol=1e-6)
    assert math.isclose(loss.per_modality["b"].item(), 5 / 3, rel_tol=1e-6)
    assert math.isclose(loss.total.item(), 5 / 3, rel_tol=1e-6)

    masked = masked_regression_loss(out, batch, "masked")
    # a: hidden & valid -> (0,0) err 1 -> 1 ; b: hidden & valid -> (0,1),(0,2): 0 and 4 -> 2
    assert math.isclose(masked.per_modality["a"].item(), 1.0, rel_tol=1e-6)
    assert math.isclose(masked.per_modality["b"].item(), 2.0, rel_tol=1e-6)
    assert math.isclose(masked.total.item(), 1.5, rel_tol=1e-6)


def test_modalities_weigh_equally_and_empty_ones_drop_out():
    batch = _batch()
    batch.valid["b"][:] = False
    out = ModelOutput(mean={"a": torch.tensor([[2.0, 2.0], [1.0, 0.0]]), "b": torch.zeros(2, 3)})
    loss = masked_regression_loss(out, batch)
    assert math.isclose(loss.total.item(), loss.per_modality["a"].item(), rel_tol=1e-6)
    assert loss.counts["b"].item() == 0


def test_gaussian_nll_matches_hand_computation():
    batch = _batch()
    mean = {"a": torch.tensor([[2.0, 2.0], [1.0, 0.0]]), "b": torch.zeros(2, 3)}
    logvar = {"a": torch.full((2, 2), math.log(4.0)), "b": torch.zeros(2, 3)}
    loss = masked_regression_loss(ModelOutput(mean=mean, logvar=logvar), batch)
    want_a = np.mean([0.5 * (math.log(4.0) + e / 4.0) for e in (1.0, 0.0, 4.0)])
    want_b = np.mean([0.5 * e for e in (0.0, 1.0, 4.0)])
    assert math.isclose(loss.per_modality["a"].item(), want_a, rel_tol=1e-6)
    assert math.isclose(loss.per_modality["b"].item(), want_b, rel_tol=1e-6)


def test_loss_gradient_is_zero_at_missing_values():
    batch = _batch()
    pred = torch.zeros(2, 2, requires_grad=True)
    out = ModelOutput(mean={"a": pred, "b": torch.zeros(2, 3)})
    masked_regression_loss(out, batch).total.backward()
    assert pred.grad[1, 1] == 0
    assert (pred.grad[0] != 0).all()


def test_modality_weights_reweight_the_mean_over_modalities():
    batch = _batch()
    out = ModelOutput(
        mean={"a": torch.tensor([[2.0, 2.0], [1.0, 100.0]]), "b": torch.tensor([[1.0, 1.0, 0.0], [9.0] * 3])}
    )
    masked = masked_regression_loss(out, batch, "masked", weights={"a": 3.0})
    # per-modality losses as in the hand computation above: a = 1, b = 2; weights 3 and 1
    assert math.isclose(masked.total.item(), (3 * 1.0 + 1 * 2.0) / 4, rel_tol=1e-6)
    only_b = masked_regression_loss(out, batch, "masked", weights={"a": 0.0})
    assert math.isclose(only_b.total.item(), 2.0, rel_tol=1e-6)


def test_loss_weights_name_catalog_modalities():
    import pytest

    from mosaic_hpc.config import TrainConfig
    from mosaic_hpc.loss import check_loss_weights

    with pytest.raises(ValueError, match=r"names modalities \['spectra'\] not in the catalog"):
        check_loss_weights({"spectra": 2.0}, ["a", "b"])
    with pytest.raises(ValueError, match="train.loss_weights.a must be >= 0"):
        TrainConfig(loss_weights={"a": -1.0})


def test_beta_nll_gives_the_mean_the_squared_errors_gradient_at_beta_one():
    # beta-NLL (train.nll_beta): beta 0 scales the mean's gradient by 1/s^2, beta 1 removes that
    # scaling, so a wide predicted variance cannot freeze the mean; the variance still gets a gradient
    batch = _batch()
    grads = {}
    for beta in (0.0, 1.0):
        mean = {"a": torch.tensor([[2.0, 2.0], [1.0, 0.0]], requires_grad=True)}
        logvar = {"a": torch.full((2, 2), math.log(4.0), requires_grad=True)}
        sub = Batch(
            targets={"a": batch.targets["a"]}, valid={"a": batch.valid["a"]}, hidden=batch.hidden, row_ids=batch.row_ids
        )
        loss = masked_regression_loss(ModelOutput(mean=mean, logvar=logvar), sub, "all", nll_beta=beta)
        loss.total.backward()
        grads[beta] = (mean["a"].grad.clone(), logvar["a"].grad.clone())
    # valid tokens (0,0), (0,1), (1,0) of 3: d/dmu of 0.5 (mu - x)^2 / s^2 / 3, times s^2 at beta 1
    expected_mse = torch.tensor([[1.0, 0.0], [-2.0, 0.0]]) / 3
    torch.testing.assert_close(grads[1.0][0], expected_mse)
    torch.testing.assert_close(grads[0.0][0], expected_mse / 4.0)
    assert grads[1.0][1].abs().sum() > 0  # the variance is still fitted


def test_plain_nll_variance_weights_only_the_means_gradient():
    # train.nll_variance=plain: the mean moves as under beta-NLL, the variance as under plain NLL,
    # so a precise value's variance is not slowed by s^(2 beta) and does not end too wide
    batch = _batch()
    sub = Batch(
        targets={"a": batch.targets["a"]}, valid={"a": batch.valid["a"]}, hidden=batch.hidden, row_ids=batch.row_ids
    )

    def grads(beta: float, variance: str) -> tuple[torch.Tensor, torch.Tensor]:
        mean = {"a": torch.tensor([[2.0, 2.0], [1.0, 0.0]], requires_grad=True)}
        logvar = {"a": torch.tensor([[math.log(0.25), 0.0], [math.log(4.0), 1.0]], requires_grad=True)}
        out = masked_regression_loss(
            ModelOutput(mean=mean, logvar=logvar), sub, "all", nll_beta=beta, nll_variance=variance
        )
        out.total.backward()
        return mean["a"].grad, logvar["a"].grad

    mean_split, var_split = grads(0.5, "plain")
    torch.testing.assert_close(mean_split, grads(0.5, "beta")[0])
    torch.testing.assert_close(var_split, grads(0.0, "beta")[1])
    assert not torch.allclose(var_split, grads(0.5, "beta")[1])  # the split changes the variance's step
    with pytest.raises(ValueError, match="nll_variance"):
        masked_regression_loss(
            ModelOutput(mean={"a": sub.targets["a"]}, logvar={"a": sub.targets["a"]}), sub, nll_variance="x"
        )
