"""The data a benchmark feeds the step: the paper's catalog layout, drawn in memory or written to disk.

A synthetic switch (nanoGPT's ``real_data``): by default batches are drawn once in memory from the
paper's schema (3/6/102/117/921 values per galaxy) and the real masker, so the step is timed
without the reader; on request they come from a catalog's train split as training reads them.
The data loader and scaling benchmarks need a catalog on disk: :func:`make_catalog` writes one
with the paper's lengths, fast and in bounded memory.

numpy, h5py and torch are imported inside functions: ``mosaic-hpc --help`` must not pay for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..schema import CatalogSchema


def paper_like_rows(n: int, rng, schema) -> dict[str, Any]:
    """Smooth functions of (z, halo mass, stellar mass) plus noise, NaN SFH after the galaxy's time.

    Not physics (that is mosaic_hpc.data.mock): the benchmark only needs realistic sizes, value
    ranges and a realistic share of missing values, produced fast with array operations.
    """
    import numpy as np

    z = rng.uniform(0.05, 3.0, n)
    mh = rng.uniform(11.0, 14.0, n)
    ms = mh - 1.8 + 0.3 * np.tanh(mh - 12.0) + 0.1 * rng.normal(size=n)
    out = {"scalars": np.stack([z, mh, ms], axis=1)}
    for spec in schema:
        if spec.is_scalars:
            continue
        x = np.log(spec.axis_array() / spec.axis_array()[0] + 1.0)[None, :]  # [1, L]
        base = {"lsst": 25.0, "spherex": 24.0, "sfh": 0.0, "sed": -4.0}.get(spec.name, 0.0)
        sign = -2.5 if spec.unit == "AB mag" else 1.0
        v = base + sign * (ms - 10.0)[:, None] + 0.5 * z[:, None] * x + 0.02 * rng.normal(size=(n, spec.length))
        if spec.name == "sfh":
            t_obs = 13.8 - 10.0 * z / (1.0 + z)  # crude cosmic time of observation, Gyr
            v[spec.axis_array()[None, :] > t_obs[:, None]] = np.nan
        out[spec.name] = v.astype(np.float32)
    return out


def make_catalog(path: Path, n_rows: int, seed: int = 0, chunk_rows: int = 1024) -> Path:
    """Write ``path`` (train split) with paper lengths in bounded memory; reused if it matches."""
    import h5py
    import numpy as np
    from tqdm import tqdm

    from ..data.catalog import CatalogWriter, default_norm_modes, stats_from_running

    if path.exists():
        with h5py.File(path, "r", locking=False) as f:
            if int(f.attrs.get("n_rows", -1)) == n_rows and f.attrs.get("source") == "bench-dataloader":
                return path
    schema = synthetic_schema()
    rng = np.random.default_rng(seed)
    step = 10_000
    with CatalogWriter(path, schema, {"source": "bench-dataloader", "seed": seed}, chunk_rows=chunk_rows) as w:
        for s in tqdm(range(0, n_rows, step), desc=f"writing {path.name}", unit_scale=step, unit="rows"):
            w.append(paper_like_rows(min(step, n_rows - s), rng, schema))
        w.close(stats_from_running(w.running, default_norm_modes(schema)))
    return path


def synthetic_schema() -> CatalogSchema:
    """The paper's catalog layout (3/6/102/117/921 values), used when no catalog is given."""
    from ..schema import paper_schema

    return paper_schema()


def synthetic_batches(schema, cfg, batch_size: int, device, n_batches: int = 4, seed: int = 0) -> list:
    """Batches drawn in memory: N(0, 1) normalised values, the real masker's hidden masks.

    A small pool is drawn once and cycled, so timing measures the model and optimizer only
    (nanoGPT's ``real_data=False``); values need not be realistic for speed, but masks come from
    :class:`HierarchicalMasker` so the inputs have the real share of hidden positions. SFH bins
    are marked missing at the same rate as real catalogs' post-observation bins (about a third),
    so the loss's validity weighting runs as in training.
    """
    import numpy as np

    from ..data.batch import Batch
    from ..data.masker import HierarchicalMasker

    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    masker = HierarchicalMasker(schema, cfg.masking, seed=seed)
    pool = []
    for i in range(n_batches):
        rows = np.arange(i * batch_size, (i + 1) * batch_size, dtype=np.int64)
        hidden = masker(rows, epoch=0)
        targets, valid = {}, {}
        for spec in schema:
            targets[spec.name] = rng.standard_normal((batch_size, spec.length), dtype=np.float32)
            v = np.ones((batch_size, spec.length), dtype=bool)
            if spec.name == "sfh":
                cut = rng.integers(spec.length // 2, spec.length + 1, size=batch_size)
                v = np.arange(spec.length)[None, :] < cut[:, None]
            valid[spec.name] = v
            targets[spec.name][~v] = 0.0
        hid = {n: hidden[n] | ~valid[n] for n in schema.names}
        pool.append(Batch(targets=targets, valid=valid, hidden=hid, row_ids=rows).to_torch(device))
    return pool


def catalog_batches(data_dir: Path, cfg, device) -> tuple[Any, Iterator]:
    """(schema, endless iterator of device batches) from a catalog's train split, as training reads it."""
    from ..data.catalog import Catalog
    from ..data.masker import HierarchicalMasker
    from ..data.reader import ReaderPosition, ShardedReader

    cat = Catalog.open(Path(data_dir), "train")
    masker = HierarchicalMasker(cat.schema, cfg.masking, seed=cfg.train.seed)
    reader = ShardedReader(cat, cfg.data, 0, 1, seed=cfg.train.seed, masker=masker)

    def gen() -> Iterator:
        for _, batch in reader.iter_from(ReaderPosition()):
            yield batch.to_torch(device)

    return cat.schema, gen()


def cycle(pool: list) -> Iterator:
    """The pool over and over: the endless batch iterator :func:`~.timing.time_steps` draws from."""
    while True:
        yield from pool
