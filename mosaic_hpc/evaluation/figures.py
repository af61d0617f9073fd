"""Figure 2 of the paper: predictions against truth, one row per input configuration.

Each row is one input configuration (Sec. 3, Fig. 2). Scalar columns (redshift, halo mass,
stellar mass) are scatter plots of predicted against true values for ``n_plot`` galaxies, with the
16-84% band of the prediction in bins of the truth (the +-1 sigma spread of what the model
returns for galaxies of a given true value) and the MAE of every scored galaxy annotated. Vector
columns (SPHEREx, SFH, SED) show three galaxies, truth as light solid lines and predictions as
dark dotted lines as in the paper; the ranges the model was *not* given are shaded, so a
reconstruction can be read as cross-modal (all shaded) or as in-painting (part shaded).

Only values the configuration did not give are scored or drawn in scatter panels: a scalar the
configuration gives is a copy, not a prediction, and its panel says so (Table 1's "-").

matplotlib is imported inside the functions (Agg backend, no display needed), so importing this
module stays cheap for the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.configurations import parse_configuration
from ..schema import CatalogSchema, ModalitySpec
from .metrics import ConfigurationResult

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes

# The paper's reconstruction columns (Fig. 2), drawn when the catalog has them.
PAPER_VECTORS: tuple[str, ...] = ("spherex", "sfh", "sed")
N_SAMPLES = 3  # galaxies per reconstruction panel, as in the paper's Fig. 2
BAND_PERCENTILES = (16.0, 50.0, 84.0)  # +-1 sigma band and median, Fig. 2
MIN_PER_BIN = 5  # bins with fewer galaxies give no band: their percentiles would be noise

# Axis labels with units for the paper's quantities; other columns fall back to their names.
SCALAR_LABELS: dict[str, str] = {
    "redshift": "redshift z",
    "log10_halo_mass": r"$\log_{10} M_{\rm halo}$ [M$_\odot$]",
    "log10_stellar_mass": r"$\log_{10} M_\star$ [M$_\odot$]",
}
VALUE_LABELS: dict[str, str] = {
    "AB mag": "magnitude [AB mag]",
    "log10 Msun/yr": r"$\log_{10}$ SFR [M$_\odot$ yr$^{-1}$]",
    "log10 Jy": r"$\log_{10} f_\nu$ [Jy]",
}
TITLES: dict[str, str] = {"spherex": "SPHEREx", "sfh": "SFH", "sed": "SED", "lsst": "LSST", "scalars": "Scalars"}
MICRON_ABOVE_A = 5000.0  # wavelength axes starting redward of this are shown in micron (infrared)


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend (files only; works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def running_percentiles(
    truth: np.ndarray,
    pred: np.ndarray,
    n_bins: int = 20,
    percentiles: Sequence[float] = BAND_PERCENTILES,
    min_count: int = MIN_PER_BIN,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentiles of ``pred`` in equal-width bins of ``truth``: the band of Fig. 2.

    Binning in the *truth* answers "for galaxies that really have value x, what does the model
    say?", which is what a predicted-vs-true diagram is read for; binning in the prediction would
    mix in the prior of the training set. The bins span the 0.5-99.5 percentile range of the
    truth, so a few extreme galaxies do not stretch them into empty bins.

    Args:
        truth: true values, [N] (physical units); NaN entries are ignored with their partner.
        pred: predicted values, [N], same units.
        n_bins: number of bins.
        percentiles: percentiles (0-100) of the prediction to return per bin.
        min_count: bins with fewer galaxies get NaN.

    Returns:
        ``(centers [n_bins], values [len(percentiles), n_bins])``; NaN where a bin has fewer
        than ``min_count`` galaxies.

    Raises:
        ValueError: shapes differ or n_bins < 1.
    """
    truth, pred = np.asarray(truth, np.float64).ravel(), np.asarray(pred, np.float64).ravel()
    if truth.shape != pred.shape:
        raise ValueError(f"truth has {truth.size} values but pred has {pred.size}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    ok = np.isfinite(truth) & np.isfinite(pred)
    truth, pred = truth[ok], pred[ok]
    values = np.full((len(percentiles), n_bins), np.nan)
    if truth.size == 0:
        return np.full(n_bins, np.nan), values
    lo, hi = np.percentile(truth, [0.5, 99.5])
    if hi <= lo:  # all galaxies share one value: one wide bin around it
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, n_bins + 1)
    centers = 0.5 * (edges[:-1] + edges[1:])
    idx = np.clip(np.digitize(truth, edges) - 1, 0, n_bins - 1)
    inside = (truth >= lo) & (truth <= hi)
    for b in range(n_bins):
        sel = inside & (idx == b)
        if sel.sum() >= min_count:
            values[:, b] = np.percentile(pred[sel], percentiles)
    return centers, values


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges ``[start, stop)`` of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    change = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(change[0::2].tolist(), change[1::2].tolist()))


def display_axis(spec: ModalitySpec) -> tuple[np.ndarray, str, bool]:
    """Coordinates, label (with unit) and log-scale flag for a vector modality's x axis.

    Infrared photometry (SPHEREx, 0.75-5 micron) reads naturally in micron; the rest-frame SED
    spans 0.1-5 micron in log bins, so it is shown in Angstrom on a log axis; SFHs run on cosmic
    time in Gyr.
    """
    x = spec.axis_array()
    if spec.axis_quantity == "cosmic_time":
        return x, f"cosmic time [{spec.axis_unit or 'Gyr'}]", False
    if spec.axis_quantity == "wavelength":
        scale = {"nm": 10.0, "um": 1e4, "micron": 1e4}.get(spec.axis_unit.lower(), 1.0)  # -> Angstrom
        x_a = x * scale
        frame = "rest-frame " if spec.name == "sed" else ""
        if x_a.min() >= MICRON_ABOVE_A:
            return x_a / 1e4, rf"{frame}wavelength [$\mu$m]", False
        return x_a, rf"{frame}wavelength [$\AA$]", True
    return x, "index", False


def value_label(spec: ModalitySpec) -> str:
    return VALUE_LABELS.get(spec.unit, spec.unit or "value")


def scalar_label(column: str) -> str:
    return SCALAR_LABELS.get(column, column.replace("_", " "))


def _scalar_columns(schema: CatalogSchema) -> list[tuple[str, int, str]]:
    """(modality, column index, column name) of every scalar column."""
    out = []
    for spec in schema:
        if spec.is_scalars:
            cols = spec.columns or tuple(f"{spec.name}[{i}]" for i in range(spec.length))
            out.extend((spec.name, i, c) for i, c in enumerate(cols))
    return out


def scatter_panel(
    ax: Axes,
    truth: np.ndarray,
    pred: np.ndarray,
    label: str,
    mae: float,
    n_plot: int,
    rng: np.random.Generator,
) -> None:
    """Predicted vs true for one scalar: ``n_plot`` points, 1:1 line, 16-84% band, MAE.

    The band and the MAE use every scored galaxy; only the scatter is thinned to ``n_plot`` so
    that dense panels stay readable (the paper shows 1000 galaxies).
    """
    ok = np.isfinite(truth) & np.isfinite(pred)
    truth, pred = truth[ok], pred[ok]
    if truth.size == 0:
        _note(ax, "no scored values")
        return
    show = rng.choice(truth.size, min(n_plot, truth.size), replace=False)
    ax.scatter(truth[show], pred[show], s=3, alpha=0.4, color="tab:blue", linewidths=0, rasterized=True)
    centers, (p16, p50, p84) = running_percentiles(truth, pred)
    good = np.isfinite(p50)
    ax.fill_between(centers[good], p16[good], p84[good], color="tab:orange", alpha=0.3, label="16-84%")
    ax.plot(centers[good], p50[good], color="tab:orange", lw=1.2)
    lo, hi = np.percentile(np.concatenate([truth, pred]), [0.5, 99.5])
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.3", lw=0.8, ls="--")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel(f"true {label}")
    ax.set_ylabel(f"predicted {label}")
    ax.text(0.04, 0.94, f"MAE = {mae:.3f}", transform=ax.transAxes, va="top", fontsize=8)


def vector_panel(
    ax: Axes,
    spec: ModalitySpec,
    truth: np.ndarray,
    pred: np.ndarray,
    given: np.ndarray,
    mae: float | None,
) -> None:
    """Truth (light solid) and prediction (dark dotted) of a few galaxies; not-given ranges shaded.

    Args:
        ax: target axes.
        spec: the modality (axis, units).
        truth: [k, L] true values of the galaxies drawn; NaN (e.g. SFH after the galaxy's
            cosmic time) is left out of the line.
        pred: [k, L] predictions, same units.
        given: [L] True where the configuration gives the value to the model.
        mae: the configuration's MAE over all hidden values (annotated), or None when all given.
    """
    x, xlabel, logx = display_axis(spec)
    # tab20 holds (dark, light) pairs of one hue: light for truth, dark for prediction.
    import matplotlib

    colors = matplotlib.colormaps["tab20"].colors
    order = np.argsort(x)
    for k in range(truth.shape[0]):
        dark, light = colors[(2 * k) % 20], colors[(2 * k + 1) % 20]
        t = np.where(np.isfinite(truth[k]), pred[k], np.nan)  # draw predictions only where truth exists
        ax.plot(x[order], truth[k][order], color=light, lw=2.0, solid_capstyle="round")
        ax.plot(x[order], t[order], color=dark, lw=1.3, ls=":")
    for start, stop in _spans(~given[order]):
        xs = x[order]
        left = xs[start] if start == 0 else 0.5 * (xs[start - 1] + xs[start])
        right = xs[stop - 1] if stop == len(xs) else 0.5 * (xs[stop - 1] + xs[stop])
        ax.axvspan(left, right, color="0.85", zorder=0, lw=0)
    if logx:
        ax.set_xscale("log")
    if spec.unit == "AB mag":
        ax.invert_yaxis()  # brighter up
    ax.set_xlabel(xlabel)
    ax.set_ylabel(value_label(spec))
    if mae is not None:
        ax.text(0.04, 0.94, rf"$\overline{{\rm MAE}}$ = {mae:.3f}", transform=ax.transAxes, va="top", fontsize=8)


def _note(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def sample_rows(truth: dict[str, np.ndarray], vectors: Sequence[str], n: int, seed: int) -> np.ndarray:
    """``n`` galaxies to draw in every reconstruction panel (the same ones in every row).

    Galaxies with at least half of every drawn vector defined are preferred, so an SFH sample is
    not a galaxy seen at z = 3 with a handful of bins.
    """
    n_rows = next(iter(truth.values())).shape[0]
    ok = np.ones(n_rows, bool)
    for name in vectors:
        ok &= np.isfinite(truth[name]).mean(axis=1) >= 0.5
    pool = np.flatnonzero(ok) if ok.sum() >= n else np.arange(n_rows)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, min(n, pool.size), replace=False))


def plot_figure2(
    results: Sequence[ConfigurationResult],
    schema: CatalogSchema,
    out_path: Path,
    n_plot: int = 1000,
    vectors: Sequence[str] = PAPER_VECTORS,
    seed: int = 0,
    dpi: int = 110,
) -> Path:
    """Write the Fig. 2 grid: rows = configurations, columns = scalar columns then vectors.

    Args:
        results: from :func:`~mosaic_hpc.evaluation.metrics.evaluate` with ``keep_outputs=True``.
        schema: the run's catalog schema (units, axes, column names).
        out_path: PNG (or any matplotlib format) to write; parents are created.
        n_plot: galaxies per scatter panel (the paper uses 1000).
        vectors: vector modalities to draw, those absent from the schema are skipped.
        seed: picks the scatter subsample and the three reconstruction galaxies.
        dpi: resolution of the file.

    Returns:
        ``out_path``.

    Raises:
        ValueError: no result, a result without kept outputs, or n_plot < 1.
    """
    if not results:
        raise ValueError("no configuration result to plot")
    if n_plot < 1:
        raise ValueError(f"--n-plot must be >= 1, got {n_plot}")
    if any(r.prediction is None or r.truth is None for r in results):
        raise ValueError("figures need predictions: call evaluate(..., keep_outputs=True)")
    plt = pyplot()
    scalars = _scalar_columns(schema)
    vecs = [v for v in vectors if v in schema and not schema[v].is_scalars]
    n_cols = len(scalars) + len(vecs)
    fig, axes = plt.subplots(
        len(results), n_cols, figsize=(3.0 * n_cols, 2.7 * len(results)), squeeze=False, constrained_layout=True
    )
    rows = sample_rows(results[0].truth, vecs, N_SAMPLES, seed)
    for r_i, res in enumerate(results):
        given = parse_configuration(res.spec, schema).given_mask(schema)
        rng = np.random.default_rng(seed)
        pred, truth = res.prediction.values, res.truth
        for c_i, (name, col, col_name) in enumerate(scalars):
            ax = axes[r_i, c_i]
            if given[name][col]:
                _note(ax, "given")
            else:
                scored = ~res.prediction.given[name][:, col]
                scatter_panel(
                    ax,
                    truth[name][scored, col],
                    pred[name][scored, col],
                    scalar_label(col_name),
                    res.mae[col_name],
                    n_plot,
                    rng,
                )
            if r_i == 0:
                ax.set_title(scalar_label(col_name), fontsize=9)
        for v_i, name in enumerate(vecs):
            ax = axes[r_i, len(scalars) + v_i]
            mae = res.mae[name] if res.counts.get(name) else None
            vector_panel(ax, schema[name], truth[name][rows], pred[name][rows], given[name], mae)
            if r_i == 0:
                ax.set_title(TITLES.get(name, name), fontsize=9)
        axes[r_i, 0].annotate(
            res.label,
            xy=(0, 0.5),
            xycoords="axes fraction",
            xytext=(-48, 0),
            textcoords="offset points",
            rotation=90,
            ha="right",
            va="center",
            fontsize=9,
            fontweight="bold",
        )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return out_path


FIGURE2_DESCRIPTION = (
    "One row per input configuration, as the paper's Fig. 2. Scalar columns: predicted against true value for "
    "up to N galaxies whose value was not given; the orange band is the 16-84% range (about +-1 sigma) of the "
    "prediction in bins of the truth, the orange line its median, the dashed line the 1:1 relation; MAE over "
    'every scored galaxy is annotated. Panels marked "given" are inputs, not predictions. Vector columns: '
    "three galaxies (the same in every row), truth light solid, prediction dark dotted; grey shading marks "
    "the ranges not given to the model (predicted), white the given ones; the annotated MAE averages the "
    "hidden bins of all test galaxies."
)
