"""Assemble a training run: catalog, reader, masker, model, engine, checkpoints, metrics.

``run_training`` is what ``mosaic-hpc train`` (one process) and ``mosaic_hpc/train.py`` (any
launcher, DeepSpeed) both call; the only difference is the engine factory they pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import RunConfig, save_config
from ..data.catalog import Catalog
from ..data.masker import HierarchicalMasker
from ..data.prefetch import DevicePrefetcher
from ..data.reader import ShardedReader
from ..dist_env import DistEnv
from ..model import build_model
from .checkpoint import CheckpointManager, write_run_metadata
from .engine import PlainEngine
from .init_from import load_pretrained
from .loop import TrainResult, train_loop
from .metrics import JsonlSink, MetricsLogger
from .stop import StopRequest

log = logging.getLogger("mosaic_hpc.train")

VAL_SEED_OFFSET = 1_000_003  # validation masks differ from any training epoch's masks


def plain_engine_factory(model, cfg: RunConfig, env: DistEnv):
    if env.world_size > 1:
        raise ValueError(
            f"the plain engine runs one process, but the launcher started {env.world_size}; "
            "pass --deepspeed_config for multi-rank training"
        )
    return PlainEngine(model, cfg)


def run_training(
    cfg: RunConfig,
    data_dir: Path,
    run_dir: Path,
    env: DistEnv | None = None,
    engine_factory: Callable = plain_engine_factory,
    resume: str = "auto",
    max_steps: int | None = None,
    extra_sinks: list | None = None,
    init_from: Path | str | None = None,
) -> TrainResult:
    """Train ``cfg`` on the catalog in ``data_dir``, writing into ``run_dir``.

    ``init_from``: a run (or checkpoint) whose weights start the model, with a fresh optimizer
    (fine-tuning; see :mod:`.init_from`).
    """
    env = env or DistEnv()
    torch.manual_seed(cfg.train.seed)
    train_cat = Catalog.open(data_dir, "train")
    try:
        val_cat = Catalog.open(data_dir, "test")
    except ValueError:
        val_cat = None
    schema, stats = train_cat.schema, train_cat.stats
    masker = HierarchicalMasker(schema, cfg.masking, seed=cfg.train.seed)
    reader = ShardedReader(train_cat, cfg.data, env.rank, env.world_size, seed=cfg.train.seed, masker=masker)
    val_reader = None
    if val_cat is not None and cfg.train.eval_every:
        val_masker = HierarchicalMasker(schema, cfg.masking, seed=cfg.train.seed + VAL_SEED_OFFSET)
        val_reader = ShardedReader(val_cat, cfg.data, env.rank, env.world_size, shuffle=False, masker=val_masker)
    model = build_model(schema, cfg.model, cfg.masking.mask_value)
    if init_from is not None:  # before the engine: it wraps (and under ZeRO-3 shards) these weights
        log.info("weights from %s", load_pretrained(model, schema, Path(data_dir), init_from))
    n_params = model.num_params()  # before the engine: ZeRO-3 leaves each rank only a shard
    engine = engine_factory(model, cfg, env)
    reader = DevicePrefetcher(reader, engine.device)  # pinned batches copied ahead; loop's to_torch is a no-op
    val_reader = DevicePrefetcher(val_reader, engine.device) if val_reader is not None else None
    barrier = getattr(engine, "barrier", lambda: None)
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        write_run_metadata(run_dir, cfg, schema, stats)
    sinks = [JsonlSink(run_dir / "metrics.jsonl")] if env.is_main else []
    metrics = MetricsLogger(sinks + list(extra_sinks or []), enabled=env.is_main)
    checkpoints = CheckpointManager(run_dir, cfg.train.keep_last, env.is_main, barrier)
    resume_from = checkpoints.resolve(resume)
    stop = StopRequest(cfg.train.wall_time_budget_s, getattr(engine, "agree_stop", lambda f: f)).install()
    log.info(
        "training %s: %d params, %d tokens/galaxy, %d train rows, rank %d/%d",
        cfg.name,
        n_params,
        model.seq_len,
        train_cat.n_rows,
        env.rank,
        env.world_size,
    )
    t0 = time.perf_counter()
    try:
        result = train_loop(
            cfg,
            engine,
            reader,
            schema,
            stats,
            checkpoints,
            metrics,
            stop,
            val_reader=val_reader,
            resume_from=resume_from,
            max_steps=max_steps,
            peak_flops=getattr(engine, "peak_flops", 0.0),
            reduce_mean=getattr(engine, "reduce_mean", lambda t: t),
            world_size=env.world_size,
        )
    finally:
        stop.uninstall()
        metrics.close()
    log.info("done: %d steps in %.1f s (%s)", result.steps, time.perf_counter() - t0, result.reason or "completed")
    return result
