"""An exponential moving average of the weights (Polyak averaging), the weights a run hands out.

Why: with a short schedule the last optimizer steps still move every weight by about the
learning rate, and the output biases wander with them. On the ``make run`` mock the redshift
bias read from LSST alone flipped sign between the checkpoints at steps 1,000 (+0.14 sigma) and
1,400 (-0.27 sigma), and at step 6,000 of the 200,000-galaxy run it was +0.05 sigma against -0.29
at 5,000: each checkpoint is one draw of that wander, and its miscentring is most of the PIT
distance of the photometric redshifts. The average of the last few hundred steps sits at their
centre.

The average covers exactly the tensors this rank's optimizer updates: every parameter under the
plain engine and ZeRO-1/2 (the ranks hold identical full copies), the local flat shard
(``ds_tensor``) of each parameter under ZeRO-3. It is kept in float32 whatever the compute
precision, updated after every optimizer step with the warm-up of Tarvainen & Valpola (2017):
decay ``min(decay, (1 + t) / (10 + t))`` at update ``t``, so the first updates are not dominated
by the random initialisation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from .safe_load import CheckpointError

log = logging.getLogger("mosaic_hpc.train")


class WeightAverage:
    """The moving average of the tensors ``source`` returns (updated in place by the optimizer elsewhere).

    Args:
        source: returns the tensors to average, always in the same order (saved and restored by
            position); asked anew at each use, since an engine may rebind them (ZeRO-3 shards).
        decay: the average's decay per optimizer step, in (0, 1); its memory is about
            ``1 / (1 - decay)`` steps.
    """

    def __init__(self, source: Callable[[], Sequence[torch.Tensor]], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay must be in (0, 1) to average weights, got {decay}")
        self.source = source
        self.decay = decay
        self.restart()

    def restart(self) -> None:
        """Start the average afresh from the current weights."""
        self.updates = 0
        self.shadow = [t.detach().float().clone() for t in self.source()]

    @property
    def tensors(self) -> list[torch.Tensor]:
        return list(self.source())

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the current weights (call after each optimizer step)."""
        weight = 1.0 - self.current_decay()
        current = [t.detach().float() for t in self.tensors]
        torch._foreach_lerp_(self.shadow, current, weight)
        self.updates += 1

    @contextlib.contextmanager
    @torch.no_grad()
    def swapped_in(self) -> Iterator[None]:
        """The averaged values in ``tensors`` for the duration (validation, saving), then the trained ones back."""
        tensors = self.tensors
        kept = [t.detach().clone() for t in tensors]
        for t, s in zip(tensors, self.shadow, strict=True):
            t.copy_(s)
        try:
            yield
        finally:
            for t, k in zip(tensors, kept, strict=True):
                t.copy_(k)

    def state_dict(self) -> dict[str, object]:
        return {"decay": self.decay, "updates": self.updates, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state: dict[str, object], source: str) -> None:
        """Restore a saved average; ValueError naming ``source`` when it does not fit these tensors."""
        shadow = state.get("shadow")
        if not isinstance(shadow, list) or len(shadow) != len(self.shadow):
            raise ValueError(f"{source}: the saved weight average does not fit this model")
        for mine, saved in zip(self.shadow, shadow, strict=True):
            if not isinstance(saved, torch.Tensor) or saved.shape != mine.shape:
                raise ValueError(f"{source}: the saved weight average does not fit this model")
            mine.copy_(saved)
        self.updates = int(state.get("updates", 0))

    def restore(self, state: dict[str, Any] | None, source: Path) -> None:
        """Resume the average saved in ``source``; ``None`` (saved without one) restarts it from the loaded weights.

        Raises:
            CheckpointError: the saved average does not fit these tensors.
        """
        if state is None:
            log.warning("%s holds no weight average (train.ema_decay was 0): it starts from these weights", source)
            self.restart()
            return
        try:
            self.load_state_dict(state, str(source))
        except ValueError as err:
            raise CheckpointError(source, str(err).split(": ", 1)[-1]) from None
