"""One check of the values given to a model, shared by the reader, predict, evaluate and embed.

Training's reader always refused values no galaxy can have; prediction and evaluation did not,
so one inf row turned a Table 1 column into NaN, corrupt bytes gave an SED error of 1e29, and
inputs in the wrong units (fluxes passed as magnitudes, 40 mag) or with nothing in them gave the
same prediction for every row without a word. Every path now goes through this module:

- **Impossible values are errors** (:func:`check_inputs`): inf, or a value more than
  :data:`MAX_ABS_NORMALISED` training standard deviations from the training mean (corrupt data
  or wrong units). So is a modality that the configuration gives but the input does not hold.
  The message names the file, the modality and the row.
- **Out-of-distribution inputs are warnings** (:func:`validate_inputs`), errors with ``--strict``:
  values outside the training range, a given modality that is entirely missing, rows in which the
  model sees no value at all. Each warning names the modality, the share of rows and the range.

The training range of each column is recorded by the trainer in the run's ``normalization.json``
(:func:`training_range`: the smallest and largest training value, from up to
:data:`RANGE_SAMPLE_ROWS` rows spread over the split), and a value counts as outside when it lies
more than :data:`RANGE_MARGIN` of the range's width plus one standard deviation beyond it. A run
trained before ranges were recorded has none to compare with: its inputs get the other checks
only (a mean +- k sd band is no substitute: the toy catalog's SFHs have 1.4% of test rows beyond
10 sd of the training mean).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..schema import CatalogSchema, ModalitySpec
from .catalog import Catalog, CatalogError
from .configurations import InputConfiguration
from .normalization import NormStats

log = logging.getLogger("mosaic_hpc.inputs")

# A normalised value this many training standard deviations from the mean cannot come from a
# galaxy: it is corrupt bytes (raw HDF5 chunks carry no checksum unless written with fletcher32)
# or a unit error, and it would wreck training or a score, so it stops the run with file and row.
MAX_ABS_NORMALISED = 1e6
RANGE_SAMPLE_ROWS = 65536  # rows read to record the training range (all of a smaller split)
RANGE_WINDOWS = 16  # a larger split is sampled in this many evenly spaced contiguous windows
# Slack beyond the recorded range: this share of its width plus one training standard deviation
# (of the column, or of the modality for globally normalised vectors: a column that saw a single
# value, like the last SFH bins, still gets a sensible width). A sample from the training
# distribution lands inside (the sample's extremes are nearly the population's), while 40 mag for
# a 18-31 mag training range, or a flux read as a magnitude, lands far outside.
RANGE_MARGIN = 0.1
CHUNK_ROWS = 65536  # rows normalised at a time: bounded memory for large inputs

Locator = Callable[[int], tuple[Path | str, int]]  # row of the inputs -> (file, row in that file)


def first_implausible_row(z: np.ndarray) -> int | None:
    """First row of normalised values ``z`` [N, L] holding inf or ``|z| > MAX_ABS_NORMALISED`` (NaN is missing, fine).

    The common case (nothing wrong) costs two reductions and no temporary array.
    """
    if not z.size:
        return None
    hi, lo = np.fmax.reduce(z, axis=None), np.fmin.reduce(z, axis=None)  # NaN-ignoring
    if not (hi > MAX_ABS_NORMALISED or lo < -MAX_ABS_NORMALISED):
        return None
    return int(np.flatnonzero((np.abs(z) > MAX_ABS_NORMALISED).any(axis=1))[0])


def implausible_reason(row: int) -> str:
    return (
        f"row {row} holds inf or a value more than {MAX_ABS_NORMALISED:g} standard deviations from the training "
        "mean (corrupt data or wrong units)"
    )


def robust_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and a robust standard deviation of each column of ``x`` [N, L], NaN ignored.

    An undeclared missing-value sentinel (3e38, 1e30, -9999) inflates a mean and standard
    deviation until it looks ordinary; the median and the median absolute deviation barely move.
    The spread is 1.4826 MAD, or IQR / 1.349 where more than half the values are equal; 0 where
    neither sees any spread (such a column is not judged).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN, handled below
        center = np.nanmedian(x, axis=0)
        spread = 1.4826 * np.nanmedian(np.abs(x - center), axis=0)
        q25, q75 = np.nanpercentile(x, [25, 75], axis=0)
    spread = np.where(spread > 0, spread, (q75 - q25) / 1.349)
    return center, np.nan_to_num(spread, nan=0.0)


def first_robust_outlier(x: np.ndarray, center: np.ndarray, spread: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first value more than ``MAX_ABS_NORMALISED`` robust sd from its column's median."""
    with np.errstate(invalid="ignore", over="ignore"):
        far = (np.abs(x - center) > MAX_ABS_NORMALISED * spread) & (spread > 0)
    if not far.any():
        return None
    row = int(np.flatnonzero(far.any(axis=1))[0])
    return row, int(np.flatnonzero(far[row])[0])


def _locate_in(source: Path | str) -> Locator:
    return lambda row: (source, row)


def check_inputs(
    inputs: Mapping[str, np.ndarray],
    stats: NormStats,
    given: InputConfiguration | None = None,
    source: Path | str = "input",
    locate: Locator | None = None,
) -> None:
    """The hard checks: every given modality present, no impossible value.

    Args:
        inputs: physical values per modality, [N, L], NaN = missing.
        stats: the run's normalisation (its training split's statistics).
        given: the configuration restricting what the model sees, if any.
        source: named in messages (the input file).
        locate: maps a row of ``inputs`` to (file, row) when the rows span several files.

    Raises:
        CatalogError: naming the file, the modality and the row.
    """
    locate = locate or _locate_in(source)
    if given is not None:
        for name, _ in given.given:
            if name not in inputs:
                raise CatalogError(
                    source,
                    f"/modalities/{name}",
                    f"{given.spec} gives {name!r}, but the input holds only {list(inputs)}",
                )
    for name, x in inputs.items():
        for start in range(0, len(x), CHUNK_ROWS):
            z = stats.normalize(name, np.asarray(x[start : start + CHUNK_ROWS], dtype=np.float64))
            row = first_implausible_row(z)
            if row is not None:
                path, local = locate(start + row)
                raise CatalogError(path, f"/modalities/{name}", implausible_reason(local))


def sample_rows(catalog: Catalog, max_rows: int = RANGE_SAMPLE_ROWS) -> dict[str, np.ndarray]:
    """Every row of a split of up to ``max_rows`` rows, else ``RANGE_WINDOWS`` evenly spaced
    contiguous windows holding ``max_rows`` rows in all (so a sorted catalog is sampled across
    its whole range): seconds at any catalog size."""
    n = catalog.n_rows
    if n <= max_rows:
        return catalog.read(0, n)
    width = max(1, max_rows // RANGE_WINDOWS)
    parts = [catalog.read(a, a + width) for a in np.linspace(0, n - width, RANGE_WINDOWS).astype(int).tolist()]
    return {name: np.concatenate([p[name] for p in parts]) for name in catalog.schema.names}


def training_range(catalog: Catalog, max_rows: int = RANGE_SAMPLE_ROWS) -> tuple[dict, dict]:
    """Smallest and largest value of every column of a training split, from :func:`sample_rows`.

    NaN marks a column without any value in the sample.
    """
    sample = sample_rows(catalog, max_rows)
    low = {n: np.fmin.reduce(x, axis=0, initial=np.nan).astype(np.float64) for n, x in sample.items()}
    high = {n: np.fmax.reduce(x, axis=0, initial=np.nan).astype(np.float64) for n, x in sample.items()}
    return low, high


def _training_range(spec: ModalitySpec, stats: NormStats, cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per column: the bounds of what counts as inside, and the recorded range to quote."""
    lo, hi = stats.low[spec.name][cols], stats.high[spec.name][cols]
    slack = RANGE_MARGIN * (hi - lo) + stats.std[spec.name][cols]
    return lo - slack, hi + slack, lo, hi


def _share(n: int, total: int) -> str:
    return f"{100.0 * n / total:.1f}% of rows ({n} of {total})"


def distribution_warnings(
    inputs: Mapping[str, np.ndarray], schema: CatalogSchema, stats: NormStats, given: InputConfiguration | None = None
) -> list[str]:
    """What about these inputs the model has not seen in training (one sentence each, empty if nothing)."""
    seen = given.given_mask(schema) if given is not None else {n: np.ones(schema[n].length, bool) for n in inputs}
    n_rows = len(next(iter(inputs.values())))
    sees_something = np.zeros(n_rows, dtype=bool)
    found = []
    for name, x in inputs.items():
        spec, cols = schema[name], seen[name]
        if not cols.any():
            continue
        x = np.asarray(x)[:, cols]
        present = ~np.isnan(x)
        sees_something |= present.any(axis=1)
        if not present.any():
            found.append(f"{name}: every value is missing (NaN): the model sees nothing of it")
            continue
        if stats.low is None or stats.high is None:
            continue  # a run trained before ranges were recorded (module docstring)
        inside_lo, inside_hi, lo, hi = _training_range(spec, stats, cols)
        with np.errstate(invalid="ignore"):  # NaN bounds (no training value in a column) compare False
            outside = present & ((x < inside_lo) | (x > inside_hi))
        labels = [c for c, keep in zip(spec.columns, cols, strict=True) if keep] if spec.is_scalars else []
        groups = [([i], f"{name}[{c}]") for i, c in enumerate(labels)] if labels else [(slice(None), name)]
        unit = f" {spec.unit}" if spec.unit else ""
        for idx, label in groups:
            n_out = int(outside[:, idx].any(axis=1).sum())
            if n_out:
                span = f"{np.nanmin(lo[idx]):.4g} to {np.nanmax(hi[idx]):.4g}{unit}"
                found.append(f"{label}: {_share(n_out, n_rows)} hold values outside the training range {span}")
    n_blind = int((~sees_something).sum())
    if n_blind and not any("every value is missing" in f for f in found):
        found.append(f"{_share(n_blind, n_rows)} give the model no value at all: their predictions are all the same")
    return found


def validate_inputs(
    inputs: Mapping[str, np.ndarray],
    schema: CatalogSchema,
    stats: NormStats,
    source: Path | str,
    given: InputConfiguration | None = None,
    strict: bool = False,
    locate: Locator | None = None,
) -> list[str]:
    """:func:`check_inputs`, then the out-of-distribution warnings, logged (or raised with ``strict``).

    Returns:
        The warnings (already logged).

    Raises:
        CatalogError: a hard problem, or with ``strict`` any warning.
    """
    check_inputs(inputs, stats, given, source, locate)
    found = distribution_warnings(inputs, schema, stats, given)
    if found and strict:
        raise CatalogError(source, "inputs", "; ".join(found) + " (--strict)")
    for text in found:
        log.warning("warning: %s: %s", source, text)
    return found
