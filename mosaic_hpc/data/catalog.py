"""Catalog I/O: the HDF5 format of docs/catalog_format.md, validated on open, written atomically.

Layout (one file per split, or a directory of shard files with the same layout)::

    /modalities/<name>   float32 [N, L]   NaN marks a missing value
        attrs: kind, unit, columns (scalars / band names), axis = "/axes/<name>" (vectors)
    /axes/<name>         float64 [L]      attrs: quantity, unit
    /stats/<name>/mean, /stats/<name>/std   float64 [L], attrs: mode  (training rows only)
    /columns/<name>      int64 | float64 | str [N]   optional: object ID, pass-through columns,
        attrs: role = "id" | "passthrough" | "source_row"   the input row (import-catalog)
    attrs: format_version, source, created_by, seed, cosmology, modality_order

Every error names the file and the field, so a user with a thousand shards knows which one is
broken. Writers go through a temporary file renamed into place on success: a crash or a bad
chunk never leaves a partial catalog under the final name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

# Lustre and GPFS often refuse POSIX locks; read-only access does not need them. Must be set
# before the HDF5 library opens any file. Users can still override it explicitly.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

import h5py
import numpy as np
from h5py import h5s

from ..schema import CatalogSchema, ModalitySpec, order_modalities
from .normalization import NORM_MODES, NormStats, RunningStats

FORMAT_VERSION = 1
# Splits a catalog directory may hold: training rows, the validation rows the training loop
# scores (train.eval_every), the test rows evaluate reports, and "all" for a table imported
# without a split (import-catalog `split: none`), which is for prediction.
SPLITS = ("train", "val", "test", "all")
# Roles of /columns/<name>: the object identifier, a column carried unchanged, the input row.
COLUMN_ROLES = ("id", "passthrough", "source_row")


class CatalogError(ValueError):
    """A catalog file is missing, malformed or inconsistent. The message names file and field."""

    def __init__(self, path: Path | str, field: str, reason: str) -> None:
        self.path = Path(path)
        self.field = field
        super().__init__(f"{path}: {field}: {reason}")


def _decode(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.dtype.kind in "SO":
        return [x.decode() if isinstance(x, bytes) else str(x) for x in v]
    return v


def _open_h5(path: Path, mode: str = "r") -> h5py.File:
    """Open with a clear error for a missing, non-HDF5 or truncated file."""
    if not path.exists():
        raise CatalogError(path, "file", "does not exist")
    if path.is_dir():
        raise CatalogError(path, "file", "is a directory, expected an HDF5 file")
    if not h5py.is_hdf5(path):
        raise CatalogError(path, "file", "is not an HDF5 file (no HDF5 signature)")
    try:
        return h5py.File(path, mode, locking=False) if mode == "r" else h5py.File(path, mode)
    except OSError as err:
        raise CatalogError(path, "file", f"cannot be opened, truncated or corrupt ({err})") from None


def read_schema(f: h5py.File, path: Path) -> CatalogSchema:
    """Schema from ``/modalities`` and ``/axes``, validating ranks, dtypes and row counts."""
    if "modalities" not in f or not isinstance(f["modalities"], h5py.Group):
        raise CatalogError(path, "/modalities", "missing group")
    group = f["modalities"]
    names = list(group.keys())
    if not names:
        raise CatalogError(path, "/modalities", "group holds no modality")
    order = f.attrs.get("modality_order")
    if order is not None:
        order = [str(n) for n in _decode(order)]
        if sorted(order) != sorted(names):
            raise CatalogError(path, "attrs/modality_order", f"lists {order} but /modalities holds {names}")
    else:
        order = order_modalities(names)
    specs = []
    n_rows: int | None = None
    first = ""
    for name in order:
        field = f"/modalities/{name}"
        ds = group[name]
        if not isinstance(ds, h5py.Dataset):
            raise CatalogError(path, field, "is a group, expected a dataset")
        if ds.ndim != 2:
            raise CatalogError(path, field, f"has rank {ds.ndim}, expected 2 ([N, L])")
        if ds.dtype.kind != "f":
            raise CatalogError(path, field, f"has dtype {ds.dtype}, expected floating point")
        if n_rows is None:
            n_rows, first = ds.shape[0], name
        elif ds.shape[0] != n_rows:
            raise CatalogError(path, field, f"has {ds.shape[0]} rows but {first!r} has {n_rows}")
        kind = _decode(ds.attrs.get("kind", ""))
        if kind not in ("scalars", "vector"):
            raise CatalogError(path, f"{field}/attrs/kind", f"must be 'scalars' or 'vector', got {kind!r}")
        length = ds.shape[1]
        columns = tuple(_decode(ds.attrs.get("columns", [])))
        if columns and len(columns) != length:
            raise CatalogError(path, f"{field}/attrs/columns", f"{len(columns)} names for {length} columns")
        axis: tuple[float, ...] = ()
        axis_quantity = axis_unit = ""
        axis_ref = _decode(ds.attrs.get("axis", ""))
        if axis_ref:
            if axis_ref not in f:
                raise CatalogError(path, axis_ref, f"missing dataset (axis of {name!r})")
            ax = f[axis_ref]
            if ax.shape != (length,):
                raise CatalogError(path, axis_ref, f"has shape {ax.shape}, expected ({length},)")
            axis = tuple(float(v) for v in ax[()])
            axis_quantity = str(_decode(ax.attrs.get("quantity", "")))
            axis_unit = str(_decode(ax.attrs.get("unit", "")))
        specs.append(
            ModalitySpec(
                name=name,
                kind=kind,
                length=length,
                unit=str(_decode(ds.attrs.get("unit", ""))),
                columns=columns,
                axis=axis,
                axis_quantity=axis_quantity,
                axis_unit=axis_unit,
            )
        )
    return CatalogSchema(tuple(specs))


def read_stats(f: h5py.File, path: Path, schema: CatalogSchema) -> NormStats:
    """Normalisation statistics for every modality; missing or zero-spread stats are errors."""
    if "stats" not in f:
        raise CatalogError(path, "/stats", "missing group (normalisation statistics)")
    mean, std, modes = {}, {}, {}
    for spec in schema:
        for key in ("mean", "std"):
            field = f"/stats/{spec.name}/{key}"
            if field not in f:
                raise CatalogError(path, field, "missing dataset")
            arr = np.asarray(f[field][()], dtype=np.float64)
            if arr.shape != (spec.length,):
                raise CatalogError(path, field, f"has shape {arr.shape}, expected ({spec.length},)")
            if not np.all(np.isfinite(arr)):
                raise CatalogError(path, field, "holds NaN or inf")
            (mean if key == "mean" else std)[spec.name] = arr
        bad = np.flatnonzero(~(std[spec.name] > 0))
        if bad.size:
            raise CatalogError(path, f"/stats/{spec.name}/std", f"zero or negative std at columns {bad[:10].tolist()}")
        modes[spec.name] = str(_decode(f[f"/stats/{spec.name}"].attrs.get("mode", "global")))
    return NormStats(mean=mean, std=std, modes=modes)


def split_paths(data: Path | str, split: str = "train") -> list[Path]:
    """Files of one split: ``data`` itself if a file, else ``data/<split>.h5`` or ``data/<split>/*.h5``."""
    data = Path(data)
    if data.is_file():
        return [data]
    if not data.exists():
        raise CatalogError(data, "path", "does not exist")
    single = data / f"{split}.h5"
    shard_dir = data / split
    if single.exists() and shard_dir.is_dir():
        raise CatalogError(data, split, f"both {single.name} and {shard_dir.name}/ exist; keep one")
    if single.exists():
        return [single]
    if shard_dir.is_dir():
        shards = sorted(shard_dir.glob("*.h5"))
        if not shards:
            raise CatalogError(shard_dir, "shards", "directory holds no *.h5 file")
        return shards
    raise CatalogError(data, split, f"no {single.name} and no {shard_dir.name}/ directory of shards")


def split_exists(data: Path | str, split: str) -> bool:
    """Whether the catalog directory ``data`` has ``split`` at all (a file is one split: train).

    Only absence makes an optional split (validation) optional: a split that is there but broken
    must fail loudly, not be skipped.
    """
    data = Path(data)
    return data.is_dir() and ((data / f"{split}.h5").exists() or (data / split).is_dir())


def require_same_layout(reference: Catalog, other: Catalog) -> None:
    """``other`` has the modalities and normalisation statistics of ``reference`` (another split of one catalog).

    Raises:
        CatalogError: naming ``other``'s file and what differs.
    """
    if other.schema != reference.schema:
        raise CatalogError(
            other.paths[0],
            "/modalities",
            f"{dict(other.schema.lengths)} differ from {dict(reference.schema.lengths)} in {reference.paths[0]}",
        )
    if other.stats is not None and reference.stats is not None and not _same_stats(other.stats, reference.stats):
        raise CatalogError(
            other.paths[0], "/stats", f"normalisation statistics differ from those of {reference.paths[0]}"
        )


class Catalog:
    """One split of a catalog, possibly spread over shard files, read as one row range.

    File handles are opened lazily and per process id, so a Catalog can be built before
    DataLoader workers or MPI ranks fork and each process then opens its own handles.
    """

    def __init__(self, paths: list[Path], require_stats: bool = True) -> None:
        if not paths:
            raise ValueError("Catalog needs at least one file")
        self.paths = [Path(p) for p in paths]
        self.file_rows: list[int] = []
        self.schema: CatalogSchema | None = None
        self.stats: NormStats | None = None
        self.attrs: dict[str, Any] = {}
        self.column_roles: dict[str, str] = {}
        for i, path in enumerate(self.paths):
            with _open_h5(path) as f:
                schema = read_schema(f, path)
                stats = read_stats(f, path, schema) if require_stats else None
                n = f["modalities"][schema.names[0]].shape[0]
                roles = read_column_roles(f, path, n)
                if self.schema is None:
                    self.schema, self.stats, self.column_roles = schema, stats, roles
                    self.attrs = {k: _decode(v) for k, v in f.attrs.items()}
                elif schema != self.schema:
                    raise CatalogError(path, "/modalities", f"schema differs from {self.paths[0]}")
                elif stats is not None and not _same_stats(stats, self.stats):
                    raise CatalogError(path, "/stats", f"normalisation statistics differ from {self.paths[0]}")
                elif i and roles != self.column_roles:
                    raise CatalogError(path, "/columns", f"{roles} differ from {self.column_roles} of {self.paths[0]}")
            self.file_rows.append(n)
        self.offsets = np.concatenate([[0], np.cumsum(self.file_rows)]).astype(np.int64)
        self._handles: dict[int, h5py.File] = {}
        self._datasets: dict[tuple[int, str], h5py.Dataset] = {}
        self._pid = -1

    @classmethod
    def open(cls, data: Path | str, split: str = "train", require_stats: bool = True) -> Catalog:
        return cls(split_paths(data, split), require_stats=require_stats)

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])

    def __len__(self) -> int:
        return self.n_rows

    def locate(self, row: int) -> tuple[Path, int]:
        """The file holding global row ``row`` of the split, and the row's index in that file."""
        i = int(np.searchsorted(self.offsets, row, side="right") - 1)
        return self.paths[i], row - int(self.offsets[i])

    def _file(self, i: int) -> h5py.File:
        pid = os.getpid()
        if pid != self._pid:  # forked: never reuse a parent's HDF5 handle
            self._handles, self._datasets, self._pid = {}, {}, pid
        if i not in self._handles:
            self._handles[i] = _open_h5(self.paths[i])
        return self._handles[i]

    def _dataset(self, i: int, name: str) -> h5py.Dataset:
        """``/modalities/<name>`` of file ``i``, looked up once per process.

        A lookup by path goes through several layers of h5py Python code per call, and the
        reader reads every modality of a few dozen runs per window, so the objects are cached
        next to the file handles (and dropped with them after a fork).
        """
        f = self._file(i)  # first: resets both caches after a fork
        key = (i, name)
        ds = self._datasets.get(key)
        if ds is None:
            ds = self._datasets[key] = f["modalities"][name]
        return ds

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles, self._datasets = {}, {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"], state["_datasets"], state["_pid"] = {}, {}, -1
        return state

    def read(self, start: int, stop: int, names: list[str] | tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Rows [start, stop) of the split as float32 arrays keyed by modality (contiguous reads)."""
        names = tuple(names) if names is not None else self.schema.names
        if not 0 <= start <= stop <= self.n_rows:
            raise IndexError(f"rows [{start}, {stop}) outside catalog of {self.n_rows} rows")
        if stop == 0:
            return {}
        lengths = {s.name: s.length for s in self.schema}
        out = {n: np.empty((stop - start, lengths[n]), dtype=np.float32) for n in names}
        self.read_into(start, stop, out)
        return out

    def read_into(self, start: int, stop: int, out: Mapping[str, np.ndarray], offset: int = 0) -> None:
        """Rows [start, stop) into ``out[name][offset : offset + stop - start]`` for every key of ``out``.

        HDF5 writes float32 rows straight into the caller's buffer (one hyperslab read per file
        and modality), so a reader can assemble a window of many runs in one preallocated array
        instead of reading each run into a fresh array and concatenating: that saves a copy of
        every value and the page faults of the fresh arrays. Values are those of :meth:`read`
        bit for bit; a dataset stored in another float type is converted by numpy as before.

        Args:
            start, stop: global row range of the split; may span several shard files.
            out: C-contiguous float32 arrays [>= offset + stop - start, L] keyed by modality.
            offset: first row of ``out`` to write.

        Raises:
            IndexError: rows outside the split, or ``out`` too short.
            CatalogError: a read failed (truncated file, fletcher32 checksum, I/O error), naming
                the file, the dataset and the rows.
        """
        if not 0 <= start <= stop <= self.n_rows:
            raise IndexError(f"rows [{start}, {stop}) outside catalog of {self.n_rows} rows")
        end = offset + stop - start
        for n, buf in out.items():
            if buf.dtype != np.float32 or not buf.flags.c_contiguous or not 0 <= offset <= end <= len(buf):
                raise IndexError(f"{n}: a {buf.dtype} buffer of shape {buf.shape} cannot take rows {offset}:{end}")
        i = int(np.searchsorted(self.offsets, start, side="right") - 1)
        while start < stop:
            base = int(self.offsets[i])
            lo, hi = start - base, min(stop, int(self.offsets[i + 1])) - base
            for n, buf in out.items() if hi > lo else ():  # an empty shard: no HDF5 call
                dest = buf[offset : offset + hi - lo]  # leading rows of a C-ordered array: contiguous
                ds = self._dataset(i, n)
                try:
                    if ds.dtype == np.float32:
                        fspace = ds.id.get_space()
                        fspace.select_hyperslab((lo, 0), (hi - lo, ds.shape[1]))
                        ds.id.read(h5s.create_simple(dest.shape), fspace, dest)
                    else:  # numpy's float conversion, exactly as np.asarray(ds[lo:hi], np.float32)
                        dest[...] = ds[lo:hi]
                except OSError as err:
                    raise CatalogError(
                        self.paths[i], f"/modalities/{n}", f"read of rows {lo}:{hi} failed ({err})"
                    ) from None
            offset += hi - lo
            start += hi - lo
            i += 1

    def read_all(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        return self.read(0, self.n_rows, names)

    @property
    def id_column(self) -> str | None:
        """Name of the object-ID column (``/columns``, role ``id``), or None."""
        return next((n for n, r in self.column_roles.items() if r == "id"), None)

    def read_columns(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows [start, stop) of every ``/columns`` dataset: int64, float64 or str (object) arrays."""
        if not 0 <= start <= stop <= self.n_rows:
            raise IndexError(f"rows [{start}, {stop}) outside catalog of {self.n_rows} rows")
        parts: dict[str, list[np.ndarray]] = {n: [] for n in self.column_roles}
        for i in range(len(self.paths)):
            lo, hi = max(start, int(self.offsets[i])), min(stop, int(self.offsets[i + 1]))
            if hi <= lo:
                continue
            f = self._file(i)
            for name in self.column_roles:
                ds = f["columns"][name]
                a, b = lo - int(self.offsets[i]), hi - int(self.offsets[i])
                parts[name].append(ds.asstr()[a:b].astype(object) if ds.dtype.kind == "O" else ds[a:b])
        return {n: np.concatenate(p) if p else np.empty(0) for n, p in parts.items()}

    def iter_chunks(self, chunk_rows: int = 65536) -> Iterator[dict[str, np.ndarray]]:
        for s in range(0, self.n_rows, chunk_rows):
            yield self.read(s, min(s + chunk_rows, self.n_rows))


def read_column_roles(f: h5py.File, path: Path, n_rows: int) -> dict[str, str]:
    """Name -> role of the ``/columns`` datasets (none: empty), each checked to hold ``n_rows`` values."""
    if "columns" not in f:
        return {}
    roles = {}
    for name, ds in f["columns"].items():
        field = f"/columns/{name}"
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.shape[0] != n_rows:
            shape = getattr(ds, "shape", None)
            raise CatalogError(path, field, f"has shape {shape}, expected ({n_rows},): one value per row")
        role = str(_decode(ds.attrs.get("role", "passthrough")))
        if role not in COLUMN_ROLES:
            raise CatalogError(path, f"{field}/attrs/role", f"must be one of {list(COLUMN_ROLES)}, got {role!r}")
        roles[name] = role
    return roles


def _column_dtype(name: str, arr: np.ndarray):
    """HDF5 type of a ``/columns`` dataset: int64, float64 or UTF-8 strings."""
    if arr.dtype.kind in "iub":
        return np.dtype(np.int64)
    if arr.dtype.kind == "f":
        return np.dtype(np.float64)
    if arr.dtype.kind in "OUS":
        return h5py.string_dtype("utf-8")
    raise ValueError(f"column {name!r}: cannot store values of type {arr.dtype}")


def _same_stats(a: NormStats, b: NormStats) -> bool:
    return a.mean.keys() == b.mean.keys() and all(
        np.array_equal(a.mean[n], b.mean[n]) and np.array_equal(a.std[n], b.std[n]) for n in a.mean
    )


def default_norm_modes(schema: CatalogSchema, vector_mode: str = "global") -> dict[str, str]:
    """Paper Sec. 2: scalars per column, vectors by one global mean/std (or per bin)."""
    if vector_mode not in ("global", "per_bin"):
        raise ValueError(f"vector normalisation must be 'global' or 'per_bin', got {vector_mode!r}")
    return {m.name: ("per_column" if m.is_scalars else vector_mode) for m in schema}


class CatalogWriter:
    """Chunked, atomic writer for one catalog file.

    Rows are appended in blocks (bounded memory at any catalog size); running statistics of the
    appended rows are kept so a training split's stats come free. The file appears under its
    final name only on :meth:`close` with statistics; an exception inside ``with`` deletes it.
    """

    def __init__(
        self,
        path: Path | str,
        schema: CatalogSchema,
        attrs: Mapping[str, Any] | None = None,
        chunk_rows: int = 1024,
        columns: Mapping[str, str] | None = None,
    ) -> None:
        """``columns``: name -> role (:data:`COLUMN_ROLES`) of ``/columns`` datasets every append gives."""
        self.path = Path(path)
        self.schema = schema
        self.column_roles = dict(columns or {})
        for name, role in self.column_roles.items():
            if role not in COLUMN_ROLES:
                raise ValueError(f"column {name!r}: role must be one of {COLUMN_ROLES}, got {role!r}")
        self.tmp_path = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = h5py.File(self.tmp_path, "w")
        self.n_rows = 0
        self.running = {m.name: RunningStats(m.length) for m in schema}
        self._f.attrs["format_version"] = FORMAT_VERSION
        self._f.attrs["modality_order"] = list(schema.names)
        for k, v in (attrs or {}).items():
            self._f.attrs[k] = v
        mods = self._f.create_group("modalities")
        for m in schema:
            ds = mods.create_dataset(
                m.name,
                shape=(0, m.length),
                maxshape=(None, m.length),
                dtype="f4",
                chunks=(chunk_rows, m.length),
                fletcher32=True,  # per-chunk checksum: a flipped byte on disk fails the read loudly
            )
            ds.attrs["kind"] = m.kind
            ds.attrs["unit"] = m.unit
            if m.columns:
                ds.attrs["columns"] = list(m.columns)
            if m.axis:
                ax = self._f.create_dataset(f"axes/{m.name}", data=np.asarray(m.axis, dtype=np.float64))
                ax.attrs["quantity"] = m.axis_quantity
                ax.attrs["unit"] = m.axis_unit
                if m.columns:
                    ax.attrs["names"] = list(m.columns)
                ds.attrs["axis"] = f"/axes/{m.name}"

    def append(self, rows: Mapping[str, np.ndarray], columns: Mapping[str, np.ndarray] | None = None) -> None:
        """Append a block of rows; every modality must be present with the schema's length, and
        every column named at construction (same row count)."""
        missing = [n for n in self.schema.names if n not in rows]
        if missing:
            raise ValueError(f"{self.path}: block is missing modalities {missing}")
        n = None
        for m in self.schema:
            x = np.asarray(rows[m.name])
            if x.ndim != 2 or x.shape[1] != m.length:
                raise ValueError(f"{self.path}: {m.name}: block has shape {x.shape}, expected [N, {m.length}]")
            if n is None:
                n = x.shape[0]
            elif x.shape[0] != n:
                raise ValueError(f"{self.path}: {m.name}: {x.shape[0]} rows, other modalities have {n}")
            with np.errstate(over="ignore"):
                if np.isinf(x.astype(np.float32)).any():  # beyond float32 (1e300) is inf once stored
                    raise ValueError(
                        f"{self.path}: {m.name}: block holds inf or values beyond float32 (use NaN for missing values)"
                    )
        columns = dict(columns or {})
        if set(columns) != set(self.column_roles):
            raise ValueError(f"{self.path}: block has columns {sorted(columns)}, expected {sorted(self.column_roles)}")
        for name, c in columns.items():
            if np.ndim(c) != 1 or len(c) != n:
                raise ValueError(f"{self.path}: column {name!r}: block has shape {np.shape(c)}, expected ({n},)")
        for name, c in columns.items():
            self._append_column(name, np.asarray(c), n)
        for m in self.schema:
            x = np.asarray(rows[m.name], dtype=np.float32)
            ds = self._f["modalities"][m.name]
            ds.resize(self.n_rows + n, axis=0)
            ds[self.n_rows :] = x
            self.running[m.name].update(x)
        self.n_rows += n

    def _append_column(self, name: str, values: np.ndarray, n: int) -> None:
        group = self._f.require_group("columns")
        if name not in group:
            ds = group.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=_column_dtype(name, values), chunks=True
            )
            ds.attrs["role"] = self.column_roles[name]
        ds = group[name]
        if ds.dtype.kind != _column_dtype(name, values).kind:
            raise ValueError(f"{self.path}: column {name!r}: block of type {values.dtype} after {ds.dtype}")
        ds.resize(self.n_rows + n, axis=0)
        ds[self.n_rows :] = values.astype(object) if values.dtype.kind == "U" else values

    def close(self, stats: NormStats) -> Path:
        """Write statistics, flush and rename into place. Returns the final path."""
        for name in self.column_roles:  # a file that received no row still has every column
            if name not in self._f.get("columns", {}):
                self._append_column(name, np.zeros(0, dtype=np.int64), 0)
        grp = self._f.create_group("stats")
        for m in self.schema:
            if stats.modes[m.name] not in NORM_MODES:
                raise ValueError(f"stats mode for {m.name!r} must be one of {NORM_MODES}")
            g = grp.create_group(m.name)
            g.create_dataset("mean", data=np.asarray(stats.mean[m.name], dtype=np.float64))
            g.create_dataset("std", data=np.asarray(stats.std[m.name], dtype=np.float64))
            g.attrs["mode"] = stats.modes[m.name]
        self._f.attrs["n_rows"] = self.n_rows
        self._f.close()
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; the final path is never touched."""
        try:
            self._f.close()
        finally:
            self.tmp_path.unlink(missing_ok=True)

    def __enter__(self) -> CatalogWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self._f.id.valid:
            # an exception, or the caller never called close(stats): no catalog without stats
            if self._f.id.valid:
                self.abort()


def stats_from_running(running: Mapping[str, RunningStats], modes: Mapping[str, str]) -> NormStats:
    """Finalise merged running statistics into NormStats (raises on zero spread)."""
    mean, std = {}, {}
    for name, rs in running.items():
        mean[name], std[name] = rs.finalize(modes[name], name)
    return NormStats(mean=mean, std=std, modes=dict(modes))


def write_catalog(
    path: Path | str,
    schema: CatalogSchema,
    rows: Mapping[str, np.ndarray],
    stats: NormStats | None = None,
    attrs: Mapping[str, Any] | None = None,
    vector_mode: str = "global",
) -> Path:
    """Write one file in one go; stats default to those of these rows (a training split)."""
    with CatalogWriter(path, schema, attrs) as w:
        w.append(rows)
        if stats is None:
            stats = stats_from_running(w.running, default_norm_modes(schema, vector_mode))
        return w.close(stats)
