"""Test driver: ``mosaic_hpc.train.main`` with an instrumented reader (run under any launcher).

The integration tests need to see and steer the data stream without test hooks in the package:

- ``MOSAIC_TEST_TRACE_DIR``: every rank appends the global row ids of each batch it consumes to
  ``rows_rank<r>.txt`` (one line per micro-batch: ``epoch batch_after id,id,...``), so a test can
  check that an interrupted and resumed run consumed exactly the uninterrupted run's samples.
- ``MOSAIC_TEST_GLOBAL_LAYOUT=1``: rank r of W serves slice r of every global batch of the
  one-rank sample order (micro-batch ``W * k + r`` of a one-rank run with the same micro-batch).
  The package's reader gives each rank a fixed contiguous part of the catalog, which is right for
  I/O but makes the row set of a step depend on W; with this layout a W-rank run and a one-rank
  run with W-fold accumulation see identical samples per optimizer step, so their loss curves can
  be compared step by step.
- ``MOSAIC_TEST_SIGTERM_AT=K:R``: rank R sends itself SIGTERM as it takes its K-th batch (a
  preemption in the middle of a step, on one rank only).

Batches are recorded as the reader hands them on. On CPU (where these tests run) the runner's
DevicePrefetcher passes them straight to the loop; on CUDA it holds one batch ahead, so a trace
taken there would end one batch past the last one trained.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from mosaic_hpc import train  # noqa: E402
from mosaic_hpc.data.reader import ReaderPosition, ShardedReader  # noqa: E402
from mosaic_hpc.training import runner  # noqa: E402


class InstrumentedReader(ShardedReader):
    """ShardedReader with the global layout, the row trace and the SIGTERM trigger above."""

    def rank_rows(self, epoch: int) -> np.ndarray:
        if os.environ.get("MOSAIC_TEST_GLOBAL_LAYOUT") != "1" or not self.shuffle:
            return super().rank_rows(epoch)
        single = ShardedReader(self.catalog, self.config, 0, 1, seed=self.seed, shuffle=True)
        bsz, w = self.config.micro_batch_size, self.world_size
        rows = single.rank_rows(epoch)[: self.batches_per_epoch * w * bsz]
        return rows.reshape(self.batches_per_epoch, w, bsz)[:, self.rank].ravel()  # (n_batches, W, B) -> rank r

    def iter_from(self, position: ReaderPosition, *args, **kwargs) -> Iterator:
        trace_dir = os.environ.get("MOSAIC_TEST_TRACE_DIR")
        kill_at, kill_rank = (int(x) for x in os.environ.get("MOSAIC_TEST_SIGTERM_AT", "0:-1").split(":"))
        trace = None
        if trace_dir and self.shuffle:
            Path(trace_dir).mkdir(parents=True, exist_ok=True)
            trace = open(Path(trace_dir) / f"rows_rank{self.rank}.txt", "a", buffering=1)
        for n, (pos, batch) in enumerate(super().iter_from(position, *args, **kwargs), start=1):
            if trace is not None:
                ids = ",".join(str(int(i)) for i in np.asarray(batch.row_ids))
                trace.write(f"{pos.epoch} {pos.batch} {ids}\n")
            if n == kill_at and self.rank == kill_rank:
                os.kill(os.getpid(), signal.SIGTERM)
            yield pos, batch


if __name__ == "__main__":
    runner.ShardedReader = InstrumentedReader
    sys.exit(train.main())
