"""Thread choice on shared machines: idle cores measured from /proc/stat, not the lagging load average."""

from __future__ import annotations

import os
import threading
import time

import pytest

from mosaic_hpc import cpu_load

STAT = """cpu  300 0 100 600 0 0 0 0 0 0
cpu0 100 0 50 350 0 0 0 0 0 0
cpu1 200 0 50 240 10 0 0 0 0 0
intr 12345 0 0
ctxt 999
"""


def test_parse_proc_stat_counts_iowait_as_idle_and_skips_the_total_line():
    assert cpu_load.parse_proc_stat(STAT) == {0: (350, 500), 1: (250, 500)}


def _fake_stat(monkeypatch, tmp_path, snapshots: list[str], cpus: list[int]) -> None:
    """``/proc/stat`` reads return ``snapshots`` in turn; the process may run on ``cpus``."""
    texts = iter(snapshots)
    stat = tmp_path / "stat"
    monkeypatch.setattr(cpu_load, "PROC_STAT", stat)
    monkeypatch.setattr(cpu_load, "_allowed_cpus", lambda: cpus)
    monkeypatch.setattr(cpu_load.time, "sleep", lambda s: stat.write_text(next(texts)))
    stat.write_text(next(texts))


def test_idle_cores_counts_only_the_allowed_cpus(monkeypatch, tmp_path):
    # cpu0 fully busy, cpu1 idle, cpu2 half busy over the interval
    before = "cpu0 0 0 0 0\ncpu1 0 0 0 0\ncpu2 0 0 0 0\n"
    after = "cpu0 100 0 0 0\ncpu1 0 0 0 100\ncpu2 50 0 0 50\n"
    for cpus, idle in (([0, 1, 2], 1.5), ([1, 2], 1.5), ([0], 0.0)):  # [1, 2]: e.g. a SLURM CPU set
        _fake_stat(monkeypatch, tmp_path, [before, after], cpus)
        assert cpu_load.idle_cores() == pytest.approx(idle), cpus
    _fake_stat(monkeypatch, tmp_path, [before, after], cpus=[0, 7])  # a CPU /proc/stat does not list
    assert cpu_load.idle_cores() is None


def test_choose_threads_follows_the_idle_cores_not_the_load_average(monkeypatch):
    monkeypatch.setattr(cpu_load, "_allowed_cpus", lambda: [0, 1])
    monkeypatch.setattr(cpu_load.os, "getloadavg", lambda: (1.2, 1.2, 1.2))  # a job that just ended
    monkeypatch.setattr(cpu_load, "idle_cores", lambda interval_s=0.5: 1.97)
    assert cpu_load.choose_threads(0) == 2
    monkeypatch.setattr(cpu_load, "idle_cores", lambda interval_s=0.5: 0.1)  # both cores taken
    assert cpu_load.choose_threads(0) == 1  # never zero
    monkeypatch.setattr(cpu_load, "idle_cores", lambda interval_s=0.5: None)  # no /proc: load average
    assert cpu_load.choose_threads(0) == 1
    assert cpu_load.choose_threads(3) == 3  # asked for: taken as given


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc/stat")
def test_a_busy_thread_shows_on_this_machine():
    cores = len(os.sched_getaffinity(0))
    quiet = cpu_load.idle_cores(0.3)
    assert quiet is not None and 0 <= quiet <= cores + 0.05
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        busy = cpu_load.idle_cores(0.3)
    finally:
        stop.set()
        t.join()
    assert busy is not None and busy < quiet - 0.5  # one spinning thread takes most of one core
