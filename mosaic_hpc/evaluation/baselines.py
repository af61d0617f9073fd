"""Task-specific baselines beside every Table 1 cell: what a user would fit instead of MOSAIC.

A foundation model is only worth keeping if it is at least as good as a quick model fitted to
the one task at hand, so every evaluation fits, for each input configuration, a random forest per
hidden scalar column and a k-nearest-neighbour regression per hidden vector modality, on the
training split and from exactly the values the configuration gives, and scores them on the same
rows and the same hidden, defined values as MOSAIC (``metrics.score_prediction`` is shared).

Features are the same for both baselines and carry the same information MOSAIC gets: the given
values standardised with the fitting rows' mean and spread, a missing value (NaN) replaced by that
mean (MOSAIC's masked value, 0 after normalisation) and flagged by a 0/1 indicator column for
every given column that is missing in some fitting row (MOSAIC's mask embedding). For the SFH this
matters: bins after a galaxy's cosmic time are missing, so where the given history stops tells
its epoch (docs/science_outputs.md), and a baseline without the flags would be handicapped.

Cost is bounded by :class:`BaselineSettings`: above ``max_fit_rows`` training rows a seeded row
subsample is fitted on, and the report states the settings. scikit-learn is imported lazily.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from ..data.configurations import InputConfiguration
from ..schema import CatalogSchema

BASELINE_CHOICES = ("forest+knn", "none")


@dataclass(frozen=True)
class BaselineSettings:
    """How the baselines are fitted (stated in every report).

    Attributes:
        n_trees: trees per random forest (scikit-learn ``n_estimators``).
        min_samples_leaf: forest leaf size; 2 smooths the noise-free mock's exact interpolation
            only slightly.
        max_fit_rows: training rows fitted on; a seeded subsample above this keeps the cost of a
            200,000-galaxy evaluation bounded (the forest's cost grows as N log N per tree).
        knn_k: neighbours of the kNN regression (distance-weighted).
        seed: forest seed and subsample seed.
        n_jobs: CPU threads for the forests and the neighbour search.
    """

    n_trees: int = 100
    min_samples_leaf: int = 2
    max_fit_rows: int = 20_000
    knn_k: int = 10
    seed: int = 0
    n_jobs: int = 1

    def __post_init__(self) -> None:
        for key in ("n_trees", "min_samples_leaf", "max_fit_rows", "knn_k", "n_jobs"):
            if getattr(self, key) < 1:
                raise ValueError(f"baseline {key} must be >= 1, got {getattr(self, key)}")

    def describe(self) -> str:
        return (
            f"random forest per hidden scalar ({self.n_trees} trees, min_samples_leaf={self.min_samples_leaf}, "
            f"all features per split), distance-weighted kNN per hidden vector (k={self.knn_k}); features: the "
            f"given values, standardised, missing ones filled with the mean and flagged; fitted on at most "
            f"{self.max_fit_rows:,} training rows (seeded subsample above)"
        )


class GivenFeatures:
    """The feature matrix of one configuration: given values, standardised, with missing flags.

    Statistics (mean, spread, which columns are ever missing) come from the fitting rows only, so
    transforming the scored rows leaks nothing from them.
    """

    def __init__(self, config: InputConfiguration, schema: CatalogSchema, fit_rows: Mapping[str, np.ndarray]) -> None:
        self.given = config.given_mask(schema)
        self.names = [n for n in schema.names if self.given[n].any()]
        x = self._raw(fit_rows)
        with warnings.catch_warnings():  # a column missing in every fitting row: mean 0, spread 1
            warnings.simplefilter("ignore", RuntimeWarning)
            self.mean = np.nan_to_num(np.nanmean(x, axis=0))
            std = np.nan_to_num(np.nanstd(x, axis=0))
        self.std = np.where(std > 0, std, 1.0)
        self.flagged = np.isnan(x).any(axis=0)

    def _raw(self, rows: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(rows[n], np.float64)[:, self.given[n]] for n in self.names], axis=1)

    def __call__(self, rows: Mapping[str, np.ndarray]) -> np.ndarray:
        x = self._raw(rows)
        missing = np.isnan(x[:, self.flagged])
        z = np.nan_to_num((x - self.mean) / self.std, nan=0.0)
        return np.concatenate([z, missing.astype(np.float64)], axis=1)


def knn_predict(
    x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray, k: int, n_jobs: int = 1, chunk_rows: int = 1024
) -> np.ndarray:
    """Distance-weighted mean of the ``k`` nearest fitting rows' targets, NaN-aware per value.

    A neighbour's missing value (an SFH bin after its cosmic time) is left out of that value's
    mean instead of poisoning it; a value missing in every neighbour takes the fitting rows' mean
    (or, for a bin no fitting row has, the nearest bin's), so the baseline has a prediction for
    every value MOSAIC is scored on. Rows are processed in
    chunks: the gathered neighbour targets are [chunk, k, L] (L = 921 for the SED).
    """
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=min(k, len(x_fit)), n_jobs=n_jobs).fit(x_fit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fallback = _fill_along_axis(np.nanmean(y_fit, axis=0))
    out = np.empty((len(x), y_fit.shape[1]))
    for s in range(0, len(x), chunk_rows):
        dist, idx = index.kneighbors(x[s : s + chunk_rows])
        w = 1.0 / np.maximum(dist, 1e-12)  # [n, k]; an exact duplicate dominates, as in scikit-learn
        y = y_fit[idx]  # [n, k, L]
        valid = ~np.isnan(y)
        wv = w[:, :, None] * valid
        with np.errstate(invalid="ignore", divide="ignore"):
            pred = (np.where(valid, y, 0.0) * wv).sum(axis=1) / wv.sum(axis=1)
        out[s : s + chunk_rows] = np.where(np.isnan(pred), fallback[None, :], pred)
    return out


def _fill_along_axis(mean: np.ndarray) -> np.ndarray:
    """Bins missing in every fitting row take the nearest defined bin's mean.

    A subsample can miss a bin that a scored row has (the SFH bin of the lowest-redshift test
    galaxy's last Gyr); without a value there the baseline's MAE of the whole cell would be NaN.
    """
    ok = np.flatnonzero(~np.isnan(mean))
    if len(ok) == 0 or len(ok) == len(mean):
        return mean
    nearest = ok[np.abs(np.arange(len(mean))[:, None] - ok[None, :]).argmin(axis=1)]
    return mean[nearest]


def forest_predict(x_fit: np.ndarray, y_fit: np.ndarray, x: np.ndarray, settings: BaselineSettings) -> np.ndarray:
    """One random forest on the rows where the target is defined; predictions for ``x``."""
    from sklearn.ensemble import RandomForestRegressor

    ok = ~np.isnan(y_fit)
    if not ok.any():
        return np.full(len(x), np.nan)
    forest = RandomForestRegressor(
        n_estimators=settings.n_trees,
        min_samples_leaf=settings.min_samples_leaf,
        n_jobs=settings.n_jobs,
        random_state=settings.seed,
    )
    return forest.fit(x_fit[ok], y_fit[ok]).predict(x)


@dataclass
class BaselinePrediction:
    """Baseline values for every modality in physical units, given values copied through.

    The same shape and ``given`` convention as MOSAIC's :class:`~.predictor.Prediction`, so one
    scoring function scores both on identical cells.
    """

    values: dict[str, np.ndarray]
    given: dict[str, np.ndarray]
    seconds: float


def predict_baselines(
    config: InputConfiguration,
    schema: CatalogSchema,
    fit_rows: Mapping[str, np.ndarray],
    rows: Mapping[str, np.ndarray],
    settings: BaselineSettings | None = None,
) -> BaselinePrediction:
    """Fit on ``fit_rows`` (training split), predict ``rows``: forest per hidden scalar, kNN per vector.

    Args:
        config: what is given; every other value is predicted.
        schema: the catalog's modalities.
        fit_rows: training rows, physical units, [N_fit, L] per modality (at most
            ``settings.max_fit_rows``: :func:`~.metrics.read_fit_rows` subsamples).
        rows: the scored rows, physical units (only their given values are read).
        settings: cost and hyper-parameters (defaults: :class:`BaselineSettings`).
    """
    settings = settings or BaselineSettings()
    t0 = time.perf_counter()
    fit = fit_rows
    features = GivenFeatures(config, schema, fit)
    x_fit, x = features(fit), features(rows)
    n = len(x)
    values, given = {}, {}
    for spec in schema:
        g = features.given[spec.name]
        given[spec.name] = np.broadcast_to(g, (n, spec.length))
        out = np.full((n, spec.length), np.nan)
        if g.any():  # given values are inputs, copied through as MOSAIC does
            out[:, g] = np.asarray(rows[spec.name], np.float64)[:, g]
        if spec.is_scalars:
            for col in np.flatnonzero(~g):
                out[:, col] = forest_predict(x_fit, np.asarray(fit[spec.name][:, col], np.float64), x, settings)
        elif not g.all():
            pred = knn_predict(x_fit, np.asarray(fit[spec.name], np.float64), x, settings.knn_k, settings.n_jobs)
            out[:, ~g] = pred[:, ~g]
        values[spec.name] = out
    return BaselinePrediction(values=values, given=given, seconds=time.perf_counter() - t0)


def settings_dict(settings: BaselineSettings) -> dict[str, int]:
    return asdict(settings)
