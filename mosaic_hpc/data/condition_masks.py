"""Condition masks: give a random subset of the catalog's quantities, hide all the rest.

The paper's hierarchical masks (App. A) hide each modality with p = 0.5 and cut spans into the
rest, so the questions users ask ("photo-z from LSST alone", "SFH from the stellar mass") are rare
in training: with the paper's five modalities, "only LSST given, everything else hidden" is about
one draw in 30, and then with a span hiding two of the six bands. Condition masks train those
questions directly, as 4M (Mizrahi et al. 2023) samples input and target modalities and Simformer
(Gloeckler et al. 2024) samples condition masks: for a share ``p_condition`` of galaxies, the
quantities are split into *units* (every scalar column on its own, every vector modality as a
whole), a number of given units k is drawn uniformly from 1 .. U-1 (or 1 .. ``max_given``), a
uniformly random k of the U units are given and the others hidden whole. Each given vector is,
with probability ``p_partial``, given only on one side of a random cut (a prefix or a suffix of
its axis, as "SFH before 10 Gyr given"), the rest hidden. The cut falls among the row's defined
values, or, for a share ``cut_anywhere`` of cuts, anywhere on the axis: a user's cut is fixed
("10 Gyr") and often lies past the end of a young galaxy's SFH, which only such cuts train.

Every non-empty proper subset of units has non-zero probability, so the paper's five evaluation
configurations are among them and so is any other a user names. Draws come from the same keyed
random streams as the hierarchical masks (a pure function of seed, epoch and row), in a counter
range of their own, so turning condition masks on leaves the other galaxies' masks bit for bit as
they were.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..schema import CatalogSchema
from . import keyed_random


class ConditionMasker:
    """Draws condition masks for the rows that get one; ``True`` means hidden from the model.

    Args:
        schema: the catalog's modalities; scalar columns and vectors become the units.
        p_condition: share of rows that get a condition mask (the others keep their
            hierarchical mask).
        p_partial: chance that a given vector is given only on one side of a random cut.
        counter: first keyed-random counter of this masker's draws (disjoint from the
            hierarchical masker's).
        max_given: most units given (0 or more than U-1: U-1).
        cut_anywhere: share of cuts placed uniformly on the axis rather than among the defined
            values (only read with ``valid``).
    """

    def __init__(
        self,
        schema: CatalogSchema,
        p_condition: float,
        p_partial: float,
        counter: int,
        max_given: int = 0,
        cut_anywhere: float = 0.0,
    ) -> None:
        self.schema = schema
        self.p_condition = float(p_condition)
        self.p_partial = float(p_partial)
        self.cut_anywhere = float(cut_anywhere)
        # (modality, column or None for a whole vector) per unit, in schema order
        self.units: list[tuple[str, int | None]] = []
        for spec in schema:
            if spec.is_scalars:
                self.units += [(spec.name, c) for c in range(spec.length)]
            else:
                self.units.append((spec.name, None))
        self.vectors = [name for name, col in self.units if col is None]
        n_units = len(self.units)
        self.max_given = min(max_given, n_units - 1) if max_given > 0 else n_units - 1
        self._c_choose = counter  # condition or not
        self._c_count = counter + 1  # number of given units
        self._c_order = counter + 2  # one key per unit: the k smallest are given
        self._c_partial = counter + 2 + len(self.units)  # three draws per vector: partial?, side, cut
        # one more per vector, in a range of its own so cut_anywhere=0 leaves every draw as it was
        self._c_anywhere = self._c_partial + 3 * len(self.vectors)

    @property
    def active(self) -> bool:
        """Condition masks need a unit to give and one to hide."""
        return self.p_condition > 0 and len(self.units) >= 2

    def chosen(self, keys: np.ndarray) -> np.ndarray:
        """[B] bool: the rows that get a condition mask."""
        if not self.active:
            return np.zeros(len(keys), dtype=bool)
        return keyed_random.uniform(keys, self._c_choose, 1)[:, 0] < self.p_condition

    @property
    def needs_validity(self) -> bool:
        """Whether :meth:`__call__` places its cuts among the defined values (see there)."""
        return self.active and self.p_partial > 0 and self.cut_anywhere < 1.0

    def __call__(self, keys: np.ndarray, valid: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Condition masks for every row of ``keys``, [B, L] bool per modality.

        Args:
            keys: keyed-random row keys.
            valid: per vector, [B, L] True where the catalog has a value. With it a cut falls
                between two *defined* values, uniformly over the row's defined values, so both
                sides hold some: an SFH is defined only up to the galaxy's epoch, and a cut placed
                uniformly on the whole axis would mostly fall after it, hiding nothing to learn.
        """
        n, n_units = len(keys), len(self.units)
        n_given = 1 + np.floor(keyed_random.uniform(keys, self._c_count, 1)[:, 0] * self.max_given).astype(np.int64)
        order = keyed_random.uniform(keys, self._c_order, n_units)  # [B, U]
        rank = np.argsort(np.argsort(order, axis=1), axis=1)  # rank of each unit's key in its row
        given = rank < n_given[:, None]  # [B, U]: k uniformly random units
        masks = {spec.name: np.ones((n, spec.length), dtype=bool) for spec in self.schema}
        for u, (name, col) in enumerate(self.units):
            if col is not None:
                masks[name][:, col] = ~given[:, u]
        for j, name in enumerate(self.vectors):
            u = self.units.index((name, None))
            length = self.schema[name].length
            draws = keyed_random.uniform(keys, self._c_partial + 3 * j, 3)  # [B, 3]
            partial = (draws[:, 0] < self.p_partial) & (length > 1)
            cut = 1 + np.floor(draws[:, 2] * (length - 1)).astype(np.int64)  # 1 .. L-1 values on each side
            if valid is not None and name in valid and self.cut_anywhere < 1.0:
                among, two_defined = _cut_among_defined(np.asarray(valid[name], bool), draws[:, 2])
                anywhere = keyed_random.uniform(keys, self._c_anywhere + j, 1)[:, 0] < self.cut_anywhere
                cut = np.where(anywhere, cut, among)
                partial &= two_defined | anywhere
            idx = np.arange(length)[None, :]
            keep_prefix = draws[:, 1] < 0.5
            hidden_part = np.where(keep_prefix[:, None], idx >= cut[:, None], idx < cut[:, None])
            masks[name][:] = ~given[:, u : u + 1] | (partial[:, None] & hidden_part)
        return masks


def _cut_among_defined(valid: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row a cut with j of its n defined values before it, j uniform in 1 .. n-1.

    Returns:
        (cut, ok): the cut index (values [0, cut) are the prefix) and whether the row has two
        defined values at all (rows that do not are given whole).
    """
    n_def = valid.sum(axis=1)
    j = 1 + np.floor(u * np.maximum(n_def - 1, 1)).astype(np.int64)  # defined values before the cut
    before = np.cumsum(valid, axis=1)  # defined values up to and including each position
    cut = np.argmax(before >= (j + 1)[:, None], axis=1)  # position of the (j+1)-th defined value
    return cut, n_def >= 2
