"""Predict every modality from a subset: HDF5 in, HDF5 out, physical units.

The input file holds /modalities/<name> datasets in the catalog format (only the modalities you
have; NaN = missing value; /stats not needed). --given restricts what the model sees, e.g.
--given lsst,spherex or --given "lsst,sfh[t>=10Gyr]" (default: everything in the file).
The output holds /predictions/<name> [N, L], /sigma/<name> with Gaussian heads, /given/<name>
(True where the value was an input) and the axes, written atomically.
--format qp writes instead the predictive distribution of one hidden scalar (--scalar, default
redshift) as a qp ensemble (one Gaussian per galaxy, ``qp.read(path)`` reads it; needs a run with
Gaussian heads and the 'rail' extra), the exchange format of LSST DESC RAIL.

Example:
  mosaic-hpc predict --run runs/quickstart --input my_galaxies.h5 --given lsst --out pred.h5
  mosaic-hpc predict --run runs/photoz --input dc2.h5 --given lsst,lsst_err --format qp --out pz.hdf5
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run directory or checkpoint directory")
    p.add_argument("--input", required=True, type=Path, help="HDF5 file with /modalities/<name>")
    p.add_argument("--given", default=None, help="modalities (and selections) the model may see")
    p.add_argument("--out", required=True, type=Path, help="output HDF5 file")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--format", choices=("hdf5", "qp"), default="hdf5", help="every modality (hdf5) or one qp p(x)")
    p.add_argument("--scalar", default="redshift", help="with --format qp: the scalar column (default redshift)")


def read_inputs(path: Path, schema) -> dict:
    """Modalities of the run found in an input file, checked against the run's lengths."""
    import h5py
    import numpy as np

    from ..data.catalog import CatalogError, _open_h5

    with _open_h5(path) as f:
        if "modalities" not in f:
            raise CatalogError(path, "/modalities", "missing group")
        inputs = {}
        for name, ds in f["modalities"].items():
            if name not in schema:
                raise CatalogError(path, f"/modalities/{name}", f"not a modality of this run {list(schema.names)}")
            if not isinstance(ds, h5py.Dataset) or ds.ndim != 2 or ds.shape[1] != schema[name].length:
                shape = getattr(ds, "shape", None)
                raise CatalogError(path, f"/modalities/{name}", f"shape {shape}, expected [N, {schema[name].length}]")
            inputs[name] = np.asarray(ds[()], dtype=np.float32)
    if not inputs:
        raise CatalogError(path, "/modalities", "holds no modality")
    return inputs


def run(args: argparse.Namespace) -> int:
    import h5py
    import numpy as np

    from ..evaluation.predictor import load_run

    if args.out.exists() and not args.overwrite:
        raise ValueError(f"{args.out} exists; pass --overwrite to replace it")
    predictor = load_run(args.run)
    inputs = read_inputs(args.input, predictor.schema)
    pred = predictor.predict(inputs, given=f"given={args.given}" if args.given else None, batch_size=args.batch_size)
    if args.format == "qp":
        from ..evaluation.pdf import scalar_ensemble, write_ensemble

        write_ensemble(scalar_ensemble(pred, predictor.schema, args.scalar), args.out)
        print(f"predicted p({args.scalar}) for {len(pred.given[predictor.schema.names[0]])} galaxies -> {args.out}")
        return 0
    tmp = args.out.with_name(args.out.name + ".tmp")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["run"] = str(predictor.checkpoint)
            f.attrs["input"] = str(args.input)
            f.attrs["given"] = args.given or ",".join(inputs)
            for spec in predictor.schema:
                d = f.create_dataset(f"predictions/{spec.name}", data=pred.values[spec.name])
                d.attrs["unit"] = spec.unit
                if spec.columns:
                    d.attrs["columns"] = list(spec.columns)
                f.create_dataset(f"given/{spec.name}", data=pred.given[spec.name])
                if pred.sigma is not None:
                    f.create_dataset(f"sigma/{spec.name}", data=pred.sigma[spec.name])
                if spec.axis:
                    f.create_dataset(f"axes/{spec.name}", data=np.asarray(spec.axis)).attrs["unit"] = spec.axis_unit
        os.replace(tmp, args.out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    n = next(iter(inputs.values())).shape[0]
    print(f"predicted {len(predictor.schema)} modalities for {n} galaxies -> {args.out}")
    return 0
