"""Where, when and how a benchmark ran: the one provenance record every benchmark report carries.

A number without its machine, load, commit and command cannot be compared or reproduced, and on a
shared machine the load average is the context of every number; one ``machine_info`` gives all
benchmarks (the package's and ``benchmarks/*.py``) the same fields.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..provenance import git_commit

PACKAGE = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU's model name from lscpu (or /proc/cpuinfo), for RESULTS.md's machine line."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def command_line() -> str:
    """The command as a user would retype it.

    ``python -m mosaic_hpc.cli`` is shown as ``mosaic-hpc``, another module of the package as
    ``python -m`` that module (``python -m mosaic_hpc.bench.dataloader``), a script by its name.
    """
    argv0 = Path(sys.argv[0])
    if argv0.name in ("cli.py", "__main__.py", "mosaic-hpc"):
        cmd = ["mosaic-hpc"]
    elif argv0.suffix == ".py" and PACKAGE in argv0.resolve().parents:
        cmd = ["python", "-m", ".".join(argv0.resolve().relative_to(PACKAGE.parent).with_suffix("").parts)]
    else:
        cmd = [argv0.name]
    return shlex.join([*cmd, *sys.argv[1:]])  # quoted: '' and spaces survive the copy and paste


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: on a shared machine, the context of every number."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """Where and when a benchmark ran: host, CPU, cores, OS, GPU, library versions, commit, load."""
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "cpu_model": cpu_model(),
        "n_cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "commit": git_commit(),
        "load_average": load_average(),
        "command": command_line(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    try:
        import importlib.metadata as md

        info["deepspeed"] = md.version("deepspeed")
    except Exception:  # not installed: recorded, never fatal
        info["deepspeed"] = "unavailable"
    return info
