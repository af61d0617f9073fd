"""The weight average (``train.ema_decay``): its arithmetic, what checkpoints hold, exact resume."""

import pytest
import torch
from conftest import REPO

from mosaic_hpc.config import load_config
from mosaic_hpc.training.runner import run_training
from mosaic_hpc.training.weight_average import WeightAverage

DECAY = 0.8
STEPS = 12


def _load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def _cfg(**overrides):
    # Warm-up past the end: a step's LR then does not depend on max_steps (the interrupted run's 6).
    settings = {"train.max_steps": STEPS, "train.save_every": 1, "train.keep_last": 100, "train.eval_every": 0}
    settings["train.warmup_steps"] = 2 * STEPS
    return load_config(REPO / "configs" / "tiny.yaml", {**settings, **overrides})


def test_the_average_follows_the_warmed_up_recursion_and_swaps_back():
    w = torch.zeros(3)
    avg = WeightAverage(lambda: [w], decay=0.9)
    expected = w.clone()
    for t, value in enumerate([1.0, 2.0, 4.0, 8.0, 16.0]):
        w.fill_(value)
        avg.update()
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * w
        torch.testing.assert_close(avg.shadow[0], expected)
    with avg.swapped_in():
        torch.testing.assert_close(w, expected)
    assert torch.equal(w, torch.full((3,), 16.0))  # the trained values are back
    restored = WeightAverage(lambda: [torch.zeros(3)], decay=0.9)
    restored.load_state_dict(avg.state_dict(), "x.pt")
    assert restored.updates == 5 and torch.equal(restored.shadow[0], avg.shadow[0])
    with pytest.raises(ValueError, match="x.pt: the saved weight average does not fit"):
        WeightAverage(lambda: [torch.zeros(4)], 0.9).load_state_dict(avg.state_dict(), "x.pt")


def test_the_decay_must_be_in_range():
    with pytest.raises(ValueError, match="train.ema_decay"):
        _cfg(**{"train.ema_decay": 1.0})


def test_checkpoints_hand_out_the_average_and_resume_from_the_trained_weights(tmp_path, toy_catalog_dir):
    run = tmp_path / "run"
    run_training(_cfg(**{"train.ema_decay": DECAY}), toy_catalog_dir, run, resume="none")
    ckpt = lambda s: run / "checkpoints" / f"step_{s:08d}"
    for step in range(2, STEPS + 1):
        previous, averaged = _load(ckpt(step - 1) / "model.pt"), _load(ckpt(step) / "model.pt")
        trained = _load(ckpt(step) / "engine.pt")["model"]
        d = min(DECAY, step / (9.0 + step))  # update number step - 1 of the warmed-up decay
        for name, value in averaged.items():
            torch.testing.assert_close(value, d * previous[name] + (1 - d) * trained[name], rtol=1e-5, atol=1e-7)
    last = _load(ckpt(STEPS) / "model.pt")
    trained = _load(ckpt(STEPS) / "engine.pt")["model"]
    assert max(float((last[k] - trained[k]).abs().max()) for k in last) > 1e-4  # the average is not the last step

    # Interrupted at step 6 and resumed: the same trained weights and the same average, bit for bit.
    part = tmp_path / "part"
    cfg = _cfg(**{"train.ema_decay": DECAY, "train.save_every": 6})
    run_training(cfg, toy_catalog_dir, part, resume="none", max_steps=6)
    run_training(cfg, toy_catalog_dir, part, resume="auto")
    resumed = part / "checkpoints" / f"step_{STEPS:08d}"
    for name in ("model.pt",):
        a, b = _load(resumed / name), _load(ckpt(STEPS) / name)
        assert all(torch.equal(a[k], b[k]) for k in b)
    a, b = _load(resumed / "engine.pt")["model"], trained
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_without_an_average_model_pt_holds_the_trained_weights(tmp_path, toy_catalog_dir):
    run = tmp_path / "run"
    run_training(_cfg(**{"train.max_steps": 3}), toy_catalog_dir, run, resume="none")
    engine_state = _load(run / "checkpoints" / "step_00000003" / "engine.pt")
    assert "model" not in engine_state and "weight_average" not in engine_state
