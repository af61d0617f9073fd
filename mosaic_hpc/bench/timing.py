"""Timing the package's own training step, and the CPU matmul peak that utilisation is taken against.

The step timed is ``training/step.py``'s ``train_step`` (``engine.forward`` ->
``masked_regression_loss`` -> ``engine.backward`` -> ``engine.step``, what ``training/loop.py``
runs) on engines built by the package, so a number here is a number of the trainer, not of a
re-implementation. What this module adds is the measurement discipline: warm-up steps excluded
(allocator growth, kernel selection, ``torch.compile``, first collectives), device
synchronisation around timed regions, peak memory of the steady state only, and, where no
datasheet peak applies (CPUs), a measured matmul peak as the reference for utilisation.

torch is imported inside functions: ``mosaic-hpc --help`` must not pay for it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from .devices import peak_memory, reset_peak_memory, synchronize


def measure_matmul_peak(n: int = 2048, repeats: int = 5, min_seconds: float = 0.5, dtype: str = "float32") -> dict:
    """Measured dense matmul FLOP/s of this CPU with torch's current thread count.

    CPUs have no datasheet entry in ``training/metrics.py`` (the peak depends on cores, clock,
    vector width and turbo state), so utilisation on CPU is taken against what a large square
    matmul, the best case for the BLAS, actually reaches here. Best of ``repeats`` windows, each
    at least ``min_seconds`` long, so one preempted window (a shared machine) does not decide it.

    Returns:
        ``{"flops_per_s", "n", "dtype", "threads"}``.
    """
    import torch

    if n < 64 or repeats < 1 or min_seconds <= 0:
        raise ValueError("matmul peak needs n >= 64, repeats >= 1 and min_seconds > 0")
    dt = getattr(torch, dtype)
    a = torch.randn(n, n, dtype=dt)
    b = torch.randn(n, n, dtype=dt)
    c = torch.empty(n, n, dtype=dt)
    torch.mm(a, b, out=c)  # warm-up: thread pool, BLAS packing buffers
    best = 0.0
    for _ in range(repeats):
        k, t0 = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=c)
            k += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds:
                break
        best = max(best, 2.0 * n**3 * k / elapsed)  # n^3 multiply-adds, 2 FLOPs each
    return {"flops_per_s": best, "n": n, "dtype": dtype, "threads": torch.get_num_threads()}


def time_steps(engine, batches: Iterator, n_warmup: int, n_steps: int, loss_on: str) -> dict[str, Any]:
    """Run ``n_warmup`` untimed then ``n_steps`` timed training steps.

    Peak memory is reset after the warm-up so it reports the steady state. Per-step times are
    taken between device synchronisations; the rate uses the whole timed window.

    Returns:
        ``{"step_times_s", "elapsed_s", "final_loss", "memory/..."}``.

    Raises:
        ValueError: n_steps < 1 or n_warmup < 0.
        FloatingPointError: the loss became NaN or inf (a broken configuration, not a number).
    """
    if n_steps < 1 or n_warmup < 0:
        raise ValueError(f"need steps >= 1 and warm-up >= 0, got {n_steps} and {n_warmup}")
    from ..training.step import train_step  # torch: imported only when a benchmark runs

    device = engine.device
    for _ in range(n_warmup):
        train_step(engine, next(batches), loss_on)
    synchronize(device)
    reset_peak_memory(device)
    times = []
    loss = None
    t_start = time.perf_counter()
    for _ in range(n_steps):
        t0 = time.perf_counter()
        loss = train_step(engine, next(batches), loss_on).total.detach()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - t_start
    final = float(loss)
    if not math.isfinite(final):
        raise FloatingPointError(f"loss is {final} after {n_steps} timed steps")
    return {"step_times_s": times, "elapsed_s": elapsed, "final_loss": final, **peak_memory(device)}
