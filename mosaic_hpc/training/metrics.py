"""Metric records: one namespaced dict per logging step, to JSONL (always) and W&B (optional).

Keys are namespaced (``loss/<modality>``, ``time/``, ``throughput/``, ``memory/``) and identical
in every sink. Only rank 0 writes. Throughput arithmetic lives in :class:`ThroughputMeter`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any


class JsonlSink:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", buffering=1)  # line-buffered: a crash loses at most one record

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, allow_nan=True) + "\n")

    def close(self) -> None:
        self._f.close()


class MetricsLogger:
    """Fan-out of metric records to sinks; a no-op on ranks other than 0."""

    def __init__(self, sinks: list | None = None, enabled: bool = True) -> None:
        self.sinks = sinks or []
        self.enabled = enabled

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time/unix": time.time(), **metrics}
        for s in self.sinks:
            s.log(record)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


class ThroughputMeter:
    """Samples/s, TFLOP/s and MFU over a logging interval, skipping warm-up steps.

    Args:
        flops_per_sample: training FLOPs per galaxy (``MosaicModel.flops_per_sample``).
        peak_flops: device peak FLOP/s for MFU (0: MFU not reported).
        warmup_steps: intervals that include these first steps are not reported (compilation,
            allocator growth and the first communication set-up distort them).
    """

    def __init__(self, flops_per_sample: float, peak_flops: float = 0.0, warmup_steps: int = 2) -> None:
        self.flops_per_sample = flops_per_sample
        self.peak_flops = peak_flops
        self.warmup_steps = warmup_steps
        self.reset(step=0)

    def reset(self, step: int) -> None:
        self._t0 = time.perf_counter()
        self._samples = 0
        self._data_s = 0.0
        self._step0 = step

    def add(self, samples: int, data_seconds: float) -> None:
        self._samples += samples
        self._data_s += data_seconds

    def report(self, step: int) -> dict[str, float]:
        """Metrics since the last report; empty while inside the warm-up steps."""
        elapsed = time.perf_counter() - self._t0
        out: dict[str, float] = {}
        if self._step0 >= self.warmup_steps and elapsed > 0 and self._samples:
            sps = self._samples / elapsed
            out["throughput/samples_per_s"] = sps
            out["throughput/tflops"] = sps * self.flops_per_sample / 1e12
            if self.peak_flops > 0:
                out["throughput/mfu"] = sps * self.flops_per_sample / self.peak_flops
            out["time/step_s"] = elapsed / max(1, step - self._step0)
            out["time/data_wait_pct"] = 100.0 * self._data_s / elapsed
        self.reset(step)
        return out


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
