"""ShardedReader under a real ``mpiexec -n 2`` (mpi4py on the mpich wheel).

This file is also the rank script: run as ``__main__`` under mpiexec, each rank resolves its
place through mpi4py's COMM_WORLD, checks that the launcher environment says the same, and
writes the row ids it served (two epochs, plus a resumed stream) to ``rank<r>.npz``. The tests
then check the partition across the two processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BATCH = 16
RESUME = (1, 3)  # (epoch, batch) the resumed stream starts from
pytestmark = pytest.mark.integration


def rank_main(catalog_dir: Path, out_dir: Path) -> None:
    from mosaic_hpc.config import DataConfig
    from mosaic_hpc.data.catalog import Catalog
    from mosaic_hpc.data.masker import HierarchicalMasker
    from mosaic_hpc.data.reader import ReaderPosition, ShardedReader, resolve_rank
    from mosaic_hpc.dist_env import read_dist_env

    rank, world = resolve_rank()  # mpi4py COMM_WORLD: PMI_RANK is set by mpiexec
    env = read_dist_env()
    assert (rank, world) == (env.rank, env.world_size) and env.launcher in ("mpich", "openmpi"), (rank, world, env)
    assert "mpi4py.MPI" in sys.modules
    catalog = Catalog.open(catalog_dir, "train")
    cfg = DataConfig(micro_batch_size=BATCH, block_rows=32, shuffle_buffer=64, num_workers=1)
    reader = ShardedReader(catalog, cfg, rank, world, seed=11, masker=HierarchicalMasker(catalog.schema, seed=2))
    epochs = [np.concatenate([b.row_ids for b in reader.iter_epoch(e)]) for e in (0, 1)]
    stream = reader.iter_from(ReaderPosition(*RESUME))
    resumed = [next(stream) for _ in range(2 * reader.batches_per_epoch - RESUME[1])]
    stream.close()
    np.savez(
        out_dir / f"rank{rank}.npz",
        epoch0=epochs[0],
        epoch1=epochs[1],
        resumed=np.concatenate([b.row_ids for _, b in resumed]),
        resumed_positions=np.asarray([(p.epoch, p.batch) for p, _ in resumed]),
        epoch2=reader.rank_rows(2),
        skipped0=reader.skipped_rows(0),
        skipped1=reader.skipped_rows(1),
        batches_per_epoch=reader.batches_per_epoch,
        owned=reader.owned_rows(),
    )


def run_ranks(catalog_dir: Path, out_dir: Path, n: int = 2) -> list[dict[str, np.ndarray]]:
    mpiexec = Path(sys.executable).with_name("mpiexec")  # the venv's (mpich wheel) first, then PATH
    if not mpiexec.exists():
        found = shutil.which("mpiexec")
        if found is None:
            pytest.skip("no mpiexec (pip install mpich)")
        mpiexec = Path(found)
    out_dir.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "OMPI_COMM_WORLD_RANK"):
        env.pop(key, None)  # only mpiexec's PMI variables may describe the job
    cmd = [str(mpiexec), "-n", str(n), sys.executable, __file__, str(catalog_dir), str(out_dir)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    return [dict(np.load(out_dir / f"rank{r}.npz")) for r in range(n)]


def make_catalog(out: Path, n_train: int) -> Path:
    sys.path.insert(0, str(REPO / "tests"))
    from toy_catalog import write_toy_catalog

    return write_toy_catalog(out, n_train=n_train, n_test=64)


@pytest.fixture(scope="module")
def divisible(tmp_path_factory) -> tuple[int, list[dict[str, np.ndarray]]]:
    n = 20 * 2 * BATCH  # a multiple of W * B: every row served once per epoch
    tmp = tmp_path_factory.mktemp("mpi_div")
    return n, run_ranks(make_catalog(tmp / "cat", n), tmp / "out")


@pytest.fixture(scope="module")
def uneven(tmp_path_factory) -> tuple[int, list[dict[str, np.ndarray]]]:
    n = 20 * 2 * BATCH + 23  # 23 rows form no full batch on every rank
    tmp = tmp_path_factory.mktemp("mpi_uneven")
    return n, run_ranks(make_catalog(tmp / "cat", n), tmp / "out")


def test_union_over_ranks_is_every_row_without_overlap(divisible):
    n, ranks = divisible
    for key in ("epoch0", "epoch1"):
        rows = np.concatenate([r[key] for r in ranks])
        assert len(rows) == n
        assert np.array_equal(np.sort(rows), np.arange(n))
    assert ranks[0]["batches_per_epoch"] == ranks[1]["batches_per_epoch"] == n // (2 * BATCH)


def test_epochs_differ_in_order(divisible):
    _, ranks = divisible
    for r in ranks:
        assert not np.array_equal(r["epoch0"], r["epoch1"])
        assert not np.array_equal(r["epoch1"], r["epoch2"])


def test_resume_yields_exactly_the_remaining_sequence(divisible):
    _, ranks = divisible
    for r in ranks:
        n_batches = int(r["batches_per_epoch"])
        remaining = np.concatenate([r["epoch1"][RESUME[1] * BATCH :], r["epoch2"]])
        assert np.array_equal(r["resumed"], remaining)
        pos = r["resumed_positions"]
        assert tuple(pos[0]) == (RESUME[0], RESUME[1] + 1)
        assert tuple(pos[n_batches - RESUME[1] - 1]) == (RESUME[0] + 1, 0)


def test_uneven_count_skips_exactly_the_documented_rows(uneven):
    n, ranks = uneven
    world = len(ranks)
    n_batches = n // (world * BATCH)
    assert all(int(r["batches_per_epoch"]) == n_batches for r in ranks)  # lock-step
    for epoch in (0, 1):
        served = np.concatenate([r[f"epoch{epoch}"] for r in ranks])
        skipped = np.concatenate([r[f"skipped{epoch}"] for r in ranks])
        assert len(skipped) == n % (world * BATCH) == 23  # R = N mod (W B), the minimum
        assert np.array_equal(np.sort(np.concatenate([served, skipped])), np.arange(n))  # no overlap, no loss
        for rank, r in enumerate(ranks):
            owned = (rank + 1) * n // world - rank * n // world  # floor or ceil of N / W rows
            assert len(r["owned"]) == owned and len(r[f"skipped{epoch}"]) == owned - n_batches * BATCH
    for r in ranks:  # different rows skipped each epoch
        assert not np.array_equal(np.sort(r["skipped0"]), np.sort(r["skipped1"]))


def test_mpi_partition_equals_the_launcher_environment_partition(uneven, tmp_path):
    """The same rows come out when rank and world come from the environment instead of mpi4py."""
    from mosaic_hpc.config import DataConfig
    from mosaic_hpc.data.catalog import Catalog
    from mosaic_hpc.data.reader import ShardedReader, resolve_rank

    n, ranks = uneven
    catalog = Catalog.open(make_catalog(tmp_path / "cat", n), "train")  # same seed, same rows
    cfg = DataConfig(micro_batch_size=BATCH, block_rows=32, shuffle_buffer=64)
    for rank, r in enumerate(ranks):
        where = resolve_rank(env={"SLURM_PROCID": str(rank), "SLURM_NTASKS": str(len(ranks))})
        assert where == (rank, len(ranks))
        reader = ShardedReader(catalog, cfg, *where, seed=11)
        assert np.array_equal(reader.rank_rows(0), r["epoch0"])
        assert np.array_equal(reader.rank_rows(1), r["epoch1"])


@pytest.mark.benchmark
def test_dataloader_benchmark_runs_at_toy_size(tmp_path):
    """1 and 2 ranks in one run, JSON out, and --record rewrites only its own RESULTS.md section."""
    import argparse
    import json

    from mosaic_hpc.bench import dataloader

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Data loader\n\nold numbers\n\n## Throughput\n\nkept\n")
    parser = argparse.ArgumentParser()
    dataloader.add_arguments(parser)
    config = str(REPO / "configs" / "tiny.yaml")
    argv = f"--rows 3000 --repeats 1 --skip-train --record --num-workers 1 --config {config}".split()
    args = parser.parse_args([*argv, "--work-dir", str(tmp_path), "--results", str(results)])
    if shutil.which("mpiexec") is None and not Path(sys.executable).with_name("mpiexec").exists():
        pytest.skip("no mpiexec (pip install mpich)")
    assert dataloader.run(args) == 0
    report = json.loads((tmp_path / "dataloader.json").read_text())
    assert [r["ranks"] for r in report["runs"]] == [1, 2]
    for run in report["runs"]:
        assert set(run["modes"]) == {"raw", "reader", "masked"}
        assert all(m["samples_per_s"] > 0 for m in run["modes"].values())
    text = results.read_text()
    assert "old numbers" not in text and text.count("## Data loader") == 1
    assert "## Throughput\n\nkept" in text and "| 2 | 1 | masked |" in text


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    rank_main(Path(sys.argv[1]), Path(sys.argv[2]))
