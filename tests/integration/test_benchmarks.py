"""The benchmarks at toy size: they run end to end and produce sane numbers (never timed tests).

Each benchmark runs as its own process through the CLI, as a user runs it: the throughput
benchmark starts a one-rank DeepSpeed process group, which must not leak into the test process,
and the scaling benchmark starts launchers/local.sh. Checks: every number positive and finite,
MFU a fraction, efficiencies in (0, 1.2], the analytic FLOP count within 20% of DeepSpeed's
profiler, the PNG written. The thresholds are wide on purpose: the CI machine is shared.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import benchmark_script

pytestmark = [pytest.mark.benchmark, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str, timeout: float = 150.0) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mosaic_hpc.cli", "bench", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "|---|" in proc.stdout  # the printed table


def _positive_finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_throughput_benchmark_toy(tmp_path):
    out = tmp_path / "throughput.json"
    # A paper-mode twin of tiny (one token per value, 1,149 tokens) so the paper-vs-patched
    # comparison runs across two configs, as small vs base does at full size.
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    tiny["name"], tiny["model"]["patch_size"] = "tinypaper", {}
    paper = tmp_path / "tinypaper.yaml"
    paper.write_text(yaml.safe_dump(tiny))
    _bench(
        "throughput", "--configs", f"tiny,{paper}", "--batch-sizes", "4,8", "--steps", "3", "--min-seconds", "0",
        "--warmup", "1", "--device", "cpu", "--threads", "1", "--compare", "flops,modes,zero",
        "--ds-configs", "configs/zero2.json", "--modes-batch", "4", "--out", str(out),
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert _positive_finite(report["peak_flops_per_s"])
    assert report["cpu_matmul_peak"]["threads"] == 1
    timed = [e for e in report["entries"] if e["kind"] != "flops"]
    assert {(e["kind"], e["engine"]) for e in timed} >= {("sweep", "plain"), ("zero", "deepspeed-zero2")}
    assert [(e["config"], e["micro_batch_size"]) for e in timed if e["kind"] == "sweep"] == [
        ("tiny", 4),
        ("tiny", 8),
        ("tinypaper", 4),
        ("tinypaper", 8),
    ]
    for e in timed:
        assert e["status"] == "ok", e
        for key in ("throughput/samples_per_s", "throughput/tokens_per_s", "throughput/tflops", "time/step_s"):
            assert _positive_finite(e[key]), (key, e)
        assert 0 < e["throughput/mfu"] <= 1, e
        assert _positive_finite(e["memory/peak_rss_gib"])
        assert e["timed_steps"] >= 3 and e["warmup_steps"] == 1
    flops = next(e for e in report["entries"] if e["kind"] == "flops")
    assert _positive_finite(flops["flops/torch_counter_forward"])
    assert 0.8 < flops["flops/analytic_over_deepspeed"] < 1.2, flops
    summary = report["summary"]
    assert _positive_finite(summary["deepspeed_over_plain"]["deepspeed-zero2"])
    for key in ("tiny_over_tiny-paper", "tiny_over_tinypaper", "tiny_over_tinypaper_best_batch"):
        assert _positive_finite(summary["modes"][key]), key


def test_throughput_benchmark_rejects_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mosaic_hpc.cli", "bench", "throughput", "--configs", "nonesuch", "--out", "x.json"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown config" in proc.stderr


def test_scaling_benchmark_toy(tmp_path):
    out = tmp_path / "scaling.json"
    # --global-batch = --micro-batch: weak and strong share the one-rank launch (3 launches in all).
    _bench(
        "scaling", "--config", "tiny", "--ranks", "1,2", "--steps", "10", "--warmup", "2", "--micro-batch", "32",
        "--global-batch", "32", "--rows", "1024", "--work-dir", str(tmp_path / "work"), "--out", str(out),
        timeout=240,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert len(report["runs"]) == 3
    assert all(r["status"] == "ok" for r in report["runs"]), report["runs"]
    for mode in ("weak", "strong"):
        points = report["results"][mode]
        assert [p["ranks"] for p in points] == [1, 2]
        assert points[0]["efficiency"] == pytest.approx(1.0)
        for p in points:
            assert 0 < p["efficiency"] <= 1.2, (mode, p)
            for key in ("time/step_s", "throughput/samples_per_s", "time/startup_s"):
                assert _positive_finite(p[key]), (key, p)
    assert report["results"]["weak"][1]["global_batch"] == 64
    assert report["results"]["strong"][1]["micro_batch_size"] == 16
    assert Path(report["plot"]).stat().st_size > 0


def test_mfu_levers_toy(tmp_path):
    """benchmarks/mfu_levers.py: eager, SDPA-forced and compiled steps, plus the kernel breakdown."""
    out = tmp_path / "levers.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "mfu_levers.py"), "--config", "tiny", "--batches", "4",
         "--sdpa", "default,math", "--compile-batches", "4", "--profile-batch", "4", "--device", "cpu",
         "--steps", "2", "--min-seconds", "0", "--out", str(out)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    got = [(e["sdpa"], e["compile"], e["status"]) for e in report["entries"]]
    assert got == [("default", False, "ok"), ("math", False, "ok"), ("default", True, "ok"), ("math", True, "ok")]
    for e in report["entries"]:
        assert 0 < e["throughput/mfu"] <= 1, e
    profile = report["profile"]
    assert _positive_finite(profile["kernel_ms_per_step"])
    assert sum(profile["share"].values()) == pytest.approx(1.0)
    # matmuls are classified as such; their share of a toy CPU step depends on the CPU (0.12-0.3 seen)
    assert profile["share"]["gemm"] > 0 and profile["top_kernels"]
    matmuls = [k for k in profile["top_kernels"] if "addmm" in k["kernel"] or "aten::mm" in k["kernel"]]
    assert matmuls and all(k["ms_per_step"] > 0 for k in matmuls)


def test_gpu_session_script_runs_both_sweeps_and_keeps_their_json(tmp_path):
    """benchmarks/gpu_session.sh, the one-call GPU session, driven at toy size on the CPU."""
    env = {
        **os.environ, "DEVICE": "cpu", "PRECISION": "fp32", "CONFIG": "tiny", "BATCHES": "4", "SDPA": "default",
        "COMPILE_BATCHES": "", "PROFILE_BATCH": "4", "CONFIGS": "tiny", "BATCH_SIZES": "4", "COMPARE": "flops",
        "STEPS": "2", "MIN_SECONDS": "0", "BUDGET_S": "120", "OMP_NUM_THREADS": "1", "PYTHON": sys.executable,
    }  # fmt: skip
    out = tmp_path / "gpu"
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_session.sh"), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    levers = json.loads((out / "levers.json").read_text())
    assert [(e["micro_batch_size"], e["status"]) for e in levers["entries"]] == [(4, "ok")]
    assert _positive_finite(levers["profile"]["kernel_ms_per_step"])
    sweep = [e for e in json.loads((out / "throughput.json").read_text())["entries"] if e["kind"] == "sweep"]
    assert [(e["config"], e["micro_batch_size"], e["status"]) for e in sweep] == [("tiny", 4, "ok")]
    assert _positive_finite(sweep[0]["throughput/samples_per_s"])
    assert "|---|" in (out / "throughput.md").read_text()


@pytest.mark.parametrize(
    ("kernel", "label"),
    [
        ("aten::addmm", "gemm"),
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64", "gemm"),
        ("nvjet_hsh_128x256_64x4_2x1_v_bz_coopA_NTN", "gemm"),
        ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>", "attention"),
        ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention"),
        ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<float>", "norm"),
        ("void at::native::multi_tensor_apply_kernel<FusedAdamMathFunctor>", "optimizer"),
        ("aten::add_", "other"),
    ],
)
def test_mfu_levers_kernel_classes(kernel, label):
    assert benchmark_script("mfu_levers").kernel_class(kernel) == label
