"""DeepSpeed JSON + run config: one source of truth, conflicts are errors, the LR schedule matches.

No process group is started: ``resolve_ds_config`` is pure, and the schedule check builds the
same LambdaLR the DeepSpeed engine hands to ``deepspeed.initialize``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from mosaic_hpc.config import RunConfig, TrainConfig
from mosaic_hpc.training.ds_config import load_ds_json, resolve_ds_config, with_universal_load
from mosaic_hpc.training.schedule import lr_factor

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _cfg(**train) -> RunConfig:
    cfg = RunConfig()
    cfg.data.micro_batch_size = 16
    for k, v in train.items():
        setattr(cfg.train, k, v)
    return cfg


@pytest.mark.parametrize("name", ["zero1.json", "zero2.json", "zero3.json"])
@pytest.mark.parametrize("cuda", [False, True])
def test_shipped_configs_resolve_from_the_run_config(name, cuda):
    cfg = _cfg(grad_accum_steps=2, lr=1e-3, grad_clip=0.5, precision="bf16", betas=(0.9, 0.99), weight_decay=0.1)
    ds = resolve_ds_config(load_ds_json(CONFIGS / name), cfg, world_size=4, cuda=cuda)
    assert ds["train_micro_batch_size_per_gpu"] == 16
    assert ds["gradient_accumulation_steps"] == 2
    assert ds["train_batch_size"] == 16 * 2 * 4
    assert ds["gradient_clipping"] == 0.5
    assert ds["bf16"]["enabled"] is True
    params = ds["optimizer"]["params"]
    assert (params["lr"], params["betas"], params["weight_decay"]) == (1e-3, [0.9, 0.99], 0.1)
    assert params["torch_adam"] is (not cuda)  # FusedAdam on GPU, torch AdamW (no JIT build) on CPU
    assert ds["zero_optimization"]["stage"] == int(name[4])
    assert "scheduler" not in ds


def test_fp32_run_config_turns_bf16_off():
    ds = resolve_ds_config(load_ds_json(CONFIGS / "zero2.json"), _cfg(precision="fp32"), 1, cuda=False)
    assert ds["bf16"]["enabled"] is False


def test_stated_equal_values_are_accepted_and_input_is_not_modified():
    raw = {"train_micro_batch_size_per_gpu": 16, "gradient_accumulation_steps": 1, "train_batch_size": 32}
    before = json.dumps(raw)
    ds = resolve_ds_config(raw, _cfg(), world_size=2, cuda=False)
    assert ds["train_batch_size"] == 32 and json.dumps(raw) == before


@pytest.mark.parametrize(
    "raw,json_key,yaml_key",
    [
        ({"train_micro_batch_size_per_gpu": 8}, "train_micro_batch_size_per_gpu=8", "data.micro_batch_size=16"),
        ({"gradient_accumulation_steps": 4}, "gradient_accumulation_steps=4", "train.grad_accum_steps=1"),
        ({"train_batch_size": 64}, "train_batch_size=64", "data.micro_batch_size x train.grad_accum_steps x 2 ranks"),
        ({"gradient_clipping": 5.0}, "gradient_clipping=5.0", "train.grad_clip=1.0"),
        ({"bf16": {"enabled": True}}, "bf16.enabled=True", "train.precision=False"),
        ({"optimizer": {"type": "AdamW", "params": {"lr": 0.1}}}, "optimizer.params.lr=0.1", "train.lr=0.0003"),
        ({"optimizer": {"type": "Adam", "params": {"betas": [0.9, 0.999]}}}, "optimizer.params.betas", "train.betas"),
        ({"optimizer": {"params": {"weight_decay": 0.0}}}, "optimizer.params.weight_decay=0.0", "train.weight_decay"),
    ],
)
def test_conflicts_name_both_files_and_keys(raw, json_key, yaml_key):
    raw = {"optimizer": {"type": "AdamW"}, **raw}
    raw["optimizer"].setdefault("type", "AdamW")
    with pytest.raises(ValueError) as err:
        resolve_ds_config(raw, _cfg(), world_size=2, cuda=False, ds_source="z.json", yaml_source="run.yaml")
    msg = str(err.value)
    assert msg.startswith("z.json: ") and json_key in msg and yaml_key in msg and "run.yaml" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "raw,message",
    [
        ({"scheduler": {"type": "WarmupLR"}}, "remove 'scheduler'"),
        ({"fp16": {"enabled": True}}, "fp16.enabled is not supported"),
        ({"optimizer": {"type": "Lamb"}}, "optimizer.type must be Adam or AdamW"),
        ({"optimizer": {"type": "Adam", "params": {"adam_w_mode": False}}}, "adam_w_mode=false"),
        ({"zero_optimization": {"stage": 0}}, "zero_optimization.stage must be 1, 2 or 3"),
    ],
)
def test_unsupported_requests_are_refused(raw, message):
    with pytest.raises(ValueError, match=message):
        resolve_ds_config(raw, _cfg(), world_size=1, cuda=False)


def test_universal_load_is_the_config_key_deepspeed_reads_at_initialize():
    """DeepSpeed's public route (no load_checkpoint argument exists): the key, set per checkpoint."""
    raw = {"zero_optimization": {"stage": 2}}
    assert with_universal_load(raw, True)["checkpoint"] == {"load_universal": True}
    assert with_universal_load(raw, False)["checkpoint"] == {"load_universal": False}
    assert raw == {"zero_optimization": {"stage": 2}}  # not modified
    assert with_universal_load({"checkpoint": {"load_universal": "auto"}}, True)["checkpoint"]["load_universal"]
    with pytest.raises(ValueError, match="checkpoint.load_universal=True"):
        with_universal_load({"checkpoint": {"load_universal": True}}, False)


def test_bad_json_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_ds_json(bad)
    with pytest.raises(FileNotFoundError):
        load_ds_json(tmp_path / "missing.json")


@pytest.mark.parametrize("warmup,max_steps,floor", [(20, 300, 0.1), (0, 50, 0.0), (10, 10, 0.5)])
def test_lambda_schedule_equals_warmup_cosine_at_every_step(warmup, max_steps, floor):
    """The LambdaLR the DeepSpeed engine builds gives schedule.py's LR, computed independently here."""
    tc = TrainConfig(lr=2e-3, warmup_steps=warmup, max_steps=max_steps, min_lr_ratio=floor)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=tc.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, tc))
    for step in range(max_steps + 5):
        if step < warmup:
            expected = tc.lr * (step + 1) / warmup
        else:
            progress = min(1.0, (step - warmup) / max(1, max_steps - warmup))
            expected = tc.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12), step
        opt.step()
        sched.step()
