"""DeepSpeed training on CPU ranks (gloo): the must-shows of issue 4.

Every run is launched once per module (fixtures) and shared by the assertions. Launchers
exercised: ``deepspeed`` (ZeRO-2 bf16, ZeRO-3), ``torchrun`` (the 2-rank reference run),
``mpiexec`` (the interrupted and resumed runs) and none (one-rank runs). Ranks run with
``OMP_NUM_THREADS=1`` on the 2-core CI machine; DeepSpeed's shared-memory comm op is not built
on CPU (see deepspeed_engine._disable_cpu_shm_comm), so no run pays a JIT compile.

Tolerances:
- 2 ranks vs 1 rank (same samples per step, fp32, ZeRO-1): the only difference is the order of
  floating-point sums (gloo's all-reduce of two half-batch gradients vs local accumulation of
  two micro-batches), about 1e-7 relative per step; Adam can amplify it where a gradient
  component is near zero, so logged losses over 30 steps are compared at rtol 1e-4 (a wrong
  gradient average, e.g. a sum instead of a mean, or mismatched samples, moves the loss by
  more than 1e-2 within a few steps). Measured: at most 7.5e-6 over the 30 steps.
- interrupted + resumed vs uninterrupted (same ranks, fp32): the arithmetic is identical, so
  weights must agree to atol 1e-6 (measured: bitwise equal).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mosaic_hpc.dist_env import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DRIVER = REPO / "tests" / "integration" / "ds_driver.py"
TRAIN = REPO / "mosaic_hpc" / "train.py"
TINY = REPO / "configs" / "tiny.yaml"
sys.path.insert(0, str(REPO / "tests"))

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (BIN / "deepspeed").exists() or not (BIN / "torchrun").exists(), reason="deepspeed not installed"
    ),
]

# Reference setting of the data-parallel and resume tests: fp32, ZeRO-1, 2 x 16 galaxies per step.
DP_STEPS = 30
DP_SETTINGS = [
    "--set=data.micro_batch_size=16",
    "--set=train.log_every=1",
    "--set=train.save_every=10",
    "--set=train.eval_every=0",
    "--set=train.warmup_steps=5",
    f"--set=train.max_steps={DP_STEPS}",
]
SIGTERM_AT = 12  # rank 1 is signalled as it takes its 12th batch; ranks agree to stop at step 15


def _launch(cmd: list[str], extra_env: dict[str, str] | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run a launcher command with a clean distributed environment and one thread per rank."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "WANDB_API_KEY", "WANDB_MODE")
        and not k.startswith(("PMI_", "OMPI_", "SLURM_", "MOSAIC_TEST_"))
    }
    env.update(
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        WANDB_SILENT="true",
        **(extra_env or {}),
    )
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    proc.log = f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-6000:]}"
    return proc


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.log
    return proc


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss/total"] for r in _records(run_dir) if "loss/total" in r}


def _trace(trace_dir: Path, rank: int) -> list[list[int]]:
    lines = (trace_dir / f"rows_rank{rank}.txt").read_text().splitlines()
    return [[int(i) for i in line.split()[2].split(",")] for line in lines]


def _latest(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True)


def _deepspeed(n: int, ds_json: str) -> list[str]:
    return [str(BIN / "deepspeed"), "--num_gpus", str(n), "--master_port", str(free_port()), str(TRAIN),
            "--deepspeed_config", str(REPO / "configs" / ds_json)]  # fmt: skip


def _common(data: Path, out: Path) -> list[str]:
    return ["--config", str(TINY), "--data", str(data), "--out", str(out)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from toy_catalog import write_toy_catalog

    return write_toy_catalog(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


# ------------------------------------------------------------------------------------------ runs


@pytest.fixture(scope="module")
def zero2_run(data_dir, work) -> Path:
    """`deepspeed --num_gpus 2 mosaic_hpc/train.py --deepspeed_config configs/zero2.json`, bf16, W&B offline."""
    out = work / "zero2"
    cmd = _deepspeed(2, "zero2.json") + _common(data_dir, out)
    cmd += ["--max-steps", "80", "--set", "train.precision=bf16", "--set", "train.log_every=10"]
    cmd += ["--set", "train.save_every=40", "--set", "train.keep_last=1", "--set", "logging.wandb=true"]
    cmd += ["--set", "logging.peak_tflops=1.0"]
    _ok(_launch(cmd))
    return out


@pytest.fixture(scope="module")
def two_rank_run(data_dir, work) -> Path:
    """The uninterrupted 2-rank reference (torchrun, ZeRO-1, fp32, global layout, row trace)."""
    out = work / "two_rank"
    cmd = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()), str(DRIVER)]
    cmd += ["--deepspeed_config", str(REPO / "configs" / "zero1.json"), *_common(data_dir, out), *DP_SETTINGS]
    _ok(_launch(cmd, {"MOSAIC_TEST_GLOBAL_LAYOUT": "1", "MOSAIC_TEST_TRACE_DIR": str(out / "trace")}))
    return out


@pytest.fixture(scope="module")
def one_rank_run(data_dir, work) -> Path:
    """1 rank, micro-batch 16 x 2 accumulation steps: the same 32 samples per step as two_rank_run."""
    out = work / "one_rank"
    cmd = [sys.executable, str(DRIVER), "--deepspeed_config", str(REPO / "configs" / "zero1.json")]
    cmd += [*_common(data_dir, out), *DP_SETTINGS, "--set=train.grad_accum_steps=2"]
    _ok(_launch(cmd, {"MOSAIC_TEST_GLOBAL_LAYOUT": "1"}))
    return out


def _mpiexec_driver(data_dir: Path, out: Path, trace: Path, extra: dict[str, str] | None = None):
    cmd = [str(BIN / "mpiexec"), "-n", "2", sys.executable, str(DRIVER)]
    cmd += ["--deepspeed_config", str(REPO / "configs" / "zero1.json"), *_common(data_dir, out), *DP_SETTINGS]
    env = {"MOSAIC_TEST_GLOBAL_LAYOUT": "1", "MOSAIC_TEST_TRACE_DIR": str(trace), **(extra or {})}
    return _launch(cmd, env)


@pytest.fixture(scope="module")
def interrupted(data_dir, work) -> tuple[Path, subprocess.CompletedProcess, Path]:
    """mpiexec -n 2, rank 1 gets SIGTERM mid-run; returns (run dir, result, copy of the run at the stop)."""
    out = work / "interrupted"
    proc = _mpiexec_driver(data_dir, out, out / "trace1", {"MOSAIC_TEST_SIGTERM_AT": f"{SIGTERM_AT}:1"})
    snapshot = work / "interrupted_snapshot"
    shutil.copytree(out, snapshot)
    return out, proc, snapshot


@pytest.fixture(scope="module")
def resumed(data_dir, interrupted) -> Path:
    out, proc, _ = interrupted
    _ok(proc)
    _ok(_mpiexec_driver(data_dir, out, out / "trace2"))
    return out


# ------------------------------------------------------------------------------------- zero 2


def test_zero2_bf16_two_ranks_loss_goes_down(zero2_run):
    losses = _losses(zero2_run)
    steps = sorted(losses)
    assert steps[-1] == 80
    first, last = losses[steps[0]], np.mean([losses[s] for s in steps[-2:]])
    assert last < 0.7 * first, losses


def test_checkpoints_keep_last_and_consolidated_fp32_weights(zero2_run, data_dir):
    from mosaic_hpc.config import load_config
    from mosaic_hpc.data.catalog import Catalog
    from mosaic_hpc.model import build_model

    ckpts = sorted(p.name for p in (zero2_run / "checkpoints").glob("step_*"))
    assert ckpts == ["step_00000080"]  # keep_last=1: step 40 was pruned after 80 landed
    assert _latest(zero2_run).name == "step_00000080"
    sd = _weights(_latest(zero2_run))
    assert all(v.dtype == torch.float32 for v in sd.values())
    cfg = load_config(_latest(zero2_run) / "config.yaml")
    model = build_model(Catalog.open(data_dir, "train").schema, cfg.model)
    model.load_state_dict(sd)  # strict: every parameter present, no DeepSpeed prefix


def test_metrics_jsonl_holds_the_issue_metrics(zero2_run):
    records = _records(zero2_run)
    keys = set().union(*(r.keys() for r in records))
    names = ("scalars", "lsst", "spherex", "sfh", "sed")
    expected = {"loss/total", *(f"loss/{n}" for n in names), "optim/lr", "optim/grad_norm"}
    expected |= {"throughput/samples_per_s", "throughput/tflops", "throughput/mfu", "memory/rss_gib"}
    assert expected <= keys, expected - keys
    last = records[-1]
    # MFU against the given 1 TFLOP/s peak per device: tflops_per_device / 1.
    assert last["throughput/mfu"] == pytest.approx(last["throughput/tflops_per_device"], rel=1e-9)


def test_wandb_offline_run_holds_the_same_metrics(zero2_run):
    runs = list((zero2_run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((zero2_run / "wandb").iterdir())
    data = b"".join(p.read_bytes() for p in runs[0].glob("*.wandb"))
    for key in ("loss/total", "loss/sed", "optim/lr", "optim/grad_norm", "throughput/samples_per_s", "throughput/mfu"):
        assert key.encode() in data, key


# ----------------------------------------------------------------------- data-parallel equality


def test_two_ranks_match_one_rank_with_the_same_global_batch(two_rank_run, one_rank_run):
    two, one = _losses(two_rank_run), _losses(one_rank_run)
    assert sorted(two) == sorted(one) == list(range(1, DP_STEPS + 1))
    a = np.array([two[s] for s in sorted(two)])
    b = np.array([one[s] for s in sorted(one)])
    worst = float(np.max(np.abs(a - b) / np.abs(b)))
    np.testing.assert_allclose(a, b, rtol=1e-4, err_msg=f"max relative difference {worst:.2e}")
    assert a[-1] < a[0]


def test_deepspeed_lr_follows_the_warmup_cosine_schedule_at_every_step(two_rank_run):
    from mosaic_hpc.config import load_config
    from mosaic_hpc.training.schedule import lr_factor

    tc = load_config(two_rank_run / "config.yaml").train
    for r in _records(two_rank_run):
        if "optim/lr" in r:  # logged after step s: the LR of the next update, 0-based index s
            assert r["optim/lr"] == pytest.approx(tc.lr * lr_factor(r["step"], tc), rel=1e-9), r["step"]


# ------------------------------------------------------------------------------- SIGTERM/resume


def test_sigterm_saves_and_exits_zero(interrupted):
    _, proc, snapshot = interrupted
    _ok(proc)
    step = int(json.loads((_latest(snapshot) / "client_state.json").read_text())["step"])
    assert 10 < step < DP_STEPS  # stopped mid-run, past the step-10 checkpoint
    assert "received SIGTERM" in proc.stdout + proc.stderr or "another rank is stopping" in proc.stdout + proc.stderr


def test_resume_reaches_the_uninterrupted_weights(resumed, two_rank_run):
    a, b = _weights(_latest(resumed)), _weights(_latest(two_rank_run))
    assert _latest(resumed).name == _latest(two_rank_run).name == f"step_{DP_STEPS:08d}"
    for k in b:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)


def test_resume_skips_and_repeats_no_sample(resumed, two_rank_run):
    for rank in (0, 1):
        reference = _trace(two_rank_run / "trace", rank)
        first, second = _trace(resumed / "trace1", rank), _trace(resumed / "trace2", rank)
        assert first + second == reference, f"rank {rank}: {len(first)} + {len(second)} vs {len(reference)} batches"
    rows = np.concatenate([np.concatenate(_trace(two_rank_run / "trace", r)) for r in (0, 1)])
    assert len(np.unique(rows)) == len(rows)  # 30 steps x 32 < one epoch: no sample twice


# ------------------------------------------------------------------- world-size change (universal)


def test_two_rank_checkpoint_resumes_on_one_rank(interrupted, data_dir, work):
    _, proc, snapshot = interrupted
    _ok(proc)
    ckpt = _latest(snapshot)
    step = int(json.loads((ckpt / "client_state.json").read_text())["step"])
    base = [sys.executable, str(TRAIN), "--deepspeed_config", str(REPO / "configs" / "zero1.json")]
    base += [*DP_SETTINGS, "--set=train.grad_accum_steps=2"]
    # 1) Resume and save at once: the universal load must reproduce the 2-rank weights exactly.
    same = work / "one_rank_same_step"
    shutil.copytree(snapshot, same)
    proc = _ok(_launch([*base, *_common(data_dir, same), "--max-steps", str(step)]))
    assert "universal checkpoint" in proc.stderr + proc.stdout
    reloaded, original = _weights(_latest(same)), _weights(ckpt)
    for k in original:
        torch.testing.assert_close(reloaded[k], original[k], atol=0, rtol=0)
    assert not list((same / "checkpoints").glob(".universal-*"))  # conversion cleaned up
    # 2) Keep training at the new world size.
    cont = work / "one_rank_continue"
    shutil.copytree(snapshot, cont)
    _ok(_launch([*base, *_common(data_dir, cont), "--max-steps", str(step + 3)]))
    losses = _losses(cont)
    assert [s for s in losses if s > step] == [step + 1, step + 2, step + 3]
    assert all(np.isfinite(losses[s]) for s in losses)


# ------------------------------------------------------------------------------------- zero 3


def test_zero3_steps_saves_and_loads(data_dir, work):
    out = work / "zero3"
    common = [*_common(data_dir, out), "--set", "train.log_every=2", "--set", "train.save_every=4"]
    _ok(_launch(_deepspeed(2, "zero3.json") + common + ["--max-steps", "4"]))
    first = _weights(_latest(out))
    proc = _ok(_launch(_deepspeed(2, "zero3.json") + common + ["--max-steps", "6"]))
    assert "resumed from" in proc.stdout + proc.stderr
    assert [r["step"] for r in _records(out) if "loss/total" in r] == [2, 4, 6]
    assert _latest(out).name == "step_00000006"
    second = _weights(_latest(out))
    assert first.keys() == second.keys() and any(not torch.equal(first[k], second[k]) for k in first)


# ------------------------------------------------------------------------------ weight average

# Warm-up over the whole run: the LR of a step then does not depend on --max-steps (the stop at 20).
EMA = ["--set=train.ema_decay=0.8", f"--set=train.warmup_steps={DP_STEPS + 10}"]


def test_weight_average_is_the_same_under_zero3_on_two_ranks_and_resumes_exactly(data_dir, work):
    """ZeRO-3 averages its shards and gathers them for model.pt; ZeRO-1 on one rank averages full copies."""
    from mosaic_hpc.training.ds_checkpoint import fp32_state_dict

    env = {"MOSAIC_TEST_GLOBAL_LAYOUT": "1"}
    one = work / "ema_one_rank"
    cmd = [sys.executable, str(DRIVER), "--deepspeed_config", str(REPO / "configs" / "zero1.json")]
    _ok(_launch([*cmd, *_common(data_dir, one), *DP_SETTINGS, "--set=train.grad_accum_steps=2", *EMA], env))
    torchrun = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", str(free_port()), str(DRIVER)]
    torchrun += ["--deepspeed_config", str(REPO / "configs" / "zero3.json")]
    full = work / "ema_zero3"
    _ok(_launch([*torchrun, *_common(data_dir, full), *DP_SETTINGS, *EMA], env))
    averaged, reference = _weights(_latest(full)), _weights(_latest(one))
    assert averaged.keys() == reference.keys()
    for k in reference:  # the same arithmetic up to the order of floating-point sums (module doc)
        torch.testing.assert_close(averaged[k], reference[k], atol=1e-5, rtol=1e-4)
    trained = fp32_state_dict(_latest(full))
    assert max(float((averaged[k] - trained[k]).abs().max()) for k in trained) > 1e-4  # not the last weights

    part = work / "ema_zero3_resumed"
    _ok(_launch([*torchrun, *_common(data_dir, part), *DP_SETTINGS, *EMA, "--max-steps", "20"], env))
    torchrun[4] = str(free_port())
    _ok(_launch([*torchrun, *_common(data_dir, part), *DP_SETTINGS, *EMA], env))
    resumed = _weights(_latest(part))
    assert _latest(part).name == _latest(full).name
    for k in averaged:
        torch.testing.assert_close(resumed[k], averaged[k], atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------- faults


def test_nonfinite_loss_stops_with_code_3_and_keeps_the_last_good_checkpoint(data_dir, work):
    # lr = 1e30 without warm-up: step 1 is finite (its loss is taken before the update) and saved;
    # Adam's first update moves every weight by ~1e30, so step 2's activations overflow to inf/NaN.
    out = work / "nan"
    cmd = [sys.executable, str(TRAIN), "--deepspeed_config", str(REPO / "configs" / "zero1.json")]
    cmd += [*_common(data_dir, out), "--max-steps", "5", "--set", "train.lr=1.0e+30", "--set", "train.warmup_steps=0"]
    cmd += ["--set", "train.save_every=1", "--set", "train.log_every=1"]
    proc = _launch(cmd)
    assert proc.returncode == 3, proc.log
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "non-finite training state: the loss" in errors[0], proc.log
    assert _latest(out).name == "step_00000001"
    assert sorted(p.name for p in (out / "checkpoints").glob("step_*")) == ["step_00000001"]
    assert all(torch.isfinite(v).all() for v in _weights(_latest(out)).values())


def test_wall_time_budget_saves_exits_zero_and_asks_for_requeue(data_dir, work):
    out = work / "budget"
    cmd = [sys.executable, str(TRAIN), "--deepspeed_config", str(REPO / "configs" / "zero2.json")]
    cmd += [*_common(data_dir, out), "--max-steps", "100000", "--set", "train.wall_time_budget_s=2"]
    proc = _ok(_launch(cmd))
    assert "wall-time budget reached" in proc.stdout
    assert (out / "REQUEUE").is_file()
    step = int(json.loads((_latest(out) / "client_state.json").read_text())["step"])
    assert 0 < step < 100000


def test_inconsistent_launcher_environment_is_one_clear_error(data_dir, work):
    cmd = [sys.executable, str(TRAIN), "--deepspeed_config", str(REPO / "configs" / "zero2.json")]
    proc = _launch([*cmd, *_common(data_dir, work / "bad_env")], {"RANK": "2", "WORLD_SIZE": "2"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "mosaic_hpc/train.py: error: inconsistent launcher environment: torchrun: rank 2 is outside world size 2"
    ]


def test_batch_size_conflict_names_both_files(data_dir, work, tmp_path):
    ds = tmp_path / "z.json"
    ds.write_text(json.dumps({"train_micro_batch_size_per_gpu": 8, "zero_optimization": {"stage": 2}}))
    proc = _launch([sys.executable, str(TRAIN), "--deepspeed_config", str(ds), *_common(data_dir, work / "conflict")])
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert str(ds) in last and "train_micro_batch_size_per_gpu=8" in last and "data.micro_batch_size=32" in last
    assert str(TINY) in last


def test_compile_under_deepspeed_matches_eager(data_dir, work):
    """`train.compile: true` goes through DeepSpeed's own compile and changes speed, not results."""
    settings = ["--set=train.max_steps=6", "--set=train.log_every=1", "--set=train.eval_every=0"]
    base = [sys.executable, str(TRAIN), "--deepspeed_config", str(REPO / "configs" / "zero2.json")]
    eager, compiled = work / "eager_one_rank", work / "compiled_one_rank"
    _ok(_launch(base + _common(data_dir, eager) + settings))
    proc = _ok(_launch(base + _common(data_dir, compiled) + settings + ["--set=train.compile=true"]))
    a, b = _losses(eager), _losses(compiled)
    assert sorted(a) == sorted(b) == list(range(1, 7)), proc.log
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4), step
    assert _weights(_latest(compiled)).keys() == _weights(_latest(eager)).keys()
