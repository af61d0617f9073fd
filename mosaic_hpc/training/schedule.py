"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr_ratio * lr``.

A pure function of the step so the plain engine, the DeepSpeed engine (through a LambdaLR) and
resumed runs agree exactly on the learning rate at every step.
"""

from __future__ import annotations

import math

from ..config import TrainConfig


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of ``cfg.lr`` for the update made at ``step`` (0-based)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    decay_steps = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine
