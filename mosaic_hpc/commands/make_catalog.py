"""Generate a mock galaxy catalog (HDF5) from halos to spectra, in the format of docs/catalog_format.md.

Halos are drawn from the Tinker+08 mass function (Planck18) over 0 < z < 3, given stellar masses
(Behroozi+13), log-normal star-formation histories with downsizing and quenching, BC03 spectra
with nebular emission, Calzetti dust and Inoue+14 IGM absorption, then LSST ugrizy and 102
SPHEREx magnitudes with LSST 10-year / SPHEREx all-sky noise, and selected at i < 25.3.
Writes DIR/train.h5, DIR/val.h5 and DIR/test.h5, or under MPI (mpiexec -n K mosaic-hpc
make-catalog ...) one shard per rank in DIR/train/, DIR/val/ and DIR/test/. Training validates on
val (train.eval_every); evaluate reports test. The split is seeded by --seed: one permutation
picks the test rows, then the validation rows. See docs/mock_catalog.md for every choice.

One-time tables are cached in $MOSAIC_CACHE_DIR (default ~/.cache/mosaic-hpc).

examples:
  mosaic-hpc make-catalog --n-galaxies 20000 --out data/mock
  mosaic-hpc make-catalog --n-galaxies 100000 --out data/mock_survey --variant survey
  mpiexec -n 8 mosaic-hpc make-catalog --n-galaxies 2000000 --out data/mock --seed 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.mock.config import NOISE_MODELS
from ..data.mock.variants import VARIANTS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--n-galaxies", type=int, required=True, help="galaxies written after the cut (train + val + test)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed -> same catalog")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of the validation split (default 0.1)")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="share of the test split (default 0.1)")
    parser.add_argument(
        "--noise",
        choices=NOISE_MODELS,
        default="lsst10",
        help="photometric noise: LSST 10-year + SPHEREx all-sky depths (default), or none (truth)",
    )
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="default",
        help="recipe: default, or survey (per-galaxy randomised dust, IGM, emission lines and stellar "
        "populations; photerr LSST noise): a stand-in for survey photometry, see docs/mock_catalog.md",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the catalog in a non-empty --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..data.mock import make_mock_catalog
    from ..data.mock.generator import world_comm

    comm = world_comm()
    written = make_mock_catalog(
        args.out,
        args.n_galaxies,
        seed=args.seed,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        noise=args.noise,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        comm=comm,
        variant=args.variant,
    )
    if comm is None or comm.Get_rank() == 0:
        where = args.out if comm is not None else ", ".join(str(p) for ps in written.values() for p in ps)
        print(f"make-catalog: wrote {args.n_galaxies} galaxies (seed {args.seed}) to {where}")
    return 0
