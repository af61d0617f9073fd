"""Training throughput: samples/s, tokens/s, TFLOP/s and MFU over configs and micro-batch sizes.

Times the package's training step (plain engine by default) for every config in --configs over a
sweep of micro-batch sizes, after warm-up steps that are never counted. A sweep stops at the first
out-of-memory batch size and records it. TFLOP/s use the analytic count of
``MosaicModel.flops_per_sample`` (matmuls only, PaLM App. B); MFU divides by the device's dense
bf16 peak from ``training/metrics.py`` (H100 SXM / H200: 989, A100: 312 TFLOP/s), by --peak-tflops,
or on CPU by the measured fp32 matmul peak of this machine (reported as utilisation of what the
BLAS reaches here, not of a datasheet number).

Comparisons (--compare, one run, same process, adjacent in time):
  flops    analytic forward FLOPs vs DeepSpeed's flops profiler (and torch's FLOP counter)
  compile  torch.compile of the reference config at the reference batch (plain engine)
  sdpa     attention backends flash / efficient / cudnn / math, "unavailable" where the device lacks one
  modes    paper mode (one token per value) vs patched mode: each patched config against its own
           dimensions in paper mode, and against the paper-mode configs, at one batch size
  zero     plain PyTorch vs DeepSpeed ZeRO 1/2/3 (throughput, memory, DeepSpeed/plain ratio)
Each is one ``compare_*`` function, registered under its name in ``COMPARE``.

Examples:
  mosaic-hpc bench throughput --configs tiny,small --device cpu --out runs/bench/cpu.json
  mosaic-hpc bench throughput --configs base,small --device cuda --precision bf16 --compare all \\
      --out throughput_h100.json
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import resolve_config, resolve_deepspeed_config
from ..devices import choose_device
from .arith import median, mfu, parse_int_list, rates
from .devices import current_memory_gib, is_oom, release_memory, reset_peak_memory
from .machine import load_average, machine_info
from .presets import load_bench_config
from .report import markdown_table, write_json
from .synthetic import catalog_batches, cycle, synthetic_batches, synthetic_schema
from .timing import measure_matmul_peak, time_steps

BENCHMARK = "throughput"
SDPA_BACKENDS = {
    "flash": "FLASH_ATTENTION",
    "efficient": "EFFICIENT_ATTENTION",
    "cudnn": "CUDNN_ATTENTION",
    "math": "MATH",
}
# Micro-batch sweeps per device kind. GPU: base from 16 up to where an 80 GB card runs out of
# memory in paper mode (1,149 tokens); CPU: sizes a 2-core machine steps through in seconds.
DEFAULT_SWEEPS: dict[str, dict[str, tuple[int, ...]]] = {
    "cuda": {"tiny": (256, 1024), "small": (256, 1024), "base": (16, 32, 64, 128)},
    "cpu": {"tiny": (32, 128), "small": (16, 64), "base": (1, 2)},
}
FALLBACK_SWEEP = {"cuda": (16, 32, 64), "cpu": (4, 16)}
DEFAULT_MODES_BATCH = {"cuda": 64, "cpu": 2}
DEFAULT_DS_CONFIGS = "configs/zero1.json,configs/zero2.json,configs/zero3.json"
UNAVAILABLE_MARKERS = ("no available kernel", "no viable backend", "not supported", "unsupported")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--configs", default="tiny,small,base", help="comma-separated presets or YAML paths")
    p.add_argument(
        "--batch-sizes", default=None, help="micro-batch sweep for every config (default: per config and device)"
    )
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement (at least)")
    p.add_argument("--min-seconds", type=float, default=1.0, help="keep timing until this many seconds have passed")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps per measurement")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16"), help="auto: bf16 on GPU, fp32 on CPU"
    )
    p.add_argument("--threads", type=int, default=None, help="CPU intra-op threads (default: torch's)")
    p.add_argument("--data", type=Path, default=None, help="catalog directory: time real batches instead of synthetic")
    p.add_argument(
        "--compare",
        default="none",
        help=f"comma-separated comparisons from {','.join(COMPARISONS)}, or 'all' / 'none'",
    )
    p.add_argument("--reference-config", default=None, help="config of the comparisons (default: base if swept)")
    p.add_argument(
        "--reference-batch", type=int, default=None, help="batch of the comparisons (default: the sweep's fastest)"
    )
    p.add_argument("--modes-batch", type=int, default=None, help="batch of the paper-vs-patched comparison")
    p.add_argument("--ds-configs", default=DEFAULT_DS_CONFIGS, help="DeepSpeed JSONs of the zero comparison")
    p.add_argument("--repeats", type=int, default=1, help="interleaved repeats of the zero/modes comparisons (median)")
    p.add_argument("--compile", action="store_true", help="torch.compile every measurement (train.compile)")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak for MFU (default: table or CPU matmul)")
    p.add_argument(
        "--time-budget-s", type=float, default=0.0, help="skip what is left after this many seconds (0: none)"
    )
    p.add_argument("--out", type=Path, default=Path("runs/bench/throughput.json"), help="JSON report")


# ------------------------------------------------------------------------------ arguments


@dataclasses.dataclass
class Settings:
    """Validated options shared by every measurement of a run."""

    device: Any
    precision: str
    steps: int
    min_seconds: float
    warmup: int
    compile: bool
    data: Path | None
    peak_flops: float
    peak_source: str
    budget_s: float
    t_start: float = dataclasses.field(default_factory=time.perf_counter)

    def over_budget(self) -> bool:
        return self.budget_s > 0 and time.perf_counter() - self.t_start > self.budget_s


def parse_compare(text: str) -> list[str]:
    """'all' | 'none' | 'zero,sdpa' -> the comparisons in the canonical order."""
    text = text.strip().lower()
    if text in ("", "none"):
        return []
    if text == "all":
        return list(COMPARISONS)
    asked = [c.strip() for c in text.split(",") if c.strip()]
    unknown = sorted(set(asked) - set(COMPARISONS))
    if unknown:
        raise ValueError(f"--compare: unknown comparison(s) {unknown}; choose from {list(COMPARISONS)}, all or none")
    return [c for c in COMPARISONS if c in asked]


def sweep_for(config: str, device_type: str, override: list[int] | None) -> list[int]:
    if override:
        return override
    return list(DEFAULT_SWEEPS[device_type].get(Path(config).stem, FALLBACK_SWEEP[device_type]))


def _peak(device, override_tflops: float) -> tuple[float, str, dict | None]:
    """(peak FLOP/s, where it comes from, CPU matmul measurement or None)."""
    from ..training.metrics import peak_flops_for

    if override_tflops > 0:
        return override_tflops * 1e12, "--peak-tflops", None
    if device.type == "cuda":
        import torch

        name = torch.cuda.get_device_name(device)
        peak = peak_flops_for(device)
        return peak, (f"training/metrics.py table, {name}, dense bf16" if peak else f"{name} not in the table"), None
    measured = measure_matmul_peak(repeats=8, min_seconds=0.4)
    src = f"measured fp32 matmul peak, {measured['threads']} thread(s), n={measured['n']}"
    return measured["flops_per_s"], src, measured


# ---------------------------------------------------------------------------- measuring


def mode_of(model_cfg) -> str:
    """'paper' when every modality has one value per token, else 'patched'."""
    return "patched" if any(p > 1 for p in model_cfg.patch_size.values()) else "paper"


def _sdpa_context(backend: str | None):
    if backend is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(getattr(SDPBackend, SDPA_BACKENDS[backend]))


def _ds_engine(model, cfg, ds_config: Path):
    """A one-rank DeepSpeed engine from the package's factory, on a free rendezvous port."""
    from ..dist_env import DistEnv, free_port
    from ..training.deepspeed_engine import deepspeed_engine_factory

    env = DistEnv(master_port=free_port(), launcher="bench")
    return deepspeed_engine_factory(ds_config)(model, cfg, env)


def _with_torch_adam(ds_config: Path) -> Path:
    """A copy of ``ds_config`` asking DeepSpeed for torch's AdamW instead of its FusedAdam."""
    import json
    import tempfile

    raw = json.loads(ds_config.read_text())
    raw.setdefault("optimizer", {"type": "AdamW"}).setdefault("params", {})["torch_adam"] = True
    fd, name = tempfile.mkstemp(prefix=f"{ds_config.stem}-torch-adam-", suffix=".json")
    with open(fd, "w") as f:
        json.dump(raw, f)
    return Path(name)


def build_engine(engine: str, schema, cfg, device) -> tuple[Any, str | None]:
    """(engine, note): the plain engine, or a one-rank DeepSpeed engine for the JSON at ``engine``.

    On GPUs DeepSpeed JIT-builds FusedAdam with nvcc on first use; a node whose Python
    environment has no CUDA toolkit cannot, so the DeepSpeed engine is then rebuilt with torch's
    AdamW (``torch_adam``) and the note says so: the comparison degrades, it does not vanish.
    """
    from ..model import build_model
    from ..training.engine import PlainEngine

    model = build_model(schema, cfg.model, cfg.masking.mask_value)
    if engine == "plain":
        return PlainEngine(model, cfg, device), None
    try:
        return _ds_engine(model, cfg, Path(engine)), None
    except Exception as err:
        if device.type != "cuda" or is_oom(err) or isinstance(err, (ModuleNotFoundError, ValueError)):
            raise  # no DeepSpeed at all, a bad JSON or no memory: torch's AdamW would not help
        note = f"FusedAdam unavailable ({_classify_error(err)[1][:120]}); torch AdamW"
        import torch

        torch.manual_seed(cfg.train.seed)
        model = build_model(schema, cfg.model, cfg.masking.mask_value)
        return _ds_engine(model, cfg, _with_torch_adam(Path(engine))), note


def _classify_error(err: BaseException) -> tuple[str, str]:
    msg = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
    if is_oom(err):
        return "oom", msg
    if isinstance(err, (ImportError, ModuleNotFoundError)) or any(m in msg.lower() for m in UNAVAILABLE_MARKERS):
        return "unavailable", msg
    return "error", msg


def measure(
    config: str,
    batch_size: int,
    s: Settings,
    *,
    kind: str = "sweep",
    engine: str = "plain",
    sdpa: str | None = None,
    compile_model: bool | None = None,
    paper_mode: bool = False,
) -> dict[str, Any]:
    """Build model and engine for ``config`` at ``batch_size`` and time its training step.

    Args:
        config: preset name or YAML path.
        batch_size: micro-batch per rank.
        s: run settings.
        kind: which part of the report this entry belongs to ("sweep", "zero", ...).
        engine: "plain", or the path of a DeepSpeed JSON (one-rank DeepSpeed engine).
        sdpa: attention backend to force (None: PyTorch's choice).
        compile_model: torch.compile the model (None: the run's --compile).
        paper_mode: drop the config's patching (one token per value) at the same dimensions.

    Returns:
        One report entry; ``status`` is "ok", "oom", "unavailable", "error" or "skipped".
    """
    import torch

    compile_model = s.compile if compile_model is None else compile_model
    overrides = {
        "data.micro_batch_size": batch_size,
        "train.precision": s.precision,
        "train.grad_accum_steps": 1,
        "train.compile": bool(compile_model),  # both engines compile as training does
    }
    if paper_mode:
        overrides["model.patch_size"] = {}
    cfg = load_bench_config(config, overrides)
    engine_label = "plain" if engine == "plain" else f"deepspeed-{Path(engine).stem}"
    entry: dict[str, Any] = {
        "kind": kind,
        "config": Path(config).stem + ("-paper" if paper_mode else ""),
        "mode": mode_of(cfg.model),
        "engine": engine_label,
        "sdpa": sdpa or "default",
        "compile": bool(compile_model),
        "precision": s.precision,
        "micro_batch_size": batch_size,
        "data": "catalog" if s.data else "synthetic",
    }
    if s.over_budget():
        return {**entry, "status": "skipped", "reason": f"time budget of {s.budget_s:.0f} s spent"}
    eng = model = None
    try:
        torch.manual_seed(cfg.train.seed)
        if s.data is not None:
            schema, batches = catalog_batches(s.data, cfg, s.device)
        else:
            schema = synthetic_schema()
            batches = None
        reset_peak_memory(s.device)
        baseline_gib = current_memory_gib(s.device)
        eng, note = build_engine(engine, schema, cfg, s.device)
        model = eng.module
        entry.update(seq_len=model.seq_len, n_params=model.num_params(), flops_per_sample=model.flops_per_sample())
        if note:
            entry["note"] = note
        if batches is None:
            batches = cycle(synthetic_batches(schema, cfg, batch_size, eng.device))
        with _sdpa_context(sdpa):
            timing = time_steps(eng, batches, s.warmup, s.steps, cfg.train.loss_on)
            while timing["elapsed_s"] < s.min_seconds and len(timing["step_times_s"]) < 100 * s.steps:
                more = time_steps(eng, batches, 0, s.steps, cfg.train.loss_on)
                timing = {
                    **more,
                    "step_times_s": timing["step_times_s"] + more["step_times_s"],
                    "elapsed_s": timing["elapsed_s"] + more["elapsed_s"],
                }
    except Exception as err:  # one failing configuration is a result, not the end of the run
        status, reason = _classify_error(err)
        return {**entry, "status": status, "reason": reason}
    finally:
        del eng, model
        release_memory(s.device)
    n_steps = len(timing["step_times_s"])
    out = {**entry, "status": "ok", "timed_steps": n_steps, "warmup_steps": s.warmup}
    out.update(rates(n_steps * batch_size, timing["elapsed_s"], entry["flops_per_sample"], entry["seq_len"]))
    out["time/step_s"] = timing["elapsed_s"] / n_steps
    out["time/step_s_median"] = median(timing["step_times_s"])
    out["loss/final"] = timing["final_loss"]
    if s.peak_flops > 0:
        out["throughput/mfu"] = mfu(out["throughput/tflops"] * 1e12, s.peak_flops)
    out.update({k: v for k, v in timing.items() if k.startswith("memory/")})
    out["memory/baseline_gib"] = baseline_gib
    peak = out.get("memory/max_allocated_gib", out.get("memory/peak_rss_gib"))
    if peak is not None:
        out["memory/peak_over_baseline_gib"] = max(0.0, peak - baseline_gib)
    return out


def _log(entry: dict[str, Any]) -> None:
    what = f"{entry['kind']:7s} {entry['config']:12s} {entry['engine']:18s} sdpa={entry['sdpa']:9s} "
    what += f"b={entry['micro_batch_size']:<5d}"
    if entry["status"] == "ok":
        util = entry.get("throughput/mfu")
        extra = f" MFU {100 * util:5.1f}%" if util is not None else ""
        print(f"  {what} {entry['throughput/samples_per_s']:10.4g} samples/s{extra}", file=sys.stderr, flush=True)
    else:
        print(f"  {what} {entry['status']}: {entry.get('reason', '')}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- comparisons


def flops_check(config: str, s: Settings, batch_size: int = 2) -> dict[str, Any]:
    """Analytic forward FLOPs against DeepSpeed's flops profiler and torch's FLOP counter.

    One forward pass in fp32 (no autocast) of ``batch_size`` synthetic galaxies. The analytic
    count is ``flops_per_sample() / 3`` per galaxy (the training count is forward + 2x forward for
    backward). The profilers also count layer norms, GELU, softmax and bias adds, which the
    analytic count leaves out, so a ratio slightly under 1 is expected; a ratio far from 1 means
    the formula misses a term. torch's counter has no entry for the CPU flash-attention kernel,
    so on CPU its ratio exceeds 1 by the attention share; DeepSpeed's wraps
    ``F.scaled_dot_product_attention`` itself and counts it on every device.
    """
    import torch

    from ..model import build_model

    cfg = load_bench_config(config)
    entry: dict[str, Any] = {"kind": "flops", "config": Path(config).stem, "micro_batch_size": batch_size}
    if s.over_budget():
        return {**entry, "status": "skipped", "reason": f"time budget of {s.budget_s:.0f} s spent"}
    schema = synthetic_schema()
    model = build_model(schema, cfg.model, cfg.masking.mask_value).to(s.device).eval()
    batch = synthetic_batches(schema, cfg, batch_size, s.device, n_batches=1)[0]
    analytic = model.flops_per_sample() / 3.0 * batch_size
    entry.update(status="ok", seq_len=model.seq_len, **{"flops/analytic_forward": analytic})
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(batch.targets, batch.hidden)
        entry["flops/torch_counter_forward"] = float(counter.get_total_flops())
        entry["flops/analytic_over_torch"] = analytic / entry["flops/torch_counter_forward"]
    except Exception as err:
        entry["flops/torch_counter"] = f"unavailable: {_classify_error(err)[1]}"
    try:
        # DeepSpeed is imported by one module only (tests/unit/test_layering.py): its profiler
        # is reached through the engine module.
        from ..training import deepspeed_engine

        profile = getattr(deepspeed_engine, "profile_forward_flops", None)
        if profile is None:
            raise ModuleNotFoundError("training/deepspeed_engine.py has no profile_forward_flops")
        flops = profile(model, {"values": batch.targets, "hidden": batch.hidden})
        entry["flops/deepspeed_profiler_forward"] = flops
        entry["flops/analytic_over_deepspeed"] = analytic / flops
    except Exception as err:
        entry["flops/deepspeed_profiler"] = f"unavailable: {_classify_error(err)[1]}"
    del model
    release_memory(s.device)
    return entry


def sdpa_available(backend: str, s: Settings, head_dim: int) -> str | None:
    """None when ``backend`` runs forward and backward here, else the reason it does not."""
    import torch

    dtype = torch.bfloat16 if s.precision == "bf16" and s.device.type == "cuda" else torch.float32
    q = torch.randn(2, 2, 64, head_dim, device=s.device, dtype=dtype, requires_grad=True)
    try:
        with _sdpa_context(backend):
            torch.nn.functional.scaled_dot_product_attention(q, q, q).sum().backward()
        return None
    except Exception as err:
        return _classify_error(err)[1]


def _median_entry(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeat with the median throughput (a real measurement, not an average of several)."""
    ok = [e for e in entries if e["status"] == "ok"]
    if not ok:
        return entries[-1]
    ok.sort(key=lambda e: e["throughput/samples_per_s"])
    chosen = dict(ok[(len(ok) - 1) // 2])
    chosen["repeats"] = len(entries)
    chosen["samples_per_s_all_repeats"] = [e.get("throughput/samples_per_s") for e in entries]
    return chosen


def _interleaved(variants: list[dict[str, Any]], config_for: Any, batch: int, s: Settings, repeats: int) -> list:
    """Measure each variant ``repeats`` times in turn (A B C, A B C, ...), median per variant.

    Interleaving spreads slow drifts of a shared machine's load over all variants instead of
    penalising whichever ran last.
    """
    runs: list[list[dict[str, Any]]] = [[] for _ in variants]
    for _ in range(repeats):
        for i, v in enumerate(variants):
            e = measure(config_for(v), batch, s, **v)
            _log(e)
            runs[i].append(e)
    return [_median_entry(r) for r in runs]


def _ratio(
    num: dict[str, Any] | None, den: dict[str, Any] | None, key: str = "throughput/samples_per_s"
) -> float | None:
    if not num or not den or num.get("status") != "ok" or den.get("status") != "ok":
        return None
    return num[key] / den[key]


def best_of_sweep(entries: list[dict[str, Any]], config: str) -> dict[str, Any] | None:
    """The fastest successful sweep entry of ``config`` (None when none succeeded)."""
    ok = [e for e in entries if e["kind"] == "sweep" and e["status"] == "ok" and e["config"] == Path(config).stem]
    return max(ok, key=lambda e: e["throughput/samples_per_s"]) if ok else None


# ------------------------------------------------------------------- comparisons: one function each


@dataclasses.dataclass
class Context:
    """What every comparison reads and writes: the run's options, the reference point, the report.

    The comparisons measure at the reference config and batch (by default the base config at the
    fastest batch of its sweep), append their measurements to ``entries`` and their headline
    numbers to ``summary``, so a new comparison is one function and one line in :data:`COMPARE`.
    """

    args: argparse.Namespace
    s: Settings
    configs: list[str]
    ds_paths: list[Path]
    ref_config: str
    ref_batch: int
    report: dict[str, Any]

    @property
    def entries(self) -> list[dict[str, Any]]:
        return self.report["entries"]

    @property
    def summary(self) -> dict[str, Any]:
        return self.report["summary"]


def compare_flops(ctx: Context) -> None:
    """Analytic forward FLOPs of every swept config against DeepSpeed's profiler and torch's counter."""
    for config in ctx.configs:
        e = flops_check(config, ctx.s)
        ctx.entries.append(e)
        print(
            f"  flops   {e['config']:12s} analytic/deepspeed = {e.get('flops/analytic_over_deepspeed')}",
            file=sys.stderr,
        )
    ctx.summary["flops_check"] = {
        e["config"]: {k: e.get(k) for k in ("flops/analytic_over_deepspeed", "flops/analytic_over_torch")}
        for e in ctx.entries
        if e["kind"] == "flops"
    }


def compare_compile(ctx: Context) -> None:
    """torch.compile at the reference point against the eager sweep entry of the same batch."""
    if ctx.args.compile:
        return  # --compile: every measurement is compiled, there is no eager one to compare with
    e = measure(ctx.ref_config, ctx.ref_batch, ctx.s, kind="compile", compile_model=True)
    _log(e)
    ctx.entries.append(e)
    eager = next(
        (
            x
            for x in ctx.entries
            if x["kind"] == "sweep" and x["config"] == e["config"] and x["micro_batch_size"] == ctx.ref_batch
        ),
        None,
    )
    ctx.summary["compile_speedup"] = _ratio(e, eager)


def compare_sdpa(ctx: Context) -> None:
    """Every attention backend at the reference point; one this device lacks is "unavailable", not an error."""
    ref_model = load_bench_config(ctx.ref_config).model
    head_dim = ref_model.d_model // ref_model.n_heads
    sdpa_rows = {}
    for backend in SDPA_BACKENDS:
        reason = sdpa_available(backend, ctx.s, head_dim)
        if reason is not None:
            e = {
                "kind": "sdpa",
                "config": Path(ctx.ref_config).stem,
                "engine": "plain",
                "sdpa": backend,
                "micro_batch_size": ctx.ref_batch,
                "status": "unavailable",
                "reason": reason,
            }
        else:
            e = measure(ctx.ref_config, ctx.ref_batch, ctx.s, kind="sdpa", sdpa=backend)
        _log(e)
        ctx.entries.append(e)
        sdpa_rows[backend] = e.get("throughput/samples_per_s") if e["status"] == "ok" else e["status"]
    ctx.summary["sdpa_samples_per_s"] = sdpa_rows


def compare_modes(ctx: Context) -> None:
    """Paper mode vs patched mode at one batch size, repeats interleaved.

    Two questions: what does patching alone buy (a patched config against the same dimensions
    in paper mode), and how do the shipped patched and paper presets compare (e.g. small vs base).
    Per-sample speed also depends on the batch size, so the best batch of each sweep is compared
    as well.
    """
    batch = ctx.args.modes_batch or DEFAULT_MODES_BATCH[ctx.s.device.type]
    patched = [c for c in ctx.configs if mode_of(load_bench_config(c).model) == "patched"]
    paper = [c for c in ctx.configs if c not in patched]
    variants, names = [], []
    for c in patched:
        variants += [{"kind": "modes", "_config": c}, {"kind": "modes", "_config": c, "paper_mode": True}]
    for c in paper:
        variants.append({"kind": "modes", "_config": c})
    for v in variants:
        names.append(Path(v["_config"]).stem + ("-paper" if v.get("paper_mode") else ""))
    cfg_for = {id(v): v.pop("_config") for v in variants}
    results = _interleaved(variants, lambda v: cfg_for[id(v)], batch, ctx.s, ctx.args.repeats)
    ctx.entries.extend(results)
    by_name = dict(zip(names, results, strict=True))
    out: dict[str, Any] = {
        "micro_batch_size": batch,
        "samples_per_s": {n: r.get("throughput/samples_per_s") for n, r in by_name.items()},
    }
    for c in patched:
        name = Path(c).stem
        out[f"{name}_over_{name}-paper"] = _ratio(by_name[name], by_name[f"{name}-paper"])
        for q in paper:
            qn = Path(q).stem
            out[f"{name}_over_{qn}"] = _ratio(by_name[name], by_name[qn])
            out[f"{name}_over_{qn}_best_batch"] = _ratio(best_of_sweep(ctx.entries, c), best_of_sweep(ctx.entries, q))
    ctx.summary["modes"] = out


def compare_zero(ctx: Context) -> None:
    """Plain PyTorch against a one-rank DeepSpeed engine per ZeRO JSON: throughput and memory, interleaved."""
    variants = [{"kind": "zero", "engine": "plain"}] + [{"kind": "zero", "engine": str(p)} for p in ctx.ds_paths]
    results = _interleaved(variants, lambda v: ctx.ref_config, ctx.ref_batch, ctx.s, ctx.args.repeats)
    ctx.entries.extend(results)
    plain = results[0]
    ctx.summary["deepspeed_over_plain"] = {r["engine"]: _ratio(r, plain) for r in results[1:]}
    ctx.summary["zero_memory_over_baseline_gib"] = {
        r["engine"]: r.get("memory/peak_over_baseline_gib") for r in results
    }


# The comparisons by --compare name, run in this order (cheap and most wanted first, so a
# --time-budget-s cut loses the least).
COMPARE: dict[str, Callable[[Context], None]] = {
    "flops": compare_flops,
    "compile": compare_compile,
    "sdpa": compare_sdpa,
    "modes": compare_modes,
    "zero": compare_zero,
}
COMPARISONS = tuple(COMPARE)


# ---------------------------------------------------------------------------------- run


def _validated(args: argparse.Namespace) -> tuple[list[str], list[int] | None, list[str], list[Path]]:
    """(configs, batch-size override, comparisons, DeepSpeed JSONs), or ValueError before any measurement.

    Also applies --threads, so the CPU matmul peak is measured with the threads the steps use.
    """
    import torch

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not configs:
        raise ValueError("--configs is empty")
    for c in configs:
        resolve_config(c)  # fail on a bad name before any measurement
    override = parse_int_list(args.batch_sizes, "--batch-sizes") if args.batch_sizes else None
    compare = parse_compare(args.compare)
    # resolved now, so a bad name fails before any measurement rather than after the sweep
    ds_paths = [resolve_deepspeed_config(p.strip()) for p in args.ds_configs.split(",") if p.strip()]
    if args.steps < 1 or args.warmup < 0 or args.repeats < 1:
        raise ValueError("--steps and --repeats must be >= 1 and --warmup >= 0")
    if args.min_seconds < 0 or args.time_budget_s < 0 or args.peak_tflops < 0:
        raise ValueError("--min-seconds, --time-budget-s and --peak-tflops must be >= 0")
    if args.data is not None and not args.data.exists():
        raise ValueError(f"--data {args.data} does not exist")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return configs, override, compare, ds_paths


def _settings(args: argparse.Namespace) -> tuple[Settings, dict | None]:
    """The run's settings (device, precision, MFU peak) and the CPU matmul measurement, if one was made."""
    device = choose_device(args.device)
    precision = args.precision if args.precision != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    peak, peak_source, cpu_peak = _peak(device, args.peak_tflops)
    s = Settings(
        device=device,
        precision=precision,
        steps=args.steps,
        min_seconds=args.min_seconds,
        warmup=args.warmup,
        compile=args.compile,
        data=args.data,
        peak_flops=peak,
        peak_source=peak_source,
        budget_s=args.time_budget_s,
    )
    return s, cpu_peak


def _new_report(
    args: argparse.Namespace, s: Settings, configs: list[str], compare: list[str], cpu_peak: dict | None
) -> dict[str, Any]:
    """The report before any measurement: machine, peak and settings first, so every saved copy has them."""
    return {
        "benchmark": BENCHMARK,
        "machine": machine_info(),
        "device": str(s.device),
        "precision": s.precision,
        "peak_flops_per_s": s.peak_flops,
        "peak_source": s.peak_source,
        "cpu_matmul_peak": cpu_peak,
        "settings": {
            "configs": configs,
            "steps": args.steps,
            "min_seconds": args.min_seconds,
            "warmup": args.warmup,
            "compare": compare,
            "compile": args.compile,
            "data": str(args.data) if args.data else "synthetic",
            "repeats": args.repeats,
        },
        "entries": [],
        "summary": {},
    }


def _sweep(configs: list[str], override: list[int] | None, s: Settings, entries: list, save: Callable) -> None:
    """Every config over its micro-batch sweep, up to the first batch that runs out of memory."""
    for config in configs:
        for b in sweep_for(config, s.device.type, override):
            e = measure(config, b, s)
            _log(e)
            entries.append(e)
            save()
            if e["status"] == "oom":
                break  # larger batches cannot fit either


def _context(
    args: argparse.Namespace,
    s: Settings,
    configs: list[str],
    override: list[int] | None,
    ds_paths: list[Path],
    report: dict,
) -> Context:
    """The comparisons' reference point: --reference-config/-batch, else base at its sweep's fastest batch."""
    ref_config = args.reference_config or next((c for c in configs if Path(c).stem == "base"), configs[0])
    best = best_of_sweep(report["entries"], ref_config)
    ref_batch = args.reference_batch or (
        best["micro_batch_size"] if best else sweep_for(ref_config, s.device.type, override)[0]
    )
    report["summary"]["reference"] = {"config": Path(ref_config).stem, "micro_batch_size": ref_batch}
    return Context(args, s, configs, ds_paths, ref_config, ref_batch, report)


def _best_mfu(report: dict[str, Any]) -> None:
    """The summary's headline: the measurement with the highest MFU, and what it was."""
    ok = [e for e in report["entries"] if e["status"] == "ok" and "throughput/mfu" in e]
    if ok:
        top = max(ok, key=lambda e: e["throughput/mfu"])
        report["summary"]["best_mfu"] = {
            k: top.get(k) for k in ("config", "engine", "sdpa", "compile", "micro_batch_size", "throughput/mfu")
        }


def run(args: argparse.Namespace) -> int:
    """Sweep every config, run the requested comparisons (:data:`COMPARE`) in order, write the report."""
    configs, override, compare, ds_paths = _validated(args)
    s, cpu_peak = _settings(args)
    report = _new_report(args, s, configs, compare, cpu_peak)
    print(
        f"peak for MFU: {s.peak_flops / 1e12:.3f} TFLOP/s ({s.peak_source}); device {s.device}, {s.precision}",
        file=sys.stderr,
    )
    # The report is rewritten after every phase, so a run cut short (a time limit on a GPU node,
    # a crash in a later comparison) still leaves every measurement made so far.
    save = lambda: write_json(args.out, report)
    _sweep(configs, override, s, report["entries"], save)
    ctx = _context(args, s, configs, override, ds_paths, report)
    for name in compare:
        COMPARE[name](ctx)
        save()
    if cpu_peak is not None:
        _remeasure_cpu_peak(report)
    _best_mfu(report)
    report["machine"]["load_average_end"] = load_average()
    write_json(args.out, report)
    print(format_markdown(report))
    print(f"\nwrote {args.out}", file=sys.stderr)
    entries = report["entries"]
    failed = [e for e in entries if e["status"] == "error"]
    return 1 if failed and not any(e["status"] == "ok" for e in entries) else 0


def _remeasure_cpu_peak(report: dict[str, Any]) -> None:
    """Measure the CPU matmul peak again after the run and take the higher of the two.

    On a shared machine a burst of other jobs during one measurement depresses it, and a low
    peak inflates every utilisation figure; the machine can do at least the better of the two,
    so MFU is recomputed against it (both measurements stay in the report).
    """
    again = measure_matmul_peak(repeats=8, min_seconds=0.4)
    first = report["cpu_matmul_peak"]
    report["cpu_matmul_peak"] = {
        **first,
        "flops_per_s_start": first["flops_per_s"],
        "flops_per_s_end": again["flops_per_s"],
    }
    peak = max(first["flops_per_s"], again["flops_per_s"])
    report["cpu_matmul_peak"]["flops_per_s"] = peak
    report["peak_flops_per_s"] = peak
    report["peak_source"] += ", best of before and after the run"
    for e in report["entries"]:
        if e.get("status") == "ok" and "throughput/tflops" in e:
            e["throughput/mfu"] = mfu(e["throughput/tflops"] * 1e12, peak)


# ------------------------------------------------------------------------------ markdown

TABLE_COLUMNS = [
    ("kind", "kind", ""),
    ("config", "config", ""),
    ("mode", "mode", ""),
    ("engine", "engine", ""),
    ("sdpa", "sdpa", ""),
    ("compile", "compile", ""),
    ("batch", "micro_batch_size", "d"),
    ("status", "status", ""),
    ("samples/s", "throughput/samples_per_s", ".4g"),
    ("tokens/s", "throughput/tokens_per_s", ".3g"),
    ("TFLOP/s", "throughput/tflops", ".3f"),
    ("MFU %", "mfu_pct", ".1f"),
    ("step ms", "step_ms", ".1f"),
    ("peak mem GiB", "peak_mem_gib", ".2f"),
    ("of which this run", "memory/peak_over_baseline_gib", ".2f"),
]


def _display_row(e: dict[str, Any]) -> dict[str, Any]:
    row = dict(e)
    if "throughput/mfu" in e:
        row["mfu_pct"] = 100.0 * e["throughput/mfu"]
    if "time/step_s" in e:
        row["step_ms"] = 1e3 * e["time/step_s"]
    mem = e.get("memory/max_allocated_gib", e.get("memory/peak_rss_gib"))
    if mem is not None:
        row["peak_mem_gib"] = mem
    return row


def format_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: machine line, peak, the measurement table, FLOP check and summary."""
    m = report["machine"]
    lines = [
        f"- machine: {m.get('gpu') or m['cpu_model']}, {m['n_cores']} cores, host {m['host']}, "
        f"torch {m['torch']}, deepspeed {m.get('deepspeed')}, commit {m['commit']}",
        f"- date (UTC): {m['date_utc']}; load average at start {m['load_average']}, at end {m.get('load_average_end')}",
        f"- peak for MFU: {report['peak_flops_per_s'] / 1e12:.3f} TFLOP/s ({report['peak_source']}); "
        f"precision {report['precision']}; data {report['settings']['data']}",
        f"- warm-up {report['settings']['warmup']} steps excluded; >= {report['settings']['steps']} timed steps "
        f"and >= {report['settings']['min_seconds']} s per measurement",
        "",
        markdown_table([_display_row(e) for e in report["entries"] if e["kind"] != "flops"], TABLE_COLUMNS),
    ]
    flops = [e for e in report["entries"] if e["kind"] == "flops"]
    if flops:
        lines += ["", _flops_table(flops)]
    summary = {k: v for k, v in report["summary"].items() if k != "flops_check"}
    if summary:
        lines += ["", "Summary:"] + [f"- {k}: {_fmt(v)}" for k, v in summary.items()]
    return "\n".join(lines)


def _flops_table(flops: list[dict[str, Any]]) -> str:
    rows = []
    for e in flops:
        row = dict(e)
        for src, dst in (
            ("flops/analytic_forward", "analytic_g"),
            ("flops/deepspeed_profiler_forward", "ds_g"),
            ("flops/torch_counter_forward", "torch_g"),
        ):
            if isinstance(e.get(src), (int, float)):
                row[dst] = e[src] / 1e9
        rows.append(row)
    return markdown_table(
        rows,
        [
            ("config", "config", ""),
            ("batch", "micro_batch_size", "d"),
            ("analytic fwd GFLOP", "analytic_g", ".2f"),
            ("DeepSpeed profiler fwd GFLOP", "ds_g", ".2f"),
            ("analytic / DeepSpeed", "flops/analytic_over_deepspeed", ".3f"),
            ("torch counter fwd GFLOP", "torch_g", ".2f"),
            ("analytic / torch", "flops/analytic_over_torch", ".3f"),
        ],
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)
