"""The engine interface the training loop drives, and its plain-PyTorch implementation.

The loop calls ``forward``, ``backward`` and ``step`` once per micro-batch; the engine decides
when a micro-batch closes an accumulation window and the optimizer really steps (DeepSpeed's
contract, mirrored here so one loop drives both), and ``step`` says so. The collectives the
runner and the loop need (a barrier, the stop agreement, the mean over ranks) are engine
methods too, so one process gets trivial ones and nothing is looked up by name. Only the
DeepSpeed modules (``deepspeed_engine.py``, ``ds_checkpoint.py``) import DeepSpeed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import torch

from ..config import RunConfig
from ..data.batch import Batch
from ..devices import choose_device
from ..model import ModelOutput, MosaicModel
from .safe_load import CheckpointError, SafeGlobals, safe_torch_load
from .schedule import lr_factor
from .weight_average import WeightAverage


class Engine(Protocol):
    """What the training loop needs from an engine (plain PyTorch or DeepSpeed)."""

    module: MosaicModel
    device: torch.device
    global_steps: int
    world_size: int  # data-parallel ranks the engine spans (1: one process)
    peak_flops: float  # peak FLOP/s of one device, for MFU; 0: MFU not reported
    checkpoint_safe_globals: SafeGlobals  # classes the engine's checkpoint files may hold (see safe_load)

    def forward(self, batch: Batch) -> ModelOutput: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> bool:
        """Called after every backward; returns True when the optimizer stepped."""
        ...

    def get_lr(self) -> float: ...

    def get_grad_norm(self) -> float | None: ...

    def train(self, mode: bool = True) -> None: ...

    def update_finite(self) -> torch.Tensor:
        """0-dim bool on the device: the last optimizer step's gradient norm was finite (no sync)."""
        ...

    def weights_finite(self) -> torch.Tensor:
        """0-dim bool on the device: this rank's weights (or its ZeRO-3 shard) are all finite."""
        ...

    def save(self, ckpt_dir: Path, client_state: dict[str, Any]) -> None:
        """Write this engine's state into ``ckpt_dir`` (called on every rank)."""
        ...

    def load(self, ckpt_dir: Path) -> dict[str, Any]:
        """Restore state from ``ckpt_dir``; returns the client state saved with it."""
        ...

    def barrier(self) -> None:
        """Wait until every rank gets here (checkpoint writes are split over ranks)."""
        ...

    def agree_stop(self, flag: bool) -> bool:
        """True on every rank once any rank passed True (may be checked only every few calls)."""
        ...

    def reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` averaged over ranks, the same on every rank (logged losses, non-finite flags)."""
        ...

    def averaged(self) -> contextlib.AbstractContextManager[None]:
        """The weights checkpoints hand out (``train.ema_decay``'s average) in the module meanwhile.

        Validation runs inside it, so its losses are those of the weights users get; without an
        average it changes nothing.
        """
        ...


def param_groups(model: torch.nn.Module, cfg: RunConfig) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not biases, norms or positions); shared by both engines."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and n != "pos"]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or n == "pos"]
    return [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`."""
    return torch.optim.AdamW(
        param_groups(model, cfg), lr=cfg.train.lr, betas=cfg.train.betas, fused=torch.cuda.is_available() or None
    )


def all_finite(tensors: Iterable[torch.Tensor], device: torch.device) -> torch.Tensor:
    """True (a 0-dim device tensor, read without a host sync) when every value of every tensor is finite."""
    flags = [torch.isfinite(t).all() for t in tensors if t.numel()]
    return torch.stack(flags).all() if flags else torch.ones((), dtype=torch.bool, device=device)


def apply_hyperparameters(optimizer: torch.optim.Optimizer, scheduler, cfg: RunConfig) -> None:
    """Make a just-loaded optimizer follow the run config again (both engines, after ``load``).

    ``load_state_dict`` restores the learning rate, betas and weight decay saved in the checkpoint
    and the scheduler its base learning rate, so a value changed on resume (``--allow-change
    train.lr``) would silently not apply. The config is the source of truth: its values are set
    again and the current step's learning rate is recomputed from them, exactly as the scheduler
    computes it (``base_lr * lr_factor(step)``), so an unchanged resume stays bitwise exact.
    """
    tc = cfg.train
    scheduler.base_lrs = [tc.lr] * len(optimizer.param_groups)
    factor = lr_factor(scheduler.last_epoch, tc)
    for group, weight_decay in zip(optimizer.param_groups, (tc.weight_decay, 0.0), strict=True):
        group["betas"] = tc.betas
        group["weight_decay"] = weight_decay  # the two groups of param_groups()
        group["initial_lr"] = tc.lr
        group["lr"] = tc.lr * factor


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """``load_state_dict`` with a one-line error when the weights do not fit the model."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
        raise CheckpointError(source, f"the weights do not fit the model of this config ({first[:200]})") from None


def pick_device() -> torch.device:
    return choose_device()  # the current device the distributed init set, or this rank's GPU, else the CPU


class PlainEngine:
    """One process, CPU or one GPU: AdamW, warm-up + cosine LR, clipping, accumulation, bf16 autocast.

    Alone, it needs no collectives: the barrier does nothing, the stop agreement and the mean over
    ranks return what they are given. Its checkpoints hold only tensors and plain containers, and
    it reports no MFU (``peak_flops`` 0), as it never has.
    """

    world_size = 1
    peak_flops = 0.0
    checkpoint_safe_globals: SafeGlobals = ()

    def __init__(self, model: MosaicModel, cfg: RunConfig, device: torch.device | None = None) -> None:
        self.device = device or pick_device()
        self.module = model.to(self.device)
        if cfg.train.compile:
            self.module.compile()  # in place: state_dict keys and checkpoints stay those of eager
        self.cfg = cfg
        self.optimizer = build_optimizer(self.module, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg.train))
        self.global_steps = 0
        self._micro = 0
        self._grad_norm: float | None = None
        decay = cfg.train.ema_decay
        self.average = WeightAverage(self.module.parameters, decay) if decay else None

    def _autocast(self):
        if self.cfg.train.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward(self, batch: Batch, return_hidden_states: bool = False) -> ModelOutput:
        with self._autocast():
            return self.module(batch.targets, batch.hidden, batch.absent, return_hidden_states=return_hidden_states)

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.cfg.train.grad_accum_steps).backward()

    def step(self) -> bool:
        self._micro += 1
        if self._micro % self.cfg.train.grad_accum_steps:
            return False
        clip = self.cfg.train.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), clip if clip > 0 else float("inf"))
        self._grad_norm = norm  # a tensor: read lazily, only when logged, to avoid a sync per step
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.average is not None:
            self.average.update()
        self.global_steps += 1
        return True

    def averaged(self) -> contextlib.AbstractContextManager[None]:
        return self.average.swapped_in() if self.average is not None else contextlib.nullcontext()

    def get_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def get_grad_norm(self) -> float | None:
        return None if self._grad_norm is None else float(self._grad_norm)

    def train(self, mode: bool = True) -> None:
        self.module.train(mode)

    def update_finite(self) -> torch.Tensor:
        if self._grad_norm is None:
            return torch.ones((), dtype=torch.bool, device=self.device)
        return torch.isfinite(self._grad_norm)

    def weights_finite(self) -> torch.Tensor:
        return all_finite(self.module.parameters(), self.device)

    def save(self, ckpt_dir: Path, client_state: dict[str, Any]) -> None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        with self.averaged():  # model.pt: the weights for prediction; the trained ones resume from engine.pt
            torch.save(self.module.state_dict(), ckpt_dir / "model.pt")
        extra: dict[str, Any] = {}
        if self.average is not None:
            extra = {"model": self.module.state_dict(), "weight_average": self.average.state_dict()}
        torch.save(
            {
                **extra,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "global_steps": self.global_steps,
                "micro_steps": self._micro,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            ckpt_dir / "engine.pt",
        )

    def load(self, ckpt_dir: Path) -> dict[str, Any]:
        from .checkpoint import read_client_state

        state = safe_torch_load(ckpt_dir / "engine.pt")
        if "model" in state:  # written with a weight average: model.pt holds the average, not these
            load_weights(self.module, state["model"], ckpt_dir / "engine.pt")
        else:
            weights = ckpt_dir / "model.pt"
            load_weights(self.module, safe_torch_load(weights, map_location=self.device), weights)
        if self.average is not None:
            self.average.restore(state.get("weight_average"), ckpt_dir / "engine.pt")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(ckpt_dir / "engine.pt", f"optimizer state does not fit this run ({err})") from None
        apply_hyperparameters(self.optimizer, self.scheduler, self.cfg)
        self.global_steps = int(state["global_steps"])
        self._micro = int(state["micro_steps"])
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return read_client_state(ckpt_dir)

    def barrier(self) -> None:
        return None

    def agree_stop(self, flag: bool) -> bool:
        return flag

    def reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor
