"""Embeddings for downstream science: per-modality and pooled hidden-state means, written to HDF5 in chunks.

Layout of the output file (all float32, one row per input galaxy, in catalog order):

- ``/embeddings/<modality>`` [N, d_model]: mean of the encoder's last hidden states over that
  modality's tokens (every modality, given or hidden: a hidden modality's states are what its
  head decodes into the prediction, so they carry what the model inferred about it);
- ``/pooled`` [N, d_model]: mean of the per-modality embeddings, each modality weighted equally
  (a token mean would let the 921-value SED outweigh the six LSST magnitudes);
- ``/row`` [N] int64: the row of the split, to join back to the catalog;
- attributes ``given`` (the input configuration), ``model`` (run or model directory),
  ``d_model``, ``modalities`` and ``split``.

Datasets are preallocated and filled chunk by chunk, so memory stays at one chunk whatever N is;
the file is written beside ``out_path`` and renamed into place, so a crash never leaves a
half-written file under the final name.

:func:`encode_shards` writes one such file per shard of a directory, on many ranks, through the
shard machinery of :mod:`.sharded` (the rank rule, manifest, skip/redo and bad shards of
``predict-shards``); there ``/row`` is the row of the shard file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from ..data.catalog import Catalog
from ..data.configurations import InputConfiguration
from ..evaluation.embedding import modality_embeddings
from ..evaluation.predictor import Predictor
from .sharded import ShardSummary, run_shards

TMP_PREFIX = ".tmp-"  # encode_catalog writes OUT's directory/.tmp-<name>-<pid>, then renames it


def require_model_schema(predictor: Predictor, catalog: Catalog) -> None:
    """The model encodes only catalogs of its own modalities and lengths."""
    if catalog.schema != predictor.schema:
        raise ValueError(
            f"catalog modalities {catalog.schema.lengths} differ from the model's {predictor.schema.lengths}"
        )


def encode_catalog(
    predictor: Predictor,
    catalog: Catalog,
    configuration: InputConfiguration,
    out_path: Path,
    chunk_rows: int = 8192,
    batch_size: int = 1024,
    on_chunk: Callable[[int], None] | None = None,
    attrs: dict[str, str] | None = None,
) -> Path:
    """Write the embeddings of every row of ``catalog`` given ``configuration`` to ``out_path``.

    Args:
        chunk_rows: galaxies read and written at a time (memory: chunk_rows x d_model x modalities).
        on_chunk: called with the number of rows just written (progress bars).
        attrs: extra file attributes (provenance).
    """
    require_model_schema(predictor, catalog)
    n, d = catalog.n_rows, predictor.config.model.d_model
    names = predictor.schema.names
    out_path = Path(out_path)
    tmp = out_path.with_name(f"{TMP_PREFIX}{out_path.name}-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            emb = {name: f.create_dataset(f"embeddings/{name}", (n, d), np.float32) for name in names}
            pooled = f.create_dataset("pooled", (n, d), np.float32)
            f.create_dataset("row", data=np.arange(n, dtype=np.int64))
            f.attrs.update({"given": configuration.spec, "d_model": d, "modalities": list(names), **(attrs or {})})
            for start in range(0, n, chunk_rows):
                stop = min(start + chunk_rows, n)
                parts = modality_embeddings(predictor, catalog.read(start, stop), configuration, batch_size)
                for name in names:
                    emb[name][start:stop] = parts[name]
                pooled[start:stop] = np.mean([parts[name] for name in names], axis=0)  # [M, B, d] -> [B, d]
                if on_chunk is not None:
                    on_chunk(stop - start)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_path


def encode_shards(
    predictor: Predictor,
    shards: list[Path],
    out_dir: Path,
    configuration: InputConfiguration,
    chunk_rows: int = 8192,
    batch_size: int = 1024,
    skip_bad: bool = False,
    on_shard: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    attrs: dict[str, str] | None = None,
) -> ShardSummary:
    """Embeddings of every unfinished shard into ``out_dir/<shard>.h5``; see :mod:`.sharded`.

    A shard that is not a readable catalog file or holds other modalities than the model's is a
    bad input shard (``skip_bad``); ``attrs`` go into every file, plus ``input`` (the shard).
    """

    def read(shard: Path) -> Catalog:
        catalog = Catalog([shard])
        require_model_schema(predictor, catalog)
        return catalog

    def write(shard: Path, catalog: Catalog, out: Path) -> int:
        # A killed earlier run (SIGKILL, SIGTERM) left its temporary behind; only this rank redoes this shard.
        for stale in out.parent.glob(f"{TMP_PREFIX}{out.name}-*"):
            stale.unlink(missing_ok=True)
        try:
            file_attrs = {**(attrs or {}), "input": str(shard)}
            encode_catalog(predictor, catalog, configuration, out, chunk_rows, batch_size, attrs=file_attrs)
        finally:
            catalog.close()
        return catalog.n_rows

    return run_shards(shards, out_dir, read, write, "encoded", skip_bad, on_shard, should_stop)
