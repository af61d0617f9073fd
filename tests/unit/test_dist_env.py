"""read_dist_env: one case per launcher, and the inconsistent environments it must refuse."""

from __future__ import annotations

import pytest

from mosaic_hpc.dist_env import DEFAULT_PORT, DistEnv, first_slurm_host, read_dist_env

# (case id, environment, expected (rank, world, local rank, master addr, port, launcher))
CASES = [
    ("no launcher", {}, (0, 1, 0, "127.0.0.1", DEFAULT_PORT, "single")),
    (
        "torchrun",
        {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "MASTER_ADDR": "node01", "MASTER_PORT": "29600"},
        (3, 8, 3, "node01", 29600, "torchrun"),
    ),
    (
        "deepspeed launcher (same variables as torchrun)",
        {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"},
        (1, 2, 1, "127.0.0.1", 29500, "torchrun"),
    ),
    (
        "torchrun inside a SLURM allocation wins over SLURM",
        {"RANK": "0", "WORLD_SIZE": "4", "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "MASTER_ADDR": "n1"},
        (0, 4, 0, "n1", DEFAULT_PORT, "torchrun"),
    ),
    (
        "Open MPI",
        {"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_RANK": "1"},
        (5, 8, 1, "127.0.0.1", DEFAULT_PORT, "openmpi"),
    ),
    (
        "MPICH/PALS (Polaris) with PBS_NODEFILE",
        {"PMI_RANK": "6", "PMI_SIZE": "8", "PALS_LOCAL_RANKID": "2", "PBS_NODEFILE": "{nodefile}"},
        (6, 8, 2, "x3005c0s13b0n0", DEFAULT_PORT, "mpich"),
    ),
    (
        "MPICH hydra (mpiexec -n 2)",
        {"PMI_RANK": "1", "PMI_SIZE": "2", "MPI_LOCALRANKID": "1", "MASTER_ADDR": "127.0.0.1"},
        (1, 2, 1, "127.0.0.1", DEFAULT_PORT, "mpich"),
    ),
    ("MPICH, one process", {"PMI_RANK": "0", "PMI_SIZE": "1"}, (0, 1, 0, "127.0.0.1", DEFAULT_PORT, "mpich")),
    (
        "SLURM srun (Perlmutter)",
        {"SLURM_PROCID": "4", "SLURM_NTASKS": "8", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "nid[001234-001235]"},
        (4, 8, 0, "nid001234", DEFAULT_PORT, "slurm"),
    ),
    (
        "SLURM with an explicit MASTER_ADDR and port",
        {"SLURM_PROCID": "1", "SLURM_NTASKS": "2", "MASTER_ADDR": "login7", "MASTER_PORT": "30000"},
        (1, 2, 0, "login7", 30000, "slurm"),
    ),
]

BAD = [
    ("rank outside world", {"RANK": "2", "WORLD_SIZE": "2"}, "rank 2 is outside world size 2"),
    ("world size zero", {"RANK": "0", "WORLD_SIZE": "0"}, "world size 0 must be >= 1"),
    ("local rank above rank", {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, "local rank 1 is inconsistent"),
    ("non-integer rank", {"RANK": "one", "WORLD_SIZE": "2"}, "RANK='one' is not an integer"),
    ("PMI without size", {"PMI_RANK": "0"}, "PMI_SIZE is not"),
    ("SLURM rank outside", {"SLURM_PROCID": "9", "SLURM_NTASKS": "8"}, "slurm: rank 9 is outside world size 8"),
    ("bad port", {"MASTER_PORT": "http"}, "MASTER_PORT='http' is not an integer"),
    ("missing PBS node file", {"PMI_RANK": "0", "PMI_SIZE": "2", "PBS_NODEFILE": "/nonexistent"}, "does not exist"),
]


@pytest.fixture
def nodefile(tmp_path):
    path = tmp_path / "nodefile"
    path.write_text("x3005c0s13b0n0\nx3005c0s13b0n0\nx3005c0s13b1n0\n")
    return str(path)


@pytest.mark.parametrize("case,env,expected", CASES, ids=[c[0] for c in CASES])
def test_launcher_environment(case, env, expected, nodefile):
    env = {k: v.format(nodefile=nodefile) for k, v in env.items()}
    got = read_dist_env(env)
    assert (got.rank, got.world_size, got.local_rank, got.master_addr, got.master_port, got.launcher) == expected


@pytest.mark.parametrize("case,env,message", BAD, ids=[c[0] for c in BAD])
def test_inconsistent_environment_is_a_value_error(case, env, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_dist_env(env)


def test_export_round_trips_through_the_torchrun_variables():
    env = DistEnv(rank=3, world_size=4, local_rank=1, master_addr="n7", master_port=29999, launcher="mpich")
    again = read_dist_env(env.export())
    assert (again.rank, again.world_size, again.local_rank, again.master_addr, again.master_port) == (
        3,
        4,
        1,
        "n7",
        29999,
    )


@pytest.mark.parametrize(
    "nodelist,first",
    [("nid001234", "nid001234"), ("nid[001234-001237,001300]", "nid001234"), ("gpu[7,9]", "gpu7")],
)
def test_first_slurm_host(nodelist, first):
    assert first_slurm_host(nodelist) == first
