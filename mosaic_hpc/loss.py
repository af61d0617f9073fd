"""Masked regression loss (paper App. C).

Per-token squared error (or Gaussian negative log-likelihood for Gaussian heads), averaged over
the valid tokens of each modality, then averaged with equal weight over modalities, so a
921-value SED counts as much as three scalars (``train.loss_weights`` reweights modalities).
Missing values (NaN in the catalog) never enter. Modalities with no valid token in a batch are
left out of the mean rather than counted as zero. Everything stays on the device (no
``.item()``), so the loss adds no host synchronisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from . import mixture
from .data.batch import Batch
from .model import ModelOutput

LOSS_ON = ("all", "masked")
NLL_VARIANCE = ("beta", "plain")


@dataclass
class LossOutput:
    """``total`` drives the backward pass; ``per_modality`` is reported (detached by callers)."""

    total: Tensor
    per_modality: dict[str, Tensor]
    counts: dict[str, Tensor]


def token_losses(
    out: ModelOutput, batch: Batch, name: str, nll_beta: float = 0.0, nll_variance: str = "beta"
) -> Tensor:
    """Per-token loss for one modality, [B, L], in float32 whatever the compute precision.

    Gaussian heads train by the beta-NLL of Seitzer et al. (ICLR 2022): each token's NLL times
    its own variance to the power ``nll_beta``, held constant in the backward pass. Plain NLL
    (beta 0) scales the mean's gradient by 1 / s^2, so a value the model finds hard early (the
    redshift from a colour) can settle at the training mean with a wide variance and never leave;
    beta 1 gives the mean MSE's gradient, and 0.5 sits between, with the variance still fitted.

    The same weight also slows the variance of a precise value (s^2 small) by s^(2 beta): its
    variance then lags behind a mean that keeps improving and ends too wide. ``nll_variance
    "plain"`` keeps beta's weighting for the mean only and fits the variance by plain NLL against
    the detached mean (both have their optimum at s^2 = E[(x - mu)^2]; only the speed differs).
    The loss value is then the sum of the two parts, not an NLL.

    Mixture heads (``out.components``) train by the mixture's NLL, beta-weighted by the mixture's
    variance; with ``"plain"`` the weighted NLL moves only the component means and the plain NLL
    (means held) the weights and variances.
    """
    if out.components is not None:
        c, x = out.components[name].float(), batch.targets[name].float()
        if not nll_beta:
            return mixture.nll(c, x)
        weight = torch.exp(nll_beta * out.logvar[name].float().detach())
        if nll_variance == "beta":
            return mixture.nll(c, x) * weight
        mean_only, spread_only = mixture.split_means(c)
        return mixture.nll(mean_only, x) * weight + mixture.nll(spread_only, x)
    err2 = (out.mean[name].float() - batch.targets[name].float()) ** 2
    if out.logvar is None:
        return err2
    logvar = out.logvar[name].float()
    # Gaussian NLL without the constant 0.5 log(2 pi): 0.5 (log s^2 + (x - mu)^2 / s^2).
    nll = 0.5 * (logvar + err2 * torch.exp(-logvar))
    if not nll_beta:
        return nll
    weight = torch.exp(nll_beta * logvar.detach())
    if nll_variance == "beta":
        return nll * weight
    mean_part = 0.5 * err2 * torch.exp(-logvar.detach()) * weight  # moves only the mean
    var_part = 0.5 * (logvar + err2.detach() * torch.exp(-logvar))  # moves only the variance
    return mean_part + var_part


def check_loss_weights(weights: Mapping[str, float], names: Sequence[str]) -> None:
    """``train.loss_weights`` may only name modalities of the catalog."""
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise ValueError(f"train.loss_weights names modalities {unknown} not in the catalog {list(names)}")


def masked_regression_loss(
    out: ModelOutput,
    batch: Batch,
    loss_on: str = "all",
    weights: Mapping[str, float] | None = None,
    nll_beta: float = 0.0,
    nll_variance: str = "beta",
) -> LossOutput:
    """Paper App. C: L = 1/K sum_M mean_{valid tokens of M} loss_{b,l}.

    Args:
        out: model predictions (normalised units).
        batch: targets, validity and hidden masks.
        loss_on: ``"all"`` scores every valid token (paper); ``"masked"`` only hidden ones.
        weights: modality weights of the mean over modalities, ``sum_M w_M L_M / sum_M w_M`` over
            the modalities scored in the batch (unnamed modalities weigh 1; None = equal weights).
        nll_beta: beta of the beta-NLL for Gaussian heads (:func:`token_losses`; 0 = plain NLL).
        nll_variance: ``"beta"`` weights the variance's NLL too, ``"plain"`` only the mean's.
    """
    if loss_on not in LOSS_ON:
        raise ValueError(f"loss_on must be one of {LOSS_ON}, got {loss_on!r}")
    if nll_variance not in NLL_VARIANCE:
        raise ValueError(f"nll_variance must be one of {NLL_VARIANCE}, got {nll_variance!r}")
    per_mod, counts, present = {}, {}, []
    weights = weights or {}
    for name in out.mean:
        w = batch.valid[name] if loss_on == "all" else batch.valid[name] & batch.hidden[name]
        w = w.float()
        n = w.sum()
        per_mod[name] = (token_losses(out, batch, name, nll_beta, nll_variance) * w).sum() / n.clamp(min=1.0)
        counts[name] = n
        present.append((n > 0).float() * float(weights.get(name, 1.0)))
    has = torch.stack(present)
    total = (torch.stack(list(per_mod.values())) * has).sum() / has.sum().clamp(min=1e-12)  # 0 if none scored
    return LossOutput(total=total, per_modality=per_mod, counts=counts)
