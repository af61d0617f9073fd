"""Which levers move a config's MFU on a GPU: micro-batch x attention backend x torch.compile.

A grid of the package's own measured training step (``bench.throughput.measure``: the same
``train_step`` that training runs) plus one torch.profiler breakdown of an eager step into GEMM,
attention and everything else, so a low MFU is traced to the kernels that cost it rather than
guessed at. Written for the one-GPU lent node; on a CPU it runs too (small grid), to keep it
working in CI-less checks.

Usage:
  python benchmarks/mfu_levers.py --config base --batches 64,128,256 --sdpa default,cudnn \\
      --compile-batches 128 --out levers.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mosaic_hpc.bench.arith import parse_int_list
from mosaic_hpc.bench.devices import release_memory, synchronize
from mosaic_hpc.bench.machine import machine_info
from mosaic_hpc.bench.presets import load_bench_config
from mosaic_hpc.bench.report import write_json
from mosaic_hpc.bench.synthetic import cycle, synthetic_batches, synthetic_schema
from mosaic_hpc.bench.throughput import Settings, _log, _peak, measure
from mosaic_hpc.devices import choose_device

KERNEL_CLASSES = (
    ("attention", ("flash", "fmha", "attention", "sdpa", "cudnn")),
    ("gemm", ("gemm", "xmma", "cutlass", "sm90", "nvjet", "cublas", "matmul", "aten::mm", "addmm", "bmm")),
    ("optimizer", ("adam", "multi_tensor", "foreach")),
    ("norm", ("layer_norm", "layernorm")),
)


def kernel_class(name: str) -> str:
    low = name.lower()
    for label, keys in KERNEL_CLASSES:
        if any(k in low for k in keys):
            return label
    return "other"


def profile_step(config: str, batch: int, s: Settings, n_steps: int = 3) -> dict:
    """Kernel time per class (GPU kernels; on a CPU, op self time) over ``n_steps`` eager steps."""
    from torch.profiler import ProfilerActivity, profile

    from mosaic_hpc.bench.throughput import build_engine
    from mosaic_hpc.training.step import train_step

    cfg = load_bench_config(config, {"data.micro_batch_size": batch, "train.precision": s.precision})
    schema = synthetic_schema()
    eng, _ = build_engine("plain", schema, cfg, s.device)
    batches = cycle(synthetic_batches(schema, cfg, batch, eng.device))
    for _ in range(3):
        train_step(eng, next(batches))
    synchronize(s.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if s.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(n_steps):
            train_step(eng, next(batches))
        synchronize(s.device)
    per_class: dict[str, float] = {}
    top = []
    for ev in prof.key_averages():
        t = getattr(ev, "device_time_total", 0.0) if s.device.type == "cuda" else ev.self_cpu_time_total
        if not t or (s.device.type == "cuda" and ev.device_type.name != "CUDA"):
            continue
        per_class[kernel_class(ev.key)] = per_class.get(kernel_class(ev.key), 0.0) + t
        top.append((t, ev.key[:110], ev.count))
    top.sort(reverse=True)
    total = sum(per_class.values())
    del eng
    release_memory(s.device)
    return {
        "config": config,
        "micro_batch_size": batch,
        "kernel_ms_per_step": total / 1e3 / n_steps,
        "share": {k: v / total for k, v in sorted(per_class.items(), key=lambda kv: -kv[1])},
        "top_kernels": [{"ms_per_step": t / 1e3 / n_steps, "kernel": k, "calls": c} for t, k, c in top[:25]],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="base")
    p.add_argument("--batches", default="64,128,256", help="eager micro-batch sizes")
    p.add_argument("--sdpa", default="default,cudnn,flash", help="attention backends (default = PyTorch's choice)")
    p.add_argument("--compile-batches", default="128", help="micro-batches timed under torch.compile ('' for none)")
    p.add_argument("--profile-batch", type=int, default=64, help="batch of the kernel breakdown (0: skip)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--min-seconds", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=Path("runs/bench/mfu_levers.json"))
    args = p.parse_args(argv)

    device = choose_device(args.device)
    precision = "bf16" if device.type == "cuda" else "fp32"
    peak, source, _ = _peak(device, 0.0)
    s = Settings(device, precision, args.steps, args.min_seconds, 3, False, None, peak, source, 0.0)
    backends = [b.strip() for b in args.sdpa.split(",") if b.strip()]
    report: dict = {"machine": machine_info(), "peak_flops_per_s": peak, "peak_source": source, "entries": []}
    t0 = time.perf_counter()
    for b in parse_int_list(args.batches, "--batches"):
        for backend in backends:
            e = measure(args.config, b, s, kind="levers", sdpa=None if backend == "default" else backend)
            _log(e)
            report["entries"].append(e)
            write_json(args.out, report)
    compile_batches = parse_int_list(args.compile_batches, "--compile-batches") if args.compile_batches else []
    for b in compile_batches:
        for backend in backends[:2]:
            e = measure(
                args.config, b, s, kind="levers", compile_model=True, sdpa=None if backend == "default" else backend
            )
            _log(e)
            report["entries"].append(e)
            write_json(args.out, report)
    if args.profile_batch:
        report["profile"] = profile_step(args.config, args.profile_batch, s)
        print(json.dumps(report["profile"], indent=1), file=sys.stderr)
    report["wall_s"] = time.perf_counter() - t0
    write_json(args.out, report)
    print(f"wrote {args.out} in {report['wall_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
