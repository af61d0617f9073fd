"""The DeepSpeed JSON reconciled with the run config: one source of truth, conflicts are errors.

Pure functions of dicts and configs: no torch.distributed and no DeepSpeed import, so the rules
(docs/deepspeed_engine.md, configs/README.md) are checked before any process group starts, on
every rank at once, and are testable where DeepSpeed is absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import RunConfig

AUTO = "auto"
ADAM_TYPES = ("adam", "adamw")
LOAD_UNIVERSAL = ("checkpoint", "load_universal")  # DeepSpeed's key, read once, at initialize


def _settle(ds: dict[str, Any], path: list[str], wanted: Any, yaml_key: str, ds_source: str, yaml_source: str) -> None:
    """Fill ``ds[path]`` with ``wanted`` when absent or "auto"; raise when it states another value."""
    node = ds
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"{ds_source}: {'.'.join(path[:-1])} must be a JSON object")
    key = path[-1]
    stated = node.get(key, AUTO)
    if stated == AUTO:
        node[key] = wanted
        return
    same = (
        list(stated) == list(wanted)
        if isinstance(wanted, (list, tuple)) and isinstance(stated, (list, tuple))
        else stated == wanted
    )
    if not same:
        raise ValueError(
            f"{ds_source}: {'.'.join(path)}={stated!r} conflicts with {yaml_key}={wanted!r} in {yaml_source}; "
            f'remove it from the JSON or set it to "auto" (the run config is the source of truth)'
        )


def resolve_ds_config(
    ds_config: dict[str, Any],
    cfg: RunConfig,
    world_size: int,
    cuda: bool,
    ds_source: str = "DeepSpeed config",
    yaml_source: str = "run config",
) -> dict[str, Any]:
    """The DeepSpeed config to initialise with: the JSON completed and checked against the run config.

    Args:
        ds_config: the parsed JSON (not modified).
        cfg: the run config, the source of truth for every value both can state.
        world_size: data-parallel ranks (``train_batch_size`` = micro-batch x accumulation x ranks).
        cuda: True on GPUs: the optimizer is DeepSpeed's FusedAdam; on CPU ``torch_adam`` is set
            so nothing is JIT-compiled.
        ds_source, yaml_source: file names used in error messages.

    Raises:
        ValueError: a stated value conflicts with the run config, or the JSON asks for something
            this trainer does not support (an LR scheduler, fp16, a non-Adam optimizer, ZeRO 0).
    """
    ds = json.loads(json.dumps(ds_config))  # deep copy; the JSON is plain data
    tc, mbs = cfg.train, cfg.data.micro_batch_size
    settle = lambda path, wanted, yaml_key: _settle(ds, path, wanted, yaml_key, ds_source, yaml_source)
    settle(["train_micro_batch_size_per_gpu"], mbs, "data.micro_batch_size")
    settle(["gradient_accumulation_steps"], tc.grad_accum_steps, "train.grad_accum_steps")
    settle(
        ["train_batch_size"],
        mbs * tc.grad_accum_steps * world_size,
        f"data.micro_batch_size x train.grad_accum_steps x {world_size} ranks",
    )
    settle(["gradient_clipping"], tc.grad_clip, "train.grad_clip")
    settle(["bf16", "enabled"], tc.precision == "bf16", "train.precision")
    if ds.get("fp16", {}).get("enabled", False) not in (False, AUTO):
        raise ValueError(f"{ds_source}: fp16.enabled is not supported (loss scaling); use train.precision: bf16")
    ds.pop("fp16", None)
    if "scheduler" in ds:
        raise ValueError(
            f"{ds_source}: remove 'scheduler': the learning-rate schedule is train.warmup_steps / train.min_lr_ratio "
            f"in {yaml_source} (warm-up + cosine, identical on every engine)"
        )
    opt = ds.setdefault("optimizer", {"type": "AdamW"})
    if str(opt.get("type", "")).lower() not in ADAM_TYPES:
        raise ValueError(f"{ds_source}: optimizer.type must be Adam or AdamW, got {opt.get('type')!r}")
    params = opt.setdefault("params", {})
    if params.get("adam_w_mode", True) is False:
        raise ValueError(f"{ds_source}: optimizer.params.adam_w_mode=false is not supported (the trainer uses AdamW)")
    settle(["optimizer", "params", "lr"], tc.lr, "train.lr")
    settle(["optimizer", "params", "betas"], list(tc.betas), "train.betas")
    settle(["optimizer", "params", "weight_decay"], tc.weight_decay, "train.weight_decay")
    params.setdefault("torch_adam", not cuda)  # CPU: torch.optim.AdamW, no op build; GPU: FusedAdam
    stage = ds.setdefault("zero_optimization", {}).setdefault("stage", 1)
    if stage not in (1, 2, 3):
        raise ValueError(f"{ds_source}: zero_optimization.stage must be 1, 2 or 3, got {stage!r}")
    ds.setdefault("steps_per_print", 10**9)  # our loop logs; DeepSpeed's own step prints are noise
    return ds


def with_universal_load(ds_config: dict[str, Any], universal: bool) -> dict[str, Any]:
    """``ds_config`` (a copy) that loads a universal checkpoint (``universal``) or DeepSpeed's own files.

    DeepSpeed reads ``checkpoint.load_universal`` once, when it is initialised, and then looks for
    the universal layout at every load. The engine knows which layout it loads only once it has
    the checkpoint (a different world size needs the universal conversion), so it sets the key
    here, before ``deepspeed.initialize``. A value stated in the JSON that contradicts what the
    checkpoint needs would make the load fail inside DeepSpeed; it is refused here instead.

    Raises:
        ValueError: the JSON states ``checkpoint.load_universal`` opposite to ``universal``.
    """
    ds = json.loads(json.dumps(ds_config))
    section, key = LOAD_UNIVERSAL
    node = ds.setdefault(section, {})
    if not isinstance(node, dict):
        raise ValueError(f"DeepSpeed config: {section} must be a JSON object")
    stated = node.get(key, AUTO)
    if stated not in (AUTO, universal):
        raise ValueError(
            f"DeepSpeed config: {section}.{key}={stated!r}, but this checkpoint "
            f"{'needs' if universal else 'must not use'} the universal load (it is chosen from the checkpoint's "
            f'world size); remove the key or set it to "auto"'
        )
    node[key] = universal
    return ds


def load_ds_json(path: Path) -> dict[str, Any]:
    """The DeepSpeed JSON at ``path`` as a dict, with one-line errors for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DeepSpeed config {path} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: must hold a JSON object")
    return data
