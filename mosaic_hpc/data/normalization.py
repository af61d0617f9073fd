"""Normalisation statistics: computed once on training rows, applied everywhere from here.

Paper Sec. 2: scalars are standardised per column, vectors by one global mean and standard
deviation per modality. ``per_bin`` is offered for vectors whose bins differ in scale. Whatever
the mode, the stored ``mean``/``std`` have length L, so normalising is one elementwise operation
and the mode only matters when the statistics are computed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

NormMode = Literal["per_column", "global", "per_bin"]
NORM_MODES: tuple[str, ...] = ("per_column", "global", "per_bin")


@dataclass
class RunningStats:
    """Streaming per-column count, mean and M2 (Chan et al. 1979), NaN-aware and mergeable.

    Mergeable so MPI ranks or file shards can each summarise their rows and combine exactly,
    without a second pass over the data and without the cancellation of sum/sum-of-squares.
    """

    length: int
    count: np.ndarray = field(init=False)
    mean: np.ndarray = field(init=False)
    m2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.count = np.zeros(self.length, dtype=np.float64)
        self.mean = np.zeros(self.length, dtype=np.float64)
        self.m2 = np.zeros(self.length, dtype=np.float64)

    def update(self, x: np.ndarray) -> None:
        """Add rows ``x`` of shape [N, L]; NaN entries are skipped."""
        x = np.asarray(x, dtype=np.float64)
        valid = ~np.isnan(x)
        n = valid.sum(axis=0).astype(np.float64)
        if not n.any():
            return
        xs = np.where(valid, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_b = np.where(n > 0, xs.sum(axis=0) / np.maximum(n, 1), 0.0)
            m2_b = (np.where(valid, x - mean_b, 0.0) ** 2).sum(axis=0)
        self._combine(n, mean_b, m2_b)

    def merge(self, other: RunningStats) -> None:
        self._combine(other.count, other.mean, other.m2)

    def _combine(self, n_b: np.ndarray, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        n_a = self.count
        n = n_a + n_b
        safe_n = np.maximum(n, 1)
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / safe_n
        self.m2 = self.m2 + m2_b + delta**2 * n_a * n_b / safe_n
        self.count = n

    def to_array(self) -> np.ndarray:
        """[3, L] array (count, mean, m2), the form sent through MPI reductions."""
        return np.stack([self.count, self.mean, self.m2])

    @classmethod
    def from_array(cls, arr: np.ndarray) -> RunningStats:
        out = cls(arr.shape[1])
        out.count, out.mean, out.m2 = (np.array(a, dtype=np.float64) for a in arr)
        return out

    def finalize(self, mode: NormMode, name: str = "") -> tuple[np.ndarray, np.ndarray]:
        """Mean and std of length L for the given mode.

        Raises:
            ValueError: a column with no valid value, or zero spread (normalising would divide
                by zero).
        """
        if mode not in NORM_MODES:
            raise ValueError(f"{name}: normalisation mode must be one of {NORM_MODES}, got {mode!r}")
        if mode == "global":
            total = self.count.sum()
            if total == 0:
                raise ValueError(f"{name}: no valid (non-NaN) value to compute statistics from")
            mean = float((self.mean * self.count).sum() / total)
            m2 = float((self.m2 + self.count * (self.mean - mean) ** 2).sum())
            std = np.sqrt(m2 / total)
            mean_arr = np.full(self.length, mean)
            std_arr = np.full(self.length, std)
        else:
            empty = np.flatnonzero(self.count == 0)
            if empty.size:
                raise ValueError(f"{name}: columns {empty.tolist()} have no valid value in the training rows")
            mean_arr = self.mean.copy()
            std_arr = np.sqrt(self.m2 / self.count)
        zero = np.flatnonzero(~(std_arr > 0))
        if zero.size:
            raise ValueError(f"{name}: zero standard deviation in columns {zero.tolist()} (constant values)")
        return mean_arr, std_arr


@dataclass(frozen=True)
class NormStats:
    """Per-modality mean and std, each of length L (float64).

    ``low`` / ``high``: the smallest and largest training value of each column (physical units),
    recorded by the trainer in ``normalization.json`` so that prediction can tell inputs outside
    the training range (:mod:`.validation`); absent in catalog files and older checkpoints.
    """

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    modes: dict[str, str]
    low: dict[str, np.ndarray] | None = None
    high: dict[str, np.ndarray] | None = None

    def with_range(self, low: dict[str, np.ndarray], high: dict[str, np.ndarray]) -> NormStats:
        return dataclasses.replace(self, low=low, high=high)

    def normalize(self, name: str, x):
        """(x - mean) / std for numpy arrays or torch tensors of shape [..., L]. NaN stays NaN."""
        return (x - self._like(self.mean[name], x)) / self._like(self.std[name], x)

    def normalize_into(self, name: str, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``normalize(name, x.astype(float32))`` written into the float32 array ``out`` (may be ``x``).

        The same rounding to float32 and the same float32 operations, so the same values bit for
        bit, but without temporaries: the data pipeline normalises millions of values per second
        and every temporary is one more allocation and pass over memory.
        """
        np.subtract(x, self.mean[name].astype(np.float32), out=out, dtype=np.float32)
        return np.divide(out, self.std[name].astype(np.float32), out=out)

    def denormalize(self, name: str, x):
        """Back to physical units: x * std + mean."""
        return x * self._like(self.std[name], x) + self._like(self.mean[name], x)

    def denormalize_sigma(self, name: str, sigma):
        """A standard deviation in normalised units scales by std only."""
        return sigma * self._like(self.std[name], sigma)

    @staticmethod
    def _like(v: np.ndarray, x):
        if isinstance(x, np.ndarray):
            return v.astype(x.dtype, copy=False)
        import torch  # lazily: catalogs are usable without torch

        if isinstance(x, torch.Tensor):
            return torch.as_tensor(v, dtype=x.dtype, device=x.device)
        return v

    def to_dict(self) -> dict:
        out = {
            n: {"mean": self.mean[n].tolist(), "std": self.std[n].tolist(), "mode": self.modes[n]} for n in self.mean
        }
        if self.low is not None and self.high is not None:
            for n in out:  # NaN (a column with no value in the sample) is written as null
                out[n]["low"] = [None if np.isnan(v) else v for v in self.low[n].tolist()]
                out[n]["high"] = [None if np.isnan(v) else v for v in self.high[n].tolist()]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> NormStats:
        def column(key: str) -> dict[str, np.ndarray] | None:
            if not all(key in v for v in data.values()):
                return None
            return {
                n: np.asarray([np.nan if x is None else x for x in v[key]], dtype=np.float64) for n, v in data.items()
            }

        return cls(
            mean={n: np.asarray(v["mean"], dtype=np.float64) for n, v in data.items()},
            std={n: np.asarray(v["std"], dtype=np.float64) for n, v in data.items()},
            modes={n: str(v["mode"]) for n, v in data.items()},
            low=column("low"),
            high=column("high"),
        )
