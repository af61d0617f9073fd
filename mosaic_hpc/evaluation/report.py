"""``report.md``: Table 1, the configurations behind it and the figures, in one Markdown file.

Images are linked by paths relative to the report, so a run directory can be copied or
archived as a whole and its report still renders (GitHub, VS Code, pandoc).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .metrics import ConfigurationResult, table1_markdown

SFH_NOTE = (
    "Configurations are named by the SFH range that is *given*. The paper's Fig. 2 labels "
    '"early SFH (0-10 Gyr masked)" and "late SFH (10-13.8 Gyr masked)" contradict its prose, so both '
    "readings are evaluated: `lsst_sfh_0_10gyr` gives cosmic times below 10 Gyr and hides the rest; "
    "`lsst_sfh_10_13.8gyr` gives 10-13.8 Gyr and hides the earlier history."
)


@dataclass(frozen=True)
class ReportImage:
    """A figure of the report: heading, image file and a paragraph on how to read it."""

    title: str
    path: Path
    description: str = ""


def configurations_markdown(results: Sequence[ConfigurationResult]) -> str:
    """What each configuration gives the model (everything else is hidden and predicted)."""
    lines = ["| Input configuration | name | given to the model |", "|---|---|---|"]
    lines += [f"| {r.label} | `{r.name}` | `{r.spec}` |" for r in results]
    return "\n".join(lines) + "\n"


def write_report(
    path: Path,
    results: Sequence[ConfigurationResult],
    unit_of: Mapping[str, str],
    images: Sequence[ReportImage] = (),
    meta: Mapping[str, str] | None = None,
    title: str = "MOSAIC evaluation report",
) -> Path:
    """Write a Markdown report with Table 1 and the given figures.

    Args:
        path: the ``.md`` file to write; parent directories are created.
        results: one entry per input configuration (Table 1 rows).
        unit_of: unit of each Table 1 column (see :func:`~mosaic_hpc.evaluation.metrics.units`).
        images: figures, embedded in order with paths relative to ``path``.
        meta: key -> value lines shown under the title (run, checkpoint, catalog, ...).
        title: the top heading.

    Returns:
        ``path``.

    Raises:
        ValueError: no result, or an image file that does not exist or is empty (a report
            with broken images would look complete but show nothing).
    """
    if not results:
        raise ValueError("report needs at least one configuration result")
    path = Path(path)
    for img in images:
        if not Path(img.path).is_file() or Path(img.path).stat().st_size == 0:
            raise ValueError(f"report image {img.path} is missing or empty")
    parts = [f"# {title}", ""]
    if meta:
        parts += [f"- **{k}**: {v}" for k, v in meta.items()] + [""]
    parts += [
        "## Table 1: mean absolute error of the values not given",
        "",
        "Rows are input configurations, columns are targets, errors are in physical units and are scored only "
        'on values the model was not given ("-": the configuration gives that target). Vectors are averaged '
        "over all hidden, defined bins. With baselines, a cell reads `MOSAIC / baseline (ratio)`: the baseline "
        "is fitted on the training split from exactly the values the configuration gives (a random forest per "
        "hidden scalar, k-nearest neighbours per hidden vector) and scored on the same values; a ratio below 1 "
        "means MOSAIC wins that task. The next table holds the photo-z statistics of "
        "dz = (z_pred - z) / (1 + z): median bias, sigma_NMAD and the fraction with |dz| > 0.15. For a model "
        "with Gaussian heads the last table checks its uncertainties: the Kolmogorov-Smirnov distance of the "
        "PIT values from uniform (0 when calibrated) and how often the central 68% and 95% intervals hold "
        "the truth.",
        "",
        table1_markdown(list(results), dict(unit_of)),
        "### Input configurations",
        "",
        configurations_markdown(results),
        SFH_NOTE,
        "",
    ]
    for img in images:
        rel = Path(os.path.relpath(Path(img.path).resolve(), path.parent.resolve())).as_posix()
        parts += [f"## {img.title}", ""] + ([img.description, ""] if img.description else [])
        parts += [f"![{img.title}]({rel})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))
    return path
