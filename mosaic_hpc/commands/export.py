"""Export a run's checkpoint as a self-contained model directory (Hugging Face Hub layout).

Writes model.safetensors, config.json (model config, schema, normalisation, masking, provenance)
and a README.md model card into --out, from either engine and any ZeRO stage (every checkpoint
holds consolidated fp32 weights). The directory is written beside --out and renamed into place,
so a failed export leaves nothing half-written and an existing --out untouched. Load it with
mosaic_hpc.from_pretrained(DIR) or `mosaic-hpc predict --run DIR`. See docs/lifecycle.md.

Example:
  mosaic-hpc export --run runs/quickstart --out models/mosaic-small
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", required=True, type=Path, help="run directory (or a checkpoint directory)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    p.add_argument("--out", required=True, type=Path, help="model directory to create")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="stored weight dtype (default: fp32)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument(
        "--catalog-source", default=None, help="where the training catalog came from, for the card (default: unknown)"
    )


def run(args: argparse.Namespace) -> int:
    from ..lifecycle.model_dir import export_model

    out = export_model(
        args.run, args.out, args.step, args.dtype, overwrite=args.overwrite, catalog_source=args.catalog_source
    )
    print(f"wrote {out} (model.safetensors, config.json, README.md)")
    return 0
