"""``mpiexec -n 2 mosaic-hpc make-catalog``: one shard per rank, read back as one catalog.

Runs the real launcher (the venv's MPICH ``mpiexec``) on the real CLI module, then checks the
shard layout, that the two ranks drew different galaxies from disjoint random streams, that
both splits of both ranks carry the same merged training statistics, and that a second run with
the same seed and rank count is identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.data.normalization import RunningStats

MPIEXEC = Path(sys.executable).parent / "mpiexec"
N_GALAXIES = 1200

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not MPIEXEC.exists(), reason=f"no mpiexec next to {sys.executable} (pip install mpich)"),
]


def _make(out: Path, seed: int = 3) -> subprocess.CompletedProcess:
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "mosaic_hpc.cli", "make-catalog"]
    cmd += ["--n-galaxies", str(N_GALAXIES), "--out", str(out), "--seed", str(seed), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mpi") / "cat"
    res = _make(out)
    assert res.returncode == 0, res.stderr[-3000:]
    return out


def test_one_shard_per_rank_read_back_as_one_catalog(shard_dir: Path) -> None:
    for split in ("train", "val", "test"):
        assert sorted(p.name for p in (shard_dir / split).iterdir()) == ["shard-00000.h5", "shard-00001.h5"]
    assert not (shard_dir / "train.h5").exists()
    train, val, test = (Catalog.open(shard_dir, s) for s in ("train", "val", "test"))
    assert len(train.paths) == 2 and train.n_rows + val.n_rows + test.n_rows == N_GALAXIES
    assert val.n_rows == round(0.1 * N_GALAXIES) and test.n_rows == round(0.1 * N_GALAXIES)
    assert train.file_rows[0] > 0 and train.file_rows[1] > 0
    rows = train.read_all()
    assert rows["sed"].shape == (train.n_rows, 921) and np.isfinite(rows["scalars"]).all()


def test_ranks_draw_different_galaxies(shard_dir: Path) -> None:
    train = Catalog.open(shard_dir, "train")
    first = train.read(0, train.file_rows[0])["scalars"]
    second = train.read(train.file_rows[0], train.n_rows)["scalars"]
    # disjoint streams: no galaxy (redshift, halo mass, stellar mass) appears on both ranks
    assert not set(map(tuple, first.tolist())) & set(map(tuple, second.tolist()))
    train.close()
    with h5py.File(train.paths[0], "r", locking=False) as a, h5py.File(train.paths[1], "r", locking=False) as b:
        assert (a.attrs["rank"], b.attrs["rank"], a.attrs["n_ranks"]) == (0, 1, 2)


def test_stats_are_the_merged_training_statistics(shard_dir: Path) -> None:
    train, test = Catalog.open(shard_dir, "train"), Catalog.open(shard_dir, "test")  # both check shard agreement
    rows = train.read_all()
    for name in train.schema.names:
        np.testing.assert_array_equal(train.stats.mean[name], test.stats.mean[name])
        rs = RunningStats(train.schema[name].length)
        rs.update(rows[name])
        mode = train.stats.modes[name]
        mean, std = rs.finalize(mode, name)
        np.testing.assert_allclose(train.stats.mean[name], mean, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(train.stats.std[name], std, rtol=1e-5, err_msg=name)


def test_same_seed_and_ranks_is_bit_identical(shard_dir: Path, tmp_path: Path) -> None:
    res = _make(tmp_path / "again")
    assert res.returncode == 0, res.stderr[-3000:]
    for split in ("train", "val", "test"):
        for shard in ("shard-00000.h5", "shard-00001.h5"):
            first, again = shard_dir / split / shard, tmp_path / "again" / split / shard
            with h5py.File(first, "r", locking=False) as a, h5py.File(again, "r", locking=False) as b:
                for group in ("modalities", "stats"):
                    names: list[str] = []
                    a[group].visit(names.append)
                    for n in names:
                        if isinstance(a[group][n], h5py.Dataset):
                            np.testing.assert_array_equal(a[group][n][()], b[group][n][()], err_msg=n)


def test_bad_input_under_mpi_fails_cleanly_on_every_rank(tmp_path: Path) -> None:
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "mosaic_hpc.cli", "make-catalog"]
    cmd += ["--n-galaxies", "-3", "--out", str(tmp_path / "bad")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "positive integer" in res.stderr
    assert not (tmp_path / "bad").exists()
