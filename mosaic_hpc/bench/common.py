"""Measurement code shared by the throughput and scaling benchmarks.

Both benchmarks time the package's own training step (``engine.forward`` -> ``masked_regression_loss``
-> ``engine.backward`` -> ``engine.step``, the sequence ``training/loop.py`` runs) on engines built by
the package (:class:`PlainEngine`, the DeepSpeed engine factory), so a number here is a number of
the trainer, not of a re-implementation. What this module adds is the measurement discipline:

* a synthetic-data switch (nanoGPT's ``real_data``): batches drawn once in memory from the schema
  and the real masker, so the step is timed without the reader; or real batches from a catalog;
* warm-up steps excluded (allocator growth, kernel selection, ``torch.compile``, first collectives);
* device synchronisation around timed regions (CUDA kernels run asynchronously);
* peak memory per rank (CUDA allocator, or the process's resident-set high-water mark on CPU);
* a measured CPU matmul peak, the reference for utilisation where no datasheet peak applies;
* the efficiency and MFU arithmetic, kept free of torch so the unit tests are instant.

torch is imported inside functions: ``mosaic-hpc --help`` must not pay for it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..provenance import git_commit

REPO_ROOT = Path(__file__).resolve().parents[2]
GIB = 2**30

# ----------------------------------------------------------------------------- arithmetic


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


# ------------------------------------------------------------------------ configs, machine


def load_bench_config(name_or_path: str, overrides: dict[str, Any] | None = None):
    """The run config of a preset or file, with dotted-key overrides (e.g. ``data.micro_batch_size``)."""
    from ..config import load_config, resolve_config

    return load_config(resolve_config(name_or_path), overrides)


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
    """The command as a user would retype it (``python -m mosaic_hpc.cli`` shown as ``mosaic-hpc``)."""
    prog = Path(sys.argv[0]).name
    if prog in ("cli.py", "__main__.py", "mosaic-hpc"):
        prog = "mosaic-hpc"
    return shlex.join([prog, *sys.argv[1:]])  # quoted: '' and spaces survive the copy and paste


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: on a shared machine, the context of every number."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine_info() -> dict[str, Any]:
    """Where and when a benchmark ran: host, CPU, cores, GPU, library versions, commit, load."""
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "cpu_model": cpu_model(),
        "n_cores": os.cpu_count(),
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


# -------------------------------------------------------------------------------- device


def resolve_device(name: str):
    """'auto' | 'cpu' | 'cuda' -> torch.device; ValueError when CUDA is asked for but absent."""
    import torch

    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda: no CUDA device is available on this machine")
        return torch.device("cuda", torch.cuda.current_device())
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")


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


# ---------------------------------------------------------------------------- batches


def synthetic_schema():
    """The paper's catalog layout (3/6/102/117/921 values), used when no catalog is given."""
    from .dataloader import paper_schema

    return paper_schema()


def synthetic_batches(schema, cfg, batch_size: int, device, n_batches: int = 4, seed: int = 0) -> list:
    """Batches drawn in memory: N(0, 1) normalised values, the real masker's hidden masks.

    A small pool is drawn once and cycled, so timing measures the model and optimizer only
    (nanoGPT's ``real_data=False``); values need not be realistic for speed, but masks come from
    :class:`HierarchicalMasker` so the inputs have the real share of hidden positions. SFH bins
    are marked missing at the same rate as real catalogs' post-observation bins (about a third),
    so the loss's validity weighting runs as in training.
    """
    import numpy as np

    from ..data.batch import Batch
    from ..data.masker import HierarchicalMasker

    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    masker = HierarchicalMasker(schema, cfg.masking, seed=seed)
    pool = []
    for i in range(n_batches):
        rows = np.arange(i * batch_size, (i + 1) * batch_size, dtype=np.int64)
        hidden = masker(rows, epoch=0)
        targets, valid = {}, {}
        for spec in schema:
            targets[spec.name] = rng.standard_normal((batch_size, spec.length), dtype=np.float32)
            v = np.ones((batch_size, spec.length), dtype=bool)
            if spec.name == "sfh":
                cut = rng.integers(spec.length // 2, spec.length + 1, size=batch_size)
                v = np.arange(spec.length)[None, :] < cut[:, None]
            valid[spec.name] = v
            targets[spec.name][~v] = 0.0
        hid = {n: hidden[n] | ~valid[n] for n in schema.names}
        pool.append(Batch(targets=targets, valid=valid, hidden=hid, row_ids=rows).to_torch(device))
    return pool


def catalog_batches(data_dir: Path, cfg, device) -> tuple[Any, Iterator]:
    """(schema, endless iterator of device batches) from a catalog's train split, as training reads it."""
    from ..data.catalog import Catalog
    from ..data.masker import HierarchicalMasker
    from ..data.reader import ReaderPosition, ShardedReader

    cat = Catalog.open(Path(data_dir), "train")
    masker = HierarchicalMasker(cat.schema, cfg.masking, seed=cfg.train.seed)
    reader = ShardedReader(cat, cfg.data, 0, 1, seed=cfg.train.seed, masker=masker)

    def gen() -> Iterator:
        for _, batch in reader.iter_from(ReaderPosition()):
            yield batch.to_torch(device)

    return cat.schema, gen()


def cycle(pool: list) -> Iterator:
    while True:
        yield from pool


# --------------------------------------------------------------------------- the step


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


# ------------------------------------------------------------------------------ output


def _finite_json(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null so every reader can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_json(v) for v in obj]
    return obj


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (temporary file, then rename): a killed run leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_finite_json(payload), indent=2, allow_nan=False) + "\n")
    tmp.replace(path)
    return path


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """A markdown table of ``rows``; each column is (header, key, format spec such as ".1f").

    Missing or None values print as "-", strings print as they are.
    """
    head = "| " + " | ".join(h for h, _, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = []
        for _, key, fmt in columns:
            v = row.get(key)
            if v is None:
                cells.append("-")
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and fmt:
                cells.append(format(v, fmt))
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
