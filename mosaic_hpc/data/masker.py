"""Hierarchical dynamic masking (paper App. A), vectorised over a batch.

Per galaxy: every modality is hidden whole with probability ``p_modality`` (or its entry in
``p_modality_overrides``); in the scalars modality each element is hidden with ``p_scalar``; a
vector not hidden whole gets random spans until a budget of ceil(span_ratio * L) values is spent
(spans may overlap, so the hidden share is at most the budget). The loop runs over span *rounds*,
each vectorised over the batch: the expected number of rounds is about ln(budget) + 0.6 (each span
takes a uniform share of what is left), so there is no per-sample Python loop.

Randomness comes from :mod:`keyed_random`: masks are a pure function of (seed, epoch, row).
"""

from __future__ import annotations

import math

import numpy as np

from ..config import MaskConfig
from ..schema import CatalogSchema
from . import keyed_random

# Counter layout per row: [0, K) whole-modality draws; then per modality a block of draws.
_BLOCK = 1 << 16


class HierarchicalMasker:
    """Draws training masks. ``True`` in the returned arrays means *hidden from the model*."""

    def __init__(self, schema: CatalogSchema, config: MaskConfig | None = None, seed: int = 0) -> None:
        self.schema = schema
        self.config = config or MaskConfig()
        self.seed = int(seed)
        unknown = sorted(set(self.config.p_modality_overrides) - set(schema.names))
        if unknown:
            raise ValueError(
                f"masking.p_modality_overrides names modalities {unknown} not in the catalog {list(schema.names)}"
            )
        # [K] whole-modality probabilities in schema order, compared with one [B, K] draw
        self.p_whole = np.array([self.config.modality_probability(n) for n in schema.names])

    def budget(self, length: int) -> int:
        """ceil(p L) values per partly masked vector (App. A)."""
        return math.ceil(self.config.span_ratio * length)

    def __call__(self, row_ids: np.ndarray, epoch: int) -> dict[str, np.ndarray]:
        """Masks for the given global row indices; each value of shape [B, L], dtype bool."""
        cfg = self.config
        keys = keyed_random.row_keys(self.seed, epoch, row_ids)
        n = len(row_ids)
        whole = keyed_random.uniform(keys, 0, len(self.schema)) < self.p_whole[None, :]  # [B, K]
        masks = {}
        for k, spec in enumerate(self.schema):
            base = _BLOCK * (k + 1)
            if spec.is_scalars:
                m = keyed_random.uniform(keys, base, spec.length) < cfg.p_scalar
            else:
                m = self._spans(keys, base, spec.length, active=~whole[:, k])
            m |= whole[:, k : k + 1]
            masks[spec.name] = m
        assert all(v.shape[0] == n for v in masks.values())
        return masks

    def _spans(self, keys: np.ndarray, base: int, length: int, active: np.ndarray) -> np.ndarray:
        budget = self.budget(length)
        mask = np.zeros((len(keys), length), dtype=bool)
        remaining = np.where(active, budget, 0).astype(np.int64)
        pos = np.arange(length)[None, :]
        r = 0
        while remaining.any():
            u = keyed_random.uniform(keys, base + 2 * r, 2)  # [B, 2]: span length, span start
            span = 1 + np.floor(u[:, 0] * remaining).astype(np.int64)  # uniform in [1, remaining]
            span = np.where(remaining > 0, span, 0)
            start = np.floor(u[:, 1] * (length - span + 1)).astype(np.int64)
            mask |= (pos >= start[:, None]) & (pos < (start + span)[:, None])
            remaining -= span
            r += 1
        return mask
