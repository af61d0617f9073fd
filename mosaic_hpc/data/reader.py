"""Sharded, shuffled, resumable batches of a catalog split for rank r of W.

Epoch plan (a pure function of seed, epoch, row count and W, so every rank computes the same
plan without communicating): the split's rows are cut into contiguous blocks of ``block_rows``
(aligned to HDF5 chunks, so each block is one contiguous read); the block order is permuted per
epoch; the permuted row sequence is cut into W equal contiguous parts, one per rank; inside a
rank, windows of ``shuffle_buffer`` rows are permuted again. Batches are consecutive slices.

Uneven counts (the documented rule): each rank gets floor(N / W) rows per epoch, and the last
``floor(N / W) mod B`` rows of a rank's sequence form no full batch; those fewer than W + W*B
rows are skipped *this epoch only*: they are different rows every epoch because the block order
and windows are re-permuted, so no row is lost for good and none is ever repeated in an epoch.
Every rank yields the same number of batches, which data-parallel lock-step requires.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..config import DataConfig
from .batch import Batch, make_batch
from .catalog import Catalog


@dataclass(frozen=True)
class ReaderPosition:
    """Where a rank is in the data: resume yields exactly the batches after this point."""

    epoch: int = 0
    batch: int = 0


class ShardedReader:
    """Batches of one catalog split for one rank.

    Args:
        catalog: the split to read.
        config: batch size, block size, shuffle buffer.
        rank, world_size: this rank's place in the data-parallel group.
        seed: seeds the per-epoch block and window permutations.
        shuffle: False keeps catalog order (evaluation).
        masker: callable (row_ids, epoch) -> hidden masks, or None for no masking.
    """

    def __init__(
        self,
        catalog: Catalog,
        config: DataConfig,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        masker=None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.catalog = catalog
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.masker = masker
        self.rows_per_rank = catalog.n_rows // world_size
        self.batches_per_epoch = self.rows_per_rank // config.micro_batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{catalog.paths[0]}: {catalog.n_rows} rows over {world_size} ranks give fewer than one batch "
                f"of {config.micro_batch_size} per rank; lower data.micro_batch_size"
            )

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, *key]))

    def rank_rows(self, epoch: int) -> np.ndarray:
        """Global row ids of this rank's sequence for an epoch, in the order they are served."""
        n, block = self.catalog.n_rows, self.config.block_rows
        n_blocks = -(-n // block)
        order = self._rng(epoch, 0).permutation(n_blocks) if self.shuffle else np.arange(n_blocks)
        starts = order * block
        lengths = np.minimum(starts + block, n) - starts
        seq = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        lo = self.rank * self.rows_per_rank
        rows = seq[lo : lo + self.rows_per_rank]
        buf = self.config.shuffle_buffer
        if self.shuffle and buf > 1:
            rows = rows.copy()
            for w, s in enumerate(range(0, len(rows), buf)):
                window = rows[s : s + buf]
                rows[s : s + buf] = window[self._rng(epoch, 1, self.rank, w).permutation(len(window))]
        return rows

    def iter_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        """Batches ``start_batch ..`` of an epoch (numpy Batch objects, masks applied)."""
        rows = self.rank_rows(epoch)
        bsz = self.config.micro_batch_size
        window = -(-max(self.config.shuffle_buffer, bsz) // bsz) * bsz  # read unit: whole batches
        # Read whole windows of the served sequence (contiguous runs of blocks), then gather.
        begin = start_batch * bsz
        end = self.batches_per_epoch * bsz
        for ws in range(begin - begin % window, end, window):
            lo, hi = max(ws, begin), min(ws + window, end)
            ids = rows[lo:hi]
            data = self._read_rows(ids)
            for b in range(0, hi - lo, bsz):
                sel = slice(b, b + bsz)
                batch_ids = ids[sel]
                raw = {k: v[sel] for k, v in data.items()}
                hidden = self.masker(batch_ids, epoch) if self.masker is not None else _none_hidden(raw)
                yield make_batch(raw, batch_ids, self.catalog.stats, hidden)

    def _read_rows(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Rows ``ids`` (any order) via contiguous reads of the runs they cover."""
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        breaks = np.flatnonzero(np.diff(sorted_ids) != 1) + 1
        runs = np.split(sorted_ids, breaks)
        parts = [self.catalog.read(int(r[0]), int(r[-1]) + 1) for r in runs]
        data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return {k: v[inverse] for k, v in data.items()}

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_epoch(0)

    def iter_from(self, position: ReaderPosition) -> Iterator[tuple[ReaderPosition, Batch]]:
        """Endless stream from a position; yields the position *after* each batch (for checkpoints)."""
        epoch, start = position.epoch, position.batch
        while True:
            for i, batch in enumerate(self.iter_epoch(epoch, start), start=start + 1):
                nxt = ReaderPosition(epoch, i) if i < self.batches_per_epoch else ReaderPosition(epoch + 1, 0)
                yield nxt, batch
            epoch, start = epoch + 1, 0


def _none_hidden(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.zeros(v.shape, dtype=bool) for k, v in raw.items()}
