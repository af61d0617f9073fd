"""Split a catalog into N shard files with the same layout, statistics and attributes.

Each split found in INPUT (train.h5, test.h5, or INPUT itself when it is a file) becomes
OUT/<split>/<split>-00000-of-0000N.h5, ... : contiguous row ranges of near-equal size (sizes differ
by at most one row), in catalog order, so row r of the sharded catalog is row r of the input.
Normalisation statistics are copied, never recomputed: they belong to the whole training split.
Every shard is written atomically, and the shard directory appears under its final name only
when all N shards are complete, so a crash never leaves a partial set that would read as a
smaller catalog. The reader treats OUT exactly like the unsharded catalog.

Example:
  mosaic-hpc shard-catalog --input catalogs/mock --out catalogs/mock-sharded --n-shards 16
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..data.catalog import SPLITS, Catalog, CatalogWriter, split_paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, type=Path, help="catalog directory (train.h5/test.h5, shard dirs) or file")
    p.add_argument("--out", required=True, type=Path, help="output catalog directory (created)")
    p.add_argument("--n-shards", required=True, type=int, help="shard files per split")
    p.add_argument("--split", action="append", choices=SPLITS, help="split to shard (repeatable; default: all found)")
    p.add_argument("--chunk-rows", type=int, default=1024, help="HDF5 chunk rows of the shards (match data.block_rows)")
    p.add_argument("--overwrite", action="store_true", help="replace existing OUT/<split> directories")


def _splits(input_path: Path, wanted: list[str] | None) -> dict[str, list[Path]]:
    """Files of each split to shard. A single file is the split named by --split, else by its
    name (``test.h5`` -> test), else train."""
    if input_path.is_file():
        if len(wanted or []) > 1:
            raise ValueError(f"{input_path} is one file: pass at most one --split")
        stem = input_path.stem
        return {wanted[0] if wanted else (stem if stem in SPLITS else "train"): [input_path]}
    if not input_path.exists():
        raise ValueError(f"{input_path}: does not exist")
    found = {}
    for split in wanted or SPLITS:
        try:
            found[split] = split_paths(input_path, split)
        except ValueError:
            if wanted:
                raise
    if not found:
        raise ValueError(
            f"{input_path}: no split found (expected train.h5, test.h5 or train/, test/ shard directories)"
        )
    return found


def shard_split(paths: list[Path], out_dir: Path, split: str, n_shards: int, chunk_rows: int) -> list[Path]:
    """Write one split as ``n_shards`` files into ``out_dir``, replacing it only on success.

    The shards are written into ``<out_dir>.partial`` and renamed into place at the end, so
    ``out_dir`` always holds either the old complete set or the new complete set.

    Raises:
        ValueError: fewer rows than shards.
    """
    from tqdm import tqdm

    catalog = Catalog(paths)
    n = catalog.n_rows
    if n_shards > n:
        raise ValueError(f"{paths[0]}: {n} rows cannot fill {n_shards} shards")
    tmp_dir = out_dir.with_name(out_dir.name + ".partial")
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)  # left by a crashed earlier run: never part of a catalog
    tmp_dir.mkdir(parents=True)
    bounds = [i * n // n_shards for i in range(n_shards + 1)]
    step = 64 * chunk_rows  # rows per read: bounded memory at any catalog size
    attrs = {k: v for k, v in catalog.attrs.items() if k not in ("format_version", "modality_order", "n_rows")}
    with tqdm(total=n, desc=f"sharding {split}", unit="rows", unit_scale=True) as bar:
        for i in range(n_shards):
            path = tmp_dir / f"{split}-{i:05d}-of-{n_shards:05d}.h5"
            shard_attrs = {**attrs, "shard_index": i, "n_shards": n_shards, "shard_first_row": bounds[i]}
            columns = catalog.column_roles  # IDs and pass-through columns travel with their rows
            with CatalogWriter(path, catalog.schema, shard_attrs, chunk_rows=chunk_rows, columns=columns) as writer:
                for s in range(bounds[i], bounds[i + 1], step):
                    stop = min(s + step, bounds[i + 1])
                    writer.append(catalog.read(s, stop), catalog.read_columns(s, stop))
                    bar.update(stop - s)
                writer.close(catalog.stats)
    catalog.close()
    old = out_dir.with_name(out_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)  # left by a crash between the two renames below
    if out_dir.exists():
        out_dir.rename(old)
    tmp_dir.rename(out_dir)
    if old.exists():
        shutil.rmtree(old)
    return sorted(out_dir.glob("*.h5"))


def run(args: argparse.Namespace) -> int:
    if args.n_shards < 1:
        raise ValueError(f"--n-shards must be >= 1, got {args.n_shards}")
    if args.chunk_rows < 1:
        raise ValueError(f"--chunk-rows must be >= 1, got {args.chunk_rows}")
    splits = _splits(args.input, args.split)
    if args.out.resolve() == (args.input if args.input.is_dir() else args.input.parent).resolve():
        raise ValueError(f"--out {args.out} must differ from the input catalog directory")
    for split in splits:
        if (args.out / split).exists() and not args.overwrite:
            raise ValueError(f"{args.out / split} exists; pass --overwrite to replace it")
        if (args.out / f"{split}.h5").exists() and not args.overwrite:
            raise ValueError(
                f"{args.out} holds {split}.h5: shards written beside it would leave a catalog no command can open "
                f"(both {split}.h5 and {split}/); choose another --out, or pass --overwrite to replace it by the shards"
            )
    for split, paths in splits.items():
        shards = shard_split(paths, args.out / split, split, args.n_shards, args.chunk_rows)
        # --overwrite: the single file goes only once its complete replacement is in place
        (args.out / f"{split}.h5").unlink(missing_ok=True)
        print(f"{split}: {len(shards)} shards in {args.out / split}")
    return 0
