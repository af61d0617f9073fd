"""The Engine protocol is the whole contract: hooks are typed members, and step() drives the loop.

The runner used to look the collectives up by name (``getattr(engine, "barrier", ...)``) and the
loop assumed every accumulation window was ``train.grad_accum_steps`` long; both engines now
carry every member of :class:`Engine`, and the loop counts optimizer steps by ``step()``'s answer.
"""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch
from conftest import REPO

from mosaic_hpc.config import load_config
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.model import build_model
from mosaic_hpc.training.deepspeed_engine import DeepSpeedEngine
from mosaic_hpc.training.engine import Engine, PlainEngine
from mosaic_hpc.training.runner import run_training

ATTRIBUTES = {"module", "device", "global_steps", "world_size", "peak_flops", "checkpoint_safe_globals"}


def _protocol_methods() -> set[str]:
    return {n for n, v in vars(Engine).items() if inspect.isfunction(v) and not n.startswith("_")}


def test_the_protocol_names_the_hooks_the_runner_and_loop_use():
    assert {"barrier", "agree_stop", "reduce_mean", "step", "load", "save"} <= _protocol_methods()
    assert set(Engine.__annotations__) == ATTRIBUTES


@pytest.mark.parametrize("engine_cls", [PlainEngine, DeepSpeedEngine])
def test_both_engines_implement_every_method_with_the_protocols_parameters(engine_cls):
    for name in _protocol_methods():
        wanted = list(inspect.signature(getattr(Engine, name)).parameters)
        have = list(inspect.signature(getattr(engine_cls, name)).parameters)
        assert have[: len(wanted)] == wanted, (engine_cls.__name__, name, have)


def test_plain_engine_hooks_are_those_of_one_process(toy_catalog_dir):
    cfg = load_config(REPO / "configs" / "tiny.yaml")
    model = build_model(Catalog.open(toy_catalog_dir, "train").schema, cfg.model)
    engine = PlainEngine(model, cfg, torch.device("cpu"))
    for name in ATTRIBUTES:
        assert hasattr(engine, name), name
    assert engine.world_size == 1 and engine.peak_flops == 0.0 and tuple(engine.checkpoint_safe_globals) == ()
    t = torch.tensor([1.5, float("nan")])
    assert engine.reduce_mean(t) is t
    assert engine.agree_stop(True) is True and engine.agree_stop(False) is False
    assert engine.barrier() is None


def test_the_loop_follows_step_not_the_configured_window(tmp_path, toy_catalog_dir):
    """An engine that closes a window every 3 micro-batches under a config that says 1."""
    steps = 4
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        {"train.max_steps": steps, "train.log_every": 1, "train.eval_every": 0, "train.grad_accum_steps": 1},
    )
    micro = []

    class ThreeMicroBatches(PlainEngine):
        def step(self) -> bool:
            stepped = super().step()
            micro.append(stepped)
            return stepped

    def factory(model, run_cfg, env):
        own = dataclasses.replace(run_cfg, train=dataclasses.replace(run_cfg.train, grad_accum_steps=3))
        return ThreeMicroBatches(model, own)

    result = run_training(cfg, toy_catalog_dir, tmp_path / "run", engine_factory=factory, resume="none")
    assert result.steps == steps
    assert micro == [False, False, True] * steps
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss/total" in r] == list(range(1, steps + 1))  # one record per step
