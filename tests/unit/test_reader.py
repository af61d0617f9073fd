"""ShardedReader: partition, uneven-count rule, determinism, resume, in-memory, threads, fork, corruption."""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from toy_catalog import toy_rows, toy_schema

from mosaic_hpc.config import DataConfig
from mosaic_hpc.data import reader as reader_module
from mosaic_hpc.data.catalog import Catalog, CatalogError, CatalogWriter, default_norm_modes, stats_from_running
from mosaic_hpc.data.masker import HierarchicalMasker
from mosaic_hpc.data.prefetch import DeviceBatch, DevicePrefetcher
from mosaic_hpc.data.reader import ReaderPosition, ShardedReader, _BufferPool, resolve_rank, under_mpi
from mosaic_hpc.dist_env import read_dist_env

CFG = DataConfig(micro_batch_size=16, block_rows=64, shuffle_buffer=100)


def write_shards(out_dir: Path, sizes: list[int], seed: int = 0, chunk_rows: int = 64) -> list[Path]:
    """Shard files of the toy schema with the given row counts, sharing the statistics of all rows."""
    rng = np.random.default_rng(seed)
    schema = toy_schema()
    blocks = [toy_rows(n, rng) for n in sizes]
    running = CatalogWriter(out_dir / "stats-only.h5", schema)  # only to accumulate statistics
    for b in blocks:
        running.append(b)
    stats = stats_from_running(running.running, default_norm_modes(schema))
    running.abort()
    paths = []
    for i, rows in enumerate(blocks):
        with CatalogWriter(out_dir / f"shard-{i:03d}.h5", schema, {"source": "test"}, chunk_rows=chunk_rows) as w:
            w.append(rows)
            paths.append(w.close(stats))
    return paths


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    """Three shards of uneven size (1000 rows in all; not a multiple of any W * B used here)."""
    return write_shards(tmp_path_factory.mktemp("shards"), [410, 333, 257])


@pytest.fixture(scope="module")
def catalog(shards) -> Catalog:
    return Catalog(shards)


def readers(catalog: Catalog, world: int, config: DataConfig = CFG, **kw) -> list[ShardedReader]:
    return [ShardedReader(catalog, config, r, world, seed=7, **kw) for r in range(world)]


def batch_ids(batches) -> np.ndarray:
    return np.concatenate([b.row_ids for b in batches])


# ------------------------------------------------------------------------ partition and rule


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("shuffle", [True, False])
def test_every_row_served_once_or_skipped_by_the_rule(catalog, world, shuffle):
    rs = readers(catalog, world, shuffle=shuffle)
    n, bsz = catalog.n_rows, CFG.micro_batch_size
    n_batches = n // (world * bsz)
    assert {r.batches_per_epoch for r in rs} == {n_batches}  # data-parallel lock-step
    for epoch in (0, 1):
        served = [r.rank_rows(epoch) for r in rs]
        skipped = [r.skipped_rows(epoch) for r in rs]
        assert all(len(s) == n_batches * bsz for s in served)
        everything = np.concatenate(served + skipped)
        assert len(everything) == n and np.array_equal(np.sort(everything), np.arange(n))  # no overlap, no loss
        assert sum(len(s) for s in skipped) == n % (world * bsz)  # the minimum possible
        for r, (srv, skp) in enumerate(zip(served, skipped)):
            owned = rs[r].owned_rows()
            assert len(owned) == (r + 1) * n // world - r * n // world  # floor or ceil of N / W
            assert np.array_equal(np.sort(np.concatenate([srv, skp])), owned)


def test_divisible_count_serves_every_row_exactly_once(tmp_path):
    catalog = Catalog(write_shards(tmp_path, [96, 160]))  # 256 rows = 4 ranks x 4 batches x 16
    for epoch in (0, 3):
        rs = readers(catalog, 4)
        assert all(len(r.skipped_rows(epoch)) == 0 for r in rs)
        served = np.concatenate([batch_ids(r.iter_epoch(epoch)) for r in rs])
        assert np.array_equal(np.sort(served), np.arange(256))


def test_skipped_rows_are_the_tail_of_the_rotated_sequence_and_change_per_epoch(catalog):
    r = readers(catalog, 3)[1]
    n_served = r.batches_per_epoch * CFG.micro_batch_size
    skipped = [r.skipped_rows(e) for e in range(6)]
    for e, s in enumerate(skipped):
        assert len(s) == r.rows_owned - n_served
        seq = r._rotated_sequence(e)
        assert np.array_equal(s, seq[n_served:])
        assert np.array_equal(np.sort(r.rank_rows(e)), np.sort(seq[:n_served]))  # window shuffle only reorders
    assert len({tuple(np.sort(s)) for s in skipped}) == len(skipped)  # a different run every epoch
    served_ever = np.unique(np.concatenate([r.rank_rows(e) for e in range(20)]))
    assert np.array_equal(served_ever, r.owned_rows())  # no row is lost for good


def test_without_shuffle_the_last_rows_of_each_part_are_skipped(catalog):
    for r in readers(catalog, 3, shuffle=False):
        owned = r.owned_rows()
        assert np.array_equal(owned, np.arange(owned[0], owned[-1] + 1))  # catalog order, contiguous
        n_served = r.batches_per_epoch * CFG.micro_batch_size
        assert np.array_equal(r.rank_rows(0), owned[:n_served])
        assert np.array_equal(r.skipped_rows(5), owned[n_served:])


def test_blocks_are_chunk_aligned_and_never_cross_files(catalog):
    r = readers(catalog, 2)[0]
    starts, lengths = r._blocks()
    file_of = np.searchsorted(catalog.offsets, starts, side="right") - 1
    local = starts - catalog.offsets[file_of]
    assert np.all(local % CFG.block_rows == 0)
    assert np.all(local + lengths <= np.asarray(catalog.file_rows)[file_of])


def test_ranks_own_a_fixed_representative_mix(catalog):
    rs = readers(catalog, 2)
    owned = [r.owned_rows() for r in rs]
    for r, o in zip(rs, owned):
        assert np.array_equal(np.sort(np.concatenate([r.rank_rows(3), r.skipped_rows(3)])), o)  # same every epoch
    for o in owned:  # blocks drawn from the whole catalog, not one contiguous range per rank
        assert np.any(np.diff(o) != 1)
        assert len(np.unique(np.searchsorted(catalog.offsets, o, side="right"))) >= 2  # several files


# ------------------------------------------------------------ determinism, order, resume


def test_batches_follow_the_plan_and_hold_the_catalog_values(catalog):
    r = readers(catalog, 2)[1]
    batches = list(r.iter_epoch(2))
    assert len(batches) == r.batches_per_epoch
    assert np.array_equal(batch_ids(batches), r.rank_rows(2))
    b = batches[3]
    for name, x in catalog.read(0, catalog.n_rows).items():
        expect = x[b.row_ids]
        got = catalog.stats.denormalize(name, b.targets[name].astype(np.float64))
        np.testing.assert_allclose(got[b.valid[name]], expect[b.valid[name]], rtol=1e-5, atol=1e-4)
        assert np.array_equal(~b.valid[name], np.isnan(expect))


def test_batches_are_exactly_the_normalised_rows_and_the_row_keyed_masks(catalog):
    """The prepared batches equal the definition computed row set by row set, bit for bit."""
    masker = HierarchicalMasker(catalog.schema, seed=3)
    everything = catalog.read(0, catalog.n_rows)
    cfg = DataConfig(micro_batch_size=16, block_rows=64, shuffle_buffer=100, num_workers=2)
    for masked in (True, False):
        for batch in ShardedReader(catalog, cfg, 1, 2, seed=7, masker=masker if masked else None).iter_epoch(1):
            hidden = masker(batch.row_ids, 1) if masked else None
            for name, x in everything.items():
                z = catalog.stats.normalize(name, x[batch.row_ids])
                valid = ~np.isnan(z)
                assert np.array_equal(batch.valid[name], valid)
                assert batch.targets[name].tobytes() == np.where(valid, z, np.float32(0)).tobytes()
                expect_hidden = ~valid if hidden is None else hidden[name] | ~valid
                assert np.array_equal(batch.hidden[name], expect_hidden)


def test_deterministic_given_seed_and_epoch_and_epochs_differ(catalog):
    a, b = readers(catalog, 2)[0], readers(catalog, 2)[0]
    assert np.array_equal(batch_ids(a.iter_epoch(1)), batch_ids(b.iter_epoch(1)))
    assert not np.array_equal(a.rank_rows(0), a.rank_rows(1))
    other_seed = ShardedReader(catalog, CFG, 0, 2, seed=8)
    assert not np.array_equal(a.rank_rows(1), other_seed.rank_rows(1))


@pytest.mark.parametrize("position", [ReaderPosition(0, 0), ReaderPosition(0, 5), ReaderPosition(1, 0)])
def test_resume_yields_exactly_the_remaining_sequence(catalog, position):
    masker = HierarchicalMasker(catalog.schema, seed=3)
    r = readers(catalog, 2, masker=masker)[1]
    n = r.batches_per_epoch
    full = r.iter_from(ReaderPosition(0, 0))
    reference = [next(full) for _ in range(3 * n)]
    skip = position.epoch * n + position.batch
    resumed = r.iter_from(position)
    for pos, batch in reference[skip:]:
        rpos, rbatch = next(resumed)
        assert rpos == pos
        assert np.array_equal(rbatch.row_ids, batch.row_ids)
        for name in batch.targets:
            assert np.array_equal(rbatch.targets[name], batch.targets[name])
            assert np.array_equal(rbatch.hidden[name], batch.hidden[name])
    assert reference[n - 1][0] == ReaderPosition(1, 0)  # the position after an epoch's last batch


def test_iter_epoch_start_batch_matches_iter_from(catalog):
    r = readers(catalog, 3)[2]
    tail = batch_ids(r.iter_epoch(4, start_batch=7))
    assert np.array_equal(tail, r.rank_rows(4)[7 * CFG.micro_batch_size :])
    with pytest.raises(ValueError, match="start batch"):
        next(r.iter_epoch(0, start_batch=r.batches_per_epoch + 1))


def test_too_few_rows_for_one_batch_per_rank(catalog):
    with pytest.raises(ValueError, match="fewer than one batch"):
        ShardedReader(catalog, DataConfig(micro_batch_size=400), 0, 3)
    with pytest.raises(ValueError, match="outside world size"):
        ShardedReader(catalog, CFG, 2, 2)


# ------------------------------------------------------------ pipeline modes, fork safety


def _same_batches(xs, ys) -> None:
    xs, ys = list(xs), list(ys)
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert np.array_equal(x.row_ids, y.row_ids)
        for name in x.targets:
            assert np.array_equal(x.targets[name], y.targets[name])
            assert np.array_equal(x.valid[name], y.valid[name])
            assert np.array_equal(x.hidden[name], y.hidden[name])


def test_in_memory_threads_and_serial_give_identical_batches(catalog):
    masker = HierarchicalMasker(catalog.schema, seed=1)
    serial = ShardedReader(catalog, CFG, 1, 2, seed=7, masker=masker)
    for cfg in (
        DataConfig(micro_batch_size=16, block_rows=64, shuffle_buffer=100, in_memory=True),
        DataConfig(micro_batch_size=16, block_rows=64, shuffle_buffer=100, num_workers=2, prefetch_batches=3),
        DataConfig(micro_batch_size=16, block_rows=64, shuffle_buffer=100, num_workers=2, in_memory=True),
    ):
        other = ShardedReader(catalog, cfg, 1, 2, seed=7, masker=masker)
        for epoch in (0, 1):
            _same_batches(serial.iter_epoch(epoch), other.iter_epoch(epoch))


def test_in_memory_loads_only_the_ranks_rows_once(catalog, monkeypatch):
    cfg = DataConfig(micro_batch_size=16, block_rows=64, shuffle_buffer=100, in_memory=True)
    r = ShardedReader(catalog, cfg, 0, 2, seed=7)
    reads = []
    original = catalog.read_into

    def counting(a, b, out, offset=0):
        reads.append(b - a)
        original(a, b, out, offset)

    monkeypatch.setattr(catalog, "read_into", counting)
    list(r.iter_epoch(0))
    list(r.iter_epoch(1))
    assert sum(reads) == r.rows_owned == len(r.owned_rows())


def test_threaded_pipeline_can_be_abandoned_mid_epoch(catalog):
    cfg = DataConfig(micro_batch_size=16, block_rows=64, shuffle_buffer=100, num_workers=2)
    r = ShardedReader(catalog, cfg, 0, 1, seed=7)
    stream = r.iter_from(ReaderPosition(0, 0))
    first = [next(stream) for _ in range(3)]
    stream.close()  # shuts the worker pool down (validation breaks out of iter_epoch the same way)
    assert first[-1][0] == ReaderPosition(0, 3)


@pytest.mark.parametrize("workers", [0, 1, 2, 3])
def test_window_buffers_are_reused_only_after_their_window_is_done(catalog, monkeypatch, workers):
    """A released window buffer is poisoned at once: a batch still reading it would differ."""
    monkeypatch.setattr(reader_module, "PREP_ROWS", 32)  # 2 batches per task, 4 tasks per window
    masker = HierarchicalMasker(catalog.schema, seed=1)
    kw = dict(micro_batch_size=16, block_rows=64, shuffle_buffer=100, prefetch_batches=8)
    reference = ShardedReader(catalog, DataConfig(**kw, in_memory=True), 0, 1, seed=7, masker=masker)
    allocated, released = [], []
    take, release = _BufferPool.take, _BufferPool.release

    def counting_take(self, n_rows):
        fresh = not self._free
        views = take(self, n_rows)
        allocated.append(fresh)
        return views

    def poisoning_release(self, views):
        lease = self._leased.get(id(views))
        if lease is not None and lease[0] is views:
            released.append(1)
            for buf in lease[1].values():
                buf.fill(np.nan)  # a read of a released buffer would yield all-missing rows
        release(self, views)

    monkeypatch.setattr(_BufferPool, "take", counting_take)
    monkeypatch.setattr(_BufferPool, "release", poisoning_release)
    r = ShardedReader(catalog, DataConfig(**kw, num_workers=workers), 0, 1, seed=7, masker=masker)
    for epoch in (0, 1):
        _same_batches(reference.iter_epoch(epoch), r.iter_epoch(epoch))
    windows = 2 * len(list(r._windows(0, 0)))
    assert len(allocated) == windows and len(released) == windows  # every window's buffer came back
    # One pipeline per epoch; each allocates about as many buffers as windows are alive at once
    # (the windows of the tasks in flight, the read ahead, and one whose last task's
    # done-callback has not run yet) and reuses them after that.
    assert sum(allocated) == 2 if workers == 0 else sum(allocated) <= 2 * (workers + 3) < windows


def test_buffer_pool_takes_back_only_its_own_buffers(catalog):
    pool = _BufferPool(catalog, 100)
    a = pool.take(60)
    assert {n: v.shape for n, v in a.items()} == {m.name: (60, m.length) for m in catalog.schema}
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in a.values())
    pool.release({n: v.copy() for n, v in a.items()})  # not from the pool: ignored
    b = pool.take(100)
    assert all(not np.shares_memory(a[n], b[n]) for n in a)
    pool.release(a)
    pool.release(a)  # a second release of the same lease is ignored
    c, d = pool.take(30), pool.take(30)
    assert all(np.shares_memory(a[n], c[n]) for n in a)  # reused
    assert all(not np.shares_memory(c[n], d[n]) and not np.shares_memory(b[n], d[n]) for n in a)


def test_read_sorted_of_a_sharded_directory_equals_the_single_file(shards, tmp_path):
    """The window read (runs across shard boundaries) gives the bytes of one file holding all rows."""
    sharded = Catalog(shards)
    rows = sharded.read_all()
    single_path = tmp_path / "single.h5"
    with CatalogWriter(single_path, sharded.schema, {"source": "test"}, chunk_rows=64) as w:
        w.append(rows)
        w.close(sharded.stats)
    single = Catalog([single_path])
    rng = np.random.default_rng(0)
    cfg = DataConfig(micro_batch_size=16, block_rows=50, shuffle_buffer=100)
    for ids in (
        np.arange(sharded.n_rows),
        np.arange(400, 420),  # across the boundary at row 410
        np.sort(rng.choice(sharded.n_rows, 300, replace=False)),
        np.array([0, 409, 410, 742, 743, 999]),
    ):
        got = [ShardedReader(c, cfg, 0, 1)._read_sorted(ids) for c in (sharded, single)]
        for name in sharded.schema.names:
            want = rows[name][ids]
            assert got[0][name].tobytes() == got[1][name].tobytes() == want.tobytes()


def _child_epoch(reader: ShardedReader, queue) -> None:
    queue.put(batch_ids(reader.iter_epoch(1)).tolist())


def test_fork_safe_child_opens_its_own_handles(shards):
    catalog = Catalog(shards)
    r = ShardedReader(catalog, CFG, 0, 2, seed=7)
    parent = batch_ids(r.iter_epoch(1))  # the parent now holds open HDF5 handles
    assert catalog._handles
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_child_epoch, args=(r, queue))
    child.start()
    got = np.asarray(queue.get(timeout=60))
    child.join(timeout=60)
    assert child.exitcode == 0
    assert np.array_equal(got, parent)
    assert np.array_equal(batch_ids(r.iter_epoch(1)), parent)  # the parent's handles still work


# ----------------------------------------------------------------- corrupt and broken files


def _copy_shards(shards: list[Path], dest: Path) -> list[Path]:
    dest.mkdir()
    return [Path(shutil.copy(p, dest / p.name)) for p in shards]


def test_truncated_shard_stops_with_its_name(shards, tmp_path):
    paths = _copy_shards(shards, tmp_path / "cat")
    os.truncate(paths[1], paths[1].stat().st_size // 2)
    with pytest.raises(CatalogError, match=r"shard-001\.h5: file: cannot be opened, truncated or corrupt"):
        Catalog(paths)


def test_shard_truncated_after_start_stops_mid_epoch_with_its_name(shards, tmp_path):
    paths = _copy_shards(shards, tmp_path / "cat")
    r = ShardedReader(Catalog(paths), CFG, 0, 1, seed=7)  # validated while intact; handles open lazily
    os.truncate(paths[2], paths[2].stat().st_size - 4096)
    with pytest.raises(CatalogError, match=r"shard-002\.h5"):
        list(r.iter_epoch(0))


def _first_chunk(path: Path, name: str) -> tuple[int, int]:
    with h5py.File(path, "r", locking=False) as f:
        info = f["modalities"][name].id.get_chunk_info(0)
        return info.byte_offset, info.size


def test_overwritten_data_bytes_stop_the_epoch_with_file_and_field(shards, tmp_path):
    paths = _copy_shards(shards, tmp_path / "cat")
    offset, size = _first_chunk(paths[0], "sed")
    with open(paths[0], "r+b") as f:  # bytes in the middle of the file: garbage that decodes as +inf
        f.seek(offset + size // 2)
        f.write(np.full(64, np.inf, dtype="<f4").tobytes())
    r = ShardedReader(Catalog(paths), CFG, 0, 1, seed=7, masker=HierarchicalMasker(toy_schema()))
    # CatalogWriter checksums chunks (fletcher32), so HDF5 catches this; files without checksums
    # are caught by the reader's range check. Either way the error names the file and dataset.
    with pytest.raises(CatalogError, match=r"shard-000\.h5: /modalities/sed: (row \d+ holds a value|read of rows)"):
        list(r.iter_epoch(0))


def test_checksum_failure_mid_epoch_names_the_file(shards, tmp_path):
    """With fletcher32 chunks, HDF5 itself detects flipped bytes; the read error must name the file."""
    path = tmp_path / "checked.h5"
    with h5py.File(shards[0], "r", locking=False) as src, h5py.File(path, "w") as dst:
        for key in ("axes", "stats"):
            src.copy(key, dst)
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for name, ds in src["modalities"].items():
            new = dst.create_dataset(f"modalities/{name}", data=ds[()], chunks=(64, ds.shape[1]), fletcher32=True)
            for k, v in ds.attrs.items():
                new.attrs[k] = v
    offset, _ = _first_chunk(path, "spherex")
    with open(path, "r+b") as f:
        f.seek(offset + 8)
        f.write(b"\x00\x01\x02\x03" * 4)
    r = ShardedReader(Catalog([path]), CFG, 0, 1, seed=7, shuffle=False)
    with pytest.raises(CatalogError, match=r"checked\.h5: /modalities/spherex: read of rows"):
        list(r.iter_epoch(0))


def test_shards_with_different_schemas_stop_with_the_odd_file(shards, tmp_path):
    paths = _copy_shards(shards, tmp_path / "cat")
    with h5py.File(paths[1], "r+") as f:
        del f["modalities/lsst"].attrs["unit"]
        f["modalities/lsst"].attrs["unit"] = "nJy"
    with pytest.raises(CatalogError, match=r"shard-001\.h5: /modalities: schema differs"):
        Catalog(paths)


# ---------------------------------------------------------------------- rank resolution


class FakeComm:
    """The two methods of an mpi4py communicator that resolve_rank uses (mpi4py's names)."""

    def __init__(self, rank: int, size: int) -> None:
        self.rank, self.size = rank, size

    def Get_rank(self) -> int:  # noqa: N802
        return self.rank

    def Get_size(self) -> int:  # noqa: N802
        return self.size


def test_resolve_rank_without_mpi_reads_the_launcher_environment():
    env = {"SLURM_PROCID": "2", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0"}
    assert not under_mpi(env)
    assert resolve_rank(env=env) == (2, 4) == (read_dist_env(env).rank, read_dist_env(env).world_size)
    assert resolve_rank(env={}) == (0, 1)


@pytest.mark.parametrize("var", ["PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"])
def test_mpi_is_detected_from_the_environment(var):
    assert under_mpi({var: "0"})


def test_communicator_and_environment_give_the_same_partition(catalog):
    env = {"PMI_RANK": "1", "PMI_SIZE": "3"}
    by_comm = resolve_rank(comm=FakeComm(1, 3), env=env)
    by_env = (read_dist_env(env).rank, read_dist_env(env).world_size)
    assert by_comm == by_env
    a = ShardedReader(catalog, CFG, *by_comm, seed=7)
    b = ShardedReader(catalog, CFG, *by_env, seed=7)
    assert np.array_equal(a.rank_rows(2), b.rank_rows(2))


def test_communicator_disagreeing_with_the_launcher_is_an_error():
    with pytest.raises(ValueError, match="would not match the training ranks"):
        resolve_rank(comm=FakeComm(0, 2), env={"RANK": "1", "WORLD_SIZE": "2"})


# -------------------------------------------------------------------- device prefetcher


def test_device_prefetcher_yields_torch_batches_already_on_the_device(catalog):
    import torch

    cfg = DataConfig(micro_batch_size=16, block_rows=64, shuffle_buffer=100, num_workers=2)
    reader = ShardedReader(catalog, cfg, 0, 2, seed=7, masker=HierarchicalMasker(catalog.schema))
    wrapped = DevicePrefetcher(reader, "cpu")
    assert wrapped.batches_per_epoch == reader.batches_per_epoch
    stream = wrapped.iter_from(ReaderPosition(0, 2))
    reference = reader.iter_from(ReaderPosition(0, 2))
    for _ in range(4):
        (pos, batch), (ref_pos, ref) = next(stream), next(reference)
        assert pos == ref_pos and isinstance(batch, DeviceBatch)
        assert batch.to_torch(torch.device("cpu")) is batch  # what the training loop calls: a no-op
        assert torch.equal(batch.targets["sed"], torch.from_numpy(ref.targets["sed"]))
        assert torch.equal(batch.hidden["sfh"], torch.from_numpy(ref.hidden["sfh"]))
    stream.close()
    assert np.array_equal(torch.cat([b.row_ids for b in wrapped.iter_epoch(1)]).numpy(), reader.rank_rows(1))


@pytest.mark.gpu
def test_device_prefetcher_copies_pinned_batches_to_the_gpu(catalog):
    import torch

    cfg = DataConfig(micro_batch_size=16, block_rows=64, shuffle_buffer=100, num_workers=2)
    reader = ShardedReader(catalog, cfg, 0, 2, seed=7, masker=HierarchicalMasker(catalog.schema))
    wrapped = DevicePrefetcher(reader, "cuda")
    stream, reference = wrapped.iter_from(ReaderPosition(0, 1)), reader.iter_from(ReaderPosition(0, 1))
    for _ in range(5):
        (pos, batch), (ref_pos, ref) = next(stream), next(reference)
        assert pos == ref_pos
        assert batch.targets["sed"].is_cuda and batch.hidden["sfh"].is_cuda
        assert batch.to_torch(torch.device("cuda")) is batch and batch.to_torch("cuda:0") is batch
        assert torch.equal(batch.targets["sed"].cpu(), torch.from_numpy(ref.targets["sed"]))
        assert torch.equal(batch.row_ids.cpu(), torch.from_numpy(ref.row_ids))
    stream.close()
    assert wrapped._host(ref).targets["sed"].is_pinned()
