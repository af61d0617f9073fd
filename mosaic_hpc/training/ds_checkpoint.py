"""DeepSpeed checkpoint files read offline: what they may hold, fp32 consolidation, universal conversion.

The engine adapter (:mod:`.deepspeed_engine`) writes and loads checkpoints through DeepSpeed's
engine; the work here needs no engine, only the files: the classes DeepSpeed pickles into them
(so that every read stays restricted, :mod:`.safe_load`), rank 0's consolidated fp32
``model.pt``, and the ``ds_to_universal`` conversion that lets a checkpoint resume at another
world size. DeepSpeed is imported inside the functions only, so importing this module costs nothing
where DeepSpeed is absent.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .safe_load import restricted_loading

UNIVERSAL_PREFIX = ".universal-"  # the conversion's directory beside the checkpoint, removed after the load


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow the progress bars and prints of DeepSpeed's offline checkpoint tools."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def deepspeed_safe_globals() -> tuple[type, ...]:
    """The classes DeepSpeed's checkpoint files hold besides tensors and plain containers.

    Measured on DeepSpeed 0.19 checkpoints of ZeRO 1, 2 and 3, fp32 and bf16, and universal
    conversions: the optimizer states pickle the loss-scaler object and the ZeRO stage enum, and
    ZeRO-1/2 states the fragment address of each parameter slice. All three are data holders
    without ``__reduce__``, ``__new__`` or ``__setstate__`` of their own, so building them from a
    file runs no code the file chooses. Anything else in a DeepSpeed file is refused.
    """
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return (LossScaler, ZeroStageEnum, fragment_address)


def universal_checkpoint_info() -> dict[str, Any]:
    """The client-state entry ``ds_to_universal`` requires of checkpoints not written by Megatron."""
    from deepspeed.checkpoint.constants import (
        UNIVERSAL_CHECKPOINT_INFO,
        UNIVERSAL_CHECKPOINT_VERSION_KEY,
        UNIVERSAL_CHECKPOINT_VERSION_VALUE,
    )

    return {UNIVERSAL_CHECKPOINT_INFO: {UNIVERSAL_CHECKPOINT_VERSION_KEY: UNIVERSAL_CHECKPOINT_VERSION_VALUE}}


def fp32_state_dict(ckpt_dir: Path) -> dict[str, torch.Tensor]:
    """Full-precision weights gathered from the ZeRO shards of ``ckpt_dir`` (any stage).

    The fp32 master copies live partitioned in the optimizer (the module may hold bf16 copies,
    or under ZeRO-3 only a shard), so they are rebuilt from the files every rank has written,
    DeepSpeed's documented consolidation path. This reads the optimizer shards (about 16 bytes
    per parameter) into host memory.
    """
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    ckpt_dir = Path(ckpt_dir)
    with _quiet(), restricted_loading(deepspeed_safe_globals()):  # it prints per-shard progress
        sd = get_fp32_state_dict_from_zero_checkpoint(str(ckpt_dir.parent), tag=ckpt_dir.name)
    # Clone: the tensors are views into one flat buffer; saved as views they drag it along.
    return {k: v.detach().to(torch.float32).clone() for k, v in sd.items()}


def universal_dir(ckpt_dir: Path) -> Path:
    """Where the universal conversion of ``ckpt_dir`` is written (beside it, hidden from retention)."""
    ckpt_dir = Path(ckpt_dir)
    return ckpt_dir.parent / f"{UNIVERSAL_PREFIX}{ckpt_dir.name}"


def convert_to_universal(ckpt_dir: Path, out_dir: Path) -> None:
    """``ds_to_universal`` in-process, serially (no worker pool: ranks already fill the cores)."""
    from deepspeed.checkpoint import ds_to_universal

    shutil.rmtree(out_dir, ignore_errors=True)
    args = Namespace(
        input_folder=str(ckpt_dir),
        output_folder=str(out_dir),
        num_extract_workers=1,
        num_merge_workers=1,
        keep_temp_folder=False,
        strict=True,
        inject_missing_state=False,
    )
    with _quiet(), restricted_loading(deepspeed_safe_globals()):
        ds_to_universal.main(args)
    # It also writes DeepSpeed's own `latest_universal` pointer beside the output; ours is `latest`.
    (out_dir.parent / "latest_universal").unlink(missing_ok=True)
