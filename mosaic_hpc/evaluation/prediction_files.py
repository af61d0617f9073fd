"""Prediction files: HDF5 (the catalog's [N, L] layout) or one flat table (Parquet, CSV).

Every file carries the ID and pass-through columns of its input and ``row``, the input's row
number, so predictions join back to the user's table by ID (or by row). HDF5 keeps each modality
as one [N, L] dataset with its unit, column names and axis; a flat table has one column per value,
named ``<modality>_<column>`` (``scalars_redshift``, ``lsst_u``, ``sed_0042`` where the modality
has no column names), ``<...>_sigma`` beside it with Gaussian heads (with mixture heads the
mixture's mean and standard deviation, and each component k's ``<...>_weight{k}``,
``<...>_mean{k}`` and ``<...>_sigma{k}``; HDF5: ``mixture/<modality>/{weight,mean,sigma}``,
[N, L, K]), and ``<modality>_n_given``, how many of the modality's values the model saw for that
galaxy. Files are written to a
temporary name and renamed into place, so a crash never leaves a partial prediction file.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..schema import CatalogSchema, ModalitySpec
from .predictor import Prediction

HDF5_SUFFIXES = (".h5", ".hdf5")
CSV_BLOCK_ROWS = 10000  # rows formatted at once: bounded memory for wide outputs (921 SED bins)


def output_format(path: Path) -> str:
    """``hdf5``, ``parquet`` or ``csv`` from the suffix; ValueError for anything else (checked before predicting)."""
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".csv":
        return "csv"
    raise ValueError(f"--out {path}: unknown output type {suffix or '(none)'!r}; use .h5, .parquet or .csv")


MIXTURE_PARTS = ("weight", "mean", "sigma")  # of each component k: columns NAME_weight{k}, NAME_mean{k}, NAME_sigma{k}


def value_names(spec: ModalitySpec) -> list[str]:
    """Flat column names of a modality's values (module docstring)."""
    if spec.columns:
        return [f"{spec.name}_{c}" for c in spec.columns]
    width = len(str(spec.length - 1))
    return [f"{spec.name}_{i:0{width}d}" for i in range(spec.length)]


def flat_table(pred: Prediction, schema: CatalogSchema, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Name -> 1-D array of every output column, identifying columns first.

    Raises:
        ValueError: a value column's name equals an identifying column's (rename that column).
    """
    out: dict[str, np.ndarray] = dict(columns)
    for spec in schema:
        names = value_names(spec)
        for j, name in enumerate(names):
            _put(out, name, pred.values[spec.name][:, j])
            if pred.sigma is not None:
                _put(out, f"{name}_sigma", pred.sigma[spec.name][:, j])
            if pred.mixture is not None:
                for part, values in zip(MIXTURE_PARTS, pred.mixture[spec.name], strict=True):
                    for k in range(values.shape[-1]):
                        _put(out, f"{name}_{part}{k}", values[:, j, k])
        _put(out, f"{spec.name}_n_given", pred.given[spec.name].sum(axis=1).astype(np.int64))
    return out


def _put(out: dict[str, np.ndarray], name: str, values: np.ndarray) -> None:
    if name in out:
        raise ValueError(f"output column {name!r} is both an input column and a prediction; rename the input column")
    out[name] = values


def write_predictions(
    path: Path,
    pred: Prediction,
    schema: CatalogSchema,
    columns: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
) -> Path:
    """Write ``pred`` with its identifying ``columns`` to ``path`` atomically (format by suffix)."""
    fmt = output_format(path)
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == "hdf5":
            _write_hdf5(tmp, pred, schema, columns, attrs)
        elif fmt == "parquet":
            _write_parquet(tmp, flat_table(pred, schema, columns), attrs)
        else:
            _write_csv(tmp, flat_table(pred, schema, columns))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_hdf5(path: Path, pred: Prediction, schema: CatalogSchema, columns, attrs) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for k, v in attrs.items():
            f.attrs[k] = v
        for spec in schema:
            d = f.create_dataset(f"predictions/{spec.name}", data=pred.values[spec.name])
            d.attrs["unit"] = spec.unit
            if spec.columns:
                d.attrs["columns"] = list(spec.columns)
            f.create_dataset(f"given/{spec.name}", data=pred.given[spec.name])
            if pred.sigma is not None:
                f.create_dataset(f"sigma/{spec.name}", data=pred.sigma[spec.name])
            if pred.mixture is not None:
                for part, values in zip(MIXTURE_PARTS, pred.mixture[spec.name], strict=True):
                    f.create_dataset(f"mixture/{spec.name}/{part}", data=values)
            if spec.axis:
                f.create_dataset(f"axes/{spec.name}", data=np.asarray(spec.axis)).attrs["unit"] = spec.axis_unit
        for name, values in columns.items():
            data = values.astype(object) if values.dtype.kind in "OU" else values
            dtype = h5py.string_dtype("utf-8") if values.dtype.kind in "OU" else None
            f.create_dataset(f"columns/{name}", data=data, dtype=dtype)


def _write_parquet(path: Path, table: dict[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"--out {path.name}: writing Parquet needs pyarrow (pip install pyarrow)") from None
    arrays = {k: pa.array(v.tolist()) if v.dtype == object else pa.array(v) for k, v in table.items()}
    meta = {f"mosaic_hpc.{k}": str(v) for k, v in attrs.items()}
    pq.write_table(pa.table(arrays, metadata=meta), path)


def _format(values: np.ndarray) -> np.ndarray:
    """Text of one column: floats with the digits float32 needs (9), NaN as an empty field."""
    if values.dtype.kind == "f":
        text = np.char.mod("%.9g", values)
        text[np.isnan(values)] = ""
        return text
    return values.astype(str)


def _write_csv(path: Path, table: dict[str, np.ndarray]) -> None:
    n = len(next(iter(table.values())))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(table))
        for s in range(0, n, CSV_BLOCK_ROWS):
            block = [_format(v[s : s + CSV_BLOCK_ROWS]) for v in table.values()]
            writer.writerows(zip(*block, strict=True))
