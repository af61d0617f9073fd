"""UMAP of the last hidden states, one panel per input configuration (the paper's Fig. 3).

For each galaxy and modality, the encoder's last hidden states of the modality's tokens are
averaged; one UMAP per configuration maps them to 2-D. Points are coloured by the normalised
true value of a scalar column (--color-by), and each modality is outlined by its convex hull over
the points inside the 0.1-99.9 percentile range in x and y. By default the paper's five
configurations are drawn; --configuration (repeatable) draws exactly the ones you name instead.
The coordinates are saved beside the plot (same name, .npz). UMAP on 10,000 galaxies x 5
modalities takes a few minutes per panel on a laptop core; --n and --umap-epochs trade detail
for time. See docs/science_outputs.md.

Example:
  mosaic-hpc embed --run runs/quickstart --data runs/quickstart/catalog --out umap.png --n 2000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .arguments import STRICT_HELP, require_at_least


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run directory or checkpoint directory")
    p.add_argument("--data", required=True, type=Path, help="catalog directory or file")
    p.add_argument("--out", required=True, type=Path, help="plot file (.png, .pdf or .svg); coordinates go to .npz")
    p.add_argument("--split", default="test", help="split to embed (default: test)")
    p.add_argument("--color-by", default="redshift", help="scalar column colouring the points (default: redshift)")
    p.add_argument("--n", type=int, default=10000, help="galaxies, the first N of the split (default: 10000)")
    p.add_argument(
        "--configuration", action="append", default=[], metavar="SPEC", help="panel configuration (repeatable)"
    )
    p.add_argument("--seed", type=int, default=0, help="UMAP seed (default: 0)")
    p.add_argument("--umap-epochs", type=int, default=None, help="UMAP epochs (default: umap-learn's choice)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)


def run(args: argparse.Namespace) -> int:
    from ..data.catalog import Catalog
    from ..data.configurations import SKIPPED_NOTE, paper_configurations, parse_configuration
    from ..data.validation import validate_inputs
    from ..evaluation.embedding import scalar_column, write_embedding
    from ..evaluation.predictor import load_run

    require_at_least({"--n": (args.n, 2), "--umap-epochs": (args.umap_epochs, 1), "--batch-size": (args.batch_size, 1)})
    if args.out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise ValueError(f"--out {args.out}: use a .png, .pdf or .svg file")
    predictor = load_run(args.run)
    scalar_column(predictor.schema, args.color_by)  # fail before reading data or importing UMAP
    configs = [parse_configuration(s, predictor.schema) for s in args.configuration]
    notes: list[str] = []
    configs = configs or paper_configurations(predictor.schema, notes)
    if notes:
        print(f"{SKIPPED_NOTE}: {'; '.join(notes)}")
    if not configs:
        raise ValueError("no configuration to embed: the catalog cannot express the paper's; pass --configuration")
    catalog = Catalog.open(args.data, args.split)
    if catalog.schema != predictor.schema:
        raise ValueError(f"{args.data}: catalog modalities differ from the run's {predictor.schema.lengths}")
    truth = catalog.read(0, min(args.n, catalog.n_rows))
    validate_inputs(truth, predictor.schema, predictor.stats, args.data, strict=args.strict, locate=catalog.locate)
    t0 = time.perf_counter()
    n = next(iter(truth.values())).shape[0]
    print(f"embedding {n} galaxies x {len(predictor.schema)} modalities, {len(configs)} configurations", flush=True)

    def on_panel(name: str) -> None:
        print(f"  {name}: done ({time.perf_counter() - t0:.0f} s)", flush=True)

    png, npz = write_embedding(
        predictor, truth, configs, args.out, args.color_by, args.seed, args.umap_epochs, args.batch_size, on_panel
    )
    print(f"wrote {png} and {npz}")
    return 0
