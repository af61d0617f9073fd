"""Metric records: one namespaced dict per logging step, to JSONL (always) and W&B (optional).

Keys are namespaced (``loss/<modality>``, ``time/``, ``throughput/``, ``memory/``) and identical
in every sink. Only rank 0 writes. Throughput arithmetic lives in :class:`ThroughputMeter`.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

# Dense bf16 tensor-core peaks in TFLOP/s, from NVIDIA's datasheets (the "with sparsity" figures
# are twice these). Matched as substrings of torch.cuda.get_device_name(), most specific first.
# MFU is always taken against the bf16 dense peak, also for fp32 runs (TF32 peaks are half), so
# MFU compares runs of any precision on one scale.
PEAK_TFLOPS_BF16: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756.0),  # NVIDIA H100 Tensor Core GPU datasheet (2023), H100 PCIe column
    ("H100 NVL", 835.0),  # same datasheet, H100 NVL column (per GPU)
    ("H200", 989.0),  # NVIDIA H200 Tensor Core GPU datasheet (2024), H200 SXM (same compute as H100 SXM)
    ("H100", 989.0),  # H100 datasheet, H100 SXM column: 1,979 with sparsity
    ("A100", 312.0),  # NVIDIA A100 Tensor Core GPU datasheet (2021): 312 dense, 624 with sparsity
)


class JsonlSink:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", buffering=1)  # line-buffered: a crash loses at most one record

    def log(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, allow_nan=True) + "\n")

    def close(self) -> None:
        self._f.close()


def drop_records_after(path: Path, step: int) -> int:
    """Remove the records of steps after ``step`` from a JSONL file; returns how many were removed.

    A run killed after logging step 120 but resumed from its step-100 checkpoint logs steps
    101-120 again; without this the file would hold two lines for each of them (and a line torn
    by the kill, which is not JSON, is dropped too). Rewritten atomically.
    """
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if isinstance(record, dict) and int(record.get("step", 0)) > step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        tmp.replace(path)
    return dropped


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


def peak_tflops_for_name(device_name: str) -> float:
    """Dense bf16 peak of a GPU from its name (0 when the table does not know it)."""
    return next((tflops for key, tflops in PEAK_TFLOPS_BF16 if key in device_name), 0.0)


def peak_flops_for(device: torch.device, override_tflops: float = 0.0) -> float:
    """Peak FLOP/s of one device for MFU: ``logging.peak_tflops`` when given, else the table.

    CPUs have no entry (their peak depends on cores, clocks and vector units): MFU is reported
    on CPU only when a peak is given.
    """
    if override_tflops > 0:
        return override_tflops * 1e12
    if device.type == "cuda":
        return peak_tflops_for_name(torch.cuda.get_device_name(device)) * 1e12
    return 0.0


def memory_metrics(device: torch.device) -> dict[str, float]:
    """Peak memory so far: allocator peak on CUDA, the process's peak resident set on CPU."""
    if device.type == "cuda":
        return {"memory/max_allocated_gib": torch.cuda.max_memory_allocated(device) / 2**30}
    # ru_maxrss is KiB on Linux and bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"memory/rss_gib": rss / 2**30}


class ThroughputMeter:
    """Samples/s, TFLOP/s and MFU over a logging interval, skipping warm-up steps.

    Args:
        flops_per_sample: training FLOPs per galaxy (``MosaicModel.flops_per_sample``).
        peak_flops: peak FLOP/s of *one* device for MFU (0: MFU not reported).
        warmup_steps: intervals that include these first steps are not reported (compilation,
            allocator growth and the first communication set-up distort them).
        n_devices: data-parallel ranks; ``add`` counts samples over all of them, so per-device
            rates and MFU divide by this.
        device: reports its peak memory when given.
    """

    def __init__(
        self,
        flops_per_sample: float,
        peak_flops: float = 0.0,
        warmup_steps: int = 2,
        n_devices: int = 1,
        device: torch.device | None = None,
    ) -> None:
        self.flops_per_sample = flops_per_sample
        self.peak_flops = peak_flops
        self.warmup_steps = warmup_steps
        self.n_devices = max(1, n_devices)
        self.device = device
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
            sps = self._samples / elapsed  # all ranks together
            flops_per_device = sps * self.flops_per_sample / self.n_devices
            out["throughput/samples_per_s"] = sps
            out["throughput/samples_per_s_per_device"] = sps / self.n_devices
            out["throughput/tflops"] = sps * self.flops_per_sample / 1e12
            out["throughput/tflops_per_device"] = flops_per_device / 1e12
            if self.peak_flops > 0:
                out["throughput/mfu"] = flops_per_device / self.peak_flops
            out["time/step_s"] = elapsed / max(1, step - self._step0)
            # _data_s is this rank's wait; the interval is this rank's wall time.
            out["time/data_wait_pct"] = 100.0 * self._data_s / elapsed
        if self.device is not None:
            out.update(memory_metrics(self.device))
        self.reset(step)
        return out


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
