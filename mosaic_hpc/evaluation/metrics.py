"""Table 1 of the paper: MAE in physical units for each input configuration and target.

For every configuration the model is given only the configuration's values and predicts
everything; errors are scored on the values it was *not* given (and that exist in the catalog).
Scalars are scored per column; vectors are averaged over all hidden valid bins (the paper's
"SFH averaged over time"). A target the configuration fully gives has no entry ("-"), as in the
paper. Redshift also gets the photo-z statistics of the field: bias, sigma_NMAD and outliers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.catalog import Catalog
from ..data.configurations import InputConfiguration
from .predictor import Prediction, Predictor

OUTLIER_DZ = 0.15  # |dz|/(1+z) above which a photo-z is an outlier (LSST SRD convention)


def photoz_stats(z_pred: np.ndarray, z_true: np.ndarray) -> dict[str, float]:
    """Bias, sigma_NMAD and outlier fraction of dz = (z_pred - z) / (1 + z).

    sigma_NMAD = 1.4826 median(|dz - median(dz)|) is robust to outliers; bias is median(dz).
    """
    dz = (np.asarray(z_pred, np.float64) - z_true) / (1.0 + z_true)
    if dz.size == 0:
        return {}
    med = float(np.median(dz))
    return {
        "bias": med,
        "sigma_nmad": float(1.4826 * np.median(np.abs(dz - med))),
        "outlier_fraction": float(np.mean(np.abs(dz) > OUTLIER_DZ)),
        "n": int(dz.size),
    }


@dataclass
class ConfigurationResult:
    """Metrics of one configuration; predictions and truth kept only when asked (for figures)."""

    name: str
    label: str
    spec: str
    mae: dict[str, float]
    counts: dict[str, int]
    photoz: dict[str, float] = field(default_factory=dict)
    prediction: Prediction | None = None
    truth: dict[str, np.ndarray] | None = None


def _targets(predictor: Predictor) -> list[tuple[str, str, int | None]]:
    """(key, modality, column) for each Table 1 target: scalar columns, then whole vectors."""
    out = []
    for spec in predictor.schema:
        if spec.is_scalars:
            cols = spec.columns or tuple(f"{spec.name}[{i}]" for i in range(spec.length))
            out.extend((c, spec.name, i) for i, c in enumerate(cols))
        else:
            out.append((spec.name, spec.name, None))
    return out


def evaluate_configuration(
    predictor: Predictor,
    truth: dict[str, np.ndarray],
    config: InputConfiguration,
    batch_size: int = 1024,
    keep_outputs: bool = False,
) -> ConfigurationResult:
    pred = predictor.predict({k: v for k, v in truth.items()}, given=config, batch_size=batch_size)
    mae, counts = {}, {}
    photoz: dict[str, float] = {}
    for key, name, col in _targets(predictor):
        err = np.abs(pred.values[name] - truth[name])
        scored = ~pred.given[name] & ~np.isnan(truth[name])
        if col is not None:
            err, scored = err[:, col], scored[:, col]
        n = int(scored.sum())
        counts[key] = n
        mae[key] = float(err[scored].mean()) if n else float("nan")
        if key == "redshift" and n:
            photoz = photoz_stats(pred.values[name][:, col][scored], truth[name][:, col][scored])
    return ConfigurationResult(
        name=config.name,
        label=config.label or config.name,
        spec=config.spec,
        mae=mae,
        counts=counts,
        photoz=photoz,
        prediction=pred if keep_outputs else None,
        truth=truth if keep_outputs else None,
    )


def evaluate(
    predictor: Predictor,
    catalog: Catalog,
    configurations: list[InputConfiguration],
    max_rows: int | None = None,
    batch_size: int = 1024,
    keep_outputs: bool = False,
) -> list[ConfigurationResult]:
    """Score every configuration on the first ``max_rows`` rows of ``catalog`` (all by default)."""
    if catalog.schema != predictor.schema:
        raise ValueError(
            f"{catalog.paths[0]}: catalog modalities {catalog.schema.lengths} differ from the run's "
            f"{predictor.schema.lengths}"
        )
    n = catalog.n_rows if max_rows is None else min(max_rows, catalog.n_rows)
    truth = catalog.read(0, n)
    return [evaluate_configuration(predictor, truth, c, batch_size, keep_outputs) for c in configurations]


def units(predictor: Predictor) -> dict[str, str]:
    out = {}
    for key, name, _ in _targets(predictor):
        spec = predictor.schema[name]
        out[key] = "" if key == "redshift" else spec.unit
    return out


def table1_markdown(results: list[ConfigurationResult], unit_of: dict[str, str]) -> str:
    """Paper-style Table 1: rows are input configurations, columns are targets (MAE)."""
    keys = list(unit_of)
    head = "| Input configuration | " + " | ".join(f"{k} ({unit_of[k]})" if unit_of[k] else k for k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for r in results:
        cells = [f"{r.mae[k]:.3f}" if r.counts[k] else "-" for k in keys]
        lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
    pz = [r for r in results if r.photoz]
    if pz:
        lines += [
            "",
            "| Input configuration | z bias | sigma_NMAD | outlier fraction (abs dz > 0.15) | N |",
            "|---|---|---|---|---|",
        ]
        for r in pz:
            p = r.photoz
            lines.append(
                f"| {r.label} | {p['bias']:+.4f} | {p['sigma_nmad']:.4f} | {p['outlier_fraction']:.4f} | {p['n']} |"
            )
    return "\n".join(lines) + "\n"


def write_table1(results: list[ConfigurationResult], unit_of: dict[str, str], out_dir: Path) -> tuple[Path, Path]:
    """``table1.md`` and ``metrics.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "table1.md"
    md.write_text(table1_markdown(results, unit_of))
    js = out_dir / "metrics.json"
    payload = {
        "units": unit_of,
        "configurations": [
            {"name": r.name, "label": r.label, "spec": r.spec, "mae": r.mae, "counts": r.counts, "photoz": r.photoz}
            for r in results
        ],
    }
    js.write_text(json.dumps(payload, indent=1, allow_nan=True))
    return md, js
