"""The training loop shared by the plain and the DeepSpeed engines.

Micro-batch -> forward -> loss -> backward -> engine.step, repeated until the engine says the
optimizer stepped, with periodic metrics, validation, checkpoints, a non-finite guard and clean
stops. It knows nothing of the engine's internals: the engine hides accumulation (the window
closes when ``step`` says so), precision, ZeRO and communication (its collectives).

The non-finite guard watches three things, because a diverging run can corrupt the weights while
the loss still looks finite: the loss of every micro-batch, the gradient norm of every optimizer
step (an inf norm turns the update, and then every weight, into NaN) and, before every save, the
weights themselves. The flags stay on the device (no host sync per step); they are read at every
logging step and before every checkpoint, combined over ranks, and any of them stops the run
with :class:`NonFiniteLossError` before a non-finite state is written.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import RunConfig
from ..data.normalization import NormStats
from ..data.prefetch import DevicePrefetcher
from ..data.reader import ReaderPosition, ShardedReader
from ..loss import masked_regression_loss
from ..schema import CatalogSchema
from .checkpoint import CheckpointManager
from .engine import Engine
from .metrics import MetricsLogger, ThroughputMeter
from .step import train_step
from .stop import StopRequest

log = logging.getLogger("mosaic_hpc.train")


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or inf (loss, gradients or weights); the last good checkpoint is left untouched."""


# What each slot of the loop's non-finite flags means, for the error message.
NONFINITE_WHAT = ("the loss", "the gradient norm", "the weights")


@dataclass
class TrainResult:
    steps: int
    stopped_early: bool
    reason: str
    last_checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)


Reader = ShardedReader | DevicePrefetcher  # the same interface; the runner hands the loop prefetchers


@dataclass(frozen=True)
class RunIO:
    """What one run reads and writes, built by the runner and handed to the loop as one.

    Attributes:
        reader: training batches (``iter_from`` a data position).
        checkpoints: where checkpoints are saved.
        metrics: where metric records go (a no-op on ranks other than 0).
        stop: the stop request (signals, wall-time budget), combined over ranks by the engine.
        val_reader: validation batches, or None to train without validation losses.
    """

    reader: Reader
    checkpoints: CheckpointManager
    metrics: MetricsLogger
    stop: StopRequest
    val_reader: Reader | None = None


def rescale_position(position: ReaderPosition, old_global_batch: int, new_global_batch: int) -> ReaderPosition:
    """Map a data position to a run with another global micro-batch (world size change).

    The epoch plan depends on the world size, so exact sample order cannot survive a change of
    it: the resumed run keeps the epoch and the share of it already consumed (rounded down, so
    at most one global batch of samples is seen twice rather than skipped).
    """
    return ReaderPosition(position.epoch, position.batch * old_global_batch // new_global_batch)


@torch.no_grad()
def validation_loss(
    engine: Engine,
    reader: Reader,
    n_batches: int,
    loss_on: str,
    loss_weights: dict[str, float] | None = None,
    nll_beta: float = 0.0,
    nll_variance: str = "beta",
) -> dict[str, float]:
    """Mean loss over the first ``n_batches`` of the validation split with fixed (epoch-0) masks.

    Scored with the engine's :meth:`~.engine.Engine.averaged` weights (the trained ones without
    ``train.ema_decay``).
    """
    engine.train(False)
    totals: dict[str, float] = {}
    n = 0
    with engine.averaged():  # the weights checkpoints hand out
        for batch in reader.iter_epoch(0):
            if n >= n_batches:
                break
            b = batch.to_torch(engine.device)
            out = masked_regression_loss(engine.forward(b), b, loss_on, loss_weights, nll_beta, nll_variance)
            for k, v in {"all": out.total, **out.per_modality}.items():
                totals[k] = totals.get(k, 0.0) + float(v)
            n += 1
    engine.train(True)
    return {f"val/{k}": v / max(n, 1) for k, v in totals.items()}


def train_loop(
    cfg: RunConfig,
    engine: Engine,
    io: RunIO,
    schema: CatalogSchema,
    stats: NormStats,
    resume_from: Path | None = None,
) -> TrainResult:
    """Train until ``cfg.train.max_steps`` optimizer steps, a stop request, or a non-finite loss.

    ``schema`` and ``stats`` describe the catalog; every checkpoint carries them. The engine
    supplies the collectives (mean over ranks, the stop agreement) and the world size.

    Returns:
        TrainResult with the steps done and the last checkpoint written.

    Raises:
        NonFiniteLossError: the loss became NaN/inf; no checkpoint is written after it.
    """
    tc = cfg.train
    max_steps = tc.max_steps
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    world_size = engine.world_size
    position = ReaderPosition()
    if resume_from is not None:
        client = engine.load(resume_from)
        position = ReaderPosition(**client["position"])
        saved_world = int(client.get("world_size", world_size))
        saved_mbs = int(client.get("micro_batch_size", cfg.data.micro_batch_size))
        if saved_world * saved_mbs != world_size * cfg.data.micro_batch_size:
            position = rescale_position(position, saved_mbs * saved_world, cfg.data.micro_batch_size * world_size)
            log.warning(
                "checkpoint has %d ranks x %d galaxies per batch, this run %d x %d: data order continues at the same "
                "share of epoch %d, not sample-exact",
                saved_world,
                saved_mbs,
                world_size,
                cfg.data.micro_batch_size,
                position.epoch,
            )
        log.info(
            "resumed from %s at step %d, epoch %d batch %d",
            resume_from,
            engine.global_steps,
            *position.__dict__.values(),
        )
    stream = io.reader.iter_from(position)
    model = engine.module
    meter = ThroughputMeter(model.flops_per_sample(), engine.peak_flops, n_devices=world_size, device=engine.device)
    meter.reset(engine.global_steps)
    names = list(schema.names)
    running = torch.zeros(len(names) + 1, device=engine.device)
    bad = torch.zeros(len(NONFINITE_WHAT), dtype=torch.bool, device=engine.device)  # sticky, see module doc
    n_running = 0
    history: list[dict[str, float]] = []
    last_ckpt = resume_from
    start_step = engine.global_steps
    engine.train(True)

    def stop_if_nonfinite(step: int) -> None:
        # Decided over all ranks (the reduced flags are the same everywhere), so that no rank is
        # left waiting in a collective while another stops.
        flags = engine.reduce_mean(bad.float()).tolist()
        what = [w for w, f in zip(NONFINITE_WHAT, flags, strict=True) if f > 0]
        if what:
            raise NonFiniteLossError(
                f"{' and '.join(what)} became NaN or inf by step {step}; stopping, last good checkpoint kept "
                "(lower train.lr, or set train.grad_clip)"
            )

    def save() -> Path:
        bad[2] |= ~engine.weights_finite()  # never checkpoint non-finite weights
        stop_if_nonfinite(engine.global_steps)
        state = {
            "step": engine.global_steps,
            "position": position.__dict__,
            "world_size": world_size,
            "micro_batch_size": cfg.data.micro_batch_size,
        }
        return io.checkpoints.save(engine, engine.global_steps, state, cfg, schema, stats)

    reason = ""
    while engine.global_steps < max_steps:
        stepped = False
        while not stepped:  # micro-batches until the engine closes its accumulation window
            t0 = time.perf_counter()
            position, batch = next(stream)
            b = batch.to_torch(engine.device)
            meter.add(b.size * world_size, time.perf_counter() - t0)
            out = train_step(engine, b, tc.loss_on, tc.loss_weights, tc.nll_beta, tc.nll_variance)
            stepped = out.stepped
            detached = torch.stack([out.total.detach(), *(out.per_modality[n].detach() for n in names)])
            bad[0] |= ~torch.isfinite(detached[0])
            running += detached
            n_running += 1
        bad[1] |= ~engine.update_finite()
        step = engine.global_steps
        if (tc.log_every and step % tc.log_every == 0) or step == max_steps:
            mean = engine.reduce_mean(running / max(n_running, 1)).tolist()
            stop_if_nonfinite(step)
            if not math.isfinite(mean[0]):  # the reduced mean is the same on every rank
                raise NonFiniteLossError(f"loss is {mean[0]} at step {step}; stopping, last good checkpoint kept")
            record = {"loss/total": mean[0], **{f"loss/{n}": v for n, v in zip(names, mean[1:], strict=True)}}
            record["optim/lr"] = engine.get_lr()
            gn = engine.get_grad_norm()
            if gn is not None:
                record["optim/grad_norm"] = gn
            record.update(meter.report(step))
            record["progress/epoch"] = position.epoch
            io.metrics.log(step, record)
            history.append({"step": step, **record})
            running.zero_()
            n_running = 0
        if io.val_reader is not None and tc.eval_every and step % tc.eval_every == 0:
            val = validation_loss(
                engine, io.val_reader, tc.eval_batches, tc.loss_on, tc.loss_weights, tc.nll_beta, tc.nll_variance
            )
            io.metrics.log(step, val)
            history.append({"step": step, **val})
        if tc.save_every and step % tc.save_every == 0 and step < max_steps:
            last_ckpt = save()
        if io.stop.should_stop():
            reason = io.stop.reason
            break
    if engine.global_steps > start_step or last_ckpt is None:
        last_ckpt = save()  # a finished run resumed again has nothing new to save
    return TrainResult(
        steps=engine.global_steps, stopped_early=bool(reason), reason=reason, last_checkpoint=last_ckpt, history=history
    )
