"""The DeepSpeed engine: ZeRO 1/2/3, bf16, fused Adam, collective checkpoints, universal resume.

This module starts the process group and adapts DeepSpeed's engine to the loop's :class:`Engine`
protocol, collectives included. The DeepSpeed JSON is reconciled with the run config in
:mod:`.ds_config` (pure, before any process group starts); the checkpoint files are read offline
(fp32 consolidation, universal conversion, the classes they may hold) in :mod:`.ds_checkpoint`.
DeepSpeed is imported only inside functions, so the package, the plain engine and the CLI work
where it is absent. Which file owns which setting, how checkpoints are consolidated and converted,
and why no checkpoint can execute code: docs/deepspeed_engine.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import RunConfig
from ..data.batch import Batch
from ..dist_env import DistEnv
from ..model import ModelOutput, MosaicModel
from .checkpoint import read_client_state
from .ds_checkpoint import (
    convert_to_universal,
    deepspeed_safe_globals,
    fp32_state_dict,
    universal_checkpoint_info,
    universal_dir,
)
from .ds_config import load_ds_json, resolve_ds_config, with_universal_load
from .engine import all_finite, apply_hyperparameters, param_groups, pick_device
from .metrics import peak_flops_for
from .safe_load import CheckpointError, restricted_loading, safe_torch_load
from .schedule import lr_factor
from .weight_average import WeightAverage

log = logging.getLogger("mosaic_hpc.train")

AGREE_EVERY = 5  # optimizer steps between stop-flag agreements across ranks (see agree_stop)


def _average_file(rank: int) -> str:
    return f"weight_average_rank{rank:05d}.pt"


def _rng_file(rank: int) -> str:
    return f"rng_rank{rank:05d}.pt"


def _disable_cpu_shm_comm() -> None:
    """Skip DeepSpeed's shared-memory comm op on CPU, saving its ~1 minute JIT build.

    The op only serves ``inference_all_reduce`` (tensor-parallel inference); training collectives
    go through torch.distributed (gloo). DeepSpeed builds the op whenever its compatibility table
    says it can, and keeps that table as one cached module dict, so marking the op incompatible
    there before the backend starts is enough.
    """
    import deepspeed.ops
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is not None:
        deepspeed.ops.__compatible_ops__[builder.NAME] = False


def init_distributed(env: DistEnv) -> None:
    """Start torch.distributed from the launcher environment (idempotent).

    Exports RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT first, so that ``mpiexec`` and
    ``srun`` ranks (which set only their own variables) initialise through ``env://`` like
    torchrun's, and passes ``auto_mpi_discovery=False``: DeepSpeed's discovery calls
    ``hostname -I``, which fails on ALCF systems.
    """
    import deepspeed
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    os.environ.update(env.export())
    if torch.cuda.is_available():
        torch.cuda.set_device(env.local_rank % torch.cuda.device_count())
    else:
        _disable_cpu_shm_comm()
    deepspeed.init_distributed(
        auto_mpi_discovery=False,
        distributed_port=env.master_port,
        rank=env.rank,
        world_size=env.world_size,
        verbose=False,
    )


class DeepSpeedEngine:
    """A DeepSpeed engine behind the loop's :class:`Engine` interface.

    The process group starts here; ``deepspeed.initialize`` runs here too, or, with
    ``defer_initialize``, when the engine is first used. Deferring is what lets a run resume at
    another world size through DeepSpeed's public route: ``checkpoint.load_universal`` is read
    only when DeepSpeed is initialised, and which layout a resume loads is known only at
    :meth:`load`, which then initialises with the key set (:func:`.ds_config.with_universal_load`).
    Until then the collectives work (they need only the process group) and nothing is wrapped.

    Args:
        model: the MOSAIC model, identically initialised on every rank (same seed).
        cfg: run config.
        env: this rank's place in the job.
        ds_config: a resolved DeepSpeed config (:func:`.ds_config.resolve_ds_config`).
        defer_initialize: initialise DeepSpeed at first use rather than now (what training
            does); eager, a failure to build the optimizer shows at construction (what the
            benchmarks want), and a checkpoint of another world size cannot be loaded.
    """

    def __init__(
        self,
        model: MosaicModel,
        cfg: RunConfig,
        env: DistEnv,
        ds_config: dict[str, Any],
        defer_initialize: bool = False,
    ) -> None:
        init_distributed(env)
        self.cfg, self.env = cfg, env
        self.world_size: int = env.world_size
        self.module: MosaicModel = model  # DeepSpeed wraps this object in place (bf16, ZeRO-3 shards)
        # DeepSpeed's choice too: init_distributed made this rank's GPU the current one.
        self.device: torch.device = pick_device()
        self.zero_stage: int = int(ds_config.get("zero_optimization", {}).get("stage", 0))  # DeepSpeed's default
        self.peak_flops: float = peak_flops_for(self.device, cfg.logging.peak_tflops)
        self.checkpoint_safe_globals: tuple[type, ...] = deepspeed_safe_globals()
        self._ds_config = ds_config
        self._wrapped = None  # DeepSpeed's engine, once initialised
        self.average: WeightAverage | None = None  # built with DeepSpeed's engine (ZeRO-3 shards exist then)
        self._agree_calls = 0
        if not defer_initialize:
            self._initialize(ds_config)

    def _initialize(self, ds_config: dict[str, Any]) -> None:
        import deepspeed

        tc = self.cfg.train
        # The schedule is a torch LambdaLR over the same pure function as the plain engine's, so
        # both engines (and resumed runs) use exactly the same LR at every step.
        schedule = lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, tc))
        self._wrapped, _, _, _ = deepspeed.initialize(
            model=self.module,
            model_parameters=param_groups(self.module, self.cfg),
            config=ds_config,
            lr_scheduler=schedule,
        )
        if tc.compile:
            self._wrapped.compile()  # DeepSpeed's own entry, so ZeRO's hooks stay outside the graph
        if torch.device(self._wrapped.device) != self.device:
            raise RuntimeError(f"DeepSpeed placed rank {self.env.rank} on {self._wrapped.device}, not {self.device}")
        if tc.ema_decay:
            self.average = WeightAverage(self._local_tensors, tc.ema_decay)

    def _local_tensors(self) -> list[torch.Tensor]:
        """What this rank's optimizer updates: ZeRO-3's flat shard of each parameter, else the parameter."""
        return [getattr(p, "ds_tensor", p) for p in self.module.parameters()]

    @property
    def _ds(self):
        """DeepSpeed's engine, initialised now if nothing has needed it yet (a fresh run)."""
        if self._wrapped is None:
            self._initialize(self._ds_config)
        return self._wrapped

    @property
    def global_steps(self) -> int:
        return int(self._ds.global_steps)

    def forward(self, batch: Batch, return_hidden_states: bool = False) -> ModelOutput:
        # bf16: DeepSpeed holds the module in bf16; the model casts its inputs to its own dtype
        # and the loss upcasts predictions to fp32.
        return self._ds(batch.targets, batch.hidden, batch.absent, return_hidden_states=return_hidden_states)

    def backward(self, loss: torch.Tensor) -> None:
        self._ds.backward(loss)  # DeepSpeed divides by gradient_accumulation_steps itself

    def step(self) -> bool:
        boundary = self._ds.is_gradient_accumulation_boundary()
        self._ds.step()
        if boundary and self.average is not None:
            self.average.update()
        return bool(boundary)

    def averaged(self) -> contextlib.AbstractContextManager[None]:
        """The average in the module's parameters; under ZeRO-3 the trained weights are kept.

        ZeRO-3 keeps parameters below its persistence threshold gathered in full beside their
        shards, so putting the average into the shards would change only some of the weights a
        forward pass uses: validation there scores the trained weights (``model.pt`` still holds
        the average, gathered from the shards by :meth:`_averaged_state_dict`).
        """
        _ = self._ds  # the average exists once DeepSpeed is initialised
        if self.average is None or self.zero_stage == 3:
            return contextlib.nullcontext()
        return self.average.swapped_in()

    def _averaged_state_dict(self) -> dict[str, torch.Tensor]:
        """The full fp32 average, on every rank (a collective under ZeRO-3: the shards are gathered)."""
        assert self.average is not None
        import deepspeed.comm as dist

        out = {}
        for (name, p), shadow in zip(self.module.named_parameters(), self.average.shadow, strict=True):
            if self.zero_stage != 3:
                out[name] = shadow.detach().clone().cpu()
                continue
            # ZeRO-3 gives rank r elements [r * shard size, (r + 1) * shard size) of the padded flat parameter.
            parts = [torch.empty_like(shadow) for _ in range(self.env.world_size)]
            dist.all_gather(parts, shadow)
            out[name] = torch.cat(parts)[: p.ds_numel].view(p.ds_shape).cpu()
        return out

    def get_lr(self) -> float:
        return float(self._ds.get_lr()[0])

    def get_grad_norm(self) -> float | None:
        norm = self._ds.get_global_grad_norm()
        return None if norm is None else float(norm)

    def train(self, mode: bool = True) -> None:
        self._ds.train(mode)

    def update_finite(self) -> torch.Tensor:
        norm = self._ds.get_global_grad_norm()  # a float or a device tensor, None before the first step
        if norm is None:
            return torch.ones((), dtype=torch.bool, device=self.device)
        return torch.isfinite(torch.as_tensor(norm, device=self.device))

    def weights_finite(self) -> torch.Tensor:
        # ZeRO-3 leaves each rank a flat shard (ds_tensor) of every parameter; ZeRO-1/2 full copies.
        params = (getattr(p, "ds_tensor", p) for p in self.module.parameters())
        return all_finite(params, self.device)

    # -- collectives used by the runner and the loop (the process group suffices) -------------

    def barrier(self) -> None:
        import deepspeed.comm as dist

        dist.barrier()

    def agree_stop(self, flag: bool) -> bool:
        """True on every rank when any rank wants to stop (all-reduce MAX), checked every few steps.

        The loop asks after every optimizer step, but reading the reduced flag back to the host
        is a device synchronisation that stalls the GPU queue, which costs more than the step of
        a small model. The stop flag is sticky (a signal or the wall-time budget stays a reason
        to stop), so it is enough to combine it every ``AGREE_EVERY`` calls: every rank counts
        the same calls, so all ranks still decide together, at most ``AGREE_EVERY - 1`` steps
        (well under a second) after the first rank had a reason. One rank needs no collective.
        """
        if self.env.world_size == 1:
            return flag
        self._agree_calls += 1
        if self._agree_calls % AGREE_EVERY:
            return False
        import deepspeed.comm as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mean over ranks (for logged losses; NaN on any rank makes the mean NaN everywhere)."""
        if self.env.world_size == 1:
            return tensor.detach().float()
        import deepspeed.comm as dist

        t = tensor.detach().clone().float()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.env.world_size

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self, ckpt_dir: Path, client_state: dict[str, Any]) -> None:
        """Collective save into ``ckpt_dir`` plus rank 0's consolidated fp32 ``model.pt``.

        ``universal_checkpoint_info`` is what ``ds_to_universal`` requires of checkpoints not
        written by Megatron; with it a checkpoint can be resumed at another world size.
        """
        ckpt_dir = Path(ckpt_dir)
        state = {**client_state, **universal_checkpoint_info()}
        self._ds.save_checkpoint(str(ckpt_dir.parent), tag=ckpt_dir.name, client_state=state, save_latest=False)
        # RNG streams are per rank (dropout differs per rank), so each rank keeps its own file.
        rng = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else torch.empty(0),
        }
        torch.save(rng, ckpt_dir / _rng_file(self.env.rank))
        averaged = None
        if self.average is not None:
            torch.save(self.average.state_dict(), ckpt_dir / _average_file(self.env.rank))
            averaged = self._averaged_state_dict()  # on every rank: a collective under ZeRO-3
        self.barrier()
        if self.env.is_main:
            # Full precision, from the average or from the shards just written (the module may
            # hold bf16 or a ZeRO-3 shard).
            torch.save(averaged if averaged is not None else fp32_state_dict(ckpt_dir), ckpt_dir / "model.pt")
        self.barrier()

    def load(self, ckpt_dir: Path) -> dict[str, Any]:
        """Restore weights, optimizer, LR schedule and RNG; returns the saved client state.

        At the saved world size DeepSpeed loads its own files. At another one the per-rank ZeRO
        partitions no longer fit, so rank 0 converts the checkpoint into a universal one beside
        it (``ds_to_universal``) and every rank loads that, DeepSpeed initialised with
        ``checkpoint.load_universal``; the conversion is removed afterwards (it is rebuilt from
        the original when needed). Every read runs under :func:`restricted_loading`; the caller
        has verified the files already.

        Raises:
            CheckpointError: DeepSpeed cannot load it, or it needs the universal load and this
                engine was initialised before the checkpoint was known (``defer_initialize``).
        """
        ckpt_dir = Path(ckpt_dir)
        client = read_client_state(ckpt_dir)
        saved_world = int(client.get("world_size", self.env.world_size))
        universal = saved_world != self.env.world_size
        self._initialize_for_load(ckpt_dir, universal)
        if not universal:
            self._load_deepspeed(ckpt_dir)
            self._load_average(ckpt_dir / _average_file(self.env.rank))
            rng_path = ckpt_dir / _rng_file(self.env.rank)
            if rng_path.is_file():
                rng = safe_torch_load(rng_path)
                torch.set_rng_state(rng["torch"])
                if self.device.type == "cuda" and rng["cuda"].numel():
                    torch.cuda.set_rng_state(rng["cuda"], self.device)
            return client
        converted = universal_dir(ckpt_dir)
        if self.env.is_main:
            log.info(
                "checkpoint %s was written by %d ranks, this run has %d: converting it to a universal checkpoint in %s",
                ckpt_dir,
                saved_world,
                self.env.world_size,
                converted,
            )
            convert_to_universal(ckpt_dir, converted)
        self.barrier()
        self._load_deepspeed(converted)
        self.barrier()
        if self.env.is_main:
            shutil.rmtree(converted, ignore_errors=True)
        # RNG: the saved streams belonged to another rank layout; keep this run's seeded ones.
        if self.average is not None:
            # The average was saved in that layout too (ZeRO-3: shards of another size).
            log.warning("%s: the weight average restarts from the loaded weights at the new world size", ckpt_dir)
            self.average.restart()
        return client

    def _load_average(self, path: Path) -> None:
        """Restore this rank's weight average (one saved without it restarts from the loaded weights)."""
        if self.average is not None:
            self.average.restore(safe_torch_load(path, map_location=self.device) if path.is_file() else None, path)

    def _initialize_for_load(self, ckpt_dir: Path, universal: bool) -> None:
        """Initialise DeepSpeed for loading ``ckpt_dir`` in its layout, or check that it already can."""
        if self._wrapped is None:
            self._initialize(with_universal_load(self._ds_config, universal))
        elif bool(self._wrapped.load_universal_checkpoint()) != universal:
            raise CheckpointError(
                ckpt_dir,
                f"{'needs' if universal else 'cannot use'} DeepSpeed's universal load (written by another number "
                "of ranks), which DeepSpeed fixes when it is initialised; this engine was initialised before the "
                "checkpoint was known (build it with defer_initialize=True)",
            )

    def _load_deepspeed(self, ckpt_dir: Path) -> None:
        """DeepSpeed's ``load_checkpoint`` with restricted unpickling and one-line errors."""
        try:
            with restricted_loading(deepspeed_safe_globals()):
                path, _ = self._ds.load_checkpoint(str(ckpt_dir.parent), tag=ckpt_dir.name)
        except CheckpointError:
            raise
        except (RuntimeError, KeyError, ValueError, OSError, AssertionError) as err:
            first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
            raise CheckpointError(
                ckpt_dir,
                f"DeepSpeed could not load it ({type(err).__name__}: {first[:200]}); a model.* or "
                "train.precision change cannot be resumed",
            ) from None
        if path is None:
            raise CheckpointError(ckpt_dir, "DeepSpeed could not load this checkpoint")
        apply_hyperparameters(self._ds.optimizer, self._ds.lr_scheduler, self.cfg)


def deepspeed_engine_factory(
    ds_config_path: Path | str, yaml_source: str = "the run config", defer_initialize: bool = False
) -> Callable[[MosaicModel, RunConfig, DistEnv], DeepSpeedEngine]:
    """A ``run_training`` engine factory for the DeepSpeed JSON at ``ds_config_path``.

    ``yaml_source`` names the run config file in conflict messages. ``defer_initialize``: see
    :class:`DeepSpeedEngine` (training passes True, so that it can resume at another world size).

    The JSON is read now (a missing or malformed file fails before any process group starts) and
    checked against the run config when the engine is built, before ``init_distributed``, so a
    conflict fails on every rank at once instead of hanging in a collective.
    """
    path = Path(ds_config_path)
    raw = load_ds_json(path)

    def factory(model: MosaicModel, cfg: RunConfig, env: DistEnv) -> DeepSpeedEngine:
        resolved = resolve_ds_config(
            raw, cfg, env.world_size, cuda=torch.cuda.is_available(), ds_source=str(path), yaml_source=yaml_source
        )
        return DeepSpeedEngine(model, cfg, env, resolved, defer_initialize=defer_initialize)

    return factory


def profile_forward_flops(model: torch.nn.Module, kwargs: dict[str, Any]) -> float:
    """Forward FLOPs of one ``model(**kwargs)`` call counted by DeepSpeed's flops profiler.

    Used by ``bench throughput`` to cross-check ``MosaicModel.flops_per_sample``; it lives here
    because this module is the engine side of DeepSpeed.
    """
    from deepspeed.profiling.flops_profiler import get_model_profile

    with torch.no_grad():
        flops, _, _ = get_model_profile(
            model, kwargs=kwargs, print_profile=False, detailed=False, warm_up=0, as_string=False
        )
    return float(flops)
