"""How many CPU threads a job on a shared machine should take.

PyTorch's OpenMP threads spin at every barrier, so a thread on a core that another job also uses
slows the whole step down (3-5x per step measured with two threads on a busy 2-core machine).
The cores to use are those idle *now*. The 1-minute load average says that badly: it decays over
minutes, so right after another job ends it still reports that job's load (a quickstart started
just after a CI run took one thread on an idle 2-core machine and ran twice as long). Idle time
is therefore measured directly from ``/proc/stat`` over a short interval, on the cores this
process may run on (a SLURM or taskset CPU set counts, not the whole node); the load average is
the fallback where there is no ``/proc``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")


def parse_proc_stat(text: str) -> dict[int, tuple[int, int]]:
    """``{cpu: (idle, total)}`` jiffies from the text of ``/proc/stat`` (its ``cpuN`` lines).

    Idle counts iowait too (a core waiting on I/O is free for computing); total is user, nice,
    system, idle, iowait, irq, softirq and steal (guest time is already inside user).
    """
    out = {}
    for line in text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            v = [int(x) for x in fields[:8]]
            out[int(name[3:])] = (v[3] + (v[4] if len(v) > 4 else 0), sum(v))
    return out


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def idle_cores(interval_s: float = 0.5) -> float | None:
    """Idle cores among those this process may run on, measured over ``interval_s``; None without /proc."""
    try:
        before = parse_proc_stat(PROC_STAT.read_text())
        time.sleep(interval_s)
        after = parse_proc_stat(PROC_STAT.read_text())
    except (OSError, ValueError, IndexError):
        return None
    idle = 0.0
    for cpu in _allowed_cpus():
        if cpu not in before or cpu not in after:
            return None
        d_idle, d_total = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
        idle += d_idle / d_total if d_total > 0 else 1.0
    return idle


def choose_threads(requested: int) -> int:
    """``requested`` if > 0, else the allowed cores idle right now (rounded), at least 1."""
    if requested > 0:
        return requested
    cores = len(_allowed_cpus())
    idle = idle_cores()
    if idle is None:
        idle = cores - os.getloadavg()[0]
    return max(1, min(cores, round(idle)))
