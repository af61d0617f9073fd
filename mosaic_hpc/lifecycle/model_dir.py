"""Self-contained model directories: ``model.safetensors`` + ``config.json`` + ``README.md``.

A run directory is tied to its training job (engine files, optimizer state, a ``latest``
pointer). A model directory is what users keep for years and share: the Hugging Face Hub layout
(weights, one JSON config, a model card), loadable without the run, without DeepSpeed and
without unpickling anything: weights are safetensors, everything else is JSON. Every engine and
ZeRO stage writes a consolidated full-precision ``model.pt`` into each checkpoint (see
:mod:`mosaic_hpc.training.deepspeed_engine`), so export reads only that, after the checkpoint's
checksums are verified.

``config.json`` holds ``format``/``format_version``, the stored ``dtype``, the name, shape and
dtype of every tensor (checked against the file on load), the SHA-256 of the weights file, the
run config (model, masking, data, training), the catalog schema, the normalisation statistics
and provenance (commit, catalog source, seed, step).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ..config import config_from_dict
from ..data.normalization import NormStats
from ..evaluation.predictor import Predictor, resolve_checkpoint
from ..schema import CatalogSchema
from ..training.checkpoint import CheckpointManager, checkpoint_step, read_client_state
from ..training.integrity import file_digest, fsync_dir
from .model_card import write_model_card

FORMAT = "mosaic-hpc-model"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}


def find_checkpoint(run: Path, step: int | None) -> Path:
    """The checkpoint of ``run`` at ``step`` (latest when None); unknown steps name the ones there are."""
    run = Path(run)
    if step is None:
        return resolve_checkpoint(run)
    if not run.exists():
        raise FileNotFoundError(f"run {run} does not exist")
    complete = CheckpointManager(run).complete()
    for ckpt in complete:
        if checkpoint_step(ckpt) == step:
            return ckpt
    steps = ", ".join(str(checkpoint_step(c)) for c in complete) or "none"
    raise ValueError(f"--step {step}: {run} has no complete checkpoint at that step (steps: {steps})")


def _provenance(ckpt: Path, predictor: Predictor, catalog_source: str | None) -> dict[str, Any]:
    """Where the weights came from; fields nobody recorded are ``"unknown"``, never guessed.

    ``commit`` is the mosaic-hpc commit that exported (runs do not record the commit that
    trained them); ``catalog_source`` is what the user passed, since a run records its catalog's
    normalisation but not where the catalog came from.
    """
    from ..provenance import git_commit

    state = read_client_state(ckpt)
    return {
        "commit": git_commit(),
        "catalog_source": catalog_source or "unknown",
        "seed": predictor.config.train.seed,
        "step": checkpoint_step(ckpt),
        "world_size": state.get("world_size", "unknown"),
        "checkpoint": str(ckpt.resolve()),
    }


def _tensors_for_export(predictor: Predictor, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage, and a cast must not touch the model
    return {k: v.detach().to("cpu", dtype).clone().contiguous() for k, v in predictor.model.state_dict().items()}


def _write_into(tmp: Path, ckpt: Path, run: Path, dtype_name: str, catalog_source: str | None) -> None:
    from safetensors.torch import save_file

    predictor = Predictor.load(ckpt, device="cpu")  # verifies checksums, no code, finite weights
    tensors = _tensors_for_export(predictor, DTYPES[dtype_name])
    save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt", "mosaic_format": FORMAT})
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "dtype": dtype_name,
        "tensors": {
            k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in tensors.items()
        },
        "weights_sha256": file_digest(tmp / WEIGHTS),
        "config": predictor.config.to_dict(),
        "schema": predictor.schema.to_dict(),
        "normalization": predictor.stats.to_dict(),
        "provenance": _provenance(ckpt, predictor, catalog_source),
    }
    (tmp / CONFIG).write_text(json.dumps(config, indent=1))
    write_model_card(tmp / CARD, config, run)
    for name in (WEIGHTS, CONFIG, CARD):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    fsync_dir(tmp)


def export_model(
    run: Path,
    out_dir: Path,
    step: int | None = None,
    dtype: str = "fp32",
    overwrite: bool = False,
    catalog_source: str | None = None,
) -> Path:
    """Write ``out_dir`` from a run's checkpoint, atomically: a failure leaves ``out_dir`` as it was.

    Args:
        run: run directory (or a checkpoint directory when ``step`` is None).
        out_dir: model directory to create.
        step: checkpoint step; None = the latest.
        dtype: ``"fp32"`` (exact) or ``"bf16"`` (half the size; loaded back as fp32).
        overwrite: replace an existing ``out_dir``.
        catalog_source: where the training catalog came from (survey, release, URL), for the card.

    Raises:
        ValueError: unknown dtype or step, or ``out_dir`` exists without ``overwrite``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ValueError(f"--out {out_dir} already exists; pass --overwrite to replace it")
    ckpt = find_checkpoint(run, step)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".tmp-{out_dir.name}-{os.getpid()}")
    old = out_dir.with_name(f".replaced-{out_dir.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_into(tmp, ckpt, Path(run), dtype, catalog_source)
        if out_dir.exists():
            os.replace(out_dir, old)  # kept until the new directory is in place
        os.replace(tmp, out_dir)
        fsync_dir(out_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not out_dir.exists():
            os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def _read_config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (a model directory holds {WEIGHTS}, {CONFIG} and {CARD})")
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path}: field 'format' must be {FORMAT!r}; this is not a mosaic-hpc model directory")
    if config.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: field 'format_version' is {config.get('format_version')!r}, this reader knows {FORMAT_VERSION}"
        )
    for key in ("tensors", "config", "schema", "normalization", "weights_sha256"):
        if key not in config:
            raise ValueError(f"{path}: field {key!r} missing")
    return config


def _read_weights(model_dir: Path, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = model_dir / WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    if file_digest(path) != config["weights_sha256"]:
        raise ValueError(f"{path}: SHA-256 differs from {CONFIG} field 'weights_sha256' (damaged or replaced file)")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from None
    listed = config["tensors"]
    if set(tensors) != set(listed):
        diff = sorted(set(tensors) ^ set(listed))
        raise ValueError(
            f"{model_dir / CONFIG}: field 'tensors' does not match {WEIGHTS} (differ: {', '.join(diff[:5])})"
        )
    for name, t in tensors.items():
        if list(t.shape) != listed[name]["shape"]:
            raise ValueError(
                f"{model_dir / CONFIG}: tensors.{name}.shape is {listed[name]['shape']}, "
                f"{WEIGHTS} holds {list(t.shape)}"
            )
    return {k: v.float() for k, v in tensors.items()}


def from_pretrained(model_dir: Path | str, device: torch.device | str | None = None) -> Predictor:
    """The :class:`Predictor` of an exported model directory; same predictions as ``load_run`` on the run.

    Reads JSON and safetensors only (nothing is unpickled) and checks the weights against
    ``config.json`` (digest, tensor names and shapes) before building the model.

    Raises:
        FileNotFoundError: the directory or one of its files is missing.
        ValueError: a file is damaged or does not match the others, naming the file and field.
    """
    from ..model import build_model
    from ..training.engine import load_weights

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"model directory {model_dir} does not exist")
    config = _read_config(model_dir)
    try:
        run_config = config_from_dict(config["config"])
        schema = CatalogSchema.from_dict(config["schema"])
        stats = NormStats.from_dict(config["normalization"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{model_dir / CONFIG}: {err}") from None
    weights = _read_weights(model_dir, config)
    model = build_model(schema, run_config.model, run_config.masking.mask_value)
    load_weights(model, weights, model_dir / WEIGHTS)
    return Predictor(model, run_config, schema, stats, device=device, checkpoint=model_dir)
