"""Score a trained run on a catalog split: the paper's Table 1 (MAE in physical units).

By default the paper's five input configurations (named by what is *given*) are evaluated;
--configuration adds your own, e.g. --configuration "late:given=lsst,sfh[t>=10Gyr]".
Writes table1.md and metrics.json into --out (default RUN/eval).

Example:
  mosaic-hpc evaluate --run runs/quickstart --data catalogs/mock --max-rows 5000
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run directory or checkpoint directory")
    p.add_argument("--data", required=True, type=Path, help="catalog directory or file")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--out", type=Path, default=None, help="report directory (default: RUN/eval)")
    p.add_argument("--configuration", action="append", default=[], metavar="SPEC", help="extra input configuration")
    p.add_argument("--no-paper", action="store_true", help="skip the paper's five configurations")
    p.add_argument("--max-rows", type=int, default=None, help="score only the first N rows")
    p.add_argument("--batch-size", type=int, default=1024)


def run(args: argparse.Namespace) -> int:
    from ..data.catalog import Catalog
    from ..data.configurations import paper_configurations, parse_configuration
    from ..evaluation.metrics import evaluate, table1_markdown, units, write_table1
    from ..evaluation.predictor import load_run

    if args.max_rows is not None and args.max_rows < 1:
        raise ValueError("--max-rows must be >= 1")
    predictor = load_run(args.run)
    catalog = Catalog.open(args.data, args.split)
    configs = [] if args.no_paper else paper_configurations(predictor.schema)
    configs += [parse_configuration(s, predictor.schema) for s in args.configuration]
    if not configs:
        raise ValueError("no configuration to evaluate (--no-paper without --configuration)")
    results = evaluate(predictor, catalog, configs, args.max_rows, args.batch_size)
    out = args.out or Path(args.run) / "eval"
    md, js = write_table1(results, units(predictor), out)
    print(table1_markdown(results, units(predictor)))
    print(f"wrote {md} and {js}")
    return 0
