"""Input transforms of the import mapping (``transform: log10``), applied when a table is read.

Why at import: magnitude errors span two decades (thousandths of a magnitude for bright
galaxies, tenths near the detection limit), so after a linear normalisation almost every galaxy
sits in a sliver near the mean and the model cannot tell a 0.01 from a 0.03 mag error; as log10
they spread over about two units (photo-z on DC2: sigma_NMAD 0.11 -> 0.053 with log10 errors, configs/photoz_dc2.yaml).
Applying the transform where the table is read (import-catalog and predict read tables through
the same mapping) means the catalog, the normalisation statistics, training and prediction all
see the same values, and a CLI user gets what the benchmark got. The catalog records the
transform in the modality's unit (``log10 mag``), so predictions of that modality come out in
the transformed unit, as documented in docs/import_catalog.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .catalog import CatalogError


@dataclass(frozen=True)
class Transform:
    """A monotonic map of one value column, with the domain it is defined on."""

    name: str
    forward: Callable[[np.ndarray], np.ndarray]
    domain: str
    """What valid input values must satisfy, for the error message (e.g. ``> 0``)."""
    valid: Callable[[np.ndarray], np.ndarray]

    def unit(self, unit: str) -> str:
        """Unit of the transformed values: ``log10 mag`` for ``log10`` of ``mag``."""
        return f"{self.name} {unit}".strip()


TRANSFORMS: dict[str, Transform] = {
    "log10": Transform("log10", np.log10, "> 0", lambda x: x > 0),
}


def check_transform(name: str) -> str:
    """``name`` if it is a known transform ('' = none); ValueError listing the known ones otherwise."""
    if name and name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; known: {sorted(TRANSFORMS)}")
    return name


def transformed_unit(unit: str, name: str) -> str:
    return TRANSFORMS[name].unit(unit) if name else unit


def apply_transform(path: Path, x: np.ndarray, columns: tuple[str, ...], name: str) -> np.ndarray:
    """Transform the valid (non-NaN) values of ``x`` [N, L] in place; returns ``x``.

    Raises:
        CatalogError: a valid value outside the transform's domain (e.g. an error of 0 under
            log10), naming the file, the column and the row; mark such values missing with the
            mapping's ``missing`` instead of letting them become -inf.
    """
    if not name:
        return x
    t = TRANSFORMS[name]
    valid = ~np.isnan(x)
    bad = valid & ~t.valid(np.where(valid, x, 1.0))
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise CatalogError(
            path,
            f"column {columns[col]!r}",
            f"transform {name} needs values {t.domain}, got {float(x[row, col])!r} on data row {row} "
            "(declare such values missing with `missing:`)",
        )
    x[valid] = t.forward(x[valid])
    return x
