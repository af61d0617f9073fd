"""The paper's Fig. 3: UMAP of the last hidden states, one panel per input configuration.

For every galaxy and modality the encoder's last hidden states of that modality's tokens are
averaged into one d-dimensional vector ("what the model believes about this galaxy's SED", say),
whether the modality was given or hidden. One UMAP per configuration maps the n_modalities x n
vectors to 2-D; points are coloured by a scalar's normalised true value (redshift by default)
and each modality's cloud is outlined by its convex hull over the points inside the 0.1-99.9
percentile range in x and in y, as in the paper, so a few stray points do not inflate the hull.

Read it as the paper does (Sec. 3): separated clusters per modality with smooth colour
gradients inside mean the latent space orders galaxies by their physics even when the coloured
quantity was hidden; overlapping clusters without gradients (stellar mass only) mean the input
carries too little information. UMAP axes are unitless.

umap-learn (and through it numba, whose first import takes 10-20 s) is imported only inside
:func:`umap_2d`, the one place of the package that needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.configurations import InputConfiguration
from ..schema import CatalogSchema
from .figures import TITLES, pyplot, scalar_label
from .predictor import Predictor

HULL_PERCENTILES = (0.1, 99.9)  # Fig. 3: hulls exclude points outside this range in x and y

EMBEDDING_DESCRIPTION = (
    "UMAP of the last hidden states (mean over each modality's tokens), one panel per input configuration, as the "
    "paper's Fig. 3. Outlines are the convex hulls of each modality's points inside the 0.1-99.9 percentile range "
    "in x and y; point colour is the normalised true value of the scalar named in the colour bar. Separate "
    "clusters with smooth colour gradients mean the latent space orders galaxies by that quantity even when it "
    "was hidden. UMAP axes are unitless."
)


@dataclass
class EmbeddingPanel:
    """One configuration's 2-D map: ``coords[m, i]`` is modality m of galaxy i."""

    name: str
    label: str
    coords: np.ndarray  # [n_modalities, n_galaxies, 2]


@dataclass
class EmbeddingResult:
    """Fig. 3 data: the same galaxies in every panel, coloured by one scalar."""

    modalities: tuple[str, ...]
    rows: np.ndarray  # [n_galaxies] row index in the catalog split
    color_by: str
    color_value: np.ndarray  # [n_galaxies] true value of ``color_by`` (physical units; NaN = missing)
    panels: list[EmbeddingPanel]

    @property
    def color(self) -> np.ndarray:
        return normalise(self.color_value)

    def save_npz(self, path: Path) -> Path:
        """Coordinates [n_configurations, n_modalities, n_galaxies, 2] plus names, rows and colours."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            coords=np.stack([p.coords for p in self.panels]).astype(np.float32),
            configurations=np.array([p.name for p in self.panels]),
            labels=np.array([p.label for p in self.panels]),
            modalities=np.array(self.modalities),
            rows=self.rows,
            color_by=np.array(self.color_by),
            color_value=self.color_value,
        )
        return path


def scalar_column(schema: CatalogSchema, column: str) -> tuple[str, int]:
    """(modality, index) of a scalar column; ValueError naming the valid columns otherwise."""
    valid = []
    for spec in schema:
        if spec.is_scalars:
            if column in spec.columns:
                return spec.name, spec.columns.index(column)
            valid.extend(spec.columns)
    raise ValueError(f"--color-by {column!r} is not a scalar column; valid columns: {', '.join(valid)}")


def normalise(values: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] over the finite values (Fig. 3 colours are normalised); NaN stays NaN."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    if not ok.any():
        return np.full(v.shape, np.nan)
    lo, hi = v[ok].min(), v[ok].max()
    return (v - lo) / (hi - lo) if hi > lo else np.where(ok, 0.5, np.nan)


def modality_embeddings(
    predictor: Predictor,
    truth: Mapping[str, np.ndarray],
    configuration: InputConfiguration,
    batch_size: int = 1024,
) -> dict[str, np.ndarray]:
    """Mean last hidden state of each modality's tokens per galaxy, [N, d_model] per modality.

    The model is given only ``configuration``'s values of ``truth`` (physical units, NaN =
    missing); hidden modalities still have tokens (mask values plus positions), and their
    states are what the heads decode into predictions, so they are embedded too.
    """
    out: dict[str, list[np.ndarray]] = {name: [] for name in predictor.schema.names}
    for _, batch in predictor.batches(truth, configuration, batch_size=batch_size):
        states = predictor.forward(batch, return_hidden_states=True).hidden_states
        for name in out:
            out[name].append(states[name].float().mean(dim=1).cpu().numpy())  # [B, n_tokens, d] -> [B, d]
    return {name: np.concatenate(parts) for name, parts in out.items()}


def umap_2d(features: np.ndarray, seed: int = 0, n_neighbors: int = 15, n_epochs: int | None = None) -> np.ndarray:
    """2-D UMAP of [M, d] features (seeded, hence single-threaded and reproducible), [M, 2]."""
    import umap

    if features.shape[0] <= n_neighbors:
        raise ValueError(f"UMAP needs more than n_neighbors={n_neighbors} points, got {features.shape[0]}")
    # n_jobs=1: a seed makes umap-learn single-threaded anyway; saying so silences its warning.
    reducer = umap.UMAP(
        n_components=2, n_neighbors=n_neighbors, min_dist=0.1, random_state=seed, n_epochs=n_epochs, n_jobs=1
    )
    return reducer.fit_transform(np.asarray(features, np.float32)).astype(np.float32)


def percentile_mask(xy: np.ndarray, lo: float = HULL_PERCENTILES[0], hi: float = HULL_PERCENTILES[1]) -> np.ndarray:
    """True for points inside the [lo, hi] percentile range in x *and* in y, [M] bool."""
    xy = np.asarray(xy, np.float64)
    lo_xy, hi_xy = np.percentile(xy, [lo, hi], axis=0)  # [2] each
    return np.all((xy >= lo_xy) & (xy <= hi_xy), axis=1)


def hull_polygon(xy: np.ndarray, lo: float = HULL_PERCENTILES[0], hi: float = HULL_PERCENTILES[1]) -> np.ndarray | None:
    """Closed convex-hull polygon [k + 1, 2] of the points inside the percentile range.

    Returns None when fewer than three non-collinear points remain (no area to outline).
    """
    from scipy.spatial import ConvexHull, QhullError

    pts = np.asarray(xy, np.float64)[percentile_mask(xy, lo, hi)]
    if pts.shape[0] < 3:
        return None
    try:
        hull = ConvexHull(pts)
    except QhullError:
        return None
    ring = pts[hull.vertices]
    return np.vstack([ring, ring[:1]])


def embed_configurations(
    predictor: Predictor,
    truth: Mapping[str, np.ndarray],
    configurations: Sequence[InputConfiguration],
    color_by: str = "redshift",
    seed: int = 0,
    n_epochs: int | None = None,
    batch_size: int = 1024,
    on_panel: Callable[[str], None] | None = None,
) -> EmbeddingResult:
    """Hidden-state UMAPs of the galaxies in ``truth`` for each configuration (Fig. 3 data).

    Args:
        predictor: the trained run.
        truth: physical values of all modalities, [N, L] each (NaN = missing).
        configurations: one panel each.
        color_by: scalar column whose true value colours the points.
        seed: UMAP seed.
        n_epochs: UMAP optimisation epochs (None: umap-learn's default, 500 below 10k points).
        batch_size: galaxies per forward pass.
        on_panel: called with each configuration's name when its panel is done (progress).

    Raises:
        ValueError: unknown ``color_by`` (lists the valid columns), no configuration, or too few
            galaxies for UMAP.
    """
    mod, col = scalar_column(predictor.schema, color_by)
    if not configurations:
        raise ValueError("no configuration to embed")
    names = predictor.schema.names
    n = next(iter(truth.values())).shape[0]
    panels = []
    for cfg in configurations:
        emb = modality_embeddings(predictor, truth, cfg, batch_size)
        stacked = np.concatenate([emb[m] for m in names])  # [n_modalities * N, d], modality-major
        coords = umap_2d(stacked, seed=seed, n_epochs=n_epochs).reshape(len(names), n, 2)
        panels.append(EmbeddingPanel(cfg.name, cfg.label or cfg.name, coords))
        if on_panel is not None:
            on_panel(cfg.name)
    return EmbeddingResult(
        modalities=tuple(names),
        rows=np.arange(n),
        color_by=color_by,
        color_value=np.asarray(truth[mod][:, col], np.float64),
        panels=panels,
    )


def plot_embedding(result: EmbeddingResult, out_path: Path, dpi: int = 110) -> Path:
    """Fig. 3: one panel per configuration, points coloured by the normalised scalar, modality hulls."""
    import matplotlib

    plt = pyplot()
    n = len(result.panels)
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 4.3), squeeze=False, constrained_layout=True)
    color = result.color
    hull_colors = matplotlib.colormaps["tab10"].colors
    scatter = None
    for ax, panel in zip(axes[0], result.panels):
        for m_i, name in enumerate(result.modalities):
            xy = panel.coords[m_i]
            ok = np.isfinite(color)
            ax.scatter(xy[~ok, 0], xy[~ok, 1], s=1, color="0.7", linewidths=0, rasterized=True)
            scatter = ax.scatter(
                xy[ok, 0], xy[ok, 1], c=color[ok], cmap="viridis", vmin=0, vmax=1, s=2, linewidths=0, rasterized=True
            )
            ring = hull_polygon(xy)
            if ring is not None:
                ax.plot(ring[:, 0], ring[:, 1], color=hull_colors[m_i % 10], lw=1.5, label=TITLES.get(name, name))
        ax.set_title(panel.label, fontsize=9)
        ax.set_xlabel("UMAP 1")
        ax.set_ylabel("UMAP 2")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].legend(loc="best", fontsize=7, frameon=False)
    if scatter is not None:
        fig.colorbar(scatter, ax=axes[0, -1], label=f"normalised true {scalar_label(result.color_by)}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return out_path


def write_embedding(
    predictor: Predictor,
    truth: Mapping[str, np.ndarray],
    configurations: Sequence[InputConfiguration],
    out_path: Path,
    color_by: str = "redshift",
    seed: int = 0,
    n_epochs: int | None = None,
    batch_size: int = 1024,
    on_panel: Callable[[str], None] | None = None,
) -> tuple[Path, Path]:
    """Embed, plot Fig. 3 to ``out_path`` and save the coordinates beside it (same stem, ``.npz``).

    Returns:
        ``(plot path, npz path)``.
    """
    result = embed_configurations(predictor, truth, configurations, color_by, seed, n_epochs, batch_size, on_panel)
    out_path = Path(out_path)
    return plot_embedding(result, out_path), result.save_npz(out_path.with_suffix(".npz"))
