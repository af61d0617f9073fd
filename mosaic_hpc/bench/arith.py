"""The arithmetic of a benchmark: MFU, scaling efficiencies, rates, medians, rank and batch lists.

Free of torch and of any I/O, so the unit tests check every formula in milliseconds and a wrong
one fails there rather than as an implausible number in RESULTS.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _check_positive(value: float, name: str) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def mfu(achieved_flops_per_s: float, peak_flops_per_s: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the device's peak FLOP/s.

    "Model" FLOPs are the analytic count of :meth:`MosaicModel.flops_per_sample` (PaLM App. B),
    not the hardware's: recomputation or padding would raise hardware FLOPs without doing more
    useful work, so MFU compares implementations fairly.

    Raises:
        ValueError: a non-positive or non-finite argument.
    """
    _check_positive(achieved_flops_per_s, "achieved FLOP/s")
    _check_positive(peak_flops_per_s, "peak FLOP/s")
    return achieved_flops_per_s / peak_flops_per_s


def _check_ranks(n_ranks: int, base_ranks: int) -> None:
    for name, v in (("number of ranks", n_ranks), ("base number of ranks", base_ranks)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if n_ranks < base_ranks:
        raise ValueError(f"number of ranks {n_ranks} is below the base of the comparison, {base_ranks}")


def weak_efficiency(throughput_1: float, throughput_n: float, n_ranks: int, base_ranks: int = 1) -> float:
    """Weak scaling (fixed per-rank batch): throughput(N) / (N * throughput(1)).

    Each rank does the same work at every N, so perfect scaling multiplies samples/s by N; the
    shortfall is communication and contention for shared resources (memory bandwidth, cores).
    A study that starts above one rank (e.g. one 4-GPU node) passes ``base_ranks`` and
    ``throughput_1`` at that size: the ideal is then ``N / base_ranks`` times it.
    """
    _check_positive(throughput_1, "throughput(1)")
    _check_positive(throughput_n, "throughput(N)")
    _check_ranks(n_ranks, base_ranks)
    return throughput_n / (n_ranks / base_ranks * throughput_1)


def strong_efficiency(step_time_1: float, step_time_n: float, n_ranks: int, base_ranks: int = 1) -> float:
    """Strong scaling (fixed global batch): t(1) / (N * t(N)) with t the time per optimizer step.

    The global batch is split over N ranks, so perfect scaling divides the step time by N; each
    rank's share shrinks, so fixed costs (launch latency, all-reduce, optimizer) weigh more.
    ``base_ranks`` as in :func:`weak_efficiency`.
    """
    _check_positive(step_time_1, "t(1)")
    _check_positive(step_time_n, "t(N)")
    _check_ranks(n_ranks, base_ranks)
    return step_time_1 / (n_ranks / base_ranks * step_time_n)


def rates(n_samples: int, seconds: float, flops_per_sample: float, tokens_per_sample: int) -> dict[str, float]:
    """samples/s, tokens/s and TFLOP/s of ``n_samples`` processed in ``seconds``."""
    _check_positive(seconds, "elapsed seconds")
    sps = n_samples / seconds
    return {
        "throughput/samples_per_s": sps,
        "throughput/tokens_per_s": sps * tokens_per_sample,
        "throughput/tflops": sps * flops_per_sample / 1e12,
    }


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (the statistic reported for repeated runs)."""
    if not values:
        raise ValueError("median of an empty sequence")
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else 0.5 * (s[mid - 1] + s[mid])


def parse_int_list(text: str, what: str) -> list[int]:
    """Parse "1,2,4" into [1, 2, 4]; every entry must be a positive integer.

    Raises:
        ValueError: empty list, non-integers or values < 1, naming ``what``.
    """
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{what} must be positive integers, got {text!r}")
    return values
