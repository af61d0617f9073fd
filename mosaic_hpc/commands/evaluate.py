"""Score a trained run on a catalog split: the paper's Table 1 (MAE in physical units).

By default the paper's five input configurations (named by what is *given*) are evaluated;
--configuration adds your own, e.g. --configuration "late:given=lsst,sfh[t>=10Gyr]".
Beside MOSAIC every cell holds a task-specific baseline fitted on the catalog's train split from
exactly the values the configuration gives (a random forest per hidden scalar, kNN per hidden
vector; --baselines none turns them off) and the ratio MOSAIC / baseline: below 1, MOSAIC wins.
Gaussian-head runs also get the PIT KS distance and 68%/95% interval coverage per hidden scalar.
Writes table1.md and metrics.json into --out (default RUN/eval) and, unless --no-figures, the
Figure-2-style plots (figure2.png: predicted vs true scalars with 16-84% bands; SPHEREx, SFH and
SED reconstructions with the hidden ranges shaded; one row per configuration) and report.md,
which embeds them next to Table 1. See docs/science_outputs.md for how to read them. An earlier
report in --out is kept unless --overwrite. The split's values are checked first: inf or corrupt
values are errors naming file and row; values outside the run's training range are warnings
(errors with --strict).

Example:
  mosaic-hpc evaluate --run runs/quickstart --data catalogs/mock --max-rows 5000
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .arguments import STRICT_HELP, refuse_to_replace, require_at_least

if TYPE_CHECKING:  # typing only: the CLI must not import torch to build its parser
    from ..evaluation.baselines import BaselineSettings
    from ..evaluation.metrics import ConfigurationResult
    from ..evaluation.predictor import Predictor
    from ..evaluation.report import ReportImage


REPORT_FILES = ("table1.md", "metrics.json", "figure2.png", "report.md")


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
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace the report already in --out")
    add_baseline_arguments(p)


def add_baseline_arguments(p: argparse.ArgumentParser) -> None:
    """Baseline options shared by evaluate and quickstart."""
    from ..evaluation.baselines import BASELINE_CHOICES, BaselineSettings

    d = BaselineSettings()
    p.add_argument(
        "--baselines",
        choices=BASELINE_CHOICES,
        default=BASELINE_CHOICES[0],
        help="task-specific baselines beside MOSAIC, fitted on the train split (default: forest+knn)",
    )
    p.add_argument("--baseline-rows", type=int, default=d.max_fit_rows, help="most training rows the baselines fit")
    p.add_argument("--baseline-trees", type=int, default=d.n_trees, help=f"trees per forest (default: {d.n_trees})")


def baseline_settings(args: argparse.Namespace, threads: int = 1) -> BaselineSettings | None:
    """The --baselines options as settings (None: off); sizes are checked here, before any work."""
    from ..evaluation.baselines import BaselineSettings

    if args.baselines == "none":
        return None
    require_at_least({"--baseline-rows": (args.baseline_rows, 1), "--baseline-trees": (args.baseline_trees, 1)})
    return BaselineSettings(n_trees=args.baseline_trees, max_fit_rows=args.baseline_rows, n_jobs=max(1, threads))


def print_configuration(result: ConfigurationResult) -> None:
    """One progress line per evaluated configuration."""
    base = f", baselines fitted in {result.baseline_seconds:.1f} s" if result.baseline_seconds is not None else ""
    print(f"  {result.name}: scored {max(result.counts.values(), default=0)} values per target{base}", flush=True)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.catalog import Catalog
    from ..data.configurations import SKIPPED_NOTE, paper_configurations, parse_configuration
    from ..evaluation.metrics import evaluate, table1_markdown, units, write_table1
    from ..evaluation.predictor import load_run

    require_at_least(
        {"--max-rows": (args.max_rows, 1), "--n-plot": (args.n_plot, 1), "--batch-size": (args.batch_size, 1)}
    )
    baselines = baseline_settings(args, torch.get_num_threads())
    out = args.out or Path(args.run) / "eval"
    refuse_to_replace(out, REPORT_FILES, args.overwrite)
    predictor = load_run(args.run)
    catalog = Catalog.open(args.data, args.split)
    fit_catalog = Catalog.open(args.data, "train") if baselines is not None else None
    notes: list[str] = []
    configs = [] if args.no_paper else paper_configurations(predictor.schema, notes)
    if notes:
        print(f"{SKIPPED_NOTE}: {'; '.join(notes)}")
    configs += [parse_configuration(s, predictor.schema) for s in args.configuration]
    if not configs:
        why = "--no-paper without --configuration" if args.no_paper else "the catalog expresses none of the paper's"
        raise ValueError(f"no configuration to evaluate ({why}); name one with --configuration 'given=...'")
    results = evaluate(
        predictor,
        catalog,
        configs,
        args.max_rows,
        args.batch_size,
        keep_outputs=args.figures,
        fit_catalog=fit_catalog,
        baselines=baselines,
        on_configuration=print_configuration,
        strict=args.strict,
    )
    md, js = write_table1(results, units(predictor), out, baselines)
    print(table1_markdown(results, units(predictor)))
    print(f"wrote {md} and {js}")
    if args.figures:
        report = write_figures_and_report(predictor, results, out, args.n_plot, args.data, args.split, baselines)
        print(f"wrote {report}")
    return 0


def write_figures_and_report(
    predictor: Predictor,
    results: list[ConfigurationResult],
    out_dir: Path,
    n_plot: int,
    data: Path,
    split: str,
    baselines: BaselineSettings | None = None,
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
        "baselines": baselines.describe() if baselines is not None else "none (--baselines none)",
    }
    if baselines is not None:
        seconds = sum(r.baseline_seconds or 0.0 for r in results)
        meta["baselines"] += f"; {seconds:.0f} s to fit and predict"
    images = (ReportImage("Figure 2: predictions for each input configuration", fig2, FIGURE2_DESCRIPTION),)
    return write_report(
        report_path or out_dir / "report.md", results, units(predictor), images + tuple(extra_images), meta
    )
