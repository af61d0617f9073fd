"""Turn benchmark JSON reports into the markdown of benchmarks/RESULTS.md.

The JSON written by ``mosaic-hpc bench throughput`` or ``mosaic-hpc bench scaling`` holds the
command, machine, date, load and every measurement; this prints the same section the benchmark
printed when it ran (command, machine, peak, the table and the summary), under a heading, so a
run on a machine without this checkout's write access (a GPU node) is recorded by copying its
JSON back and running:

    python benchmarks/format_results.py throughput_h100.json --heading "## Throughput (H100, bf16)" --record

``--record`` replaces the section under that heading in benchmarks/RESULTS.md (or appends it, or
creates the file with its ``# Benchmark results`` title), leaving every other section alone.

Only the standard library and the (lightly importing) benchmark modules are needed: no torch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, when not pip-installed

from mosaic_hpc.bench import scaling, throughput
from mosaic_hpc.bench.report import record_section as record  # the writer of every benchmark's --record

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
FORMATTERS = {throughput.BENCHMARK: throughput.format_markdown, scaling.BENCHMARK: scaling.format_markdown}


def format_report(report: dict) -> str:
    """Markdown for one report: the command that produced it, then its section.

    Raises:
        ValueError: the JSON is not a report of a known benchmark.
    """
    kind = report.get("benchmark") if isinstance(report, dict) else None
    if kind not in FORMATTERS:
        raise ValueError(f"not a benchmark report (benchmark={kind!r}); known: {sorted(FORMATTERS)}")
    lines = [f"- command: `{report['machine'].get('command', 'unknown')}`"]
    lines.append(FORMATTERS[kind](report))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("reports", nargs="+", type=Path, help="JSON files written by mosaic-hpc bench")
    p.add_argument("--heading", default=None, help="markdown heading put above the reports, e.g. '## Throughput'")
    p.add_argument(
        "--record", nargs="?", const=RESULTS, default=None, type=Path, help=f"write the section into {RESULTS}"
    )
    args = p.parse_args(argv)
    if args.record and not (args.heading or "").startswith("## "):
        print("format_results.py: --record needs a --heading starting with '## '", file=sys.stderr)
        return 2
    sections = []
    for path in args.reports:
        try:
            sections.append(format_report(json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError, ValueError) as err:
            print(f"format_results.py: {path}: {err}", file=sys.stderr)
            return 2
    text = "\n".join(([args.heading, ""] if args.heading else []) + sections)
    if args.record:
        record(text, args.heading, args.record)
        print(f"wrote the '{args.heading}' section of {args.record}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
