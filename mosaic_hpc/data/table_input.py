"""What ``predict`` reads: a file in the catalog layout, or a survey table through a mapping.

A table of new galaxies is read by the same layer as import-catalog (``importer``: the mapping,
its sentinels and transforms; ``table_columns``: IDs and pass-through columns), so a value means
the same at prediction as in training. Two differences, both because the table is *for*
prediction: mapped columns the table lacks are not an error but missing values (a table of new
galaxies has no redshift column: the redshift is what is asked for), and a column with no valid
value is allowed. Each such column is named in a note, so a misspelt column is seen, not silently
predicted.

The mapping must describe the run's modalities as the run knows them (same lengths, names and
units, the unit carrying any transform), else a model trained on log10 errors would be fed linear
ones; ``--mapping CATALOG`` uses the mapping stored in the catalog the run was trained on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..schema import CatalogSchema
from .catalog import CatalogError, _open_h5, read_column_roles
from .importer import CatalogMapping, convert, read_columns, read_extra_columns
from .table_columns import list_columns

ROW_COLUMN = "row"  # 0-based row of the prediction input, in every prediction file


@dataclass
class PredictionInput:
    """Inputs of a prediction and the columns that identify each row.

    Attributes:
        inputs: modality -> float32 [N, L] in the run's units (NaN = not given).
        columns: ID, pass-through and row columns, in output order (ID first, ``row`` last).
        id_column: name of the ID column in ``columns``, or None.
        notes: what the reader decided for the user to see (mapped columns the table lacks).
    """

    inputs: dict[str, np.ndarray]
    columns: dict[str, np.ndarray]
    id_column: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.inputs.values())))


def read_catalog_file(path: Path, schema: CatalogSchema) -> PredictionInput:
    """``/modalities/<name>`` of the run found in ``path`` (``/stats`` not needed) and its ``/columns``.

    Raises:
        CatalogError: not HDF5, no ``/modalities`` (then the message suggests ``--mapping``), a
            modality the run does not know or of the wrong length, bytes that fail their checksum.
    """
    import h5py

    with _open_h5(path) as f:
        if "modalities" not in f:
            raise CatalogError(
                path,
                "/modalities",
                "missing group: not in the catalog layout; pass --mapping MAP.yaml to read it as a table",
            )
        inputs = {}
        for name, ds in f["modalities"].items():
            if name not in schema:
                raise CatalogError(path, f"/modalities/{name}", f"not a modality of this run {list(schema.names)}")
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2 or ds.shape[1] != schema[name].length:
                shape = getattr(ds, "shape", None)
                raise CatalogError(path, f"/modalities/{name}", f"shape {shape}, expected [N, {schema[name].length}]")
            try:
                inputs[name] = np.asarray(ds[()], dtype=np.float32)
            except OSError as err:  # a fletcher32 mismatch, a truncated chunk
                raise CatalogError(path, f"/modalities/{name}", f"cannot be read, corrupt ({err})") from None
        if not inputs:
            raise CatalogError(path, "/modalities", "holds no modality")
        n = len(next(iter(inputs.values())))
        roles = read_column_roles(f, path, n)
        stored = {c: f["columns"][c] for c in roles}
        columns = {c: (ds.asstr()[()].astype(object) if ds.dtype.kind == "O" else ds[()]) for c, ds in stored.items()}
    id_column = next((c for c, r in roles.items() if r == "id"), None)
    return PredictionInput(inputs, _ordered(columns, id_column, n), id_column)


def _ordered(columns: dict[str, np.ndarray], id_column: str | None, n: int) -> dict[str, np.ndarray]:
    """ID first, then the rest as stored, then the prediction input's own row number."""
    out = {id_column: columns[id_column]} if id_column else {}
    out.update({c: v for c, v in columns.items() if c != id_column})
    out[ROW_COLUMN] = np.arange(n, dtype=np.int64)
    return out


def check_mapping_fits(mapping: CatalogMapping, schema: CatalogSchema) -> None:
    """Every modality the mapping makes must be the run's: same kind, length, names and unit.

    Raises:
        CatalogError: naming the mapping file and the modality, with the run's value.
    """
    for spec in mapping.schema():
        key = f"modalities.{spec.name}"
        if spec.name not in schema:
            raise CatalogError(mapping.path, key, f"not a modality of this run {list(schema.names)}")
        run = schema[spec.name]
        for what, mine, theirs in (
            ("kind", spec.kind, run.kind),
            ("number of columns", spec.length, run.length),
            ("names", spec.columns, run.columns),
            ("unit", spec.unit, run.unit),
        ):
            if mine != theirs and (what != "names" or (mine and theirs)):
                hint = " (a transform, e.g. log10, changes the unit)" if what == "unit" else ""
                raise CatalogError(mapping.path, key, f"{what} {mine!r}, but the run was trained on {theirs!r}{hint}")


def read_table_for_run(path: Path, mapping: CatalogMapping, schema: CatalogSchema) -> PredictionInput:
    """A survey table through ``mapping``, for the run of ``schema`` (module docstring).

    Raises:
        CatalogError / FileNotFoundError: the mapping does not fit the run, the table has none
            of the mapped value columns, lacks the ID column, or a present column is malformed.
    """
    check_mapping_fits(mapping, schema)
    available = set(list_columns(path, mapping.group))
    wanted = mapping.input_columns()
    present = [c for c in wanted if c in available]
    if not present:
        raise CatalogError(path, "columns", f"holds none of the mapping's columns {wanted[:20]}")
    notes = []
    absent = [c for c in wanted if c not in available]
    if absent:
        notes.append(f"{path.name}: no column {absent}: those values are missing (predicted, not given)")
    cols = read_columns(path, present, mapping.group)
    n = len(next(iter(cols.values())))
    cols.update({c: np.full(n, np.nan) for c in absent})
    rows = convert(mapping, path, cols, require_values=False)
    inputs = {name: x.astype(np.float32) for name, x in rows.items() if not np.isnan(x).all()}
    if not inputs:
        raise CatalogError(path, "columns", "holds no valid value in any mapped column")
    empty = [name for name in rows if name not in inputs and set(_columns_of(mapping, name)) <= available]
    if empty:
        notes.append(f"{path.name}: modalities {empty} hold no valid value: predicted, not given")
    id_name = mapping.id_column.rsplit("/", 1)[-1] if mapping.id_column else None
    passthrough = [c for c in mapping.passthrough if c in available]
    skipped = [c for c in mapping.passthrough if c not in available]
    if skipped:
        notes.append(f"{path.name}: no pass-through column {skipped}: not in the output")
    if mapping.id_column and mapping.id_column not in available:
        raise CatalogError(path, f"column {mapping.id_column!r}", "missing: the mapping's ID column is needed to join")
    extra = read_extra_columns(dataclasses.replace(mapping, passthrough=tuple(passthrough)), path, n)
    del extra["source_row"]  # the input row is the prediction's own `row`
    return PredictionInput(inputs, _ordered(extra, id_name, n), id_name, notes)


def _columns_of(mapping: CatalogMapping, modality: str) -> tuple[str, ...]:
    """Input columns of a catalog modality (an error modality: its error columns)."""
    for m in mapping.modalities:
        if m.name == modality:
            return m.columns
        if m.errors is not None and m.errors.name == modality:
            return m.errors.columns
    raise KeyError(modality)
