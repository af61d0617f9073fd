"""Counter-based random numbers keyed by (seed, epoch, row): the same galaxy gets the same mask
in an epoch whatever rank, batch or worker reads it.

A stateful generator seeded by (seed, rank, epoch, step) would tie masks to the batch layout, so
a 2-rank run could not reproduce a 1-rank run with the same global batch, and a resumed run with
another worker count would see other masks. Hashing the global row index instead (SplitMix64,
Steele et al. 2014, whose finaliser passes BigCrush) makes masks a pure function of
(seed, epoch, row, draw), computed vectorised over a whole batch with a few uint64 operations.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_TWO_POW_M53 = 1.0 / (1 << 53)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (bijective on uint64; wraps on overflow by design)."""
    z = z ^ (z >> np.uint64(30))
    z = z * _C1
    z = z ^ (z >> np.uint64(27))
    z = z * _C2
    return z ^ (z >> np.uint64(31))


def row_keys(seed: int, epoch: int, row_ids: np.ndarray) -> np.ndarray:
    """One 64-bit key per row for this (seed, epoch); shape [B], dtype uint64."""
    with np.errstate(over="ignore"):
        base = _mix(np.asarray([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) * _GOLDEN + np.uint64(epoch))
        rows = np.asarray(row_ids, dtype=np.int64).astype(np.uint64)
        return _mix(base ^ _mix(rows * _GOLDEN + np.uint64(1)))


def uniform(keys: np.ndarray, counter: int, n: int = 1) -> np.ndarray:
    """Uniform [0, 1) floats, shape [B, n]: draw numbers counter .. counter + n - 1 of each row.

    Distinct counters give independent streams; callers reserve disjoint counter ranges.
    """
    with np.errstate(over="ignore"):
        c = (np.arange(counter, counter + n, dtype=np.uint64) + np.uint64(1)) * _GOLDEN
        z = _mix(keys[:, None] ^ c[None, :])
    return _to_unit(z)


def uniform_at(keys: np.ndarray, counters: np.ndarray, n: int = 1) -> np.ndarray:
    """Like :func:`uniform` with one counter per key: draws counters[i] .. counters[i] + n - 1 of key i.

    Bit for bit ``uniform(keys[i:i + 1], counters[i], n)`` for every i, so a caller can draw the
    streams of several modalities (each its own counter block) for a mixed list of rows in one
    vectorised call, instead of one call per modality, and get the numbers each would have drawn.
    """
    with np.errstate(over="ignore"):
        c = np.asarray(counters, dtype=np.uint64)[:, None] + np.arange(1, n + 1, dtype=np.uint64)[None, :]
        c *= _GOLDEN
        c ^= keys[:, None]
        z = _mix(c)
    return _to_unit(z)


def _to_unit(z: np.ndarray) -> np.ndarray:
    """Top 53 bits of each uint64 as a float64 in [0, 1) (exact: 53 bits fit the mantissa)."""
    return (z >> np.uint64(11)).astype(np.float64) * _TWO_POW_M53
