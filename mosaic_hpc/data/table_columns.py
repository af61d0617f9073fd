"""Identifier and pass-through columns of a survey table, in their own types, and column listing.

The value columns of a modality become float (``importer.read_columns``); an object ID must not:
LSST object IDs are 64-bit integers, which float64 holds exactly only below 2**53, and many
surveys use string IDs ("J123456.7+012345", or integers with leading zeros). So these columns
are read here in their own type: int64, float64 or str (numpy object arrays of Python str), and
an ID column must be integer or string, complete and unique, so that a prediction file can be
joined back to the user's table without ambiguity.

``list_columns`` tells which columns a table has, so ``predict`` can read a table of new galaxies
that lacks some mapped columns (the redshift it is asked to predict) without guessing.
Formats as in ``importer``: HDF5 (one 1-D dataset per column below ``group``), Parquet (pyarrow,
imported lazily), CSV with a header line (an empty field is missing).
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .catalog import CatalogError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv",)
_INTEGER = re.compile(r"^[+-]?[0-9]+$")


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise CatalogError(path, "file", f"unknown table type {suffix or '(no suffix)'!r}; expected .csv, .parquet or .h5")


@contextlib.contextmanager
def _csv_rows(path: Path) -> Iterator[tuple[list[str], Iterator[list[str]]]]:
    """Header and row iterator of a UTF-8 CSV file; a bad byte is a one-line error, not a traceback."""
    try:
        # utf-8-sig: a leading byte-order mark is not part of the first column name
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header:
                raise CatalogError(path, "header", "file is empty (expected a header line with column names)")
            yield [h.strip() for h in header], reader
    except UnicodeDecodeError:
        raise _not_utf8(path) from None


def _not_utf8(path: Path) -> CatalogError:
    """The error for undecodable bytes, naming the line and the byte (found again on the raw bytes)."""
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        byte = raw[err.start : err.start + 1].hex()
        return CatalogError(path, f"line {line}", f"is not UTF-8 text (byte 0x{byte} at offset {err.start})")
    return CatalogError(path, "file", "is not UTF-8 text")


def refuse_duplicates(path: Path, names: list[str], columns: list[str]) -> None:
    """A mapped column whose name the file uses twice: which of the two is meant cannot be told."""
    twice = sorted({c for c in columns if names.count(c) > 1})
    if twice:
        raise CatalogError(path, f"column {twice[0]!r}", f"appears {names.count(twice[0])} times in the file's columns")


def list_columns(path: Path | str, group: str = "") -> list[str]:
    """Names of the columns in a table (HDF5: dataset paths relative to ``group``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist")
    kind = _kind(path)
    if kind == "csv":
        with _csv_rows(path) as (header, _):
            return header
    if kind == "parquet":
        return list(_parquet_file(path).schema_arrow.names)
    import h5py

    if not h5py.is_hdf5(path):
        raise CatalogError(path, "file", "is not an HDF5 file (no HDF5 signature)")
    with h5py.File(path, "r", locking=False) as f:
        if group and not isinstance(f.get(group), h5py.Group):
            raise CatalogError(path, f"group {group!r}", f"missing; top-level entries: {sorted(f.keys())[:20]}")
        root = f[group] if group else f
        found: list[str] = []
        root.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset) else None)
        return found


def _parquet_file(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CatalogError(path, "file", "reading Parquet needs pyarrow: pip install pyarrow") from None
    try:
        return pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises its own ArrowInvalid for a non-Parquet file
        raise CatalogError(path, "file", f"is not a readable Parquet file ({' '.join(str(err).split())})") from None


def _from_text(cells: list[str]) -> np.ndarray:
    """int64 where every cell is an integer written canonically, float64 where all parse, else str.

    "007" stays a string: as an integer it would lose its leading zeros and no longer match
    the user's table.
    """
    text = np.asarray(cells, dtype=object)
    if cells and all(_INTEGER.match(c) for c in cells):
        try:
            ints = np.asarray(text.astype(str)).astype(np.int64)
        except OverflowError:  # beyond int64: keep the digits
            return text
        canonical = all(str(i) == c for i, c in zip(ints.tolist(), cells, strict=True))
        return ints if canonical else text
    try:
        return np.where(text == "", "nan", text).astype(np.float64)
    except ValueError:
        return text.astype(str).astype(object)


def csv_cells(path: Path, columns: list[str]) -> dict[str, list[str]]:
    """The stripped text of ``columns`` in every line of a CSV file with a header line.

    Every line must have as many fields as the header: a short or long line means a broken
    file, and guessing which column moved would silently corrupt the catalog. Shared by the
    value columns (``importer.read_csv``) and the ID and pass-through columns.
    """
    with _csv_rows(path) as (header, reader):
        refuse_duplicates(path, header, columns)
        idx = {}
        for c in columns:
            if c not in header:
                raise CatalogError(path, f"column {c!r}", f"missing; columns in the header: {header[:30]}")
            idx[c] = header.index(c)
        cells: dict[str, list[str]] = {c: [] for c in columns}
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise CatalogError(path, f"line {line_no}", f"has {len(row)} fields but the header has {len(header)}")
            for c, i in idx.items():
                cells[c].append(row[i].strip())
    return cells


def _read_parquet(path: Path, columns: list[str]) -> dict[str, np.ndarray]:
    import pyarrow.types as pat

    pf = _parquet_file(path)
    schema = pf.schema_arrow
    for c in columns:
        if c not in schema.names:
            raise CatalogError(path, f"column {c!r}", f"missing; columns: {schema.names[:30]}")
    table = pf.read(columns=columns)
    out = {}
    for c in columns:
        col, t = table.column(c), schema.field(c).type
        if pat.is_integer(t) and col.null_count == 0:
            out[c] = col.to_numpy().astype(np.int64)
        elif pat.is_integer(t) or pat.is_floating(t):
            out[c] = col.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls become NaN
        elif pat.is_string(t) or pat.is_large_string(t):
            out[c] = np.asarray(["" if v is None else v for v in col.to_pylist()], dtype=object)
        else:
            raise CatalogError(path, f"column {c!r}", f"has type {t} (expected integer, float or string)")
    return out


def _read_hdf5(path: Path, columns: list[str], group: str) -> dict[str, np.ndarray]:
    import h5py

    if not h5py.is_hdf5(path):
        raise CatalogError(path, "file", "is not an HDF5 file (no HDF5 signature)")
    out = {}
    with h5py.File(path, "r", locking=False) as f:
        root = f[group] if group else f
        for c in columns:
            if c not in root or not isinstance(root[c], h5py.Dataset):
                raise CatalogError(path, f"column {c!r}", f"missing{' in ' + group if group else ''}")
            ds = root[c]
            if ds.ndim == 2 and ds.shape[1] == 1:
                arr = ds[:, 0]
            elif ds.ndim == 1:
                arr = ds.asstr()[()] if ds.dtype.kind in "SO" else ds[()]
            else:
                raise CatalogError(path, f"column {c!r}", f"has shape {ds.shape}, expected one value per row")
            if arr.dtype.kind in "iu":
                out[c] = arr.astype(np.int64)
            elif arr.dtype.kind == "f":
                out[c] = arr.astype(np.float64)
            elif arr.dtype.kind in "SOU":
                out[c] = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in arr], dtype=object)
            else:
                raise CatalogError(path, f"column {c!r}", f"has type {arr.dtype} (expected integer, float or string)")
    return out


def read_raw_columns(path: Path | str, columns: list[str], group: str = "") -> dict[str, np.ndarray]:
    """``columns`` of a table as int64, float64 or str arrays (module docstring)."""
    path = Path(path)
    if not columns:
        return {}
    kind = _kind(path)
    if kind == "csv":
        return {c: _from_text(v) for c, v in csv_cells(path, columns).items()}
    if kind == "parquet":
        return _read_parquet(path, columns)
    return _read_hdf5(path, columns, group)


def check_ids(path: Path, column: str, ids: np.ndarray) -> None:
    """An ID column holds integers or strings, none missing, none twice.

    Raises:
        CatalogError: naming the file, the column and the first offending row.
    """
    field = f"column {column!r}"
    if ids.dtype.kind == "f":
        raise CatalogError(path, field, "is an ID column but holds floats (IDs must be integers or strings)")
    if ids.dtype == object:
        empty = np.flatnonzero(ids == "")
        if empty.size:
            raise CatalogError(path, field, f"ID missing on data row {int(empty[0])}")
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if (counts > 1).any():
        i = int(first[np.flatnonzero(counts > 1)[0]])
        raise CatalogError(path, field, f"ID {ids[i]!r} appears more than once (first on data row {i})")
