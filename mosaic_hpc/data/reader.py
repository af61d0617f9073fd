"""Sharded, shuffled, resumable, masked batches of a catalog split for rank r of W.

The plan is a pure function of (seed, epoch, N, W, B, block_rows, shuffle_buffer): every rank
computes its share without communicating and a resumed run replays it exactly. Rank assignment,
epoch order, the uneven-count rule and the pipeline: docs/data_pipeline.md, "The reader's plan".
Only this module imports mpi4py, lazily, in :func:`resolve_rank`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..config import DataConfig
from ..dist_env import read_dist_env
from .batch import Batch, gather_batch
from .catalog import Catalog, CatalogError
from .validation import first_implausible_row, implausible_reason

log = logging.getLogger("mosaic_hpc.data")

# Environment variables set by MPI process managers: MPICH/Hydra and PALS (PMI), Open MPI, PMIx
# (Open MPI 5, ``srun --mpi=pmix``). Their presence means "started by mpiexec/srun as an MPI job".
MPI_RANK_VARS: tuple[str, ...] = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")

# Rows gathered, masked and normalised per worker task. The masker makes a few hundred numpy calls
# per task whatever its size, and each call hands the GIL to another thread; with small tasks the
# handoffs dominate and more threads run slower than one (measured on a 16-core H100 node: 256
# rows per task peaked at 2-4 threads; 2048-4096 rows scaled to 8). Masks are keyed by row, so
# the batches are identical to preparing them one by one.
PREP_ROWS = 2048

Masker = Callable[[np.ndarray, int], Mapping[str, np.ndarray]]
Transform = Callable[[Batch], Batch]


def under_mpi(env: Mapping[str, str] | None = None) -> bool:
    """True when an MPI process manager started this process (checked without importing mpi4py)."""
    env = os.environ if env is None else env
    return any(k in env for k in MPI_RANK_VARS)


def resolve_rank(comm=None, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) for partitioning the data.

    Under MPI the communicator is the authority (``comm`` or mpi4py's ``COMM_WORLD``, imported
    only then, so non-MPI runs never initialise MPI); otherwise the launcher environment is read
    with :func:`read_dist_env`, the function the training engine uses. When both are available
    they must agree: a data rank that differs from the engine's rank would silently feed two
    ranks the same rows.

    Args:
        comm: an mpi4py communicator to partition over (default: ``COMM_WORLD`` under MPI).
        env: environment mapping to read (default ``os.environ``).

    Raises:
        ValueError: the communicator and the launcher environment disagree.
    """
    env = os.environ if env is None else env
    dist = read_dist_env(env)
    if comm is None and under_mpi(env):
        try:
            from mpi4py import MPI
        except ImportError:
            log.warning("started by an MPI launcher but mpi4py is not installed; using the launcher environment")
            return dist.rank, dist.world_size
        comm = MPI.COMM_WORLD
    if comm is None:
        return dist.rank, dist.world_size
    rank, world = int(comm.Get_rank()), int(comm.Get_size())
    if dist.launcher != "single" and (dist.rank, dist.world_size) != (rank, world):
        raise ValueError(
            f"MPI communicator says rank {rank} of {world} but the {dist.launcher} launcher environment says "
            f"rank {dist.rank} of {dist.world_size}; the data partition would not match the training ranks"
        )
    return rank, world


@dataclass(frozen=True)
class ReaderPosition:
    """Where a rank is in the data: resume yields exactly the batches after this point."""

    epoch: int = 0
    batch: int = 0


@dataclass(frozen=True)
class _Window:
    """One read unit: rows ``ids`` (served order) and the preparation tasks cut from it."""

    epoch: int
    ids: np.ndarray  # [n_rows] global row ids in serving order
    tasks: tuple[tuple[int, int, int], ...]  # (first batch index in epoch, lo, hi) into ids, whole batches


class ShardedReader:
    """Batches of one catalog split for one rank (see the module docstring for the plan).

    Args:
        catalog: the split to read (one file or shards); handles open lazily per process.
        config: batch size, block size, shuffle buffer, workers, prefetch depth, in-memory mode.
        rank: this rank's place in the data-parallel group (see :func:`resolve_rank`).
        world_size: number of data-parallel ranks.
        seed: seeds the rank assignment and the per-epoch permutations.
        shuffle: False keeps catalog order (evaluation).
        masker: callable ``(row_ids, epoch) -> hidden masks`` or None for no masking.

    Raises:
        ValueError: bad rank, or fewer rows than one batch per rank.
    """

    def __init__(
        self,
        catalog: Catalog,
        config: DataConfig,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        masker: Masker | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.catalog = catalog
        self.config = config
        self.rank, self.world_size = rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.masker = masker
        n, bsz = catalog.n_rows, config.micro_batch_size
        self.batches_per_epoch = n // (world_size * bsz)
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"{catalog.paths[0]}: {n} rows over {world_size} ranks give fewer than one batch "
                f"of {bsz} per rank; lower data.micro_batch_size"
            )
        # Read unit: the shuffle window rounded up to whole batches, so no batch spans two reads.
        self.window_rows = -(-max(config.shuffle_buffer, bsz) // bsz) * bsz
        self.batches_per_task = max(1, PREP_ROWS // bsz)
        self._piece_starts, self._piece_lengths = self._assign_pieces()
        self.rows_owned = int(self._piece_lengths.sum())
        self._memory: tuple[np.ndarray, dict[str, np.ndarray]] | None = None

    # ----------------------------------------------------------------- plan (pure functions)

    def _rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, *key]))

    def _blocks(self) -> tuple[np.ndarray, np.ndarray]:
        """Global start and length of every block; blocks never cross a file boundary."""
        bs = self.config.block_rows
        starts, lengths = [], []
        for offset, n_file in zip(self.catalog.offsets[:-1], self.catalog.file_rows):
            local = np.arange(0, n_file, bs, dtype=np.int64)
            starts.append(offset + local)
            lengths.append(np.minimum(local + bs, n_file) - local)
        return np.concatenate(starts), np.concatenate(lengths)

    def _assign_pieces(self) -> tuple[np.ndarray, np.ndarray]:
        """The runs of rows this rank owns for the whole run: start and length of each piece.

        Only the rank's own pieces are materialised (never an N-long array), so the plan costs
        O(N / W) memory on every rank whatever the catalog size.
        """
        starts, lengths = self._blocks()
        if self.shuffle:
            order = self._rng(0x5EED).permutation(len(starts))  # assignment depends on the seed only
            starts, lengths = starts[order], lengths[order]
        n, w = self.catalog.n_rows, self.world_size
        lo, hi = self.rank * n // w, (self.rank + 1) * n // w
        ends = np.cumsum(lengths)  # position after each block in the permuted row sequence
        first = int(np.searchsorted(ends, lo, side="right"))
        last = int(np.searchsorted(ends, hi, side="left"))
        p_starts = starts[first : last + 1].copy()
        p_lengths = lengths[first : last + 1].copy()
        cut_front = lo - (ends[first] - lengths[first])  # rows of the first block owned by rank r-1
        p_starts[0] += cut_front
        p_lengths[0] -= cut_front
        p_lengths[-1] -= ends[last] - hi  # rows of the last block owned by rank r+1
        keep = p_lengths > 0
        return p_starts[keep], p_lengths[keep]

    @staticmethod
    def _expand(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Concatenate the row runs [start, start + length) without a Python loop."""
        shift = starts - np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return np.repeat(shift, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)

    def owned_rows(self) -> np.ndarray:
        """Sorted global row ids this rank owns (serves or skips) in every epoch."""
        return np.sort(self._expand(self._piece_starts, self._piece_lengths))

    def _rotated_sequence(self, epoch: int) -> np.ndarray:
        """The rank's rows for an epoch: permuted pieces, rotated; its head is served."""
        starts, lengths = self._piece_starts, self._piece_lengths
        if not self.shuffle:
            return self._expand(starts, lengths)
        rng = self._rng(epoch, self.rank, 0)
        order = rng.permutation(len(starts))
        seq = self._expand(starts[order], lengths[order])
        return np.roll(seq, -int(rng.integers(len(seq))))

    def rank_rows(self, epoch: int) -> np.ndarray:
        """Global row ids this rank serves in an epoch, in serving order (n_batches * B rows)."""
        seq = self._rotated_sequence(epoch)[: self.batches_per_epoch * self.config.micro_batch_size]
        if not self.shuffle or self.config.shuffle_buffer <= 1:
            return seq
        # Permute inside each window at once: sort by (window, random key).
        keys = self._rng(epoch, self.rank, 1).random(len(seq))
        return seq[np.lexsort((keys, np.arange(len(seq)) // self.window_rows))]

    def skipped_rows(self, epoch: int) -> np.ndarray:
        """Global row ids this rank owns but does not serve in an epoch (the uneven-count rule)."""
        return self._rotated_sequence(epoch)[self.batches_per_epoch * self.config.micro_batch_size :]

    def _windows(self, epoch: int, start_batch: int) -> Iterator[_Window]:
        if not 0 <= start_batch <= self.batches_per_epoch:
            raise ValueError(f"start batch {start_batch} outside epoch of {self.batches_per_epoch} batches")
        rows, bsz, win = self.rank_rows(epoch), self.config.micro_batch_size, self.window_rows
        step = self.batches_per_task * bsz
        begin = start_batch * bsz
        for ws in range(begin - begin % win, len(rows), win):
            lo = max(ws, begin)
            ids = rows[lo : ws + win]
            tasks = tuple(((lo + t) // bsz, t, min(t + step, len(ids))) for t in range(0, len(ids), step))
            yield _Window(epoch, ids, tasks)

    # ----------------------------------------------------------------------------- reading

    def _read_sorted(self, ids: np.ndarray, out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """Rows ``ids`` (sorted, unique) as contiguous reads of the runs they form.

        Each run is read by HDF5 straight into its place in one [len(ids), L] float32 array per
        modality (``out``, or fresh arrays): no per-run arrays and no concatenation, which cost
        about as much as the read itself. Runs that cross a shard boundary are split by
        :meth:`Catalog.read_into`.
        """
        breaks = np.flatnonzero(np.diff(ids) != 1) + 1
        run_lo = ids[np.concatenate([[0], breaks])].tolist()
        run_hi = (ids[np.concatenate([breaks - 1, [len(ids) - 1]])] + 1).tolist()
        if out is None:
            out = {m.name: np.empty((len(ids), m.length), dtype=np.float32) for m in self.catalog.schema}
        offset = 0
        for a, b in zip(run_lo, run_hi):
            self.catalog.read_into(a, b, out, offset)
            offset += b - a
        return out

    def load_into_memory(self) -> None:
        """Read every row this rank owns once (the in-memory mode); later epochs do no I/O."""
        if self._memory is None:
            rows = self.owned_rows()
            self._memory = (rows, self._read_sorted(rows))

    def _read_window(
        self, window: _Window, buffers: _BufferPool | None = None
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Data holding the window's rows and, per served row, its index into that data.

        With ``buffers`` a streaming read goes into a window buffer from that pool; the caller
        hands it back (:meth:`_BufferPool.release`) once every task of the window is done.
        """
        if self.config.in_memory:
            self.load_into_memory()
            rows, data = self._memory
            return data, np.searchsorted(rows, window.ids)
        order = np.argsort(window.ids, kind="stable")
        index = np.empty_like(order)
        index[order] = np.arange(len(order))
        out = buffers.take(len(order)) if buffers is not None else None
        return self._read_sorted(window.ids[order], out), index

    def _prepare(
        self, read: Future | tuple, window: _Window, lo: int, hi: int, transform: Transform | None
    ) -> list[Batch]:
        """Gather, mask and normalise rows ``lo:hi`` of a window, cut into batches (in a worker thread)."""
        data, index = read.result() if isinstance(read, Future) else read
        ids = window.ids[lo:hi]
        hidden = None
        if self.masker is not None:
            valid = None
            if self.masker.needs_validity:  # partial cuts fall among each row's defined values
                rows_ix = index[lo:hi]
                valid = {m.name: ~np.isnan(data[m.name][rows_ix]) for m in self.catalog.schema if not m.is_scalars}
            hidden = self.masker(ids, window.epoch, valid)
        # rows gathered in serving order straight into the batch buffers, normalised in place
        rows = gather_batch(data, index[lo:hi], ids, self.catalog.stats, hidden)
        self._check_values(rows)
        bsz = self.config.micro_batch_size
        batches = [_rows(rows, s, s + bsz) for s in range(0, hi - lo, bsz)]
        return [transform(b) for b in batches] if transform is not None else batches

    def _check_values(self, batch: Batch) -> None:
        """Stop on values no galaxy can have (corrupt bytes, wrong units), naming file and row."""
        for name, t in batch.targets.items():
            bad = first_implausible_row(t)  # the check of predict and evaluate (data/validation.py)
            if bad is None:
                continue
            row = int(batch.row_ids[bad])
            i = int(np.searchsorted(self.catalog.offsets, row, side="right") - 1)
            raise CatalogError(
                self.catalog.paths[i], f"/modalities/{name}", implausible_reason(row - int(self.catalog.offsets[i]))
            )

    # ---------------------------------------------------------------------------- pipeline

    def _execute(self, windows: Iterator[_Window], transform: Transform | None) -> Iterator[tuple[int, int, Batch]]:
        """(epoch, batch index, batch) in order; threaded when ``data.num_workers`` > 0."""
        if self.config.in_memory:
            self.load_into_memory()  # once, here, before any worker thread could race to do it
        # Window buffers are reused once every task of their window is done: batches are
        # gathered into their own arrays (gather_batch), never views of the window.
        buffers = _BufferPool(self.catalog, self.window_rows)
        if self.config.num_workers == 0:
            for window in windows:
                read = self._read_window(window, buffers)
                for k, lo, hi in window.tasks:
                    for j, batch in enumerate(self._prepare(read, window, lo, hi, transform)):
                        yield window.epoch, k + j, batch
                buffers.release(read[0])
            return
        pool = ThreadPoolExecutor(self.config.num_workers, thread_name_prefix="mosaic-reader")
        reads: deque[tuple[_Window, Future]] = deque()

        def jobs() -> Iterator[tuple[int, int, Future]]:
            # FIFO pool: a window's read is always queued before its tasks, so a worker waiting on
            # a read never waits on a task that no worker has started (no deadlock).
            while True:
                while len(reads) < 2:  # the current window and one read ahead
                    window = next(windows, None)
                    if window is None:
                        break
                    reads.append((window, pool.submit(self._read_window, window, buffers)))
                if not reads:
                    return
                window, read = reads[0]
                done = _Countdown(len(window.tasks), read, buffers)
                for k, lo, hi in window.tasks:
                    task = pool.submit(self._prepare, read, window, lo, hi, transform)
                    task.add_done_callback(done)
                    yield window.epoch, k, task
                reads.popleft()

        # tasks in flight: enough for prefetch_batches, and at least one per worker
        depth = max(self.config.num_workers, -(-self.config.prefetch_batches // self.batches_per_task))
        pending: deque[tuple[int, int, Future]] = deque()
        queue = jobs()
        try:
            while True:
                while len(pending) < depth:
                    job = next(queue, None)
                    if job is None:
                        break
                    pending.append(job)
                if not pending:
                    return
                epoch, k, future = pending.popleft()
                for j, batch in enumerate(future.result()):  # re-raises a worker's CatalogError here
                    yield epoch, k + j, batch
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def iter_epoch(self, epoch: int, start_batch: int = 0, transform: Transform | None = None) -> Iterator[Batch]:
        """Batches ``start_batch ..`` of an epoch (numpy Batch objects, masks applied).

        Args:
            epoch: epoch number (drives the permutations and the masks).
            start_batch: first batch to yield, for resuming inside an epoch.
            transform: applied to each batch in the worker thread (e.g. conversion to pinned tensors).
        """
        for _, _, batch in self._execute(self._windows(epoch, start_batch), transform):
            yield batch

    def __iter__(self) -> Iterator[Batch]:
        return self.iter_epoch(0)

    def iter_from(
        self, position: ReaderPosition, transform: Transform | None = None
    ) -> Iterator[tuple[ReaderPosition, Batch]]:
        """Endless stream from a position; yields the position *after* each batch (for checkpoints).

        The prefetch pipeline runs across epoch boundaries, so the next epoch's first read does
        not stall the training loop.
        """

        def windows() -> Iterator[_Window]:
            epoch, start = position.epoch, position.batch
            while True:
                yield from self._windows(epoch, start)
                epoch, start = epoch + 1, 0

        for epoch, k, batch in self._execute(windows(), transform):
            nxt = ReaderPosition(epoch, k + 1) if k + 1 < self.batches_per_epoch else ReaderPosition(epoch + 1, 0)
            yield nxt, batch


class _BufferPool:
    """Window buffers of one pipeline, handed back for reuse when their window is done.

    A window is ``window_rows`` rows of every modality (37 MB at the paper's lengths and the
    default window). Fresh arrays per window cost page faults and zeroed pages whenever the
    allocator gives the memory back to the OS in between (glibc does for arrays above its mmap
    threshold, at most 32 MB: larger shuffle buffers); reuse avoids that (measured 5-10% on the
    masked pipeline of the 2-core VM, 8% on the reads alone with 32768-row windows, nothing on
    the reads alone at 8192). Batches never view a window (:func:`gather_batch` copies rows
    into the batch's own buffers), so a window's buffer is free once its tasks are done. Only
    buffers this pool handed out are taken back, so
    in-memory data or a caller's arrays are never recycled; a buffer not handed back (a failed
    read, a pipeline stopped early) is simply garbage collected. The pool never blocks: when no
    buffer is free it allocates one, so it holds at most as many buffers as windows were ever
    live at once (the current window, the one read ahead, and any whose tasks still run).
    """

    def __init__(self, catalog: Catalog, window_rows: int) -> None:
        self._shapes = {m.name: (window_rows, m.length) for m in catalog.schema}
        self._free: list[dict[str, np.ndarray]] = []
        # id(handed-out views) -> (those views, full buffers); holding the views keeps the id unique
        self._leased: dict[int, tuple[Mapping[str, np.ndarray], dict[str, np.ndarray]]] = {}
        self._lock = threading.Lock()

    def take(self, n_rows: int) -> dict[str, np.ndarray]:
        """[n_rows, L] float32 views (C-contiguous) of a free buffer per modality."""
        with self._lock:
            full = self._free.pop() if self._free else None
        if full is None:
            full = {name: np.empty(shape, dtype=np.float32) for name, shape in self._shapes.items()}
        views = {name: buf[:n_rows] for name, buf in full.items()}
        with self._lock:
            self._leased[id(views)] = (views, full)
        return views

    def release(self, views: Mapping[str, np.ndarray]) -> None:
        """Hand back what :meth:`take` returned (anything else is ignored); it may be reused at once."""
        with self._lock:
            lease = self._leased.get(id(views))
            if lease is not None and lease[0] is views:
                del self._leased[id(views)]
                self._free.append(lease[1])


class _Countdown:
    """Done-callback of a window's tasks: releases the window's buffer after the last one.

    Runs in whichever thread finishes (or cancels) a task. A task that was cancelled never ran,
    and one that raised has stopped using the buffer, so every completed task counts; the
    buffer is released only if the read itself succeeded.
    """

    def __init__(self, n_tasks: int, read: Future, buffers: _BufferPool) -> None:
        self._left, self._read, self._buffers = n_tasks, read, buffers
        self._lock = threading.Lock()

    def __call__(self, _task: Future) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last and self._read.done() and not self._read.cancelled() and self._read.exception() is None:
            self._buffers.release(self._read.result()[0])


def _rows(batch: Batch, lo: int, hi: int) -> Batch:
    """Rows lo:hi of a batch as views (contiguous: rows of C-ordered arrays)."""
    return Batch(
        targets={k: v[lo:hi] for k, v in batch.targets.items()},
        valid={k: v[lo:hi] for k, v in batch.valid.items()},
        hidden={k: v[lo:hi] for k, v in batch.hidden.items()},
        row_ids=batch.row_ids[lo:hi],
        absent=None if batch.absent is None else {k: v[lo:hi] for k, v in batch.absent.items()},
    )
