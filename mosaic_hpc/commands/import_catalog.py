"""Import a survey catalog (columnar HDF5, Parquet or CSV) into the mosaic-hpc catalog format.

A mapping file (YAML) names the modalities, their kind (scalars/vector), input columns in order,
units, axis, sentinel values meaning "missing" (e.g. magnitude 99 for a non-detection -> NaN) and
optional error columns (imported as a separate modality, e.g. lsst_err, usable as model input).
The rows are split by the mapping's rule (split: {test_fraction: 0.1, seed: 0}, the default) or
taken from a separate --input-test file. Normalisation statistics come from the training rows
only and are stored in both files. On any error nothing is written. See docs/import_catalog.md.

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
    parser.add_argument("--out", type=Path, required=True, help="output directory for train.h5 and test.h5")
    parser.add_argument("--input-test", type=Path, default=None, help="test split as a separate file (no split rule)")
    parser.add_argument("--overwrite", action="store_true", help="replace train.h5/test.h5 already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..data.catalog import Catalog
    from ..data.importer import import_catalog

    written = import_catalog(
        args.input,
        args.mapping,
        args.out,
        input_test=args.input_test,
        overwrite=args.overwrite,
        show_progress=not args.no_progress,
    )
    for split, path in written.items():
        cat = Catalog.open(path)
        print(f"import-catalog: {split}: {cat.n_rows} rows, modalities {dict(cat.schema.lengths)} -> {path}")
    return 0
