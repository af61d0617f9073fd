"""The ``README.md`` model card of an exported model directory (Hugging Face Hub layout).

The card says what a user needs before trusting the model on their catalog: what it was trained
on (modalities, lengths, catalog source, steps), how well it does (the run's Table 1 with its
baselines, when ``mosaic-hpc evaluate`` was run), what it is for, its licence and what to cite.
The YAML front matter is the Hub's metadata block; nothing here talks to the Hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LICENSE = "bsd-3-clause"  # setup.py's licence; the weights inherit it unless the catalog says otherwise
CITATION = (
    "Xia, Ramachandra, Wells, Habib & Wise, *Multi-modal Foundation Model for Cosmological Simulation Data* (MOSAIC)."
)


def _table1(run: Path) -> str:
    """The run's Table 1 (``RUN/eval/table1.md``, baselines included), or a note that there is none."""
    for candidate in (run / "eval" / "table1.md", run / "table1.md"):
        if candidate.is_file():
            return candidate.read_text().strip()
    return "_Not evaluated: run `mosaic-hpc evaluate --run RUN` before exporting to include Table 1._"


def model_card(config: dict[str, Any], run: Path) -> str:
    """Markdown text of the card from an exported ``config.json`` payload and the source run."""
    prov = config["provenance"]
    rows = "\n".join(
        f"| {m['name']} | {m.get('kind', '')} | {m.get('length', '')} | {m.get('unit', '')} |"
        for m in config["schema"].get("modalities", [])
    )
    model = config["config"]["model"]
    return f"""---
library_name: mosaic-hpc
license: {LICENSE}
tags: [astronomy, galaxies, foundation-model, mosaic]
---

# {config["config"].get("name", "mosaic")}: a MOSAIC galaxy foundation model

A BERT-style multi-modal encoder over galaxy catalogs: give any subset of the modalities below,
get every modality back (values and, with Gaussian heads, per-value uncertainties) in physical units.

```python
import mosaic_hpc
model = mosaic_hpc.from_pretrained("path/to/this/directory")
pred = model.predict({{"lsst": mags}})   # [N, 6] AB mag, NaN = missing
```

## Training data

Catalog source: `{prov["catalog_source"]}`; {prov["step"]} optimizer steps on {prov["world_size"]} rank(s),
seed {prov["seed"]}, commit `{prov["commit"]}`. Weights stored as {config["dtype"]}.

| modality | kind | length | unit |
|---|---|---|---|
{rows}

Model: d_model {model["d_model"]}, {model["n_layers"]} layers, {model["n_heads"]} heads,
Gaussian heads: {model.get("gaussian_heads")}.

## Table 1 (test split, with baselines)

{_table1(run)}

## Intended use

Photometric redshifts, SED and star-formation-history inference and gap filling for galaxies
drawn from the same population as the training catalog. Outside its training range (check with
`mosaic-hpc check-catalog`, or the out-of-distribution warnings of `predict`) the model
extrapolates and its uncertainties are not calibrated.

## Licence

{LICENSE.upper()} (the mosaic-hpc licence); the training catalog's own terms may add conditions.

## Citation

{CITATION}
"""


def write_model_card(path: Path, config: dict[str, Any], run: Path) -> None:
    path.write_text(model_card(config, Path(run) if Path(run).is_dir() else Path(".")))
