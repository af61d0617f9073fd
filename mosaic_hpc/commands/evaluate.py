"""Score a trained run on a catalog split: the paper's Table 1 (MAE in physical units).

By default the paper's five input configurations (named by what is *given*) are evaluated;
--configuration adds your own, e.g. --configuration "late:given=lsst,sfh[t>=10Gyr]".
Writes table1.md and metrics.json into --out (default RUN/eval) and, unless --no-figures, the
Figure-2-style plots (figure2.png: predicted vs true scalars with 16-84% bands; SPHEREx, SFH and
SED reconstructions with the hidden ranges shaded; one row per configuration) and report.md,
which embeds them next to Table 1. See docs/science_outputs.md for how to read them.

Example:
  mosaic-hpc evaluate --run runs/quickstart --data catalogs/mock --max-rows 5000
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # typing only: the CLI must not import torch to build its parser
    from ..evaluation.metrics import ConfigurationResult
    from ..evaluation.predictor import Predictor
    from ..evaluation.report import ReportImage


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run directory or checkpoint directory")
    p.add_argument("--data", required=True, type=Path, help="catalog directory or file")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--out", type=Path, default=None, help="report directory (default: RUN/eval)")
    p.add_argument("--configuration", action="append", default=[], metavar="SPEC", help="extra input configuration")
    p.add_argument("--no-paper", action="store_true", help="skip the paper's five configurations")
    p.add_argument("--max-rows", type=int, default=None, help="score only the first N rows")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument(
        "--figures",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write figure2.png and report.md (default: on)",
    )
    p.add_argument("--n-plot", type=int, default=1000, help="galaxies per scatter panel (default: 1000, as the paper)")


def run(args: argparse.Namespace) -> int:
    from ..data.catalog import Catalog
    from ..data.configurations import SKIPPED_NOTE, paper_configurations, parse_configuration
    from ..evaluation.metrics import evaluate, table1_markdown, units, write_table1
    from ..evaluation.predictor import load_run

    if args.max_rows is not None and args.max_rows < 1:
        raise ValueError("--max-rows must be >= 1")
    if args.n_plot < 1:
        raise ValueError(f"--n-plot must be >= 1, got {args.n_plot}")
    predictor = load_run(args.run)
    catalog = Catalog.open(args.data, args.split)
    notes: list[str] = []
    configs = [] if args.no_paper else paper_configurations(predictor.schema, notes)
    if notes:
        print(f"{SKIPPED_NOTE}: {'; '.join(notes)}")
    configs += [parse_configuration(s, predictor.schema) for s in args.configuration]
    if not configs:
        why = "--no-paper without --configuration" if args.no_paper else "the catalog expresses none of the paper's"
        raise ValueError(f"no configuration to evaluate ({why}); name one with --configuration 'given=...'")
    results = evaluate(predictor, catalog, configs, args.max_rows, args.batch_size, keep_outputs=args.figures)
    out = args.out or Path(args.run) / "eval"
    md, js = write_table1(results, units(predictor), out)
    print(table1_markdown(results, units(predictor)))
    print(f"wrote {md} and {js}")
    if args.figures:
        report = write_figures_and_report(predictor, results, out, args.n_plot, args.data, args.split)
        print(f"wrote {report}")
    return 0


def write_figures_and_report(
    predictor: Predictor,
    results: list[ConfigurationResult],
    out_dir: Path,
    n_plot: int,
    data: Path,
    split: str,
    extra_images: Sequence[ReportImage] = (),
    report_path: Path | None = None,
) -> Path:
    """figure2.png in ``out_dir`` and a report.md embedding it (and ``extra_images``) with Table 1.

    Shared with ``mosaic-hpc quickstart``, which adds the UMAP figure and puts the report at the
    top of the run directory.

    Returns:
        The report's path (``report_path``, default ``out_dir/report.md``).
    """
    from ..evaluation.figures import FIGURE2_DESCRIPTION, plot_figure2
    from ..evaluation.metrics import units
    from ..evaluation.report import ReportImage, write_report

    fig2 = plot_figure2(results, predictor.schema, out_dir / "figure2.png", n_plot=n_plot)
    n_rows = next(iter(results[0].truth.values())).shape[0]
    meta = {
        "checkpoint": str(predictor.checkpoint),
        "catalog": f"{data} (split {split}, {n_rows} galaxies scored)",
        "model": f"{predictor.config.name}: {predictor.model.num_params():,} parameters",
    }
    images = (ReportImage("Figure 2: predictions for each input configuration", fig2, FIGURE2_DESCRIPTION),)
    return write_report(
        report_path or out_dir / "report.md", results, units(predictor), images + tuple(extra_images), meta
    )
