"""What a benchmark writes: its JSON report, markdown tables, and its section of RESULTS.md.

Standard library only: ``benchmarks/format_results.py`` turns a GPU node's JSON into RESULTS.md
on a machine without torch, with the same section writer the benchmarks' ``--record`` uses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

RESULTS_TITLE = "# Benchmark results\n"


def _finite_json(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null so every reader can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (temporary file, then rename): a killed run leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite_json(payload), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """A markdown table of ``rows``; each column is (header, key, format spec such as ".1f").

    Missing or None values print as "-", strings print as they are.
    """
    head = "| " + " | ".join(h for h, _, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            v = row.get(key)
            if v is None:
                cells.append("-")
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and fmt:
                cells.append(format(v, fmt))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def record_section(section: str, heading: str, path: Path) -> None:
    """Replace the section under ``heading`` in RESULTS.md ``path`` (up to the next ``## ``), or append it.

    Each benchmark owns one section; the others (numbers recorded elsewhere, hand-written
    readings) are left as they are. A missing file is created with its ``# Benchmark results`` title.
    """
    path = Path(path)
    text = path.read_text() if path.exists() else RESULTS_TITLE
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("\n" + text[end + 1 :] if end >= 0 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
