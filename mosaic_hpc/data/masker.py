"""Hierarchical dynamic masking (paper App. A), vectorised over a batch.

Per galaxy: every modality is hidden whole with probability ``p_modality`` (or its entry in
``p_modality_overrides``); in the scalars modality each element is hidden with ``p_scalar``; a
vector not hidden whole gets random spans until a budget of ceil(span_ratio * L) values is spent
(spans may overlap, so the hidden share is at most the budget). In round r a vector with
``remaining`` values of budget left draws two uniforms u0, u1 (draws ``2r`` and ``2r + 1`` of its
counter block) and hides ``span = 1 + floor(u0 * remaining)`` values from
``start = floor(u1 * (L - span + 1))``; then ``remaining -= span``. The expected number of rounds
is about ln(budget) + 0.6 (each span takes a uniform share of what is left).

Randomness comes from :mod:`keyed_random`: masks are a pure function of (seed, epoch, row).
With ``p_condition > 0`` a share of the galaxies gets a condition mask instead
(:mod:`condition_masks`: a random subset of quantities given, the rest hidden), drawn from a
counter range after the hierarchical masker's, so the other galaxies' masks are unchanged.

How it is computed (the masker was the largest CPU cost of the data pipeline). The span rounds
of all vector modalities run together over one list of (modality, row) entries that still have
budget left: a round is a few numpy calls over the live entries whatever the number of
modalities, and finished entries drop out instead of being carried along with ``span = 0``.
During the rounds the spans are only recorded as (flat start, length); the masks are painted at
the end with one scatter over the hidden positions (about ``span_ratio`` of the values of the
partly hidden rows) instead of several [B, L] comparisons per round and modality. Rows hidden
whole are filled row by row. All masks live in one boolean buffer, a C-contiguous [B, L] view
per modality. For 2048 rows of the paper's lengths this takes about 2 ms on one core instead of 42
ms (docs/data_pipeline.md); the masks are the same booleans (tests/unit/test_masker.py checks
them against the rule written out row by row).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..config import MaskConfig
from ..schema import CatalogSchema
from . import keyed_random
from .condition_masks import ConditionMasker

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
        # Per-row offset of each modality in the shared mask buffer: modality k holds
        # [n * offset[k], n * offset[k + 1]) for a batch of n rows.
        self._offsets = np.concatenate([[0], np.cumsum([spec.length for spec in schema])]).astype(np.int64)
        self.condition = ConditionMasker(
            schema,
            self.config.p_condition,
            self.config.p_partial,
            counter=_BLOCK * (len(schema) + 1),
            max_given=self.config.max_given,
            cut_anywhere=self.config.cut_anywhere,
        )

    def budget(self, length: int) -> int:
        """ceil(p L) values per partly masked vector (App. A)."""
        return math.ceil(self.config.span_ratio * length)

    @property
    def needs_validity(self) -> bool:
        """Whether masks depend on which values the rows have (pass ``valid`` to :meth:`__call__`)."""
        return self.condition.needs_validity

    def __call__(
        self, row_ids: np.ndarray, epoch: int, valid: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Masks for the given global row indices; each value of shape [B, L], dtype bool.

        ``valid`` (True where a row has a value, [B, L] per vector modality) places the condition
        masks' partial cuts among the defined values; the hierarchical masks never read it.
        """
        keys = keyed_random.row_keys(self.seed, epoch, row_ids)
        n = len(row_ids)
        whole = keyed_random.uniform(keys, 0, len(self.schema)) < self.p_whole[None, :]  # [B, K]
        buffer = np.zeros(n * int(self._offsets[-1]), dtype=bool)
        masks = {
            spec.name: buffer[n * self._offsets[k] : n * self._offsets[k + 1]].reshape(n, spec.length)
            for k, spec in enumerate(self.schema)
        }
        self._paint_spans(buffer, keys, whole)
        for k, spec in enumerate(self.schema):
            m = masks[spec.name]
            if spec.is_scalars:
                np.less(keyed_random.uniform(keys, _BLOCK * (k + 1), spec.length), self.config.p_scalar, out=m)
                np.logical_or(m, whole[:, k : k + 1], out=m)
            else:
                m[whole[:, k]] = True
        chosen = self.condition.chosen(keys)
        if chosen.any():
            sub = None if valid is None else {k: np.asarray(v)[chosen] for k, v in valid.items()}
            for name, cm in self.condition(keys[chosen], sub).items():
                masks[name][chosen] = cm
        return masks

    def _paint_spans(self, buffer: np.ndarray, keys: np.ndarray, whole: np.ndarray) -> None:
        """Set the spans of every vector modality in ``buffer`` (the flat masks of all modalities).

        Draws exactly the spans of the module docstring's rule (tests/unit/test_masker.py checks
        it against a row-by-row reference); only the bookkeeping is vectorised across modalities.
        """
        n = len(keys)
        # One entry per (vector modality, row not hidden whole) with a budget to spend.
        rows, counter, remaining, length, origin = [], [], [], [], []
        for k, spec in enumerate(self.schema):
            budget = self.budget(spec.length)
            if spec.is_scalars or budget == 0:
                continue
            r = np.flatnonzero(~whole[:, k])
            rows.append(r)
            counter.append(np.full(len(r), _BLOCK * (k + 1), dtype=np.uint64))
            remaining.append(np.full(len(r), budget, dtype=np.int64))
            length.append(np.full(len(r), spec.length, dtype=np.int64))
            origin.append(n * self._offsets[k] + r * spec.length)  # flat index of the row's first value
        if not rows:
            return
        keys_e = keys[np.concatenate(rows)]
        counter_e, remaining_e = np.concatenate(counter), np.concatenate(remaining)
        length_e, origin_e = np.concatenate(length), np.concatenate(origin)
        firsts, spans = [], []
        while len(keys_e):
            u = keyed_random.uniform_at(keys_e, counter_e, 2)  # [M, 2]: span length, span start
            span = np.floor(u[:, 0] * remaining_e).astype(np.int64)
            span += 1  # uniform in [1, remaining]
            start = np.floor(u[:, 1] * (length_e - span + 1)).astype(np.int64)
            firsts.append(origin_e + start)
            spans.append(span)
            remaining_e -= span
            live = np.flatnonzero(remaining_e)  # span <= remaining, so never negative
            keys_e, remaining_e, length_e, origin_e = keys_e[live], remaining_e[live], length_e[live], origin_e[live]
            counter_e = counter_e[live] + np.uint64(2)  # the next round's two draws
        if not firsts:  # no row left with a budget (an empty batch)
            return
        first, span = np.concatenate(firsts), np.concatenate(spans)
        # Every hidden position: first + 0 .. span - 1 of every span, as one index array.
        index = np.arange(int(span.sum()), dtype=np.int64)
        index += np.repeat(first - (np.cumsum(span) - span), span)
        buffer[index] = True
