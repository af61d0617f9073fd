"""Peak-FLOPs table, MFU arithmetic, memory keys, the JSONL sink and the W&B settings."""

from __future__ import annotations

import json

import pytest
import torch

from mosaic_hpc.config import RunConfig
from mosaic_hpc.training import metrics
from mosaic_hpc.training.metrics import (
    JsonlSink,
    MetricsLogger,
    ThroughputMeter,
    peak_flops_for,
    peak_tflops_for_name,
)
from mosaic_hpc.training.wandb_sink import resolve_mode, resolve_settings


@pytest.mark.parametrize(
    "name,tflops",
    [
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100-PCIE-40GB", 312.0),
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA GH200 480GB", 989.0),
        ("Tesla V100-SXM2-16GB", 0.0),
    ],
)
def test_peak_table_matches_device_names(name, tflops):
    assert peak_tflops_for_name(name) == tflops


def test_peak_override_and_cpu():
    assert peak_flops_for(torch.device("cpu")) == 0.0  # no table entry for CPUs
    assert peak_flops_for(torch.device("cpu"), override_tflops=2.5) == 2.5e12


def test_mfu_arithmetic(monkeypatch):
    clock = iter([0.0, 0.0, 10.0, 10.0])  # construction, reset, report, reset after the report
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
    meter = ThroughputMeter(flops_per_sample=1e9, peak_flops=100e12, warmup_steps=0, n_devices=4)
    meter.reset(step=0)
    meter.add(samples=40_000, data_seconds=1.0)  # counted over all 4 ranks
    out = meter.report(step=10)
    assert out["throughput/samples_per_s"] == pytest.approx(4000.0)
    assert out["throughput/samples_per_s_per_device"] == pytest.approx(1000.0)
    assert out["throughput/tflops"] == pytest.approx(4.0)
    assert out["throughput/tflops_per_device"] == pytest.approx(1.0)
    assert out["throughput/mfu"] == pytest.approx(0.01)  # 1 TFLOP/s of a 100 TFLOP/s device
    assert out["time/step_s"] == pytest.approx(1.0)
    assert out["time/data_wait_pct"] == pytest.approx(10.0)


def test_warmup_interval_is_not_reported_and_no_mfu_without_peak():
    meter = ThroughputMeter(flops_per_sample=1.0, warmup_steps=2)
    meter.add(10, 0.0)
    assert meter.report(step=1) == {}
    meter.add(10, 0.0)
    meter.reset(step=2)
    meter.add(10, 0.0)
    out = meter.report(step=3)
    assert "throughput/samples_per_s" in out and "throughput/mfu" not in out


def test_memory_metric_on_cpu():
    meter = ThroughputMeter(flops_per_sample=1.0, device=torch.device("cpu"))
    out = meter.report(step=1)
    assert 0.0 < out["memory/rss_gib"] < 1024.0


def test_jsonl_records_are_namespaced_and_rank0_only(tmp_path):
    path = tmp_path / "m" / "metrics.jsonl"
    logger = MetricsLogger([JsonlSink(path)])
    logger.log(5, {"loss/total": 0.5, "optim/lr": 1e-3})
    logger.log(10, {"loss/total": float("nan")})
    logger.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10]
    assert rows[0]["loss/total"] == 0.5 and "time/unix" in rows[0]
    other_rank = MetricsLogger([JsonlSink(tmp_path / "other.jsonl")], enabled=False)
    other_rank.log(1, {"loss/total": 1.0})
    other_rank.close()
    assert (tmp_path / "other.jsonl").read_text() == ""


@pytest.mark.parametrize(
    "configured,environ,mode",
    [
        ("", {}, "offline"),
        ("", {"WANDB_API_KEY": "k"}, "online"),
        ("", {"WANDB_API_KEY": "k", "WANDB_MODE": "offline"}, "offline"),
        ("offline", {"WANDB_API_KEY": "k", "WANDB_MODE": "online"}, "offline"),
        ("", {"WANDB_MODE": "dryrun"}, "offline"),
    ],
)
def test_wandb_mode(configured, environ, mode):
    assert resolve_mode(configured, environ) == mode


def test_wandb_mode_rejects_unknown():
    with pytest.raises(ValueError, match="must be one of"):
        resolve_mode("sometimes", {})


def test_wandb_settings_config_first_then_environment():
    cfg = RunConfig()
    env = {"WANDB_PROJECT": "site", "WANDB_ENTITY": "lab", "WANDB_RUN_GROUP": "scan"}
    assert resolve_settings(cfg, env) == {"mode": "offline", "project": "site", "entity": "lab", "group": "scan"}
    cfg.logging.wandb_project, cfg.logging.wandb_entity, cfg.logging.wandb_group = "mine", "me", "g"
    assert resolve_settings(cfg, env) == {"mode": "offline", "project": "mine", "entity": "me", "group": "g"}
