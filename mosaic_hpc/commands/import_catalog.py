"""Import a survey catalog (columnar HDF5, Parquet or CSV) into the mosaic-hpc catalog format.

A mapping file (YAML) names the modalities, their kind (scalars/vector), input columns in order,
units, axis, sentinel values meaning "missing" (e.g. magnitude 99 for a non-detection -> NaN) and
optional error columns (imported as a separate modality, e.g. lsst_err, usable as model input).
The rows are split into train.h5, val.h5 and test.h5 by the mapping's rule (default split:
{val_fraction: 0.1, test_fraction: 0.1, seed: 0}; the flags below override it), or the test rows
come from a separate --input-test file. `split: none` (or --no-split) writes every row into
all.h5, for a table to predict on. Training validates on val; evaluate reports test.
Normalisation statistics come from the training rows only and are stored in every file. On any
error nothing is written. See docs/import_catalog.md.

examples:
  mosaic-hpc import-catalog --input survey.parquet --mapping my_mapping.yaml --out data/survey
  mosaic-hpc import-catalog --input test_dc2_training_9816.hdf5 \\
      --input-test test_dc2_validation_9816.hdf5 --mapping configs/mappings/dc2_rail.yaml --out data/dc2
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, required=True, help="input file (.h5/.hdf5, .parquet or .csv)")
    parser.add_argument("--mapping", type=Path, required=True, help="mapping YAML (docs/import_catalog.md)")
    parser.add_argument("--out", type=Path, required=True, help="output directory for train.h5, val.h5, test.h5")
    parser.add_argument(
        "--input-test", type=Path, default=None, help="test split as a separate file (then no test_fraction)"
    )
    parser.add_argument("--val-fraction", type=float, default=None, help="share of validation rows (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=None, help="share of test rows (default 0.1)")
    parser.add_argument("--split-seed", type=int, default=None, help="seed of the split (default 0)")
    parser.add_argument("--no-split", action="store_true", help="no split: every row into all.h5 (for predict)")
    parser.add_argument("--overwrite", action="store_true", help="replace a catalog already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def split_override(args: argparse.Namespace, mapping):
    """The mapping's split rule with the command-line flags applied, or None without flags.

    Raises:
        ValueError: --no-split together with a fraction or seed, or a fraction outside [0, 1).
    """
    import dataclasses

    from ..data.importer import SplitRule

    flags = {"val_fraction": args.val_fraction, "test_fraction": args.test_fraction, "seed": args.split_seed}
    given = {k: v for k, v in flags.items() if v is not None}
    if args.input_test is not None and (args.no_split or "test_fraction" in given):
        raise ValueError(f"{'--no-split' if args.no_split else '--test-fraction'} conflicts with --input-test")
    if args.no_split:
        if given:
            raise ValueError(f"--no-split conflicts with --{next(iter(given)).replace('_', '-')}")
        return SplitRule(none=True)
    if not given:
        return None
    for key in ("val_fraction", "test_fraction"):
        if key in given and not 0.0 <= given[key] < 1.0:
            raise ValueError(f"--{key.replace('_', '-')} must be in [0, 1), got {given[key]}")
    base = mapping.split if mapping.split is not None and not mapping.split.none else SplitRule()
    return dataclasses.replace(base, **given)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..data.catalog import Catalog
    from ..data.importer import import_catalog, load_mapping

    logging.basicConfig(level=logging.WARNING, format="import-catalog: %(levelname)s: %(message)s")

    mapping = load_mapping(args.mapping)
    written = import_catalog(
        args.input,
        mapping,
        args.out,
        input_test=args.input_test,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
        split=split_override(args, mapping),
    )
    for split, path in written.items():
        cat = Catalog.open(path)
        print(f"import-catalog: {split}: {cat.n_rows} rows, modalities {dict(cat.schema.lengths)} -> {path}")
    return 0
