"""Import a survey catalog (columnar HDF5, Parquet or CSV) into the catalog format, driven by a mapping.

A mapping file (YAML, read with ``yaml.safe_load``) says which input columns form which modality,
in which order, with which units and axis, which values are sentinels for "missing", and which
columns hold the errors of a modality (imported as a separate vector modality, ``<name>_err`` by
default, so the model can take them as input), which input transform to apply (``log10``,
data/transforms.py), and which columns identify each object or travel with it unchanged (ID and
pass-through columns, data/table_columns.py, stored under ``/columns``). The rows are split into
train/val/test (data/splits.py) or, with ``split: none``, kept whole. See docs/import_catalog.md.

Why this order of work: every input file is read and checked completely (columns exist, are
numeric, have one length, are not entirely missing) *before* anything is written, and the
splits are written into a staging directory that is moved into place only when all are
complete. A malformed input therefore never leaves a partial catalog under the final names, and
an output directory that did not exist before a failed import does not exist after it.

Readers: HDF5 via h5py (one dataset per column, possibly inside groups, like the DC2 files of
RAIL); CSV via the standard library (no pandas); Parquet via pyarrow, imported lazily because it
is an optional dependency (``pip install pyarrow``, in the ``science`` extra). Conversion holds
the mapped columns in memory (8 bytes per value): split very large inputs into several files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..schema import KINDS, CatalogSchema, ModalitySpec
from .catalog import (
    SPLITS,
    Catalog,
    CatalogError,
    CatalogWriter,
    default_norm_modes,
    split_paths,
    stats_from_running,
)
from .splits import DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION, LABEL_SPLITS, split_counts, split_labels
from .table_columns import (
    CSV_SUFFIXES,
    HDF5_SUFFIXES,
    PARQUET_SUFFIXES,
    check_ids,
    csv_cells,
    list_columns,
    read_raw_columns,
    refuse_duplicates,
)
from .transforms import apply_transform, check_transform, transformed_unit
from .validation import MAX_ABS_NORMALISED, first_robust_outlier, robust_scale

log = logging.getLogger("mosaic_hpc.import")
ERR_SUFFIX = "_err"  # default name of an error modality: <modality>_err (e.g. lsst_err)
WRITE_BLOCK_ROWS = 65536  # rows per CatalogWriter.append: bounded temporary memory while writing
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")  # an HDF5 dataset name without '/'

# Keys accepted at each level of the mapping; anything else is rejected by its dotted name.
TOP_KEYS = ("source", "group", "id", "passthrough", "modalities", "split", "vector_norm")
MODALITY_KEYS = ("kind", "columns", "names", "unit", "axis", "missing", "transform", "errors")
AXIS_KEYS = ("values", "quantity", "unit")
ERROR_KEYS = ("name", "columns", "unit", "missing", "transform")
# /columns names the importer itself writes: the input row of each catalog row (and predict's row)
RESERVED_COLUMNS = ("source_row", "row")
SPLIT_KEYS = ("val_fraction", "test_fraction", "seed")
NO_SPLIT = "none"  # `split: none`: every row into DIR/all.h5 (a table to predict on)


# --------------------------------------------------------------------------------------------
# Mapping schema
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisMapping:
    """Coordinate of each value of a vector modality (e.g. effective wavelength of each band)."""

    values: tuple[float, ...]
    quantity: str = ""
    unit: str = ""


@dataclass(frozen=True)
class ErrorMapping:
    """Error columns of a modality, paired one to one (same order) with its value columns.

    Attributes:
        name: catalog name of the error modality (default ``<modality>_err``).
        columns: input columns of the errors.
        unit: unit of the errors (default: the modality's unit; a magnitude error is in mag).
        missing: sentinel values per input column. An error is also missing wherever its value
            is missing: the error of a non-detection is not an error (DC2 stores the 1-sigma
            limiting magnitude there), and feeding it as one would mislead the model.
    """

    name: str
    columns: tuple[str, ...]
    unit: str
    missing: dict[str, tuple[float, ...]] = field(default_factory=dict)
    transform: str = ""


@dataclass(frozen=True)
class ModalityMapping:
    """One modality of the output catalog and the input columns it is made of.

    Attributes:
        name: modality name in the catalog (``/modalities/<name>``).
        kind: ``"scalars"`` or ``"vector"``.
        columns: input column names in output order (HDF5: dataset paths, relative to ``group``).
        names: names stored in the catalog (scalar column names or band names); default columns.
        unit: physical unit of the values.
        axis: axis of a vector, or None (the index is then the axis).
        missing: sentinel values per input column that mean "missing" (become NaN).
        errors: error columns imported as a separate modality, or None.
        transform: input transform of the values ('' = none; see data/transforms.py); the
            catalog unit becomes e.g. ``log10 mag``.
    """

    name: str
    kind: str
    columns: tuple[str, ...]
    names: tuple[str, ...]
    unit: str = ""
    axis: AxisMapping | None = None
    missing: dict[str, tuple[float, ...]] = field(default_factory=dict)
    errors: ErrorMapping | None = None
    transform: str = ""


@dataclass(frozen=True)
class SplitRule:
    """Random train/val/test split of one input file, reproducible from ``seed`` (data/splits.py).

    Attributes:
        val_fraction: share of the rows in the validation split (0: no validation split).
        test_fraction: share in the test split; None means the default (0.1), or no test rows
            from this file when the test split comes from ``--input-test``.
        seed: seed of the permutation; the same seed gives the same split.
        none: ``split: none``: no split at all, every row goes into ``all.h5``.
    """

    val_fraction: float = DEFAULT_VAL_FRACTION
    test_fraction: float | None = None
    seed: int = 0
    none: bool = False

    def fractions(self, separate_test: bool) -> tuple[float, float]:
        """(val, test) fractions of the main input; no test rows there when test has its own file."""
        if separate_test:
            return self.val_fraction, 0.0
        return self.val_fraction, DEFAULT_TEST_FRACTION if self.test_fraction is None else self.test_fraction


@dataclass(frozen=True)
class CatalogMapping:
    """A parsed, validated mapping file.

    Attributes:
        path: the mapping file (named in error messages).
        modalities: output modalities in catalog order (error modalities follow their parent).
        group: HDF5 group that column names are relative to ('' = the file root).
        split: split rule of the input, or None (then the default rule).
        source: provenance stored in the catalog's ``source`` attribute.
        vector_norm: ``"global"`` (paper) or ``"per_bin"`` normalisation of vector modalities.
        id_column: input column identifying each object ('' = none): integers or strings,
            unique, never missing; carried into the catalog and every prediction file.
        passthrough: further input columns carried unchanged (numbers or strings), e.g. ra, dec.
    """

    path: Path
    modalities: tuple[ModalityMapping, ...]
    group: str = ""
    split: SplitRule | None = None
    source: str = ""
    vector_norm: str = "global"
    id_column: str = ""
    passthrough: tuple[str, ...] = ()

    def schema(self) -> CatalogSchema:
        """Catalog schema: each modality, then its error modality right after it."""
        specs = []
        for m in self.modalities:
            axis = m.axis or AxisMapping(())
            unit = transformed_unit(m.unit, m.transform)
            specs.append(
                ModalitySpec(m.name, m.kind, len(m.columns), unit, m.names, axis.values, axis.quantity, axis.unit)
            )
            if m.errors is not None:
                names = m.names if m.kind == "vector" else tuple(n + ERR_SUFFIX for n in m.names)
                specs.append(
                    ModalitySpec(
                        m.errors.name,
                        m.kind,
                        len(m.columns),
                        transformed_unit(m.errors.unit, m.errors.transform),
                        names,
                        axis.values,
                        axis.quantity,
                        axis.unit,
                    )
                )
        return CatalogSchema(tuple(specs))

    def input_columns(self) -> list[str]:
        """Every input column the mapping reads, each once, in mapping order."""
        cols: list[str] = []
        for m in self.modalities:
            cols += list(m.columns) + list(m.errors.columns if m.errors else ())
        return list(dict.fromkeys(cols))

    def extra_columns(self) -> dict[str, str]:
        """Catalog name -> input column of the ID and pass-through columns (ID first).

        The catalog name is the input name without an HDF5 group path (``meta/ra`` -> ``ra``).
        """
        names = ([self.id_column] if self.id_column else []) + list(self.passthrough)
        return {n.rsplit("/", 1)[-1]: n for n in names}


def _err(path: Path, key: str, reason: str) -> CatalogError:
    return CatalogError(path, key, reason)


def _check_keys(path: Path, data: Any, allowed: tuple[str, ...], where: str) -> dict:
    if not isinstance(data, dict):
        raise _err(path, where or "mapping", f"must be a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in set(data) - set(allowed))
    if unknown:
        prefix = f"{where}." if where else ""
        raise _err(path, prefix + unknown[0], f"unknown key {unknown}; valid keys: {list(allowed)}")
    return data


def _str(path: Path, value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise _err(path, key, f"must be a string, got {value!r}")
    return value


def _number(path: Path, value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(path, key, f"must be a number, got {value!r}")
    return float(value)


def _str_list(path: Path, value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise _err(path, key, "must be a non-empty list of column names")
    out = tuple(_str(path, v, f"{key}[{i}]") for i, v in enumerate(value))
    dup = sorted({c for c in out if out.count(c) > 1})
    if dup:
        raise _err(path, key, f"lists {dup} more than once")
    return out


def _name(path: Path, value: Any, key: str) -> str:
    name = _str(path, value, key)
    if not _NAME_RE.match(name):
        raise _err(path, key, f"{name!r} is not a valid modality name (letters, digits, '_', '.', '-'; no '/')")
    return name


def _sentinels(path: Path, value: Any, columns: tuple[str, ...], key: str) -> dict[str, tuple[float, ...]]:
    """``missing``: a number or list (every column) or a mapping column -> number or list."""

    def values(v: Any, k: str) -> tuple[float, ...]:
        items = v if isinstance(v, list) else [v]
        return tuple(_number(path, x, f"{k}[{i}]" if isinstance(v, list) else k) for i, x in enumerate(items))

    if value is None:
        return {}
    if isinstance(value, dict):
        unknown = sorted(str(c) for c in set(value) - set(columns))
        if unknown:
            raise _err(path, f"{key}.{unknown[0]}", f"is not one of this modality's columns {list(columns)}")
        return {str(c): values(v, f"{key}.{c}") for c, v in value.items()}
    vals = values(value, key)
    return dict.fromkeys(columns, vals)


def _axis(path: Path, value: Any, n: int, key: str) -> AxisMapping:
    data = _check_keys(path, value, AXIS_KEYS, key)
    if "values" not in data:
        raise _err(path, f"{key}.values", "missing (one coordinate per column)")
    raw = data["values"]
    if not isinstance(raw, list):
        raise _err(path, f"{key}.values", f"must be a list of numbers, got {raw!r}")
    vals = tuple(_number(path, v, f"{key}.values[{i}]") for i, v in enumerate(raw))
    if len(vals) != n:
        raise _err(path, f"{key}.values", f"has {len(vals)} values for {n} columns")
    return AxisMapping(
        vals, _str(path, data.get("quantity", ""), f"{key}.quantity"), _str(path, data.get("unit", ""), f"{key}.unit")
    )


def _modality(path: Path, name: str, value: Any) -> ModalityMapping:
    key = f"modalities.{name}"
    data = _check_keys(path, value, MODALITY_KEYS, key)
    for req in ("kind", "columns"):
        if req not in data:
            raise _err(path, f"{key}.{req}", "missing")
    kind = _str(path, data["kind"], f"{key}.kind")
    if kind not in KINDS:
        raise _err(path, f"{key}.kind", f"must be one of {list(KINDS)}, got {kind!r}")
    columns = _str_list(path, data["columns"], f"{key}.columns")
    names = _str_list(path, data["names"], f"{key}.names") if "names" in data else columns
    if len(names) != len(columns):
        raise _err(path, f"{key}.names", f"has {len(names)} names for {len(columns)} columns")
    unit = _str(path, data.get("unit", ""), f"{key}.unit")
    axis = _axis(path, data["axis"], len(columns), f"{key}.axis") if data.get("axis") is not None else None
    if axis is not None and kind == "scalars":
        raise _err(path, f"{key}.axis", "scalars have named columns, not an axis")
    errors = None
    if data.get("errors") is not None:
        ekey = f"{key}.errors"
        edata = _check_keys(path, data["errors"], ERROR_KEYS, ekey)
        if "columns" not in edata:
            raise _err(path, f"{ekey}.columns", "missing")
        ecols = _str_list(path, edata["columns"], f"{ekey}.columns")
        if len(ecols) != len(columns):
            raise _err(path, f"{ekey}.columns", f"has {len(ecols)} columns for the {len(columns)} of {name!r}")
        errors = ErrorMapping(
            name=_name(path, edata.get("name", name + ERR_SUFFIX), f"{ekey}.name"),
            columns=ecols,
            unit=_str(path, edata.get("unit", unit), f"{ekey}.unit"),
            missing=_sentinels(path, edata.get("missing"), ecols, f"{ekey}.missing"),
            transform=_transform(path, edata.get("transform"), f"{ekey}.transform"),
        )
    return ModalityMapping(
        name=_name(path, name, key),
        kind=kind,
        columns=columns,
        names=names,
        unit=unit,
        axis=axis,
        missing=_sentinels(path, data.get("missing"), columns, f"{key}.missing"),
        errors=errors,
        transform=_transform(path, data.get("transform"), f"{key}.transform"),
    )


def _transform(path: Path, value: Any, key: str) -> str:
    if value is None:
        return ""
    try:
        return check_transform(_str(path, value, key))
    except ValueError as err:
        raise _err(path, key, str(err)) from None


def _extra_columns(path: Path, data: dict) -> tuple[str, tuple[str, ...]]:
    """``id`` and ``passthrough``: input columns carried into the catalog under unique names."""
    id_column = _str(path, data["id"], "id") if data.get("id") is not None else ""
    passthrough = _str_list(path, data["passthrough"], "passthrough") if data.get("passthrough") is not None else ()
    seen: dict[str, str] = {}
    pairs = ([("id", id_column)] if id_column else []) + [("passthrough", c) for c in passthrough]
    for key, col in pairs:
        name = col.rsplit("/", 1)[-1]
        if not _NAME_RE.match(name):
            raise _err(path, key, f"{col!r} does not end in a valid column name (letters, digits, '_', '.', '-')")
        if name in RESERVED_COLUMNS:
            raise _err(path, key, f"{name!r} is reserved for the input row number; rename the column")
        if name in seen:
            raise _err(path, key, f"{col!r} and {seen[name]!r} would both be stored as {name!r}")
        seen[name] = col
    return id_column, passthrough


def parse_mapping(data: Any, path: Path | str = "<mapping>") -> CatalogMapping:
    """Validate plain data (as loaded from YAML) into a :class:`CatalogMapping`.

    Raises:
        CatalogError: unknown keys (named with their dotted path and the valid keys), missing
            required keys, wrong types, inconsistent lengths or duplicate modality names.
    """
    path = Path(path)
    data = _check_keys(path, data, TOP_KEYS, "")
    mods = data.get("modalities")
    if not isinstance(mods, dict) or not mods:
        raise _err(path, "modalities", "must be a non-empty mapping of modality name -> definition")
    modalities = tuple(_modality(path, str(n), v) for n, v in mods.items())
    names = [n for m in modalities for n in (m.name, *([m.errors.name] if m.errors else []))]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _err(path, "modalities", f"modality names {dup} are used more than once (error modalities included)")
    split = _split_rule(path, data.get("split"))
    vector_norm = _str(path, data.get("vector_norm", "global"), "vector_norm")
    if vector_norm not in ("global", "per_bin"):
        raise _err(path, "vector_norm", f"must be 'global' or 'per_bin', got {vector_norm!r}")
    group = _str(path, data.get("group", ""), "group").strip("/")
    id_column, passthrough = _extra_columns(path, data)
    return CatalogMapping(
        path,
        modalities,
        group,
        split,
        _str(path, data.get("source", ""), "source"),
        vector_norm,
        id_column,
        passthrough,
    )


def _split_rule(path: Path, value: Any) -> SplitRule | None:
    """``split``: absent (default rule), ``none``, or {val_fraction, test_fraction, seed}."""
    if value is None:
        return None
    if value == NO_SPLIT:
        return SplitRule(none=True)
    if isinstance(value, str):
        raise _err(path, "split", f"must be {NO_SPLIT!r} or a mapping with keys {list(SPLIT_KEYS)}, got {value!r}")
    sdata = _check_keys(path, value, SPLIT_KEYS, "split")
    fractions = {}
    for key in ("val_fraction", "test_fraction"):
        if key in sdata:
            fractions[key] = _number(path, sdata[key], f"split.{key}")
            if not 0.0 <= fractions[key] < 1.0:
                raise _err(path, f"split.{key}", f"must be in [0, 1), got {fractions[key]}")
    seed = sdata.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _err(path, "split.seed", f"must be an integer, got {seed!r}")
    rule = SplitRule(fractions.get("val_fraction", DEFAULT_VAL_FRACTION), fractions.get("test_fraction"), seed)
    val, test = rule.fractions(separate_test=False)
    if val + test >= 1.0:
        raise _err(path, "split", f"val_fraction + test_fraction must be < 1, got {val} + {test}")
    return rule


def load_mapping(path: Path | str) -> CatalogMapping:
    """Read and validate a mapping YAML file (``yaml.safe_load``: no object construction)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mapping file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise _err(path, "yaml", f"not valid YAML ({' '.join(str(err).split())})") from None
    return parse_mapping(data, path)


# --------------------------------------------------------------------------------------------
# Readers: one per format, each returning float64 columns checked for type and length
# --------------------------------------------------------------------------------------------


def _as_float(path: Path, column: str, arr: np.ndarray) -> np.ndarray:
    """float64 copy of a numeric 1-D column; integers are exact below 2**53."""
    if arr.dtype.kind not in "iuf":
        raise _err(path, f"column {column!r}", f"has non-numeric type {arr.dtype} (expected integer or float)")
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise _err(path, f"column {column!r}", f"has shape {arr.shape}, expected one value per row")
    return np.asarray(arr, dtype=np.float64)


def _check_lengths(path: Path, out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    first = next(iter(out))
    for c, a in out.items():
        if len(a) != len(out[first]):
            raise _err(path, f"column {c!r}", f"has {len(a)} rows but column {first!r} has {len(out[first])}")
    if len(out[first]) == 0:
        raise _err(path, f"column {first!r}", "has no rows")
    return out


def _dataset_names(group) -> list[str]:
    """Paths of every dataset below an h5py group (for a 'missing column' message)."""
    import h5py

    found: list[str] = []
    group.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
    return found


def read_hdf5(path: Path, columns: list[str], group: str = "") -> dict[str, np.ndarray]:
    """Columns of a columnar HDF5 file: one 1-D dataset per column, paths relative to ``group``."""
    import h5py

    if not h5py.is_hdf5(path):
        raise _err(path, "file", "is not an HDF5 file (no HDF5 signature)")
    out = {}
    with h5py.File(path, "r", locking=False) as f:
        root = f
        if group:
            if group not in f or not isinstance(f[group], h5py.Group):
                raise _err(path, f"group {group!r}", f"missing; top-level entries: {sorted(f.keys())[:20]}")
            root = f[group]
        for c in columns:
            if c not in root or not isinstance(root[c], h5py.Dataset):
                found = _dataset_names(root)
                raise _err(path, f"column {c!r}", f"missing; datasets{' in ' + group if group else ''}: {found[:20]}")
            ds = root[c]
            if ds.dtype.kind not in "iuf":
                raise _err(path, f"column {c!r}", f"has non-numeric type {ds.dtype} (expected integer or float)")
            out[c] = _as_float(path, c, ds[()])
    return _check_lengths(path, out)


def read_csv(path: Path, columns: list[str], group: str = "") -> dict[str, np.ndarray]:
    """Columns of a CSV file with a header line; an empty field is a missing value (NaN).

    Every line must have as many fields as the header: a short or long line means a broken
    file, and guessing which column moved would silently corrupt the catalog.
    """
    del group  # CSV has no groups
    cells = csv_cells(path, columns)
    out = {}
    for c, vals in cells.items():
        raw = np.asarray(vals, dtype=object)
        raw[raw == ""] = "nan"
        try:
            out[c] = raw.astype(np.float64)
        except ValueError:
            bad = next(i for i, v in enumerate(vals) if not _parses(v))
            raise _err(path, f"column {c!r}", f"non-numeric value {vals[bad]!r} on line {bad + 2}") from None
    if not out or not len(next(iter(out.values()))):
        raise _err(path, f"column {columns[0]!r}", "has no rows")
    return out


def _parses(v: str) -> bool:
    try:
        float(v or "nan")
    except ValueError:
        return False
    return True


def read_parquet(path: Path, columns: list[str], group: str = "") -> dict[str, np.ndarray]:
    """Columns of a Parquet file (pyarrow, imported here only); nulls become NaN."""
    del group
    try:
        import pyarrow.parquet as pq
        import pyarrow.types as pat
    except ImportError:
        raise _err(path, "file", "reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises its own ArrowInvalid for a non-Parquet file
        raise _err(path, "file", f"is not a readable Parquet file ({' '.join(str(err).split())})") from None
    schema = pf.schema_arrow
    refuse_duplicates(path, list(schema.names), columns)
    for c in columns:
        if c not in schema.names:
            raise _err(path, f"column {c!r}", f"missing; columns: {schema.names[:30]}")
        t = schema.field(c).type
        if not (pat.is_integer(t) or pat.is_floating(t)):
            raise _err(path, f"column {c!r}", f"has non-numeric type {t} (expected integer or float)")
    table = pf.read(columns=columns)
    out = {c: table.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in columns}
    return _check_lengths(path, out)


READERS: dict[str, Callable[[Path, list[str], str], dict[str, np.ndarray]]] = {
    **dict.fromkeys(HDF5_SUFFIXES, read_hdf5),
    **dict.fromkeys(PARQUET_SUFFIXES, read_parquet),
    **dict.fromkeys(CSV_SUFFIXES, read_csv),
}


def read_columns(path: Path | str, columns: list[str], group: str = "") -> dict[str, np.ndarray]:
    """Read ``columns`` from a file whose format is given by its suffix (see :data:`READERS`).

    Raises:
        FileNotFoundError: the file does not exist.
        CatalogError: unknown file type, a missing or non-numeric column, columns of different
            lengths or an unreadable file; the message names the file and the column.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise _err(
            path, "file", f"unknown file type {path.suffix or '(no suffix)'!r}; expected one of {sorted(READERS)}"
        )
    return reader(path, columns, group)


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def _with_sentinels(
    path: Path, cols: Mapping[str, np.ndarray], columns: tuple[str, ...], missing: Mapping, require_values: bool
) -> np.ndarray:
    """[N, L] float64 with sentinels, NaN and +-inf as NaN; a column with no valid value is an
    error when ``require_values`` (a catalog to train on), not for a table to predict on.

    So is a value the catalog cannot hold or no galaxy can have (:func:`_refuse_implausible`).
    """
    x = np.stack([cols[c] for c in columns], axis=1)  # (N, L)
    for j, c in enumerate(columns):
        for s in missing.get(c, ()):
            x[x[:, j] == s, j] = np.nan
    x[~np.isfinite(x)] = np.nan
    empty = np.flatnonzero(np.isnan(x).all(axis=0))
    if empty.size and require_values:
        raise _err(path, f"column {columns[empty[0]]!r}", "has no valid value (all missing after sentinels)")
    _refuse_implausible(path, x, columns)
    return x


FLOAT32_MAX = float(np.finfo(np.float32).max)
SENTINEL_HINT = "an undeclared missing-value sentinel? list it under the modality's missing: in the mapping"


def _refuse_implausible(path: Path, x: np.ndarray, columns: tuple[str, ...]) -> None:
    """Values beyond float32 (1e300 would be stored as inf) or far outside their column's distribution.

    A finite sentinel such as 3e38 passes every type check, then dominates the mean and the
    standard deviation of its column, so the normalisation of every other value is wrecked while
    the statistics look valid; measured against the column's median and median absolute
    deviation it stands out by many orders of magnitude (:func:`.validation.robust_scale`).
    """
    with np.errstate(invalid="ignore"):
        huge = np.abs(x) > FLOAT32_MAX
    if huge.any():
        row, j = (int(i[0]) for i in np.nonzero(huge))
        raise _err(
            path,
            f"column {columns[j]!r}",
            f"data row {row} holds {x[row, j]:g}, beyond the catalog's float32 range (+-{FLOAT32_MAX:.3g}): "
            f"{SENTINEL_HINT}, or rescale the column",
        )
    center, spread = robust_scale(x)
    found = first_robust_outlier(x, center, spread)
    if found is not None:
        row, j = found
        raise _err(
            path,
            f"column {columns[j]!r}",
            f"data row {row} holds {x[row, j]:g}, more than {MAX_ABS_NORMALISED:g} robust standard deviations from "
            f"the column's median {center[j]:g}: {SENTINEL_HINT}",
        )


def convert(
    mapping: CatalogMapping, path: Path, cols: Mapping[str, np.ndarray], require_values: bool = True
) -> dict[str, np.ndarray]:
    """Input columns -> catalog rows (float64 [N, L] per modality, NaN = missing, transformed)."""
    rows = {}
    for m in mapping.modalities:
        x = _with_sentinels(path, cols, m.columns, m.missing, require_values)
        rows[m.name] = apply_transform(path, x, m.columns, m.transform)
        if m.errors is not None:
            e = _with_sentinels(path, cols, m.errors.columns, m.errors.missing, require_values)
            e[np.isnan(x)] = np.nan  # no error for a missing value (ErrorMapping docstring)
            rows[m.errors.name] = apply_transform(path, e, m.errors.columns, m.errors.transform)
    return rows


@dataclass
class TableRows:
    """One input table converted: catalog rows per modality and the columns carried beside them.

    Attributes:
        rows: modality -> float64 [N, L] (NaN = missing).
        columns: catalog name -> [N] ID and pass-through columns (int64, float64 or str), and
            ``source_row``, the 0-based data row of the input file (its line is row + 2 in a CSV).
    """

    rows: dict[str, np.ndarray]
    columns: dict[str, np.ndarray]

    @property
    def n_rows(self) -> int:
        return len(next(iter(self.rows.values())))

    def take(self, idx: np.ndarray) -> TableRows:
        return TableRows({k: v[idx] for k, v in self.rows.items()}, {k: v[idx] for k, v in self.columns.items()})


def read_extra_columns(mapping: CatalogMapping, path: Path, n_rows: int) -> dict[str, np.ndarray]:
    """ID and pass-through columns of ``path`` under their catalog names, plus ``source_row``.

    Raises:
        CatalogError: a missing column, a length other than the value columns', or an ID column
            that is not integer/string, has a missing value or repeats one.
    """
    extra = mapping.extra_columns()
    raw = read_raw_columns(path, list(extra.values()), mapping.group)
    out = {}
    for name, col in extra.items():
        if len(raw[col]) != n_rows:
            raise _err(path, f"column {col!r}", f"has {len(raw[col])} rows but the value columns have {n_rows}")
        if col == mapping.id_column:
            check_ids(path, col, raw[col])
        out[name] = raw[col]
    out["source_row"] = np.arange(n_rows, dtype=np.int64)
    return out


def read_table(mapping: CatalogMapping, path: Path | str) -> TableRows:
    """Read one input file completely and convert it (values, IDs, pass-through columns)."""
    path = Path(path)
    rows = convert(mapping, path, read_columns(path, mapping.input_columns(), mapping.group))
    n = len(next(iter(rows.values())))
    return TableRows(rows, read_extra_columns(mapping, path, n))


def split_rows(n: int, rule: SplitRule, separate_test: bool = False) -> dict[str, np.ndarray]:
    """Sorted row indices of each non-empty split (train always; val and test when they get rows).

    Every split keeps the input order (the reader shuffles), so the split is reproducible from
    the seed; see data/splits.py for how test and validation rows are drawn.

    Raises:
        ValueError: the fractions leave fewer than two training rows.
    """
    val, test = rule.fractions(separate_test)
    try:
        counts = split_counts(n, val, test)
    except ValueError as err:
        raise ValueError(f"split: {err}") from None
    labels = split_labels(counts, np.random.default_rng(rule.seed))
    out = {s: np.flatnonzero(labels == i) for i, s in enumerate(LABEL_SPLITS)}
    return {s: idx for s, idx in out.items() if s == "train" or idx.size}


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists():
        p = p.parent
    return p


def _write_split(
    path: Path, schema: CatalogSchema, table: TableRows, roles: dict[str, str], attrs: dict, progress, writers: dict
) -> CatalogWriter:
    """Append ``table`` in blocks; the writer joins ``writers`` first, so a failure can abort it."""
    w = CatalogWriter(path, schema, attrs, columns=roles)
    writers[path.stem] = w
    for s in progress(range(0, table.n_rows, WRITE_BLOCK_ROWS), desc=f"import {path.stem}"):
        block = slice(s, s + WRITE_BLOCK_ROWS)
        w.append({k: v[block] for k, v in table.rows.items()}, {k: v[block] for k, v in table.columns.items()})
    return w


def import_catalog(
    input_path: Path | str,
    mapping: CatalogMapping | Path | str,
    out_dir: Path | str,
    input_test: Path | str | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    split: SplitRule | None = None,
) -> dict[str, Path]:
    """Import ``input_path`` (and ``input_test``) into ``out_dir/{train,val,test}.h5`` or ``all.h5``.

    Statistics are computed on the training rows only and stored in every file, so held-out
    rows never leak into the normalisation (with ``split: none``, on all rows: such a table is
    for prediction, which uses the trained run's statistics anyway).

    Args:
        input_path: the input file; the whole catalog, or the training and validation rows with
            ``input_test``.
        mapping: a :class:`CatalogMapping` or a mapping YAML file.
        out_dir: output directory (created on success only).
        input_test: the test split as a separate file; the split rule must then give no
            ``test_fraction`` (its ``val_fraction`` still cuts validation rows out of the input).
        overwrite: replace a catalog already in ``out_dir`` (all its split files).
        show_progress: tqdm progress bars while writing.
        split: split rule replacing the mapping's (the CLI's --val-fraction, --test-fraction,
            --split-seed and --no-split).

    Returns:
        Split name -> written file.

    Raises:
        CatalogError / ValueError / FileNotFoundError: bad mapping or input; nothing is written.
    """
    if not isinstance(mapping, CatalogMapping):
        mapping = load_mapping(mapping)
    out_dir = Path(out_dir)
    _check_output(out_dir, overwrite)
    rule = split or mapping.split or SplitRule()
    if input_test is not None and (rule.none or rule.test_fraction is not None):
        key = "split" if rule.none else "split.test_fraction"
        raise _err(mapping.path, key, "conflicts with a separate test file (--input-test); remove one of them")
    if rule.none:
        mapping = present_modalities(mapping, Path(input_path))
    table = read_table(mapping, input_path)
    if rule.none:
        parts = {"all": table}
    else:
        parts = {s: table.take(idx) for s, idx in split_rows(table.n_rows, rule, input_test is not None).items()}
        if input_test is not None:
            parts["test"] = read_table(mapping, input_test)
    attrs = {
        "source": mapping.source or f"imported from {Path(input_path).name}",
        "created_by": "mosaic-hpc import-catalog",
        "seed": rule.seed,
        "cosmology": "",
        "input_files": [str(input_path)] + ([str(input_test)] if input_test is not None else []),
        "mapping": yaml.safe_dump(mapping_record(mapping), sort_keys=False),
        "split_rule": yaml.safe_dump(_split_record(rule), sort_keys=False),
    }
    return _write_parts(out_dir, mapping, parts, attrs, Path(input_path), show_progress)


def present_modalities(mapping: CatalogMapping, path: Path) -> CatalogMapping:
    """``mapping`` without the modalities (and error modalities) whose columns ``path`` lacks.

    For ``split: none``: a table of new galaxies has no redshift column, because the redshift
    is what it is imported to be predicted. The modalities left out are logged as a warning;
    ID and pass-through columns must still be there.

    Raises:
        CatalogError: the table holds no complete modality.
    """
    available = set(list_columns(path, mapping.group))
    kept, left_out = [], []
    for m in mapping.modalities:
        if not set(m.columns) <= available:
            left_out.append(m.name)
            continue
        if m.errors is not None and not set(m.errors.columns) <= available:
            left_out.append(m.errors.name)
            m = dataclasses.replace(m, errors=None)
        kept.append(m)
    if not kept:
        raise _err(path, "columns", f"holds no complete modality of the mapping {[m.name for m in mapping.modalities]}")
    if left_out:
        log.warning("%s: split none: modalities %s left out (their columns are not in the table)", path, left_out)
    return dataclasses.replace(mapping, modalities=tuple(kept))


def _check_output(out_dir: Path, overwrite: bool) -> None:
    """Refuse to mix two imports in one directory unless the old catalog is to be replaced."""
    if out_dir.exists() and not out_dir.is_dir():
        raise _err(out_dir, "output", "exists and is not a directory")
    if not overwrite:
        for s in SPLITS:
            p = out_dir / f"{s}.h5"
            if p.exists() or (out_dir / s).is_dir():
                raise _err(p, "output", "a catalog is already there (pass --overwrite to replace it)")


def _write_parts(
    out_dir: Path,
    mapping: CatalogMapping,
    parts: dict[str, TableRows],
    attrs: dict[str, Any],
    input_path: Path,
    show_progress: bool,
) -> dict[str, Path]:
    """Write every split into a staging directory, then move them into place together.

    The staging directory sits beside the output, on the same file system, so the final renames
    are atomic; files of an older catalog in ``out_dir`` that this import does not write (a
    ``val.h5`` when there is no validation split now, shard directories) are removed only after
    every new file is in place, so the directory never holds two imports' splits.
    """
    from tqdm import tqdm

    def progress(blocks, desc: str):
        return tqdm(blocks, desc=desc, unit="block", leave=False, disable=not show_progress)

    schema = mapping.schema()
    roles = {name: "passthrough" for name in mapping.extra_columns()} | {"source_row": "source_row"}
    if mapping.id_column:
        roles[mapping.id_column.rsplit("/", 1)[-1]] = "id"
    stats_split = "all" if "all" in parts else "train"
    order = [stats_split] + [s for s in parts if s != stats_split]
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.import-", dir=_existing_ancestor(out_dir.parent)))
    writers: dict[str, CatalogWriter] = {}
    try:
        for s in order:
            w = _write_split(staging / f"{s}.h5", schema, parts[s], roles, {**attrs, "split": s}, progress, writers)
            if s == stats_split:
                try:
                    stats = stats_from_running(w.running, default_norm_modes(schema, mapping.vector_norm))
                except ValueError as err:
                    raise _err(input_path, "statistics", str(err)) from None
        staged = {s: writers[s].close(stats) for s in order}
        out_dir.mkdir(parents=True, exist_ok=True)
        finals = {s: out_dir / f"{s}.h5" for s in parts}
        for s in order:
            os.replace(staged[s], finals[s])
    except BaseException:
        for w in writers.values():
            if w._f.id.valid:
                w.abort()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _remove_stale_splits(out_dir, set(parts))
    return {s: finals[s] for s in SPLITS if s in finals}


def _remove_stale_splits(out_dir: Path, written: set[str]) -> None:
    for s in SPLITS:
        if s not in written:
            (out_dir / f"{s}.h5").unlink(missing_ok=True)
        if (out_dir / s).is_dir():
            shutil.rmtree(out_dir / s)


def _split_record(rule: SplitRule) -> dict[str, Any] | str:
    if rule.none:
        return NO_SPLIT
    return {"val_fraction": rule.val_fraction, "test_fraction": rule.test_fraction, "seed": rule.seed}


def mapping_record(mapping: CatalogMapping) -> dict[str, Any]:
    """The mapping as plain data that :func:`parse_mapping` reads back into an equal mapping.

    Stored in every imported file (attribute ``mapping``), so the catalog says how each value
    was made (names, units, axes, sentinels, transforms) and ``predict --mapping CATALOG`` reads a
    table of new galaxies exactly as the training table was read.
    """
    out: dict[str, Any] = {"source": mapping.source, "group": mapping.group, "vector_norm": mapping.vector_norm}
    if mapping.id_column:
        out["id"] = mapping.id_column
    if mapping.passthrough:
        out["passthrough"] = list(mapping.passthrough)
    if mapping.split is not None:
        out["split"] = _split_record(mapping.split)
    out["modalities"] = {m.name: _modality_record(m) for m in mapping.modalities}
    return out


def _modality_record(m: ModalityMapping) -> dict[str, Any]:
    rec: dict[str, Any] = {"kind": m.kind, "columns": list(m.columns), "names": list(m.names), "unit": m.unit}
    if m.axis is not None:
        rec["axis"] = {"values": list(m.axis.values), "quantity": m.axis.quantity, "unit": m.axis.unit}
    if m.missing:
        rec["missing"] = {c: list(v) for c, v in m.missing.items()}
    if m.transform:
        rec["transform"] = m.transform
    if m.errors is not None:
        e = m.errors
        rec["errors"] = {"name": e.name, "columns": list(e.columns), "unit": e.unit}
        if e.missing:
            rec["errors"]["missing"] = {c: list(v) for c, v in e.missing.items()}
        if e.transform:
            rec["errors"]["transform"] = e.transform
    return rec


def stored_mapping(catalog_path: Path | str) -> CatalogMapping:
    """The mapping a catalog was imported with (a catalog directory or one of its files).

    Raises:
        CatalogError: the catalog was not made by import-catalog (no stored mapping).
    """
    path = Path(catalog_path)
    if path.is_dir():
        split = next((s for s in SPLITS if (path / f"{s}.h5").exists() or (path / s).is_dir()), "train")
        path = split_paths(path, split)[0]
    cat = Catalog([path], require_stats=False)
    text = cat.attrs.get("mapping")
    if not text:
        raise _err(path, "attrs/mapping", "no stored mapping (not made by import-catalog); pass a mapping YAML")
    return parse_mapping(yaml.safe_load(text), f"{path} (stored mapping)")
