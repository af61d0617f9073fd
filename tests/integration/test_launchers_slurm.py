"""launchers/perlmutter.sh on a real one-node SLURM cluster started on this machine.

The cluster (Debian's munged, slurmctld, slurmd; see slurm_cluster.py) has one node with
``Feature=gpu``, so Perlmutter's ``#SBATCH --constraint=gpu`` and ``--qos=regular`` lines are
accepted as written. The jobs are submitted exactly as a user would, ``sbatch [options]
launchers/perlmutter.sh``, with the command-line overrides a CPU machine needs (documented in
docs/hpc.md): ``--gpus-per-node=0`` (which also switches the launcher to CPU), ``-c 1`` and
``--ntasks-per-node=2`` (2 tasks on 2 cores).

Skips only when SLURM is not installed (``.ci/install_slurm.sh``) or we are not root.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_cluster import SlurmCluster, unavailable_reason

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PERLMUTTER = REPO_ROOT / "launchers" / "perlmutter.sh"
FAKE_TRAINER = Path(__file__).resolve().parent / "fake_trainer.py"
# What a CPU-only SLURM cluster needs on top of the script's #SBATCH defaults.
CPU_SBATCH_OVERRIDES = ["--gpus-per-node=0", "--cpus-per-task=1", "--ntasks-per-node=2", "--time=00:10:00"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    slurm = SlurmCluster()
    try:
        slurm.start()
        yield slurm
    finally:
        slurm.cleanup()


def job_env(run_dir: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    """MOSAIC_* overrides for a CPU job on the test cluster."""
    env = {
        "MOSAIC_MODULES": "",  # no Lmod here; the venv's python is on PATH
        "MOSAIC_PYTHON": sys.executable,
        "MOSAIC_RUN_DIR": str(run_dir),
        "MOSAIC_DATA": str(data_dir),
        "MOSAIC_CONFIG": "configs/tiny.yaml",
        "MOSAIC_DS_CONFIG": "none",
    }
    env.update(extra)
    return env


def read_runs(run_dir: Path) -> list[dict]:
    path = run_dir / "fake" / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def job_log(cwd: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(cwd.glob("mosaic-*.out")))


def test_cluster_runs_two_task_job(cluster: SlurmCluster, tmp_path: Path) -> None:
    """Sanity: -C gpu and --qos are accepted and srun starts 2 tasks."""
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --constraint=gpu\n#SBATCH --qos=regular\n#SBATCH --ntasks=2\n"
        "#SBATCH --cpus-per-task=1\n#SBATCH --output=job.out\n"
        "srun -n 2 -c 1 bash -c 'echo task $SLURM_PROCID of $SLURM_NTASKS'\n"
    )
    proc = cluster.sbatch([str(script)], cwd=tmp_path, timeout_s=60)
    assert proc.returncode == 0, proc.stderr
    out = (tmp_path / "job.out").read_text()
    assert "task 0 of 2" in out and "task 1 of 2" in out, out


def test_perlmutter_signal_checkpoint_requeue_resume(cluster: SlurmCluster, tmp_path: Path) -> None:
    """Walltime protocol end to end with the fake trainer (fast, no torch).

    SIGUSR1 to the batch shell (what --signal=B:USR1@300 does before the walltime) is forwarded
    through srun to both ranks, which checkpoint and exit 0; the launcher requeues the job
    (scontrol requeue: same job id, same run directory) and the restart resumes from
    checkpoints/latest to the last step.
    """
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    data_dir.mkdir()
    env = job_env(
        run_dir,
        data_dir,
        MOSAIC_PYTHON=f"{sys.executable} {FAKE_TRAINER}",
        MOSAIC_MAX_STEPS="60",
        FAKE_STEP_SECS="0.1",
    )
    job_id = cluster.submit([*CPU_SBATCH_OVERRIDES, str(PERLMUTTER)], cwd=tmp_path, env=env)

    # Wait until both ranks are stepping, then send what SLURM sends before the walltime.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all((run_dir / "fake" / f"progress.{r}").exists() for r in range(2)):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"ranks never started: {cluster.job_info(job_id)}\n{job_log(tmp_path)}")
    signal_proc = cluster.client(["scancel", "--batch", "--signal=USR1", job_id])
    assert signal_proc.returncode == 0, signal_proc.stderr

    info = cluster.wait_job(job_id, timeout_s=120)
    log = job_log(tmp_path)
    assert info["JobState"] == "COMPLETED", f"{info}\n{log}"
    assert info.get("Restarts") == "1" or info.get("RestartCnt") == "1", info

    runs = read_runs(run_dir)
    first = sorted((r for r in runs if r["start"] == 0), key=lambda r: r["rank"])
    second = sorted((r for r in runs if r["start"] > 0), key=lambda r: r["rank"])
    assert [r["rank"] for r in first] == [0, 1], log
    assert all(r["reason"] == "SIGUSR1" and r["world"] == 2 for r in first), first
    assert all(r["source"] == "SLURM_PROCID" for r in runs), runs
    stopped_at = first[0]["end"]
    assert 0 < stopped_at < 60
    assert [r["rank"] for r in second] == [0, 1], log
    assert all(r["start"] == stopped_at and r["end"] == 60 and r["reason"] == "done" for r in second)
    assert all(r["env"]["SLURM_RESTART_COUNT"] == "1" for r in second)
    assert all(r["env"]["MASTER_ADDR"] == cluster.node_name for r in runs)
    assert all(r["env"]["HDF5_USE_FILE_LOCKING"] == "FALSE" for r in runs)
    assert (run_dir / "checkpoints" / "latest").read_text() == "step60"
    assert "requeue: scontrol requeue" in log


def test_perlmutter_trains_tiny_then_resumes(cluster: SlurmCluster, toy_catalog_dir: Path, tmp_path: Path) -> None:
    """sbatch launchers/perlmutter.sh trains configs/tiny.yaml with 2 tasks (ZeRO-2 on CPU);
    the walltime signal (SIGUSR1 to the batch shell, as --signal=B:USR1 sends it) makes the real
    trainer checkpoint and exit 0; a second submission into the same run directory resumes from
    that checkpoint and finishes. (Requeue is off here, MOSAIC_MAX_REQUEUES=0, to show the
    resubmission; the requeue chain is tested above. Jobs are polled every 0.5 s rather than
    with sbatch --wait, whose growing poll interval would add ~40 s; the sanity test uses it.)"""
    run_dir = tmp_path / "run"
    # Several ranks need the DeepSpeed engine (ZeRO-2 on CPU uses gloo).
    env = job_env(
        run_dir, toy_catalog_dir, MOSAIC_MAX_STEPS="200", MOSAIC_DS_CONFIG="configs/zero2.json", MOSAIC_MAX_REQUEUES="0"
    )
    job_id = cluster.submit([*CPU_SBATCH_OVERRIDES, str(PERLMUTTER)], cwd=tmp_path, env=env)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.exists() and metrics.read_text().strip()):
        info = cluster.job_info(job_id)
        assert info.get("JobState") in ("PENDING", "RUNNING"), f"{info}\n{job_log(tmp_path)}"
        assert time.monotonic() < deadline, f"no training step logged: {info}\n{job_log(tmp_path)}"
        time.sleep(0.2)
    signal_proc = cluster.client(["scancel", "--batch", "--signal=USR1", job_id])
    assert signal_proc.returncode == 0, signal_proc.stderr
    info = cluster.wait_job(job_id, timeout_s=180)
    log = job_log(tmp_path)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{log}"
    assert "received SIGUSR1: forwarding to the ranks" in log
    assert "not requeueing" in log
    latest = run_dir / "checkpoints" / "latest"
    assert latest.is_file(), log
    first_tag = latest.read_text().strip()
    stopped_at = int(first_tag.rsplit("_", 1)[-1])
    assert 0 < stopped_at < 200, log  # saved on the signal, before the last step
    assert (run_dir / "checkpoints" / first_tag).is_dir()

    info = cluster.submit_and_wait([*CPU_SBATCH_OVERRIDES, str(PERLMUTTER)], cwd=tmp_path, env=env, timeout_s=240)
    log = job_log(tmp_path)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{log}"
    assert f"resuming from checkpoint {first_tag}" in log  # the launcher saw it
    assert re.search(rf"resumed from \S+ at step {stopped_at}\b", log), log  # the trainer loaded it
    second_tag = latest.read_text().strip()
    assert second_tag.endswith("_00000200"), log
    assert os.path.isdir(run_dir / "checkpoints" / second_tag)


def test_scaling_benchmark_inside_an_allocation(cluster: SlurmCluster, tmp_path: Path) -> None:
    """`mosaic-hpc bench scaling --launcher perlmutter` run inside a job, as docs/benchmarks.md
    tells users to (salloc, then the benchmark): each point is started by launchers/perlmutter.sh
    with srun on the allocation's first nodes, and the 1- and 2-rank points both train."""
    work = tmp_path / "work"
    script = tmp_path / "scaling_job.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#SBATCH --constraint=gpu\n#SBATCH --qos=regular\n#SBATCH --nodes=1\n#SBATCH --output=scaling.out\n"
        f"exec {sys.executable} -m mosaic_hpc.cli bench scaling --config tiny --launcher perlmutter "
        "--ranks-per-node 2 --ranks 1,2 --modes weak --device cpu --steps 6 --warmup 2 --micro-batch 16 "
        f"--rows 1024 --work-dir {work} --out {work}/scaling.json\n"
    )
    env = {"MOSAIC_MODULES": "", "MOSAIC_PYTHON": sys.executable, "PYTHONPATH": str(REPO_ROOT)}
    info = cluster.submit_and_wait([*CPU_SBATCH_OVERRIDES, str(script)], cwd=tmp_path, env=env, timeout_s=300)
    log = (tmp_path / "scaling.out").read_text(errors="replace")
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", f"{info}\n{log[-3000:]}"
    report = json.loads((work / "scaling.json").read_text())
    assert [r["status"] for r in report["runs"]] == ["ok", "ok"], report["runs"]
    assert report["settings"]["launcher"] == "perlmutter"
    points = report["results"]["weak"]
    assert [p["ranks"] for p in points] == [1, 2]
    assert 0 < points[1]["efficiency"] <= 1.2, points
    two = (work / "n2-b16-r0" / "bench_launch.log").read_text(errors="replace")
    assert "site=perlmutter" in two and "ranks=2 (2/node, cpu)" in two and "rank 0/2" in two, two
