"""MOSAIC_TASK=predict|encode: the launchers run predict-shards / encode-shards on every rank, training stays as it was.

The per-rank command is checked through DRY_RUN=1 at every kind of site (local ranks, srun in a
SLURM job, a qsub line from a login node), and once for real: two local ranks predicting the toy
shards equal one in-process rank, value for value.
"""

from __future__ import annotations

import sys

import pytest
from shard_predictions import assert_same_predictions, manifest_records, read_predictions
from test_launchers_static import SLURM_JOB, clean_env, dry_run, option, run

from mosaic_hpc.cli import main


def task_args(argv: list[str], command: str) -> list[str]:
    """What follows ``-m mosaic_hpc.cli COMMAND`` in a per-rank argv (and that it is there)."""
    i = argv.index("mosaic_hpc.cli")
    assert argv[i - 1] == "-m" and argv[i + 1] == command, argv
    return argv[i + 2 :]


def test_local_predict_runs_predict_shards_on_every_rank() -> None:
    env = clean_env(DRY_RUN="1", MOSAIC_TASK="predict", MOSAIC_EXTRA_ARGS="--given lsst")
    proc = run("local.sh", "-n", "2", "--run", "m", "--input", "s", "--out", "p", env=env)
    assert proc.returncode == 0, proc.stderr
    ranks = [line.split() for line in proc.stdout.splitlines() if line.startswith("RANK=")]
    assert [r[:3] for r in ranks] == [
        ["RANK=0", "LOCAL_RANK=0", "WORLD_SIZE=2"],
        ["RANK=1", "LOCAL_RANK=1", "WORLD_SIZE=2"],
    ]
    for rank in ranks:
        # MOSAIC_EXTRA_ARGS first, then the script's arguments; nothing of the trainer's
        assert task_args(rank[:-1], "predict-shards") == ["--given", "lsst", "--run", "m", "--input", "s", "--out", "p"]
    assert "mosaic_hpc.train" not in proc.stdout and "--deepspeed_config" not in proc.stdout
    assert "task=predict" in proc.stderr and "/runs/predict-local-" in proc.stdout  # run dir named by task


def test_perlmutter_encode_job_and_polaris_submission_carry_the_task(tmp_path) -> None:
    argv, exports, _ = dry_run(
        "perlmutter.sh", "--model", "m", "--input", "s", "--out", "e", **SLURM_JOB, MOSAIC_TASK="encode"
    )
    assert argv[0] == "srun" and option(argv, "--ntasks") == "8" and option(argv, "--gpus-per-node") == "4"
    assert task_args(argv, "encode-shards") == ["--model", "m", "--input", "s", "--out", "e"]
    assert exports["MOSAIC_RUN_DIR"] == "/pscratch/sd/u/user/mosaic-hpc/runs/encode-4242"
    argv, _, _ = dry_run("polaris.pbs", MOSAIC_ACCOUNT="p", MOSAIC_CONDA_ENV="", MOSAIC_TASK="predict")
    forwarded = dict(item.split("=", 1) for item in option(argv, "-v").split(","))
    assert forwarded["MOSAIC_TASK"] == "predict"  # qsub exports nothing itself


@pytest.mark.parametrize("script, scheduler", [("local.sh", {}), ("perlmutter.sh", {}), ("perlmutter.sh", SLURM_JOB)])
def test_an_unknown_task_is_a_one_line_error(script, scheduler) -> None:
    proc = run(script, env=clean_env(DRY_RUN="1", MOSAIC_TASK="serve", **scheduler))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().endswith("error: MOSAIC_TASK=serve must be train, predict or encode"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_two_local_ranks_predict_like_one(tiny_run_dir, toy_shards, tmp_path) -> None:
    """The real thing at toy size: MOSAIC_DATA and the configs are not needed, and the relative
    --out is relative to where the launcher was started, not to the checkout."""
    reference = tmp_path / "one_rank"
    argv = ["predict-shards", "--run", str(tiny_run_dir), "--input", str(toy_shards), "--given", "lsst"]
    assert main([*argv, "--out", str(reference), "--batch-size", "32", "--no-progress"]) == 0
    env = clean_env(
        MOSAIC_TASK="predict",
        MOSAIC_PYTHON=sys.executable,
        MOSAIC_RUN_DIR=str(tmp_path / "job"),
        MOSAIC_DATA=str(tmp_path / "absent"),
        MOSAIC_OMP_THREADS="1",
    )
    proc = run(
        "local.sh",
        "-n",
        "2",
        *argv[1:],
        "--out",
        "preds",
        "--batch-size",
        "32",
        "--no-progress",
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "rank 0: 4 shards predicted" in proc.stdout and "rank 1: 4 shards predicted" in proc.stdout
    assert_same_predictions(read_predictions(tmp_path / "preds"), read_predictions(reference))
    assert len(manifest_records(tmp_path / "preds")) == 8
