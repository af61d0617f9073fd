"""Rank, world size, local rank and master address from whichever launcher started us.

One function reads the launcher environment for the data reader and the training engine alike,
so both agree on who is rank 0. Launchers are checked in a fixed order of specificity: torchrun
and the ``deepspeed`` launcher set RANK/WORLD_SIZE explicitly (they win, also when they run
inside a SLURM allocation), then Open MPI, MPICH/PALS (Polaris, Aurora, Swing) and SLURM's srun.
DeepSpeed's own MPI discovery shells out to ``hostname -I``, which breaks on ALCF systems, so
the engine passes ``auto_mpi_discovery=False`` and relies on this.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 29500


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job. ``launcher`` names the source of the values."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT
    launcher: str = "single"

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, metrics files and checkpoint pointers."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def export(self) -> dict[str, str]:
        """The torch.distributed variables for this process (``env://`` initialisation)."""
        return {
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(f"environment variable {key}={env[key]!r} is not an integer") from None


def first_slurm_host(nodelist: str) -> str:
    """First host of a SLURM node list: 'nid[001234-001237,001300]' -> 'nid001234'.

    Mirrors ``scontrol show hostnames | head -1`` without a subprocess (scontrol may be absent
    inside containers).
    """
    nodelist = nodelist.strip()
    m = re.match(r"^([^\[,]+)(?:\[([^\]]+)\])?", nodelist)
    if not m:
        raise ValueError(f"cannot parse SLURM node list {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def first_host_in_file(path: str) -> str:
    """First line of a PBS/Cobalt node file (one host per line, repeated per slot)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"PBS_NODEFILE={path} does not exist")
    for line in p.read_text().splitlines():
        if line.strip():
            return line.strip()
    raise ValueError(f"PBS_NODEFILE={path} is empty")


def read_dist_env(env: Mapping[str, str] | None = None) -> DistEnv:
    """Read the launcher environment. Raises ValueError when it is inconsistent.

    Args:
        env: mapping to read (default ``os.environ``); tests pass tables of launcher variables.
    """
    env = os.environ if env is None else env
    port = _int(env, "MASTER_PORT") if "MASTER_PORT" in env else DEFAULT_PORT
    if "RANK" in env and "WORLD_SIZE" in env:
        rank, world, launcher = _int(env, "RANK"), _int(env, "WORLD_SIZE"), "torchrun"
        local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0
        addr = env.get("MASTER_ADDR", "127.0.0.1")
    elif "OMPI_COMM_WORLD_RANK" in env:
        rank, world = _int(env, "OMPI_COMM_WORLD_RANK"), _int(env, "OMPI_COMM_WORLD_SIZE")
        local = _int(env, "OMPI_COMM_WORLD_LOCAL_RANK") if "OMPI_COMM_WORLD_LOCAL_RANK" in env else 0
        addr, launcher = env.get("MASTER_ADDR", "127.0.0.1"), "openmpi"
    elif "PMI_RANK" in env:
        rank = _int(env, "PMI_RANK")
        if "PMI_SIZE" not in env:
            raise ValueError("PMI_RANK is set but PMI_SIZE is not: cannot tell the world size")
        world = _int(env, "PMI_SIZE")
        local_key = next((k for k in ("PALS_LOCAL_RANKID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK") if k in env), None)
        local = _int(env, local_key) if local_key else 0
        if "MASTER_ADDR" in env:
            addr = env["MASTER_ADDR"]
        elif "PBS_NODEFILE" in env:
            addr = first_host_in_file(env["PBS_NODEFILE"])
        elif world == 1:
            addr = "127.0.0.1"
        else:
            addr = socket.gethostname()
        launcher = "mpich"
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
        local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
        if "MASTER_ADDR" in env:
            addr = env["MASTER_ADDR"]
        elif "SLURM_JOB_NODELIST" in env or "SLURM_NODELIST" in env:
            addr = first_slurm_host(env.get("SLURM_JOB_NODELIST") or env["SLURM_NODELIST"])
        else:
            addr = "127.0.0.1"
        launcher = "slurm"
    else:
        return DistEnv(master_port=port)
    if world < 1:
        raise ValueError(f"{launcher}: world size {world} must be >= 1")
    if not 0 <= rank < world:
        raise ValueError(f"{launcher}: rank {rank} is outside world size {world}")
    if not 0 <= local <= rank:
        raise ValueError(f"{launcher}: local rank {local} is inconsistent with rank {rank}")
    return DistEnv(rank=rank, world_size=world, local_rank=local, master_addr=addr, master_port=port, launcher=launcher)


def free_port() -> int:
    """An unused TCP port for a rendezvous (other jobs on a shared node may hold 29500)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
