"""What a catalog holds: modality names, kinds, lengths, units and axes.

The schema is always read from the catalog file (see ``data/catalog.py``), never hard-coded, so
a catalog with another set of bands or another SED resolution trains without code changes. The
model, masker, loss and evaluation all take their lengths from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

ModalityKind = Literal["scalars", "vector"]
KINDS: tuple[str, ...] = ("scalars", "vector")

# Paper order (Fig. 1): scalars first, then photometry, then the physical vectors. Used only to
# order modalities when a file does not record an order itself.
PREFERRED_ORDER: tuple[str, ...] = ("scalars", "lsst", "spherex", "sfh", "sed")


@dataclass(frozen=True)
class ModalitySpec:
    """One modality of the catalog.

    Attributes:
        name: HDF5 dataset name under ``/modalities`` (also the key used everywhere in code).
        kind: ``"scalars"`` (independent named columns) or ``"vector"`` (values on an axis).
        length: number of values per galaxy, L.
        unit: physical unit of the values (e.g. ``"AB mag"``, ``"log10 Msun/yr"``).
        columns: names of the L columns (scalars) or band names (photometry); may be empty.
        axis: coordinate of each value for vectors (wavelength in Angstrom, cosmic time in Gyr).
        axis_quantity: what the axis measures, e.g. ``"wavelength"`` or ``"cosmic_time"``.
        axis_unit: unit of ``axis``.
    """

    name: str
    kind: ModalityKind
    length: int
    unit: str = ""
    columns: tuple[str, ...] = ()
    axis: tuple[float, ...] = ()
    axis_quantity: str = ""
    axis_unit: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"modality {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.length < 1:
            raise ValueError(f"modality {self.name!r}: length must be >= 1, got {self.length}")
        if self.columns and len(self.columns) != self.length:
            raise ValueError(f"modality {self.name!r}: {len(self.columns)} column names for length {self.length}")
        if self.axis and len(self.axis) != self.length:
            raise ValueError(f"modality {self.name!r}: axis has {len(self.axis)} values for length {self.length}")

    @property
    def is_scalars(self) -> bool:
        return self.kind == "scalars"

    def axis_array(self) -> np.ndarray:
        """The axis as float64; index positions when the modality has no physical axis."""
        if self.axis:
            return np.asarray(self.axis, dtype=np.float64)
        return np.arange(self.length, dtype=np.float64)

    def column_index(self, column: str) -> int:
        """Position of a named column; raises ValueError listing the valid names."""
        if column not in self.columns:
            raise ValueError(f"modality {self.name!r} has no column {column!r}; columns: {list(self.columns)}")
        return self.columns.index(column)


@dataclass(frozen=True)
class CatalogSchema:
    """The ordered modalities of a catalog. Order defines the concatenated token sequence."""

    modalities: tuple[ModalitySpec, ...]
    _by_name: dict[str, ModalitySpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [m.name for m in self.modalities]
        if not names:
            raise ValueError("a catalog schema needs at least one modality")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate modality names in schema: {names}")
        object.__setattr__(self, "_by_name", {m.name: m for m in self.modalities})

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    @property
    def lengths(self) -> dict[str, int]:
        return {m.name: m.length for m in self.modalities}

    @property
    def n_values(self) -> int:
        """Values per galaxy over all modalities (the paper-mode sequence length)."""
        return sum(m.length for m in self.modalities)

    def __getitem__(self, name: str) -> ModalitySpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(f"unknown modality {name!r}; this catalog has {list(self.names)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.modalities)

    def __len__(self) -> int:
        return len(self.modalities)

    def select(self, names: list[str] | tuple[str, ...]) -> CatalogSchema:
        """A sub-schema with the named modalities, in this schema's order."""
        for n in names:
            self[n]  # raises with the valid names
        return CatalogSchema(tuple(m for m in self.modalities if m.name in names))

    def to_dict(self) -> dict:
        """Plain-data form, saved beside checkpoints so a run can be used without its catalog."""
        return {
            "modalities": [
                {
                    "name": m.name,
                    "kind": m.kind,
                    "length": m.length,
                    "unit": m.unit,
                    "columns": list(m.columns),
                    "axis": list(m.axis),
                    "axis_quantity": m.axis_quantity,
                    "axis_unit": m.axis_unit,
                }
                for m in self.modalities
            ]
        }

    @classmethod
    def from_dict(cls, data: dict) -> CatalogSchema:
        mods = []
        for m in data["modalities"]:
            mods.append(
                ModalitySpec(
                    name=str(m["name"]),
                    kind=m["kind"],
                    length=int(m["length"]),
                    unit=str(m.get("unit", "")),
                    columns=tuple(m.get("columns", ())),
                    axis=tuple(float(v) for v in m.get("axis", ())),
                    axis_quantity=str(m.get("axis_quantity", "")),
                    axis_unit=str(m.get("axis_unit", "")),
                )
            )
        return cls(tuple(mods))


def order_modalities(names: list[str]) -> list[str]:
    """Paper order for known names, then the rest alphabetically (stable across files)."""
    known = [n for n in PREFERRED_ORDER if n in names]
    return known + sorted(n for n in names if n not in PREFERRED_ORDER)


# The paper's modality layout (Sec. 2, Fig. 1 order) with the units the mock catalog writes
# (mosaic_hpc.data.mock): name -> (kind, values per galaxy, unit, axis quantity, axis unit).
PAPER_LAYOUT: dict[str, tuple[ModalityKind, int, str, str, str]] = {
    "scalars": ("scalars", 3, "", "", ""),
    "lsst": ("vector", 6, "AB mag", "wavelength", "Angstrom"),
    "spherex": ("vector", 102, "AB mag", "wavelength", "Angstrom"),
    "sfh": ("vector", 117, "log10 Msun/yr", "cosmic_time", "Gyr"),
    "sed": ("vector", 921, "log10 Jy", "wavelength", "Angstrom"),
}
PAPER_COLUMNS: dict[str, tuple[str, ...]] = {
    "scalars": ("redshift", "log10_halo_mass", "log10_stellar_mass"),
    "lsst": ("u", "g", "r", "i", "z", "y"),
}


def _approximate_paper_axes() -> dict[str, tuple[float, ...]]:
    """LSST effective wavelengths, SPHEREx and SED log-spaced, SFH bins linear in cosmic time."""
    return {
        "lsst": (3671.0, 4827.0, 6223.0, 7546.0, 8691.0, 9712.0),
        "spherex": tuple(np.geomspace(7500.0, 50000.0, 102)),
        "sfh": tuple(np.linspace(0.1, 13.8, 117)),
        "sed": tuple(np.geomspace(1000.0, 50000.0, 921)),
    }


def paper_schema(
    axes: Mapping[str, Sequence[float]] | None = None, columns: Mapping[str, Sequence[str]] | None = None
) -> CatalogSchema:
    """The schema of :data:`PAPER_LAYOUT`: the mock catalog's, or the paper's sizes for benchmarks and tests.

    Args:
        axes: a vector modality's coordinates (their count is its length), e.g. the mock's filter
            wavelengths; the default is approximate axes of the paper's lengths.
        columns: column names per modality, over :data:`PAPER_COLUMNS`.
    """
    axes = {**_approximate_paper_axes(), **(axes or {})}
    columns = {**PAPER_COLUMNS, **(columns or {})}
    return CatalogSchema(
        tuple(
            ModalitySpec(
                name,
                kind,
                len(axes[name]) if name in axes else length,
                unit,
                tuple(columns.get(name, ())),
                tuple(axes.get(name, ())),
                quantity,
                axis_unit,
            )
            for name, (kind, length, unit, quantity, axis_unit) in PAPER_LAYOUT.items()
        )
    )
