"""``mpiexec -n 2 mosaic-hpc predict-shards|encode-shards`` over 8 shards: equal to one rank, and kill -9 + rerun
loses and duplicates nothing.

Both commands run through the one shard loop (mosaic_hpc/lifecycle/sharded.py), so each test runs
for both. The kill lands at a random time within a full run's duration (seeded; 5 times for
predict, 2 for encode to keep the suite short), so it hits model loading, computing, writing an
output or writing a record; every rerun must then produce exactly the one-rank reference, shard
for shard and value for value, with one ``ok`` record per shard.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shard_predictions import assert_same_predictions, manifest_records, read_predictions

REPO = Path(__file__).resolve().parents[2]
MPIEXEC = Path(sys.executable).parent / "mpiexec"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not MPIEXEC.exists(), reason=f"no mpiexec next to {sys.executable} (pip install mpich)"),
]

# command -> (its own arguments, kill attempts, closing-line verb)
TASKS = {
    "predict-shards": (["--given", "lsst"], 5, "predicted"),
    "encode-shards": (["--given", "lsst", "--chunk-rows", "40"], 2, "encoded"),
}


def _cmd(task: str, run: Path, shards: Path, out: Path, n: int) -> list[str]:
    cli = [sys.executable, "-m", "mosaic_hpc.cli", task, "--run", str(run), "--input", str(shards)]
    cli += ["--out", str(out), *TASKS[task][0], "--batch-size", "32", "--no-progress"]
    return [str(MPIEXEC), "-n", str(n), *cli]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE") and not k.startswith("PMI_")}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module", params=sorted(TASKS))
def task(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def reference(task, tiny_run_dir, toy_shards, tmp_path_factory) -> tuple[dict, float]:
    out = tmp_path_factory.mktemp("one_rank")
    t0 = time.perf_counter()
    _run(_cmd(task, tiny_run_dir, toy_shards, out, 1))
    return read_predictions(out), time.perf_counter() - t0


def test_two_ranks_equal_one_rank_value_for_value(task, tiny_run_dir, toy_shards, reference, tmp_path):
    proc = _run(_cmd(task, tiny_run_dir, toy_shards, tmp_path, 2))
    verb = TASKS[task][2]
    assert f"rank 0: 4 shards {verb}" in proc.stdout and f"rank 1: 4 shards {verb}" in proc.stdout
    assert_same_predictions(read_predictions(tmp_path), reference[0])


def test_kill_9_at_a_random_point_then_rerun_gives_identical_outputs(
    task, tiny_run_dir, toy_shards, reference, tmp_path
):
    expected, full_seconds = reference
    rng = random.Random(14)
    killed = 0
    for attempt in range(TASKS[task][1]):
        out = tmp_path / f"attempt{attempt}"
        proc = subprocess.Popen(
            _cmd(task, tiny_run_dir, toy_shards, out, 2),
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.2, 0.9 * full_seconds))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # every rank and mpiexec, wherever they are
            killed += 1
        proc.wait(timeout=60)
        _run(_cmd(task, tiny_run_dir, toy_shards, out, 2))
        assert_same_predictions(read_predictions(out), expected)
        records = manifest_records(out)
        finished = sorted(r["shard"] for r in records if r["status"] == "ok")
        assert finished == sorted(p.name for p in toy_shards.glob("*.h5"))
        assert sum(r["rows"] for r in records) == 512  # every row once
        assert not [p.name for p in out.iterdir() if "tmp" in p.name]  # no temporary of a killed run is left
    assert killed >= 1, "no run was killed before it finished: the test checked nothing"
