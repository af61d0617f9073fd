"""Start a run from another run's weights (``--init-from RUN``): fine-tuning with a fresh optimizer.

Only the model weights are taken (``model.pt``, read with ``torch.load(weights_only=True)``, so an
untrusted run cannot execute code); optimizer state, schedule and step count start afresh, which
is what fine-tuning on a new catalog wants. Weights transfer one to one, so the new catalog must
have the same modalities (names, kinds, lengths, units) as the run's, and the new config the same
``model`` section; otherwise the error names both sides. Normalisation comes from the new
catalog, as for any run: write it with the pretrained run's statistics (``normalization.json``)
where a normalised value must mean the same physical value in both.

A run being resumed (``--resume``) still loads these weights first; the resumed checkpoint then
replaces them, so re-submitting a fine-tuning job continues it instead of restarting it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..schema import CatalogSchema


def _signature(schema: CatalogSchema) -> list[tuple[str, str, int, str]]:
    return [(m.name, m.kind, m.length, m.unit) for m in schema]


def check_schema(pretrained: CatalogSchema, pretrained_path: Path, schema: CatalogSchema, data_dir: Path) -> None:
    """Raise ValueError naming both sides when the two catalogs' modalities differ."""
    if _signature(pretrained) != _signature(schema):

        def show(s: CatalogSchema) -> str:
            return ", ".join(f"{m.name}[{m.length}, {m.kind}, {m.unit or '-'}]" for m in s)

        raise ValueError(
            f"--init-from: schema mismatch: {pretrained_path} has {show(pretrained)}; "
            f"catalog {data_dir} has {show(schema)}"
        )


def load_pretrained(model: torch.nn.Module, schema: CatalogSchema, data_dir: Path, run: Path | str) -> Path:
    """Load the weights of ``run`` (a run or checkpoint directory) into ``model``; returns the checkpoint.

    Raises:
        ValueError: no checkpoint, a schema that differs from the catalog's, or weights that do
            not fit this run's model config.
        FileNotFoundError: ``run`` does not exist.
    """
    from .checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(run)
    for name in ("schema.json", "model.pt"):
        if not (ckpt / name).is_file():
            raise ValueError(f"--init-from {run}: incomplete checkpoint {ckpt}, {name} missing")
    pretrained = CatalogSchema.from_dict(json.loads((ckpt / "schema.json").read_text()))
    check_schema(pretrained, ckpt / "schema.json", schema, data_dir)
    state = torch.load(ckpt / "model.pt", map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1].strip() if str(err).strip() else "shapes differ"
        raise ValueError(
            f"--init-from: weights {ckpt / 'model.pt'} do not fit this run's model config "
            f"(compare the model section of {ckpt / 'config.yaml'}): {first}"
        ) from None
    return ckpt
