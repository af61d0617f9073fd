"""A stand-in for ``python -m mosaic_hpc.train`` that follows only the launcher contract.

The launcher tests run it as ``MOSAIC_PYTHON="python fake_trainer.py"``, so each rank executes
``python fake_trainer.py -m mosaic_hpc.train --config ... --data ... --out RUN_DIR ...``. It
checks the launcher side quickly and without torch: rank/world from the launcher environment,
MASTER_ADDR/PORT exported, checkpoint + ``checkpoints/latest`` written on exit, ``--resume auto``
continuing from ``latest``, SIGUSR1/SIGTERM -> save and exit 0, and the REQUEUE marker.

Every rank appends one JSON line per run to ``RUN_DIR/fake/runs.jsonl``.

Environment knobs: FAKE_STEP_SECS (sleep per step, default 0.05), FAKE_STOP_AT (at this step
rank 0 writes RUN_DIR/REQUEUE and all ranks save and exit 0, like a trainer-side time budget),
FAKE_EXIT_CODE (exit status at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

RANK_VARS = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
)
RECORDED_ENV = (
    "MASTER_ADDR",
    "MASTER_PORT",
    "SLURM_JOB_ID",
    "SLURM_RESTART_COUNT",
    "PBS_JOBID",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "HDF5_USE_FILE_LOCKING",
    "PALS_LOCAL_RANKID",
)


def rank_world_local() -> tuple[int, int, int, str]:
    env = os.environ
    for rank_key, world_key, local_key in RANK_VARS:
        if rank_key in env and world_key in env:
            local = env.get(local_key, env.get("PALS_LOCAL_RANKID", "0"))
            return int(env[rank_key]), int(env[world_key]), int(local), rank_key
    return 0, 1, 0, "single"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", dest="module")
    parser.add_argument("--config", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", default="auto")
    parser.add_argument("--max-steps", type=int, default=20)
    parser.add_argument("--deepspeed_config")
    args, unknown = parser.parse_known_args()

    rank, world, local, source = rank_world_local()
    stop: dict[str, str] = {}

    def on_signal(signum: int, frame: object) -> None:
        stop.setdefault("reason", signal.Signals(signum).name)

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    out_dir = Path(args.out)
    ckpt_dir = out_dir / "checkpoints"
    fake_dir = out_dir / "fake"
    fake_dir.mkdir(parents=True, exist_ok=True)
    start = 0
    if args.resume == "auto" and (ckpt_dir / "latest").is_file():
        tag = (ckpt_dir / "latest").read_text().strip()
        start = json.loads((ckpt_dir / tag / "state.json").read_text())["step"]
    elif args.resume not in ("auto", "none"):
        start = json.loads((Path(args.resume) / "state.json").read_text())["step"]

    step_secs = float(os.environ.get("FAKE_STEP_SECS", "0.05"))
    stop_at = int(os.environ.get("FAKE_STOP_AT", "0"))
    step = start
    reason = "done"
    while step < args.max_steps:
        if stop:
            reason = stop["reason"]
            break
        if stop_at and step >= stop_at and start < stop_at:
            reason = "requeue-request"
            if rank == 0:
                (out_dir / "REQUEUE").write_text("fake trainer budget\n")
            break
        time.sleep(step_secs)
        step += 1
        (fake_dir / f"progress.{rank}").write_text(str(step))

    # Ranks stop on their own signal at slightly different steps; agree on the step to save,
    # as the real trainer does with a collective, here through files (the smallest step wins).
    tmp = fake_dir / f".final.{start}.{rank}"
    tmp.write_text(str(step))
    tmp.rename(fake_dir / f"final.{start}.{rank}")  # atomic: readers never see a partial file
    deadline = time.monotonic() + 60
    while not all((fake_dir / f"final.{start}.{r}").exists() for r in range(world)):
        if time.monotonic() > deadline:
            print("fake_trainer: not every rank stopped", file=sys.stderr)
            return 3
        time.sleep(0.05)
    step = min(int((fake_dir / f"final.{start}.{r}").read_text()) for r in range(world))

    # "Collective" save: every rank writes its shard, rank 0 waits for all, then moves latest.
    tag = f"step{step}"
    (ckpt_dir / tag).mkdir(parents=True, exist_ok=True)
    (ckpt_dir / tag / f"rank{rank}.json").write_text(json.dumps({"step": step}))
    if rank == 0:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all((ckpt_dir / tag / f"rank{r}.json").exists() for r in range(world)):
                break
            time.sleep(0.05)
        else:
            print("fake_trainer: not every rank saved", file=sys.stderr)
            return 3
        (ckpt_dir / tag / "state.json").write_text(json.dumps({"step": step}))
        (ckpt_dir / "latest").write_text(tag)

    record = {
        "rank": rank,
        "world": world,
        "local": local,
        "source": source,
        "start": start,
        "end": step,
        "reason": reason,
        "argv": sys.argv[1:],
        "unknown": unknown,
        "env": {key: os.environ.get(key) for key in RECORDED_ENV},
    }
    with open(fake_dir / "runs.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(f"fake_trainer rank {rank}/{world}: steps {start}->{step} ({reason})", flush=True)
    return int(os.environ.get("FAKE_EXIT_CODE", "0"))


if __name__ == "__main__":
    sys.exit(main())
