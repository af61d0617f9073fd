"""Predictive distributions of one scalar as ``qp`` ensembles, the exchange format of LSST DESC RAIL.

Why qp: RAIL estimators hand their per-galaxy p(z) to evaluators, summarisers and users as a
``qp.Ensemble``; writing MOSAIC's predictions in that form lets a RAIL user compare them with
FlexZBoost (or any other estimator) by the same code. A Gaussian head gives one normal per
galaxy (``qp.stats.norm``), mixture heads their mixture (``qp.mixmod``); an ensemble of runs gives
the equal-weight mixture of their distributions (``qp.mixmod``), whose spread includes the
disagreement of the members.

qp (package ``qp-prob``, the optional extra ``rail``) is imported lazily, so the rest of
mosaic-hpc runs without it. qp files are HDF5 tables (no pickle): reading one executes no code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

MIN_SIGMA = 1e-6  # a zero sigma (sigma underflow in float32) is not a distribution


def _qp() -> Any:
    try:
        import qp
    except ImportError:
        raise ValueError("qp output needs the 'rail' extra: pip install 'mosaic-hpc[rail]' (qp-prob)") from None
    return qp


def gaussian_ensemble(mu: np.ndarray, sigma: np.ndarray, ancil: dict[str, np.ndarray] | None = None) -> Any:
    """One normal per galaxy: N(mu_i, sigma_i^2), as ``qp.Ensemble(qp.stats.norm)``.

    Args:
        mu, sigma: [N] means and standard deviations (units of the scalar, e.g. redshift).
        ancil: optional [N] columns stored beside the distributions (qp's ancillary table).
    """
    qp = _qp()
    mu, sigma = _check_members(np.asarray(mu)[None, :], np.asarray(sigma)[None, :])
    ens = qp.Ensemble(qp.stats.norm, data={"loc": mu[0][:, None], "scale": sigma[0][:, None]})
    if ancil:
        ens.set_ancil({k: np.asarray(v) for k, v in ancil.items()})
    return ens


def mixture_ensemble(
    mus: np.ndarray,
    sigmas: np.ndarray,
    weights: np.ndarray | None = None,
    ancil: dict[str, np.ndarray] | None = None,
) -> Any:
    """A mixture of C normals per galaxy, as ``qp.mixmod`` (one normal: ``qp.stats.norm``).

    Args:
        mus, sigmas: [C, N] component means and standard deviations (C ensemble members, the
            components of mixture heads, or both pooled by :func:`pool_members`).
        weights: [C, N] component weights summing to 1 per galaxy; None = equal weights.
        ancil: optional [N] columns stored beside the distributions.
    """
    qp = _qp()
    mus, sigmas = _check_members(np.asarray(mus), np.asarray(sigmas))
    if mus.shape[0] == 1:
        return gaussian_ensemble(mus[0], sigmas[0], ancil)
    weights = np.full(mus.shape, 1.0 / mus.shape[0]) if weights is None else np.asarray(weights, np.float64)
    if weights.shape != mus.shape:
        raise ValueError(f"weights {weights.shape} must have the means' shape {mus.shape}")
    ens = qp.Ensemble(qp.mixmod, data={"means": mus.T, "stds": sigmas.T, "weights": weights.T})
    if ancil:
        ens.set_ancil({k: np.asarray(v) for k, v in ancil.items()})
    return ens


Components = tuple[np.ndarray, np.ndarray, np.ndarray]
"""[C, N] means, standard deviations and weights of a predictive mixture of one scalar."""


def column_components(pred: Any, modality: str, index: int) -> Components:
    """One column's predictive distribution: one component with Gaussian heads, K with mixture heads."""
    if pred.mixture is not None:
        w, m, s = (np.asarray(a[:, index, :], np.float64).T for a in pred.mixture[modality])
        return m, s, w
    mu, sigma = pred.values[modality][:, index], pred.sigma[modality][:, index]
    return mu[None].astype(np.float64), sigma[None].astype(np.float64), np.ones((1, len(mu)))


def pool_members(members: list[Components]) -> Components:
    """The equal-weight mixture of ensemble members' distributions, as one list of components."""
    if not members:
        raise ValueError("pool_members needs at least one member")
    mus, sigmas, weights = (np.concatenate(parts) for parts in zip(*members, strict=True))
    return mus, sigmas, weights / len(members)


def _check_members(mus: np.ndarray, sigmas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[K, N] float64 means and sigmas, finite, sigmas floored at MIN_SIGMA."""
    if mus.ndim != 2 or mus.shape != sigmas.shape or mus.shape[1] == 0:
        raise ValueError(f"means {mus.shape} and sigmas {sigmas.shape} must both be [K, N] with N > 0")
    if not (np.isfinite(mus).all() and np.isfinite(sigmas).all()):
        raise ValueError("means and sigmas must be finite")
    return mus.astype(np.float64), np.maximum(sigmas.astype(np.float64), MIN_SIGMA)


def check_ensemble_path(path: Path) -> Path:
    """qp writes by suffix and we write only HDF5; checked before a model is loaded, so a typo costs nothing."""
    path = Path(path)
    if path.suffix not in (".hdf5", ".h5", ".hdf"):
        raise ValueError(f"{path}: qp output must be an HDF5 file (.hdf5 or .h5)")
    return path


def write_ensemble(ens: Any, path: Path) -> Path:
    """Write ``ens`` atomically with qp's own writer (HDF5); ``qp.read(path)`` reads it back.

    qp picks the format from the suffix, so the temporary file keeps it (``.tmp-NAME.hdf5``).
    """
    path = check_ensemble_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        ens.write_to(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_ensemble(path: Path) -> Any:
    """A qp ensemble from a file written by :func:`write_ensemble` (or any qp HDF5 file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"qp file {path} does not exist")
    return _qp().read(str(path))


def scalar_column(schema: Any, column: str) -> tuple[str, int]:
    """(modality, index) of the scalar ``column`` in ``schema``; ValueError naming the valid ones."""
    names = []
    for spec in schema:
        if spec.is_scalars:
            if column in spec.columns:
                return spec.name, spec.columns.index(column)
            names += list(spec.columns)
    raise ValueError(f"no scalar column {column!r} in this run; scalar columns: {names}")


def scalar_ensemble(pred: Any, schema: Any, column: str) -> Any:
    """The predictive distribution of one scalar column of a :class:`Prediction` (Gaussian or mixture).

    Ancillary columns: ``mean`` (the head's mean, the mixture's for mixture heads) and ``given``
    (True where the value was an input, so the "distribution" only echoes it).

    Raises:
        ValueError: the run has no Gaussian heads (no sigma), the column does not exist, or it
            was given for every galaxy (nothing was predicted).
    """
    if pred.sigma is None:
        raise ValueError("qp output needs sigma: this run was trained without Gaussian heads (model.gaussian_heads)")
    modality, i = scalar_column(schema, column)
    given = pred.given[modality][:, i]
    if given.all():
        raise ValueError(f"{column!r} was an input for every galaxy: nothing predicted (hide it with --given)")
    mus, sigmas, weights = column_components(pred, modality, i)
    mean = pred.values[modality][:, i].astype(np.float64)
    return mixture_ensemble(mus, sigmas, weights, ancil={"mean": mean, "given": given})
