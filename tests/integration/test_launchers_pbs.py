"""launchers/polaris.pbs and launchers/swing.pbs under a PBS harness, with mpich's mpiexec.

The harness gives a job script what PBS Pro would: a spooled copy of the script run from a
working directory of its own, PBS_JOBID, PBS_NODEFILE (this host), PBS_O_WORKDIR (the checkout,
as when submitting from the repository root), and fake ``qsub``/``qstat`` on PATH that record
resubmissions and report the job's walltime. MPI is the venv's MPICH (Hydra) ``mpiexec``; the
launcher recognises it and uses Hydra's options instead of PALS' ``--depth/--cpu-bind``. Site
overrides for this CPU machine: MOSAIC_DEVICE=cpu, MOSAIC_GPUS_PER_NODE=2 (2 ranks), no modules,
conda env or proxy.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
FAKE_TRAINER = Path(__file__).resolve().parent / "fake_trainer.py"

FAKE_QSUB = """#!/bin/bash
# Records each submission (one line of shell-quoted arguments) and answers with a job id.
printf '%q ' "$@" >>"$HARNESS_DIR/qsub.log"
echo >>"$HARNESS_DIR/qsub.log"
echo "2002.harness"
"""
FAKE_QSTAT = """#!/bin/bash
# qstat -f JOBID: the attributes the launcher reads.
echo "Job Id: $2"
echo "    Account_Name = harness_project"
echo "    Submit_arguments = -A harness_project -q prod -l select=1 launchers/x.pbs"
echo "    Resource_List.walltime = ${HARNESS_WALLTIME:-01:00:00}"
"""


def find_mpiexec() -> Path | None:
    for candidate in (Path(sys.executable).parent / "mpiexec", shutil.which("mpiexec")):
        if candidate and Path(candidate).exists():
            version = subprocess.run([str(candidate), "--version"], capture_output=True, text=True)
            if "HYDRA" in version.stdout + version.stderr:
                return Path(candidate)
    return None


@pytest.fixture(scope="module")
def mpiexec() -> Path:
    path = find_mpiexec()
    if path is None:
        pytest.skip("mpich's mpiexec (Hydra) not found: pip install mpich")
    return path


def pbs_job_env(work_dir: Path, mpiexec: Path, env: dict[str, str], job_id: str = "1001.harness") -> dict[str, str]:
    """What PBS Pro's MoM gives a job on this host: PBS_* variables, a node file, fake qsub/qstat."""
    work_dir.mkdir(parents=True, exist_ok=True)
    fake_bin = work_dir / "bin"
    fake_bin.mkdir(exist_ok=True)
    for name, text in (("qsub", FAKE_QSUB), ("qstat", FAKE_QSTAT)):
        (fake_bin / name).write_text(text)
        (fake_bin / name).chmod(0o755)
    nodefile = work_dir / "nodefile"
    nodefile.write_text(socket.gethostname() + "\n")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_", "MOSAIC_"))}
    full_env.update(
        PATH=f"{fake_bin}{os.pathsep}{mpiexec.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        PBS_JOBID=job_id,
        PBS_JOBNAME="mosaic",
        PBS_QUEUE="debug",
        PBS_NODEFILE=str(nodefile),
        PBS_O_WORKDIR=str(REPO_ROOT),
        HARNESS_DIR=str(work_dir),
        MOSAIC_DEVICE="cpu",
        MOSAIC_GPUS_PER_NODE="2",
        MOSAIC_MODULES="",
        MOSAIC_CONDA_ENV="",
        MOSAIC_PROXY="",
        MOSAIC_MPIEXEC=str(mpiexec),
        MOSAIC_PYTHON=sys.executable,
        MOSAIC_CONFIG="configs/tiny.yaml",
        MOSAIC_DS_CONFIG="none",
    )
    full_env.update(env)
    return full_env


def run_pbs_job(
    site: str,
    work_dir: Path,
    mpiexec: Path,
    env: dict[str, str],
    job_id: str = "1001.harness",
    timeout_s: float = 240.0,
) -> subprocess.CompletedProcess[str]:
    """Run launchers/SITE.pbs the way PBS Pro's MoM would, on this host."""
    full_env = pbs_job_env(work_dir, mpiexec, env, job_id)
    spool = work_dir / "spool"
    spool.mkdir(exist_ok=True)
    script = spool / f"{job_id}.SC"
    shutil.copy(REPO_ROOT / "launchers" / f"{site}.pbs", script)
    return subprocess.run(
        ["bash", str(script)],
        cwd=work_dir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def read_runs(run_dir: Path) -> list[dict]:
    path = run_dir / "fake" / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def qsub_calls(work_dir: Path) -> list[str]:
    log = work_dir / "qsub.log"
    return log.read_text().splitlines() if log.exists() else []


def qsub_vars(call: str) -> dict[str, str]:
    """The -v VAR=value,... list of a recorded qsub call."""
    args = shlex.split(call)
    text = args[args.index("-v") + 1]
    return dict(item.split("=", 1) for item in text.split(","))


@pytest.mark.parametrize("site", ["polaris", "swing"])
def test_fake_trainer_completes_then_resumes(site: str, mpiexec: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (tmp_path / "data").mkdir()
    env = {
        "MOSAIC_PYTHON": f"{sys.executable} {FAKE_TRAINER}",
        "MOSAIC_RUN_DIR": str(run_dir),
        "MOSAIC_DATA": str(tmp_path / "data"),
        "MOSAIC_MAX_STEPS": "10",
    }
    proc = run_pbs_job(site, tmp_path / "job1", mpiexec, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = read_runs(run_dir)
    assert sorted(r["rank"] for r in runs) == [0, 1], proc.stderr
    assert all(r["world"] == 2 and r["source"] == "PMI_RANK" and r["end"] == 10 for r in runs)
    assert all(r["env"]["MASTER_ADDR"] == socket.gethostname() for r in runs)
    assert all(r["env"]["HDF5_USE_FILE_LOCKING"] == "FALSE" for r in runs)
    assert all(r["env"]["CUDA_VISIBLE_DEVICES"] is None for r in runs)  # CPU: no GPU binding
    assert "--resume" in runs[0]["argv"] and "--deepspeed_config" not in runs[0]["argv"]
    assert (run_dir / "checkpoints" / "latest").read_text() == "step10"
    assert (run_dir / "hostfile").read_text() == f"{socket.gethostname()} slots=2\n"
    assert qsub_calls(tmp_path / "job1") == []  # finished: no resubmission

    env["MOSAIC_MAX_STEPS"] = "15"
    proc = run_pbs_job(site, tmp_path / "job2", mpiexec, env, job_id="1002.harness")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resumed = [r for r in read_runs(run_dir) if r["env"]["PBS_JOBID"] == "1002.harness"]
    assert sorted(r["rank"] for r in resumed) == [0, 1]
    assert all(r["start"] == 10 and r["end"] == 15 for r in resumed)
    assert "resuming from checkpoint step10" in proc.stderr


def test_polaris_walltime_signal_checkpoints_and_resubmits(mpiexec: Path, tmp_path: Path) -> None:
    """The job's walltime (qstat) minus MOSAIC_SIGNAL_SECS -> SIGUSR1 through mpiexec to both
    ranks -> checkpoint, exit 0 -> qsub of the same script after this job, same run directory.
    Running that resubmission resumes to the end."""
    run_dir = tmp_path / "run"
    (tmp_path / "data").mkdir()
    env = {
        "MOSAIC_PYTHON": f"{sys.executable} {FAKE_TRAINER}",
        "MOSAIC_RUN_DIR": str(run_dir),
        "MOSAIC_DATA": str(tmp_path / "data"),
        "MOSAIC_MAX_STEPS": "200",
        "MOSAIC_ACCOUNT": "myproject",
        "MOSAIC_SIGNAL_SECS": "5",
        "HARNESS_WALLTIME": "00:00:08",  # -> SIGUSR1 after 3 s
        "FAKE_STEP_SECS": "0.1",
    }
    job1 = tmp_path / "job1"
    proc = run_pbs_job("polaris", job1, mpiexec, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = read_runs(run_dir)
    assert sorted(r["rank"] for r in runs) == [0, 1], proc.stderr
    assert all(r["reason"] == "SIGUSR1" for r in runs), runs
    stopped_at = runs[0]["end"]
    assert 0 < stopped_at < 200
    assert (run_dir / "checkpoints" / "latest").read_text() == f"step{stopped_at}"

    calls = qsub_calls(job1)
    assert len(calls) == 1, proc.stderr
    call = calls[0]
    assert "-W depend=afterany:1001.harness" in call
    assert "-A myproject" in call and "-l select=1:system=polaris" in call
    assert "-l filesystems=home:eagle" in call
    assert call.rstrip().endswith(str(REPO_ROOT / "launchers" / "polaris.pbs"))
    forwarded = qsub_vars(call)
    assert forwarded["MOSAIC_RUN_DIR"] == str(run_dir)
    assert forwarded["MOSAIC_REQUEUE_COUNT"] == "1"
    assert forwarded["MOSAIC_MAX_STEPS"] == "200"
    assert forwarded["MOSAIC_WALLTIME"] == "00:00:08"  # the job's own, from qstat

    # PBS would now start the resubmitted job with exactly those variables.
    env2 = {k: v for k, v in forwarded.items()}
    env2.update(FAKE_STEP_SECS="0.01", MOSAIC_PYTHON=env["MOSAIC_PYTHON"])
    proc = run_pbs_job("polaris", tmp_path / "job2", mpiexec, env2, job_id="2002.harness")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resumed = [r for r in read_runs(run_dir) if r["env"]["PBS_JOBID"] == "2002.harness"]
    assert sorted(r["rank"] for r in resumed) == [0, 1]
    assert all(r["start"] == stopped_at and r["end"] == 200 and r["reason"] == "done" for r in resumed)
    assert qsub_calls(tmp_path / "job2") == []


def test_swing_requeue_marker_and_limit(mpiexec: Path, tmp_path: Path) -> None:
    """A trainer that stops on its own budget writes RUN_DIR/REQUEUE and exits 0: resubmitted,
    unless MOSAIC_MAX_REQUEUES resubmissions have already happened."""
    run_dir = tmp_path / "run"
    (tmp_path / "data").mkdir()
    env = {
        "MOSAIC_PYTHON": f"{sys.executable} {FAKE_TRAINER}",
        "MOSAIC_RUN_DIR": str(run_dir),
        "MOSAIC_DATA": str(tmp_path / "data"),
        "MOSAIC_MAX_STEPS": "40",
        "FAKE_STOP_AT": "5",
    }
    proc = run_pbs_job("swing", tmp_path / "job1", mpiexec, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(r["reason"] == "requeue-request" and r["end"] == 5 for r in read_runs(run_dir))
    assert not (run_dir / "REQUEUE").exists()  # consumed by the launcher
    calls = qsub_calls(tmp_path / "job1")
    assert len(calls) == 1 and "-l select=1 " in calls[0], calls  # CPU: no ngpus
    assert "-A harness_project" in calls[0] and "-q prod" in calls[0]  # the job's, from qstat
    assert calls[0].rstrip().endswith(str(REPO_ROOT / "launchers" / "swing.pbs"))

    shutil.rmtree(run_dir)
    env["MOSAIC_MAX_REQUEUES"] = "0"
    proc = run_pbs_job("swing", tmp_path / "job2", mpiexec, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert qsub_calls(tmp_path / "job2") == []
    assert "MOSAIC_MAX_REQUEUES=0" in proc.stderr


@pytest.mark.parametrize(("mode", "expected"), [("reverse", ["3", "2"]), ("identity", ["0", "1"])])
def test_gpu_affinity_binds_one_gpu_per_local_rank(mode: str, expected: list[str], mpiexec: Path) -> None:
    env = dict(os.environ, MOSAIC_GPU_AFFINITY=mode, MOSAIC_GPUS_PER_NODE="4")
    proc = subprocess.run(
        [
            str(mpiexec),
            "-n",
            "2",
            str(REPO_ROOT / "launchers" / "gpu_affinity.sh"),
            "bash",
            "-c",
            'echo "$PMI_RANK $CUDA_VISIBLE_DEVICES"',
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = sorted(proc.stdout.split("\n")[:-1])
    assert [line.split()[1] for line in lines] == expected
    # PALS (Polaris) names the local rank PALS_LOCAL_RANKID.
    proc = subprocess.run(
        [str(REPO_ROOT / "launchers" / "gpu_affinity.sh"), "bash", "-c", "echo $CUDA_VISIBLE_DEVICES"],
        env=dict(env, PALS_LOCAL_RANKID="1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.stdout.strip() == expected[1]


# ----------------------------------------------------------------- the real trainer, 2 ranks


def test_polaris_trains_tiny_with_two_ranks_then_resumes(mpiexec: Path, toy_catalog_dir: Path, tmp_path: Path) -> None:
    """polaris.pbs trains configs/tiny.yaml to a checkpoint with 2 MPI ranks (ZeRO-2 on CPU,
    gloo); a second job into the same run directory resumes from it. (swing.pbs shares this
    code path, mosaic_run_pbs_site, and runs to completion above with the fake trainer.)"""
    run_dir = tmp_path / "run"
    env = {
        "MOSAIC_RUN_DIR": str(run_dir),
        "MOSAIC_DATA": str(toy_catalog_dir),
        "MOSAIC_DS_CONFIG": "configs/zero2.json",
        "MOSAIC_MAX_STEPS": "20",
    }
    proc = run_pbs_job("polaris", tmp_path / "job1", mpiexec, env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    latest = run_dir / "checkpoints" / "latest"
    assert latest.is_file(), log
    first_tag = latest.read_text().strip()
    assert "rank 0/2" in log

    env["MOSAIC_MAX_STEPS"] = "30"
    proc = run_pbs_job("polaris", tmp_path / "job2", mpiexec, env, job_id="1002.harness")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert f"resuming from checkpoint {first_tag}" in log  # the launcher saw it
    assert re.search(r"resumed from \S+ at step 20\b", log), log  # the trainer loaded it
    assert latest.read_text().strip() != first_tag


def test_scaling_benchmark_inside_a_polaris_job(mpiexec: Path, tmp_path: Path) -> None:
    """`mosaic-hpc bench scaling --launcher polaris` from inside a job (as after `qsub -I`): each
    point is started by launchers/polaris.pbs with mpiexec on the job's first node."""
    job_dir, work = tmp_path / "job", tmp_path / "work"
    env = pbs_job_env(job_dir, mpiexec, {"PYTHONPATH": str(REPO_ROOT)})
    cmd = [sys.executable, "-m", "mosaic_hpc.cli", "bench", "scaling", "--config", "tiny", "--launcher", "polaris",
           "--ranks-per-node", "2", "--ranks", "1,2", "--modes", "weak", "--device", "cpu", "--steps", "6",
           "--warmup", "2", "--micro-batch", "16", "--rows", "1024", "--work-dir", str(work),
           "--out", str(work / "scaling.json")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=job_dir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((work / "scaling.json").read_text())
    assert [r["status"] for r in report["runs"]] == ["ok", "ok"], report["runs"]
    points = report["results"]["weak"]
    assert [p["ranks"] for p in points] == [1, 2] and 0 < points[1]["efficiency"] <= 1.2, points
    two = (work / "n2-b16-r0" / "bench_launch.log").read_text(errors="replace")
    assert "site=polaris" in two and "ranks=2 (2/node, cpu)" in two and "rank 0/2" in two, two
