"""Assemble a training run: catalog, reader, masker, model, engine, checkpoints, metrics.

``run_training`` is what ``mosaic-hpc train`` (one process) and ``mosaic_hpc/train.py`` (any
launcher, DeepSpeed) both call; the only difference is the engine factory they pass.

Validation (``train.eval_every``) reads the catalog's ``val`` split and never ``test``: every
choice made by watching the validation loss would otherwise have seen the rows that evaluate
reports. A catalog written before the validation split existed (train and test only) trains
without validation losses, and says so in one info line.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..config import DataConfig, RunConfig, save_config
from ..data.catalog import Catalog, require_same_layout, split_exists
from ..data.masker import HierarchicalMasker
from ..data.prefetch import DevicePrefetcher
from ..data.reader import ShardedReader
from ..data.validation import training_range
from ..dist_env import DistEnv
from ..loss import check_loss_weights
from ..model import MosaicModel, build_model
from .checkpoint import CheckpointManager, Ranks, checkpoint_step, write_run_metadata
from .config_fit import fit_and_report
from .engine import Engine, PlainEngine
from .init_from import load_pretrained
from .loop import RunIO, TrainResult, train_loop
from .metrics import JsonlSink, MetricsLogger, drop_records_after
from .resume_check import check_allowed_keys, check_resume
from .run_lock import RunLock
from .stop import StopRequest

log = logging.getLogger("mosaic_hpc.train")

VAL_SEED_OFFSET = 1_000_003  # validation masks differ from any training epoch's masks


EngineFactory = Callable[[MosaicModel, RunConfig, DistEnv], Engine]


def plain_engine_factory(model: MosaicModel, cfg: RunConfig, env: DistEnv) -> PlainEngine:
    if env.world_size > 1:
        raise ValueError(
            f"the plain engine runs one process, but the launcher started {env.world_size}; "
            "pass --deepspeed_config for multi-rank training"
        )
    return PlainEngine(model, cfg)


def with_max_steps(cfg: RunConfig, max_steps: int | None) -> RunConfig:
    """``cfg`` with ``train.max_steps = max_steps`` (a ``--max-steps`` flag), or ``cfg`` for None.

    The learning-rate schedule is a function of ``train.max_steps`` (training/schedule.py), so a
    step count that only stopped the loop would leave the cosine at the config's length: a longer
    run would spend its extra steps at the floor rate, a shorter one stop mid-decay at a high
    rate. Setting the key instead makes ``--max-steps N`` the same run as
    ``--set train.max_steps=N``, and the saved config says what was run.

    Raises:
        ValueError: ``max_steps`` < 1.
    """
    if max_steps is None:
        return cfg
    if max_steps < 1:
        raise ValueError(f"--max-steps must be >= 1, got {max_steps}")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=int(max_steps)))


def open_validation_split(data_dir: Path) -> Catalog | None:
    """The ``val`` split, or None (with one info line) for a catalog that has none.

    Raises:
        CatalogError: a ``val`` split exists but is broken (a broken file is never skipped).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        log.info("%s is a single file: training runs without validation losses", data_dir)
        return None
    if not split_exists(data_dir, "val"):
        log.info(
            "%s has no validation split (val.h5): training runs without validation losses; the test split is "
            "never used for validation (re-import or re-generate the catalog to get one)",
            data_dir,
        )
        return None
    return Catalog.open(data_dir, "val")


def validation_batching(data: DataConfig, val_cat: Catalog, world_size: int) -> DataConfig:
    """``data`` with a micro-batch that the validation split can fill on every rank.

    A validation split is a tenth of the catalog, so a small catalog (the tests' 1,500 galaxies,
    a user's first table) can hold fewer rows than one training batch per rank; validating in
    smaller batches measures the same loss, where refusing would stop a run that trains fine.
    """
    per_rank = val_cat.n_rows // world_size
    if 1 <= per_rank < data.micro_batch_size:
        log.info(
            "%s: %d validation rows over %d rank(s): validating in batches of %d, not %d",
            val_cat.paths[0],
            val_cat.n_rows,
            world_size,
            per_rank,
            data.micro_batch_size,
        )
        return dataclasses.replace(data, micro_batch_size=per_rank)
    return data


def run_training(
    cfg: RunConfig,
    data_dir: Path,
    run_dir: Path,
    env: DistEnv | None = None,
    engine_factory: EngineFactory = plain_engine_factory,
    resume: str = "auto",
    max_steps: int | None = None,
    extra_sinks: list | None = None,
    init_from: Path | str | None = None,
    allow_change: tuple[str, ...] = (),
) -> TrainResult:
    """Train ``cfg`` on the catalog in ``data_dir``, writing into ``run_dir``.

    ``init_from``: a run (or checkpoint) whose weights start the model, with a fresh optimizer
    (fine-tuning; see :mod:`.init_from`).

    ``max_steps`` (the ``--max-steps`` of train, quickstart and the launchers) sets
    ``train.max_steps``, the schedule's length included (:func:`with_max_steps`).

    ``allow_change``: config keys (or ``catalog``) that may differ from the checkpoint resumed
    from (:mod:`.resume_check`). Rank 0 holds the run directory's lock (:mod:`.run_lock`) from
    before the first write to the end.
    """
    env = env or DistEnv()
    cfg = with_max_steps(cfg, max_steps)
    if cfg.train.warmup_steps >= cfg.train.max_steps:
        log.warning(
            "train.warmup_steps %d >= train.max_steps %d: the whole run is learning-rate warm-up",
            cfg.train.warmup_steps,
            cfg.train.max_steps,
        )
    check_allowed_keys(allow_change)
    lock = RunLock(run_dir).acquire() if env.is_main else None
    try:
        return _run(cfg, data_dir, run_dir, env, engine_factory, resume, extra_sinks, init_from, allow_change)
    finally:
        if lock is not None:
            lock.release()


def _run(
    cfg: RunConfig,
    data_dir: Path,
    run_dir: Path,
    env: DistEnv,
    engine_factory: EngineFactory,
    resume: str,
    extra_sinks: list | None,
    init_from: Path | str | None,
    allow_change: tuple[str, ...],
) -> TrainResult:
    torch.manual_seed(cfg.train.seed)
    train_cat = Catalog.open(data_dir, "train")
    val_cat = open_validation_split(data_dir) if cfg.train.eval_every else None
    if val_cat is not None:
        require_same_layout(train_cat, val_cat)
    schema, stats = train_cat.schema, train_cat.stats
    cfg = fit_and_report(cfg, schema)  # presets name the mock's modalities; a user's catalog may lack them
    check_loss_weights(cfg.train.loss_weights, schema.names)
    masker = HierarchicalMasker(schema, cfg.masking, seed=cfg.train.seed)
    reader = ShardedReader(train_cat, cfg.data, env.rank, env.world_size, seed=cfg.train.seed, masker=masker)
    val_reader = None
    if val_cat is not None:  # opened only when eval_every > 0
        val_masker = HierarchicalMasker(schema, cfg.masking, seed=cfg.train.seed + VAL_SEED_OFFSET)
        val_data = validation_batching(cfg.data, val_cat, env.world_size)
        val_reader = ShardedReader(val_cat, val_data, env.rank, env.world_size, shuffle=False, masker=val_masker)
    model = build_model(schema, cfg.model, cfg.masking.mask_value)
    if init_from is not None:  # before the engine: it wraps (and under ZeRO-3 shards) these weights
        log.info("weights from %s", load_pretrained(model, schema, Path(data_dir), init_from))
    n_params = model.num_params()  # before the engine: ZeRO-3 leaves each rank only a shard
    engine = engine_factory(model, cfg, env)
    reader = DevicePrefetcher(reader, engine.device)  # pinned batches copied ahead; loop's to_torch is a no-op
    val_reader = DevicePrefetcher(val_reader, engine.device) if val_reader is not None else None
    any_rank = lambda flag: bool(engine.reduce_mean(torch.tensor(float(flag), device=engine.device)) > 0)
    ranks = Ranks(env.rank, env.world_size, engine.barrier, any_rank)
    checkpoints = CheckpointManager(run_dir, cfg.train.keep_last, ranks)
    resume_from = checkpoints.resolve(resume, engine.checkpoint_safe_globals)
    if resume_from is not None:  # before anything is written: a refused resume changes nothing
        stats = check_resume(resume_from, cfg, schema, stats, allow_change, env.world_size)
        for cat in (train_cat, val_cat):
            if cat is not None:
                cat.stats = stats  # the readers normalise lazily, with the run's statistics
    if env.is_main:
        if stats.low is None:  # what prediction will call the training range (data/validation.py)
            stats = stats.with_range(*training_range(train_cat))
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        write_run_metadata(run_dir, cfg, schema, stats)
        if resume_from is not None:
            drop_records_after(run_dir / "metrics.jsonl", checkpoint_step(resume_from))
    sinks = [JsonlSink(run_dir / "metrics.jsonl")] if env.is_main else []
    metrics = MetricsLogger(sinks + list(extra_sinks or []), enabled=env.is_main)
    stop = StopRequest(cfg.train.wall_time_budget_s, engine.agree_stop).install()
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
        io = RunIO(reader, checkpoints, metrics, stop, val_reader)
        result = train_loop(cfg, engine, io, schema, stats, resume_from)
    finally:
        stop.uninstall()
        metrics.close()
    log.info("done: %d steps in %.1f s (%s)", result.steps, time.perf_counter() - t0, result.reason or "completed")
    return result
