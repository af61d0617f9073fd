"""Table 1 of the paper: MAE in physical units for each input configuration and target.

For every configuration the model is given only the configuration's values and predicts
everything; errors are scored on the values it was *not* given (and that exist in the catalog).
Scalars are scored per column; vectors are averaged over all hidden valid bins (the paper's
"SFH averaged over time"). A target the configuration fully gives has no entry ("-"), as in the
paper. Redshift also gets the photo-z statistics of the field: bias, sigma_NMAD and outliers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..data.catalog import Catalog
from ..data.configurations import InputConfiguration
from ..data.validation import validate_inputs
from ..schema import CatalogSchema
from .baselines import BaselineSettings, predict_baselines
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


COVERAGE_LEVELS = (0.68, 0.95)  # central interval probabilities checked for Gaussian heads


@dataclass
class ConfigurationResult:
    """Metrics of one configuration; predictions and truth kept only when asked (for figures).

    ``baseline_*`` hold the task-specific baselines' scores on the same cells (empty when
    baselines are off); ``calibration`` holds, per hidden scalar column, the PIT KS distance and
    the coverage of the central 68% and 95% intervals (Gaussian heads only).
    """

    name: str
    label: str
    spec: str
    mae: dict[str, float]
    counts: dict[str, int]
    photoz: dict[str, float] = field(default_factory=dict)
    baseline_mae: dict[str, float] = field(default_factory=dict)
    baseline_photoz: dict[str, float] = field(default_factory=dict)
    baseline_seconds: float | None = None
    calibration: dict[str, dict[str, float]] = field(default_factory=dict)
    prediction: Prediction | None = None
    truth: dict[str, np.ndarray] | None = None

    def ratio(self, key: str) -> float:
        """MOSAIC MAE over the baseline's (below 1: MOSAIC is better); NaN without a baseline."""
        b = self.baseline_mae.get(key, float("nan"))
        return self.mae[key] / b if b and np.isfinite(b) else float("nan")


def table_targets(schema: CatalogSchema) -> list[tuple[str, str, int | None]]:
    """(key, modality, column) for each Table 1 target: scalar columns, then whole vectors."""
    out = []
    for spec in schema:
        if spec.is_scalars:
            cols = spec.columns or tuple(f"{spec.name}[{i}]" for i in range(spec.length))
            out.extend((c, spec.name, i) for i, c in enumerate(cols))
        else:
            out.append((spec.name, spec.name, None))
    return out


def score_values(
    values: Mapping[str, np.ndarray],
    given: Mapping[str, np.ndarray],
    truth: Mapping[str, np.ndarray],
    schema: CatalogSchema,
) -> tuple[dict[str, float], dict[str, int], dict[str, float]]:
    """MAE per Table 1 target over the values not given and defined in the truth.

    One function scores MOSAIC and the baselines, so both are judged on identical cells.

    Returns:
        (mae, counts, photoz): MAE and number of scored values per target key, and the photo-z
        statistics of the redshift column when it was scored.
    """
    mae, counts, photoz = {}, {}, {}
    for key, name, col in table_targets(schema):
        err = np.abs(np.asarray(values[name], np.float64) - truth[name])
        scored = ~np.asarray(given[name], bool) & ~np.isnan(truth[name])
        if col is not None:
            err, scored = err[:, col], scored[:, col]
        n = int(scored.sum())
        counts[key] = n
        mae[key] = float(err[scored].mean()) if n else float("nan")
        if key == "redshift" and n:
            photoz = photoz_stats(np.asarray(values[name])[:, col][scored], truth[name][:, col][scored])
    return mae, counts, photoz


def calibration_stats(pred: Prediction, truth: Mapping[str, np.ndarray], schema: CatalogSchema) -> dict:
    """Per hidden scalar column: PIT KS distance and central 68%/95% interval coverage.

    For a calibrated predictive distribution the PITs are uniform (KS -> 0) and a central p
    interval holds the truth a fraction p of the time.
    """
    if pred.sigma is None:
        return {}
    from scipy import stats as sps

    out = {}
    for key, name, col in table_targets(schema):
        if col is None:
            continue
        scored = ~pred.given[name][:, col] & ~np.isnan(truth[name][:, col])
        if not scored.any():
            continue
        pit = pred.cdf(name, np.nan_to_num(truth[name]))[scored, col]  # the predictive CDF at the truth
        stats = {"pit_ks": float(sps.kstest(pit, "uniform").statistic), "n": int(scored.sum())}
        for level in COVERAGE_LEVELS:
            stats[f"coverage_{round(level * 100)}"] = float(np.mean(np.abs(pit - 0.5) <= level / 2))
        out[key] = stats
    return out


def evaluate_configuration(
    predictor: Predictor,
    truth: dict[str, np.ndarray],
    config: InputConfiguration,
    batch_size: int = 1024,
    keep_outputs: bool = False,
    fit_rows: Mapping[str, np.ndarray] | None = None,
    baselines: BaselineSettings | None = None,
) -> ConfigurationResult:
    """MOSAIC (and, given ``fit_rows`` and ``baselines``, the baselines) on one configuration."""
    pred = predictor.predict({k: v for k, v in truth.items()}, given=config, batch_size=batch_size)
    mae, counts, photoz = score_values(pred.values, pred.given, truth, predictor.schema)
    result = ConfigurationResult(
        name=config.name,
        label=config.label or config.name,
        spec=config.spec,
        mae=mae,
        counts=counts,
        photoz=photoz,
        calibration=calibration_stats(pred, truth, predictor.schema),
        prediction=pred if keep_outputs else None,
        truth=truth if keep_outputs else None,
    )
    if fit_rows is not None and baselines is not None:
        base = predict_baselines(config, predictor.schema, fit_rows, truth, baselines)
        b_mae, b_counts, b_photoz = score_values(base.values, base.given, truth, predictor.schema)
        if b_counts != counts:  # the same cells by construction; a difference is a bug, not noise
            raise AssertionError(f"baseline scored {b_counts}, MOSAIC {counts} in {config.name}")
        result.baseline_mae, result.baseline_photoz, result.baseline_seconds = b_mae, b_photoz, base.seconds
    return result


def evaluate(
    predictor: Predictor,
    catalog: Catalog,
    configurations: list[InputConfiguration],
    max_rows: int | None = None,
    batch_size: int = 1024,
    keep_outputs: bool = False,
    fit_catalog: Catalog | None = None,
    baselines: BaselineSettings | None = None,
    on_configuration: Callable[[ConfigurationResult], None] | None = None,
    strict: bool = False,
) -> list[ConfigurationResult]:
    """Score every configuration on the first ``max_rows`` rows of ``catalog`` (all by default).

    The rows are checked first (:func:`~mosaic_hpc.data.validation.validate_inputs`): impossible
    values are errors naming file and row; values outside the training range are warnings, errors
    with ``strict``.

    Args:
        fit_catalog: the training split the baselines are fitted on (with ``baselines``).
        baselines: baseline settings; None (or no ``fit_catalog``) scores MOSAIC alone.
        on_configuration: called after each configuration (progress lines).
        strict: out-of-range values are errors instead of warnings.
    """
    for cat in (catalog, fit_catalog):
        if cat is not None and cat.schema != predictor.schema:
            raise ValueError(
                f"{cat.paths[0]}: catalog modalities {cat.schema.lengths} differ from the run's "
                f"{predictor.schema.lengths}"
            )
    n = catalog.n_rows if max_rows is None else min(max_rows, catalog.n_rows)
    truth = catalog.read(0, n)
    validate_inputs(truth, predictor.schema, predictor.stats, catalog.paths[0], strict=strict, locate=catalog.locate)
    fit_rows = None
    if fit_catalog is not None and baselines is not None:
        fit_rows = read_fit_rows(fit_catalog, baselines)
    results = []
    for c in configurations:
        results.append(evaluate_configuration(predictor, truth, c, batch_size, keep_outputs, fit_rows, baselines))
        if on_configuration is not None:
            on_configuration(results[-1])
    return results


def read_fit_rows(catalog: Catalog, settings: BaselineSettings, chunk_rows: int = 16384) -> dict[str, np.ndarray]:
    """The baselines' fitting rows: the whole training split, or a seeded subsample of it.

    The subsample is read chunk by chunk, so memory stays at the subsample's size plus one chunk
    whatever the size of the split.
    """
    n = catalog.n_rows
    if n <= settings.max_fit_rows:
        return catalog.read(0, n)
    keep = np.zeros(n, dtype=bool)
    keep[np.random.default_rng(settings.seed).choice(n, settings.max_fit_rows, replace=False)] = True
    parts: dict[str, list[np.ndarray]] = {}
    for s in range(0, n, chunk_rows):
        block = catalog.read(s, min(s + chunk_rows, n))
        for name, x in block.items():
            parts.setdefault(name, []).append(x[keep[s : s + len(x)]])
    return {name: np.concatenate(xs) for name, xs in parts.items()}


def units(predictor: Predictor) -> dict[str, str]:
    out = {}
    for key, name, _ in table_targets(predictor.schema):
        spec = predictor.schema[name]
        out[key] = "" if key == "redshift" else spec.unit
    return out


def _cell(r: ConfigurationResult, key: str) -> str:
    if not r.counts[key]:
        return "-"
    if key not in r.baseline_mae:
        return f"{r.mae[key]:.3f}"
    return f"{r.mae[key]:.3f} / {r.baseline_mae[key]:.3f} ({r.ratio(key):.2f})"


def table1_markdown(results: list[ConfigurationResult], unit_of: dict[str, str]) -> str:
    """Paper-style Table 1: rows are input configurations, columns are targets (MAE).

    With baselines each cell reads ``MOSAIC / baseline (ratio)``; a ratio below 1 means MOSAIC
    is the better of the two on that task.
    """
    keys = list(unit_of)
    head = "| Input configuration | " + " | ".join(f"{k} ({unit_of[k]})" if unit_of[k] else k for k in keys) + " |"
    lines = [head, "|" + "---|" * (len(keys) + 1)]
    for r in results:
        lines.append(f"| {r.label} | " + " | ".join(_cell(r, k) for k in keys) + " |")
    pz = [r for r in results if r.photoz]
    if pz:
        with_base = any(r.baseline_photoz for r in pz)
        lines += ["", "| Input configuration | method | z bias | sigma_NMAD | outlier fraction (abs dz > 0.15) | N |"]
        lines.append("|---|---|---|---|---|---|")
        for r in pz:
            rows = [("MOSAIC", r.photoz)] + ([("baseline", r.baseline_photoz)] if with_base else [])
            for method, p in rows:
                lines.append(
                    f"| {r.label} | {method} | {p['bias']:+.4f} | {p['sigma_nmad']:.4f} | "
                    f"{p['outlier_fraction']:.4f} | {p['n']} |"
                )
    cal = [r for r in results if r.calibration]
    if cal:
        lines += [
            "",
            "| Input configuration | target | PIT KS | 68% coverage | 95% coverage |",
            "|---|---|---|---|---|",
        ]
        for r in cal:
            for key, c in r.calibration.items():
                lines.append(
                    f"| {r.label} | {key} | {c['pit_ks']:.3f} | {c['coverage_68']:.3f} | {c['coverage_95']:.3f} |"
                )
    return "\n".join(lines) + "\n"


def write_table1(
    results: list[ConfigurationResult],
    unit_of: dict[str, str],
    out_dir: Path,
    baselines: BaselineSettings | None = None,
) -> tuple[Path, Path]:
    """``table1.md`` and ``metrics.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "table1.md"
    md.write_text(table1_markdown(results, unit_of))
    js = out_dir / "metrics.json"
    payload = {
        "units": unit_of,
        "baselines": asdict(baselines) if baselines is not None else None,
        "configurations": [
            {
                "name": r.name,
                "label": r.label,
                "spec": r.spec,
                "mae": r.mae,
                "counts": r.counts,
                "photoz": r.photoz,
                "baseline_mae": r.baseline_mae,
                "ratio": {k: r.ratio(k) for k in r.baseline_mae if r.counts.get(k)},
                "baseline_photoz": r.baseline_photoz,
                "baseline_seconds": r.baseline_seconds,
                "calibration": r.calibration,
            }
            for r in results
        ],
    }
    js.write_text(json.dumps(payload, indent=1, allow_nan=True))
    return md, js
