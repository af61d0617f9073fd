"""Validate a catalog file or directory and summarise it: rows, modalities, NaN fractions.

PATH may be one HDF5 file, a directory of shard files, or a catalog directory (train.h5 /
test.h5 or train/ / test/ shard directories). Every file is opened and checked against the
format (schema, axes, statistics; all shards of a split must share schema and statistics), then
every row is read, so a truncated or corrupt chunk is found here rather than hours into a run.
Values that are inf, or more than 1e6 training standard deviations from the mean, are errors:
they cannot come from a galaxy; so are finite values more than 1e6 robust standard deviations
(median absolute deviation) from their column's median, such as an undeclared 3e38 sentinel,
which inflate the statistics until the first test passes. The first problem stops the check with a one-line message that
names the file and the field (exit code 2); nothing is skipped.

Example:
  mosaic-hpc check-catalog catalogs/mock
  mosaic-hpc check-catalog catalogs/mock/train --json summary.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..data.catalog import SPLITS, Catalog, CatalogError, split_paths
from ..data.validation import (
    MAX_ABS_NORMALISED,
    first_implausible_row,
    first_robust_outlier,
    implausible_reason,
    robust_scale,
    sample_rows,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=Path, help="catalog file, shard directory or catalog directory")
    p.add_argument("--no-stats", action="store_true", help="accept files without /stats (e.g. raw imports)")
    p.add_argument("--chunk-rows", type=int, default=65536, help="rows read at a time")
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON here")


def find_splits(path: Path) -> dict[str, list[Path]]:
    """Files of each split under ``path``; a file or a bare shard directory is one group.

    Raises:
        CatalogError: the path does not exist or holds no catalog file.
    """
    if not path.exists():
        raise CatalogError(path, "path", "does not exist")
    if path.is_file():
        return {path.stem: [path]}
    found = {s: split_paths(path, s) for s in SPLITS if (path / f"{s}.h5").exists() or (path / s).is_dir()}
    if found:
        return found
    shards = sorted(path.glob("*.h5"))
    if not shards:
        raise CatalogError(path, "path", f"holds no *.h5 file and no {'/'.join(SPLITS)} split")
    return {path.name: shards}


def summarise(catalog: Catalog, chunk_rows: int = 65536) -> dict[str, Any]:
    """Read every row once: NaN fractions per modality, implausible values raise.

    Raises:
        CatalogError: a read fails or a value is inf / far outside the training distribution;
            the message names the file, the modality and the row.
    """
    from tqdm import tqdm

    robust = {name: robust_scale(x) for name, x in sample_rows(catalog).items()}
    nan = {m.name: np.zeros(m.length, dtype=np.int64) for m in catalog.schema}
    all_nan = dict.fromkeys(catalog.schema.names, 0)  # rows where the whole modality is missing
    with tqdm(total=catalog.n_rows, desc="reading", unit="rows", unit_scale=True, leave=False) as bar:
        for start in range(0, catalog.n_rows, chunk_rows):
            stop = min(start + chunk_rows, catalog.n_rows)
            for name, x in catalog.read(start, stop).items():
                isnan = np.isnan(x)
                nan[name] += isnan.sum(axis=0)
                all_nan[name] += int(isnan.all(axis=1).sum())
                if catalog.stats is not None:
                    _check_range(catalog, name, x, start)
                _check_robust(catalog, name, x, start, *robust[name])
            bar.update(stop - start)
    n = max(catalog.n_rows, 1)
    mods = {}
    for m in catalog.schema:
        frac = nan[m.name] / n
        mods[m.name] = {
            "kind": m.kind,
            "length": m.length,
            "unit": m.unit,
            "nan_fraction": float(frac.mean()),
            "nan_fraction_max_column": float(frac.max()),
            "rows_all_nan_fraction": all_nan[m.name] / n,
        }
    return {
        "files": [{"path": str(p), "rows": r} for p, r in zip(catalog.paths, catalog.file_rows)],
        "rows": catalog.n_rows,
        "chunk_rows": _chunk_rows(catalog),
        "columns": dict(catalog.column_roles),
        "modalities": mods,
    }


def _check_range(catalog: Catalog, name: str, x: np.ndarray, start: int) -> None:
    bad = first_implausible_row(catalog.stats.normalize(name, x))  # the reader's check (data/validation.py)
    if bad is not None:
        row = start + bad
        i = int(np.searchsorted(catalog.offsets, row, side="right") - 1)
        raise CatalogError(catalog.paths[i], f"/modalities/{name}", implausible_reason(row - int(catalog.offsets[i])))


def _check_robust(catalog: Catalog, name: str, x: np.ndarray, start: int, center, spread) -> None:
    """Finite values absurdly far from their column's median: they wreck the statistics, which then look valid."""
    found = first_robust_outlier(x, center, spread)
    if found is not None:
        row, col = found
        path, local = catalog.locate(start + row)
        raise CatalogError(
            path,
            f"/modalities/{name}",
            f"row {local} column {col} holds {x[row, col]:g}, more than {MAX_ABS_NORMALISED:g} robust standard "
            f"deviations from the column's median {center[col]:g} (an undeclared sentinel or corrupt data)",
        )


def _chunk_rows(catalog: Catalog) -> dict[str, int | None]:
    """HDF5 chunk rows per modality of the first file (the unit to align data.block_rows to)."""
    import h5py

    with h5py.File(catalog.paths[0], "r", locking=False) as f:
        return {n: (f["modalities"][n].chunks or (None,))[0] for n in catalog.schema.names}


def run(args: argparse.Namespace) -> int:
    if args.chunk_rows < 1:
        raise ValueError(f"--chunk-rows must be >= 1, got {args.chunk_rows}")
    report = {}
    for split, paths in find_splits(args.path).items():
        catalog = Catalog(paths, require_stats=not args.no_stats)
        summary = summarise(catalog, args.chunk_rows)
        catalog.close()
        report[split] = summary
        print(f"{split}: {summary['rows']:,} rows in {len(paths)} file(s); HDF5 chunks {summary['chunk_rows']}")
        if catalog.column_roles:
            print(f"  columns: {', '.join(f'{n} ({r})' for n, r in catalog.column_roles.items())}")
        print(
            f"  {'modality':<10} {'kind':<8} {'L':>5}  {'unit':<15} {'NaN frac':>9} {'max col':>8} {'all-NaN rows':>12}"
        )
        for name, m in summary["modalities"].items():
            print(
                f"  {name:<10} {m['kind']:<8} {m['length']:>5}  {m['unit']:<15} "
                f"{m['nan_fraction']:>9.4f} {m['nan_fraction_max_column']:>8.4f} {m['rows_all_nan_fraction']:>12.4f}"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))
    print("catalog OK")
    return 0
