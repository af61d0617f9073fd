"""The device a benchmark runs on: waiting for it, and its memory per measurement.

Choosing the device is :func:`mosaic_hpc.devices.choose_device`, the rule training and
prediction use too.

CUDA kernels run asynchronously and the allocator keeps a peak across measurements, so every
timed region needs a synchronisation and every measurement its own peak-memory window; on CPU the
process's resident-set high-water mark stands in for the allocator's peak.

torch is imported inside functions: ``mosaic-hpc --help`` must not pay for it.
"""

from __future__ import annotations

from pathlib import Path

GIB = 2**30


def synchronize(device) -> None:
    """Wait for queued kernels: a CUDA step returns before its work is done."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device) -> None:
    """Start a new peak-memory window (per measurement, so runs in one process do not mix).

    CPU: writing 5 to /proc/self/clear_refs resets the kernel's resident-set high-water mark
    (VmHWM, Linux >= 4.0); where that is refused, the reported peak is the process's so far.
    """
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory(device) -> dict[str, float]:
    """Peak memory of this rank since :func:`reset_peak_memory`, in GiB, under ``memory/`` keys."""
    import torch

    if device.type == "cuda":
        return {
            "memory/max_allocated_gib": torch.cuda.max_memory_allocated(device) / GIB,
            "memory/max_reserved_gib": torch.cuda.max_memory_reserved(device) / GIB,
        }
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return {"memory/peak_rss_gib": int(line.split()[1]) * 1024 / GIB}
    except OSError:
        pass
    from ..training.metrics import memory_metrics  # ru_maxrss: the process's lifetime peak

    return {"memory/peak_rss_gib": memory_metrics(device)["memory/rss_gib"]}


def current_memory_gib(device) -> float:
    """Memory held right now (CUDA: allocated by tensors; CPU: resident set), the baseline of a measurement.

    Subtracted from the peak it isolates one measurement's own memory from what earlier ones in
    the same process left behind (DeepSpeed engines are not always freed completely).
    """
    import torch

    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / GIB
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    return 0.0


def is_oom(err: BaseException) -> bool:
    """CUDA (or host) out-of-memory, which ends a batch-size sweep rather than the benchmark."""
    import torch

    return isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(err).lower()


def release_memory(device) -> None:
    """Free cached blocks between measurements so one configuration's cache does not limit the next."""
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
