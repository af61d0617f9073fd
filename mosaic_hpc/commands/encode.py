"""Per-modality and pooled embeddings of a catalog split, written to HDF5 for downstream science.

For each galaxy the model is given --given's values; for every modality the encoder's last
hidden states of its tokens are averaged (/embeddings/<modality>, [N, d_model]) and the
per-modality means are averaged again, each modality weighted equally (/pooled). /row holds the
split's row index. Rows are read, encoded and written --chunk-rows at a time into preallocated
datasets; the file is written beside --out and renamed into place. See docs/lifecycle.md.

Examples:
  mosaic-hpc encode --model models/mosaic-small --data catalogs/mine --given lsst --out emb.h5
  mosaic-hpc encode --run runs/quickstart --data runs/quickstart/catalog --split test --given lsst,sed --out emb.h5

For a directory of shards on many ranks, see `mosaic-hpc encode-shards`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .arguments import add_model_source, refuse_to_replace, require_at_least


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_source(p)
    p.add_argument("--data", required=True, type=Path, help="catalog directory or file")
    p.add_argument("--split", default="test", help="split to encode (default: test)")
    p.add_argument("--given", required=True, metavar="SPEC", help='values the model sees, e.g. "lsst" or "lsst,sfh"')
    p.add_argument("--out", required=True, type=Path, help="HDF5 file to write")
    p.add_argument("--chunk-rows", type=int, default=8192, help="galaxies per read/write chunk (default: 8192)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.catalog import Catalog
    from ..data.configurations import parse_configuration
    from ..evaluation.predictor import load_run
    from ..lifecycle.encode import encode_catalog

    require_at_least({"--chunk-rows": (args.chunk_rows, 1), "--batch-size": (args.batch_size, 1)})
    refuse_to_replace(args.out.parent, [args.out.name], args.overwrite)
    source = args.run or args.model
    predictor = load_run(source)
    configuration = parse_configuration(args.given, predictor.schema)
    catalog = Catalog.open(args.data, args.split)
    with tqdm(total=catalog.n_rows, unit="gal", desc="encode", disable=args.no_progress, mininterval=0.5) as bar:
        out = encode_catalog(
            predictor,
            catalog,
            configuration,
            args.out,
            chunk_rows=args.chunk_rows,
            batch_size=args.batch_size,
            on_chunk=bar.update,
            attrs={"model": str(source), "split": args.split},
        )
    print(f"wrote {out}: {catalog.n_rows} galaxies x {len(predictor.schema)} modalities + pooled")
    return 0
