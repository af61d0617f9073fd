"""Train / validation / test assignment of catalog rows, shared by make-catalog and import-catalog.

Three splits because every choice tuned during training (the ``eval_every`` validation loss, a
learning rate, an early stop) must be made on rows that the final score never sees: training
validates on ``val`` and ``evaluate`` reports ``test``. One seeded permutation decides both held
out splits: its first ``n_test`` rows are test, the next ``n_val`` are validation. Catalogs built
before the validation split existed used the same first ``n_test`` rows as test, so for the same
seed and size the test rows are unchanged and the validation rows come out of the old training
rows (the lead's model comparisons on the mock stay comparable).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2  # labels of split_labels
LABEL_SPLITS = ("train", "val", "test")  # split name of each label
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1


@dataclass(frozen=True)
class SplitCounts:
    """Rows per split of one table (or of one MPI rank's share of it)."""

    train: int
    val: int
    test: int


def split_counts(n: int, val_fraction: float, test_fraction: float) -> SplitCounts:
    """``round(fraction * n)`` rows for each held-out split, the rest for training.

    Raises:
        ValueError: a fraction outside [0, 1), fractions summing to 1 or more, or fewer than two
            training rows (normalisation statistics need a spread).
    """
    for key, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(f) < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {f!r}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    n_val, n_test = round(val_fraction * n), round(test_fraction * n)
    n_train = n - n_val - n_test
    if n_train < 2:
        raise ValueError(
            f"{n} rows with val_fraction {val_fraction} and test_fraction {test_fraction} leave {n_train} "
            "for training; need at least 2"
        )
    return SplitCounts(n_train, n_val, n_test)


def split_labels(counts: SplitCounts, rng: np.random.Generator) -> np.ndarray:
    """int8 [n] labels (TRAIN, VAL or TEST) from one permutation of the rows (module docstring)."""
    n = counts.train + counts.val + counts.test
    labels = np.full(n, TRAIN, dtype=np.int8)
    order = rng.permutation(n)
    labels[order[: counts.test]] = TEST
    labels[order[counts.test : counts.test + counts.val]] = VAL
    return labels
