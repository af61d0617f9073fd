"""``sbatch launchers/perlmutter.sh`` on a real two-node SLURM cluster: train, requeue, resume on one node.

The cluster: one controller and two slurmd nodes, ``mosaic-n1`` and ``mosaic-n2``, each in a
network namespace of its own with its own hostname, address and hosts file (netns_hosts.py), so
the two DeepSpeed ranks (CPU, gloo) rendezvous and all-reduce over a network between hosts.

The story is the one the requeue protocol exists for (docs/hpc.md). A user submits a two-node
job; one node develops a fault (it is drained: no new job may start on it) and the walltime
signal arrives (SIGUSR1 to the batch shell, what ``--signal=B:USR1@300`` sends). The launcher
forwards it, both ranks write their ZeRO shards of one checkpoint, the launcher requeues the job
(``scontrol requeue``), and the job, unable to get two nodes, is shrunk to the healthy one
(``scontrol update NumNodes=1-1 NumTasks=1 NumCPUs=1``). It restarts there as one rank, resumes from the two-rank
checkpoint (converted to a universal checkpoint) and finishes; ``mosaic-hpc predict`` then reads
the final checkpoint.

Skips only where SLURM cannot be installed (``.ci/install_slurm.sh``) or we are not root; a
failure to build the network namespaces is a test failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netns_hosts import VirtualHosts
from slurm_cluster import SlurmCluster, unavailable_reason

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PERLMUTTER = REPO_ROOT / "launchers" / "perlmutter.sh"
NODES = ("mosaic-n1", "mosaic-n2")
MAX_STEPS = 60
# Perlmutter's #SBATCH lines as written, plus what a CPU-only cluster needs: 2 nodes x 1 rank.
SBATCH = ["--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=0", "--cpus-per-task=1", "--time=00:10:00"]
# Each rank records where it runs (host name and address) before starting the trainer.
WHERE = """#!/bin/sh
echo "$(hostname) $(hostname -I)" > "$MOSAIC_RUN_DIR/where.${SLURM_RESTART_COUNT:-0}.$SLURM_PROCID"
exec "$@"
"""


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[SlurmCluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = SlurmCluster(n_cpus=1, hosts=VirtualHosts(NODES))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


def _wait(what: str, ready, cluster: SlurmCluster, job_id: str, log, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: {cluster.job_info(job_id)}\n{log()[-4000:]}")
        time.sleep(0.3)


def test_two_nodes_train_requeue_resume_on_one_node_then_predict(
    two_nodes: SlurmCluster, toy_catalog_dir: Path, tmp_path: Path
) -> None:
    cluster, run_dir = two_nodes, tmp_path / "run"
    where = tmp_path / "where.sh"
    where.write_text(WHERE)
    where.chmod(0o755)
    env = {
        "MOSAIC_MODULES": "",
        "MOSAIC_PYTHON": sys.executable,
        "MOSAIC_RUN_DIR": str(run_dir),
        "MOSAIC_DATA": str(toy_catalog_dir),
        "MOSAIC_CONFIG": "configs/tiny.yaml",
        "MOSAIC_DS_CONFIG": "configs/zero2.json",
        "MOSAIC_MAX_STEPS": str(MAX_STEPS),
        "MOSAIC_TASK_WRAPPER": str(where),
    }
    job = cluster.submit([*SBATCH, str(PERLMUTTER)], cwd=tmp_path, env=env)
    log = lambda: "\n".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("mosaic-*.out")))
    metrics = run_dir / "metrics.jsonl"
    _wait("the first logged step", lambda: metrics.is_file() and metrics.read_text().strip(), cluster, job, log)

    # A fault on the second node, then the walltime signal.
    drain = ["scontrol", "update", f"nodename={NODES[1]}", "state=drain", "reason=fault"]
    assert cluster.client(drain).returncode == 0
    assert cluster.client(["scancel", "--batch", "--signal=USR1", job]).returncode == 0
    requeued = lambda: (
        cluster.job_info(job).get("JobState") == "PENDING" and cluster.job_info(job).get("Restarts") == "1"
    )
    _wait("the requeue", requeued, cluster, job, log)

    # Between the two runs: the checkpoint of the signal, written by both ranks.
    signal_ckpt = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    stopped_at = int(json.loads((signal_ckpt / "client_state.json").read_text())["step"])
    assert 0 < stopped_at < MAX_STEPS
    assert json.loads((signal_ckpt / "client_state.json").read_text())["world_size"] == 2
    shards = sorted(p.name for p in signal_ckpt.glob("*optim_states.pt"))
    assert len(shards) == 2 and "zero_pp_rank_1" in shards[1], shards
    assert (signal_ckpt / "manifest.json").is_file()

    # Shrink the job to the healthy node; it restarts there and finishes.
    shrink = ["scontrol", "update", f"jobid={job}", "NumNodes=1-1", "NumTasks=1", "NumCPUs=1"]
    assert cluster.client(shrink).returncode == 0, cluster.client(shrink).stderr
    info = cluster.wait_job(job, timeout_s=240)
    text = log()
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{text[-4000:]}"
    assert "requeue: scontrol requeue" in text
    assert "nodes=2 ranks=2 (1/node, cpu)" in text and "nodes=1 ranks=1 (1/node, cpu)" in text
    assert "converting it to a universal checkpoint" in text and f"at step {stopped_at}," in text

    # Where the ranks ran: two hosts with two addresses, then the first host alone.
    first = [(run_dir / f"where.0.{r}").read_text().split() for r in (0, 1)]
    assert [f[0] for f in first] == list(NODES) and first[0][1] != first[1][1], first
    assert (run_dir / "where.1.0").read_text().split()[0] == NODES[0]
    assert not (run_dir / "where.1.1").exists()

    latest = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()
    assert latest.name == f"step_{MAX_STEPS:08d}"
    assert json.loads((latest / "client_state.json").read_text())["world_size"] == 1
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if "loss/total" in line]
    assert steps == sorted(set(steps)) and steps[-1] == MAX_STEPS, steps  # no step logged twice

    # The checkpoint read back by predict.
    out = tmp_path / "pred.h5"
    cmd = [sys.executable, "-m", "mosaic_hpc.cli", "predict", "--run", str(run_dir)]
    cmd += ["--input", str(toy_catalog_dir / "test.h5"), "--given", "lsst", "--out", str(out)]
    pred = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert pred.returncode == 0, pred.stderr
    with h5py.File(out) as f, h5py.File(toy_catalog_dir / "test.h5") as truth:
        assert f.attrs["run"] == str(latest)
        z, z_true = f["predictions/scalars"][:, 0], truth["modalities/scalars"][:, 0]
    assert np.isfinite(z).all() and z.shape == z_true.shape
