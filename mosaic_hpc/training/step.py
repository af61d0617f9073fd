"""One training micro-step: forward, App. C loss, backward, engine step.

The training loop and every benchmark call this one function, so what the benchmarks time is
exactly what training runs. It depends only on the Engine protocol (training/engine.py), never
on DeepSpeed.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..data.batch import Batch
from ..loss import LossOutput, masked_regression_loss


def train_step(
    engine,
    batch: Batch,
    loss_on: str = "all",
    loss_weights: Mapping[str, float] | None = None,
    nll_beta: float = 0.0,
    nll_variance: str = "beta",
) -> LossOutput:
    """Run one micro-batch through ``engine``; the engine decides whether the optimizer steps."""
    out = masked_regression_loss(engine.forward(batch), batch, loss_on, loss_weights, nll_beta, nll_variance)
    engine.backward(out.total)
    engine.step()
    return out
