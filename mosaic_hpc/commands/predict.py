"""Predict every modality from a subset: a catalog file or a survey table in, HDF5/Parquet/CSV out.

Input (--input), one of:
  - an HDF5 file in the catalog layout (/modalities/<name>, only the modalities you have; NaN =
    missing; /stats not needed), e.g. DIR/all.h5 of `import-catalog --no-split`;
  - with --mapping, a table (.csv, .parquet, or .h5 with one dataset per column) read exactly as
    import-catalog reads it: the same sentinels, transforms, ID and pass-through columns. Mapped
    columns the table lacks are missing values (a table of new galaxies has no redshift: that is
    what is predicted); --mapping CATALOG_DIR uses the mapping stored in that catalog.
--given restricts what the model sees, e.g. --given lsst or --given "lsst,sfh[t>=10Gyr]"
(default: every value in the input; a warning names the scalars that are then given, since their
outputs only reconstruct the input).
--format qp writes instead the predictive distribution of one hidden scalar (--scalar, default
redshift) as a qp ensemble (one Gaussian per galaxy, ``qp.read(path)`` reads it; needs a run with
Gaussian heads and the 'rail' extra), the exchange format of LSST DESC RAIL.

Output (--out, by suffix): .h5 with /predictions/<name> [N, L], /sigma/<name> with Gaussian
heads, /given/<name> (True where the value was an input), the axes and /columns/<name>; or
.parquet / .csv with one column per value (scalars_redshift, lsst_u, ...; see docs/own_catalog.md).
Every output carries the input's ID and pass-through columns and `row` (the input row), so it
joins back to your table. Written atomically.

The inputs are checked first (docs/hardening.md): inf or corrupt values, or a --given modality the
file does not hold, are errors; values outside the run's training range, an empty modality or
rows with nothing given are warnings naming the modality, the share of rows and the range, and
errors with --strict.

Examples:
  mosaic-hpc predict --run runs/quickstart --input my_galaxies.h5 --given lsst --out pred.h5
  mosaic-hpc predict --run runs/mine --input new.csv --mapping my_mapping.yaml --out pred.csv
  mosaic-hpc predict --run runs/mine --input new.parquet --mapping catalogs/mine --given lsst --out pred.parquet
  mosaic-hpc predict --run runs/photoz --input dc2.h5 --given lsst,lsst_err --format qp --out pz.hdf5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .arguments import STRICT_HELP, require_at_least


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run directory or checkpoint directory")
    p.add_argument("--input", required=True, type=Path, help="catalog-layout HDF5, or a table with --mapping")
    p.add_argument("--mapping", type=Path, default=None, help="mapping YAML, or a catalog whose stored mapping to use")
    p.add_argument("--given", default=None, help="modalities (and selections) the model may see")
    p.add_argument("--out", required=True, type=Path, help="output file: .h5, .parquet or .csv")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--format",
        choices=("values", "qp"),
        default="values",
        help="every modality, file type from the --out suffix (values), or one scalar as a qp p(x) (qp)",
    )
    p.add_argument("--scalar", default="redshift", help="with --format qp: the scalar column (default redshift)")
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)


def read_input(args: argparse.Namespace, schema):
    """The prediction input of ``args``: a table through a mapping, or a catalog-layout file."""
    from ..data.importer import load_mapping, stored_mapping
    from ..data.table_input import read_catalog_file, read_table_for_run

    if args.input.is_dir():
        raise ValueError(f"--input {args.input} is a directory; pass one file, e.g. {args.input / 'all.h5'}")
    if not args.input.is_file():
        raise FileNotFoundError(f"--input {args.input} does not exist")
    if args.mapping is None:
        if args.input.suffix.lower() in (".csv", ".parquet", ".pq"):
            raise ValueError(
                f"--input {args.input} is a table: pass --mapping MAP.yaml (or the catalog it was trained on)"
            )
        return read_catalog_file(args.input, schema)
    is_catalog = args.mapping.is_dir() or args.mapping.suffix.lower() in (".h5", ".hdf5")
    mapping = stored_mapping(args.mapping) if is_catalog else load_mapping(args.mapping)
    return read_table_for_run(args.input, mapping, schema)


def given_scalars_warning(inputs, schema, given: str | None) -> str | None:
    """Without --given every input value is given: name the scalar columns that then only echo."""
    import numpy as np

    if given:
        return None
    echoed = []
    for spec in schema:
        if not spec.is_scalars or spec.name not in inputs:
            continue
        has_value = ~np.isnan(inputs[spec.name]).all(axis=0)
        names = spec.columns or tuple(str(i) for i in range(spec.length))
        cols = [c for c, has in zip(names, has_value, strict=True) if has]
        if cols:
            echoed.append(f"{spec.name}[{', '.join(cols)}]")
    if not echoed:
        return None
    return (
        f"warning: no --given, so every value in the input is given, including {', '.join(echoed)}: their "
        "outputs reconstruct the given values instead of predicting them; pass --given (e.g. --given lsst)"
    )


def run(args: argparse.Namespace) -> int:
    from ..data.configurations import parse_configuration
    from ..data.validation import validate_inputs
    from ..evaluation.prediction_files import output_format, write_predictions
    from ..evaluation.predictor import load_run

    require_at_least({"--batch-size": (args.batch_size, 1)})
    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a directory; give the output file's name")
    if args.format == "qp":  # a bad suffix fails before the model loads
        from ..evaluation.pdf import check_ensemble_path

        check_ensemble_path(args.out)
    else:
        output_format(args.out)
    if args.out.exists() and not args.overwrite:
        raise ValueError(f"{args.out} exists; pass --overwrite to replace it")
    predictor = load_run(args.run)
    source = read_input(args, predictor.schema)
    for note in source.notes:
        print(f"predict: {note}")
    warning = given_scalars_warning(source.inputs, predictor.schema, args.given)
    if warning:
        print(f"predict: {warning}", file=sys.stderr)
    given = parse_configuration(f"given={args.given}", predictor.schema) if args.given else None
    validate_inputs(source.inputs, predictor.schema, predictor.stats, args.input, given, strict=args.strict)
    pred = predictor.predict(source.inputs, given=given, batch_size=args.batch_size)
    if args.format == "qp":
        from ..evaluation.pdf import scalar_ensemble, write_ensemble

        write_ensemble(scalar_ensemble(pred, predictor.schema, args.scalar), args.out)
        print(f"predicted p({args.scalar}) for {source.n_rows} galaxies -> {args.out}")
        return 0
    attrs = {
        "run": str(predictor.checkpoint),
        "input": str(args.input),
        "given": args.given or ",".join(source.inputs),
        "id_column": source.id_column or "",
    }
    write_predictions(args.out, pred, predictor.schema, source.columns, attrs)
    print(f"predicted {len(predictor.schema)} modalities for {source.n_rows} galaxies -> {args.out}")
    return 0
