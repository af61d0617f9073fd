"""Chunked, seeded, MPI-parallel orchestration of the mock catalog.

Work is cut into chunks of ``chunk_candidates`` halos (``pipeline.simulate_chunk``), each with
its own random streams (``SeedSequence(seed).spawn(n_ranks)[rank]``, then one child per chunk in
order), so a rank's output depends only on (seed, rank, n_ranks) and never on block sizes or
timing. Each rank keeps the first galaxies of its chunks that pass the magnitude cut until it has
its share, streams them into its train/val/test writers, and the training statistics of all
ranks are merged (exactly, with ``RunningStats``) before any file is renamed into place.

Splits (``data/splits.py``): one permutation of each rank's galaxies from the rank's split stream
picks the test rows first, then the validation rows, so a catalog of the same seed and size has
the same test rows as before the validation split existed and its validation rows come out of
the former training rows; the galaxies themselves do not depend on the fractions.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ...schema import CatalogSchema
from ..catalog import CatalogWriter, default_norm_modes, stats_from_running
from ..normalization import RunningStats
from ..splits import DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION, LABEL_SPLITS, SplitCounts, split_counts, split_labels
from .config import GENERATOR_VERSION, NOISE_MODELS, MockConfig
from .pipeline import MockContext, preselection_limit, simulate_chunk
from .variants import SurveyVariant, variant_config

# Environment variables by which common launchers announce the world size (MPICH/PALS, Open
# MPI, PMIx, SLURM srun). mpi4py is imported only when one of them says there is more than one rank.
_WORLD_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS")
MAX_EMPTY_CHUNKS = 50  # chunks in a row with no selected galaxy before giving up (a broken recipe)


def _check_inputs(
    out_dir: Path, n_galaxies: int, seed: int, val_fraction: float, test_fraction: float, noise: str, overwrite: bool
) -> None:
    """Raise ValueError with a one-line reason for any bad argument (same answer on every rank)."""
    if isinstance(n_galaxies, bool) or not isinstance(n_galaxies, (int, np.integer)) or n_galaxies <= 0:
        raise ValueError(f"n_galaxies must be a positive integer, got {n_galaxies!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise must be one of {NOISE_MODELS}, got {noise!r}")
    split_counts(n_galaxies, float(val_fraction), float(test_fraction))  # fractions and >= 2 training rows
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"output {out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ValueError(f"output directory {out_dir} is not empty; pass --overwrite to replace its catalog")


def _clear_outputs(out_dir: Path) -> None:
    """Remove a previous catalog's files (only those this command writes) before rewriting."""
    for split in LABEL_SPLITS:
        (out_dir / f"{split}.h5").unlink(missing_ok=True)
        if (out_dir / split).is_dir():
            shutil.rmtree(out_dir / split)


def _share(n: int, rank: int, size: int) -> int:
    return n // size + (1 if rank < n % size else 0)


def _file_attrs(
    ctx: MockContext, seed: int, noise: str, rank: int, size: int, n_galaxies: int, fractions: tuple[float, float]
) -> dict[str, Any]:
    from ... import __version__

    cfg = ctx.cfg
    attrs: dict[str, Any] = {
        "source": "mosaic-hpc mock catalog: Tinker08 halos, Behroozi13 SHMR, log-normal SFHs, BC03 SPS",
        "created_by": f"mosaic-hpc {__version__} make-catalog ({GENERATOR_VERSION})",
        "seed": int(seed),
        "cosmology": json.dumps({"name": cfg.cosmology, **ctx.cosmo.params}),
        "noise": noise,
        "selection": f"observed {cfg.selection_band} < {cfg.selection_max_mag} AB"
        + (" (noisy magnitude)" if noise != "none" else " (true magnitude)"),
        "halo_mass_definition": f"M{cfg.mdef} in Msun (no h)",
        "stellar_mass_definition": "mass in living stars (BC03 surviving fraction) in Msun, Chabrier IMF",
        "sfh_definition": (
            f"log10 mean SFR (Msun/yr) in {cfg.sfh_n_bins} equal cosmic-time bins on [0, {ctx.cosmo.t0_gyr:.4f}] Gyr;"
            f" NaN after the galaxy's cosmic time; clipped below at log10({cfg.sfr_floor})"
        ),
        "sed_definition": (
            f"rest-frame log10 f_nu (Jy) at {cfg.sed_distance_pc} pc, {cfg.sed_n_bins} log bins"
            f" {cfg.sed_wave_min}-{cfg.sed_wave_max} Angstrom; dust and nebular emission, no IGM"
        ),
        "nan_rule": "NaN = missing: SFH bins after the galaxy's time; magnitudes with observed S/N below "
        f"{cfg.detection_snr} (non-detections, noisy catalogs only)",
        "val_fraction": float(fractions[0]),
        "test_fraction": float(fractions[1]),
        "n_galaxies_total": int(n_galaxies),
        "n_ranks": int(size),
        "rank": int(rank),
    }
    attrs["library_versions"] = json.dumps(_library_versions())
    attrs.update(ctx.cfg.provenance())
    return attrs


def _library_versions() -> dict[str, str]:
    """Versions of the packages whose models or data define the catalog (grids, filters, HMF)."""
    from importlib import metadata

    out = {}
    for dist in ("numpy", "colossus", "speclite", "astro-sedpy", "bagpipes"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def make_mock_catalog(
    out_dir: Path,
    n_galaxies: int,
    seed: int = 0,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    noise: str = "lsst10",
    overwrite: bool = False,
    progress: bool = True,
    comm=None,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    variant: str | SurveyVariant = "default",
) -> dict[str, list[Path]]:
    """Generate a mock catalog of ``n_galaxies`` magnitude-selected galaxies (train + val + test).

    Args:
        out_dir: output directory: ``train.h5``/``val.h5``/``test.h5``, or ``train/``/``val/``/
            ``test/`` shard directories (one ``shard-RRRRR.h5`` per rank) when ``comm`` has more
            than one rank. No validation split is written when ``val_fraction`` gives it no row.
        n_galaxies: galaxies written after the magnitude cut, all splits together.
        seed: the same seed, n_galaxies, fractions and rank count give bit-identical datasets.
        test_fraction: share of the galaxies in the test split, in (0, 1).
        noise: ``"lsst10"`` (LSST 10-year and SPHEREx all-sky noise) or ``"none"`` (truth).
        overwrite: replace the catalog files of a non-empty ``out_dir``.
        progress: show a progress bar (rank 0 only).
        comm: an mpi4py communicator, or None for one process.
        val_fraction: share of the galaxies in the validation split, in [0, 1); the training
            loop's validation (``train.eval_every``) reads it.
        variant: ``"default"`` (the recipe of config.py) or an opt-in variant of
            ``variants.VARIANTS``, e.g. ``"survey"`` (per-galaxy randomised SED choices, photerr
            LSST noise), or a ``SurveyVariant`` with other ranges; the default catalog does not
            depend on the variants' code.

    Returns:
        Split name -> files written by this rank.

    Raises:
        ValueError: bad arguments, or a catalog too small for its normalisation statistics.
    """
    out_dir = Path(out_dir)
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    _check_inputs(out_dir, n_galaxies, seed, val_fraction, test_fraction, noise, overwrite)  # same on every rank
    variant_cfg = variant_config(variant)
    problem = None
    if rank == 0:
        try:
            if overwrite and out_dir.is_dir():
                _clear_outputs(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            problem = f"cannot prepare output directory {out_dir}: {err}"
    if comm is not None:
        problem = comm.bcast(problem)  # also the barrier: no rank writes before the directory exists
    if problem is not None:
        raise ValueError(problem)

    ctx = MockContext.build(MockConfig(), variant_cfg)
    schema = ctx.schema()
    total = split_counts(n_galaxies, float(val_fraction), float(test_fraction))
    n_rank = _share(n_galaxies, rank, size)
    n_val_rank, n_test_rank = _share(total.val, rank, size), _share(total.test, rank, size)
    rank_seq = np.random.SeedSequence(seed).spawn(size)[rank]
    split_rng = np.random.default_rng(rank_seq.spawn(1)[0])
    labels = split_labels(SplitCounts(n_rank - n_val_rank - n_test_rank, n_val_rank, n_test_rank), split_rng)

    splits = [s for s in LABEL_SPLITS if s != "val" or total.val > 0]  # every rank writes the same splits
    if size > 1:
        paths = {s: out_dir / s / f"shard-{rank:05d}.h5" for s in splits}
    else:
        paths = {s: out_dir / f"{s}.h5" for s in splits}
    attrs = _file_attrs(ctx, seed, noise, rank, size, n_galaxies, (float(val_fraction), float(test_fraction)))
    if variant_cfg is not None:  # the default catalog's attributes stay as they were
        attrs.update(variant_cfg.provenance())
    writers: dict[str, CatalogWriter] = {}
    error: BaseException | None = None
    try:
        for split, path in paths.items():
            writers[split] = CatalogWriter(path, schema, {**attrs, "split": split})
        _fill_writers(ctx, writers, rank_seq, labels, noise, show_progress=progress and rank == 0)
    except BaseException as err:  # every rank learns of it below, then all abort
        error = err
    failed = comm.allgather(error is not None) if comm is not None else [error is not None]
    closed: list[Path] = []
    try:
        if any(failed):
            if error is not None:
                raise error
            raise RuntimeError(f"make-catalog failed on ranks {np.flatnonzero(failed).tolist()}")
        stats = _merged_train_stats(writers["train"].running, schema, comm)
        for w in writers.values():
            closed.append(w.close(stats))
        return {s: [p] for s, p in zip(writers, closed, strict=True)}
    except BaseException:
        for w in writers.values():
            w.abort()  # closing twice is harmless; the temporary file goes
        for p in closed:
            p.unlink(missing_ok=True)  # never half a catalog under the final names
        raise


def _fill_writers(
    ctx: MockContext,
    writers: dict[str, CatalogWriter],
    rank_seq: np.random.SeedSequence,
    labels: np.ndarray,
    noise: str,
    show_progress: bool,
) -> None:
    """Simulate chunk after chunk and append the first ``labels.size`` selected galaxies.

    Galaxy j of this rank goes to split ``LABEL_SPLITS[labels[j]]``; one child stream of
    ``rank_seq`` per chunk, in order.
    """
    from tqdm import tqdm

    limit = preselection_limit(ctx)
    n_rank = labels.size
    done, empty = 0, 0
    with tqdm(total=n_rank, disable=not show_progress, unit="gal", desc="make-catalog", mininterval=0.5) as bar:
        while done < n_rank:
            rows = simulate_chunk(ctx, rank_seq.spawn(1)[0], noise, limit)
            take = min(rows["scalars"].shape[0], n_rank - done)
            empty = empty + 1 if take == 0 else 0
            if empty >= MAX_EMPTY_CHUNKS:
                raise RuntimeError(f"{MAX_EMPTY_CHUNKS} chunks in a row produced no selected galaxy")
            chunk_labels = labels[done : done + take]
            for label, split in enumerate(LABEL_SPLITS):
                mask = chunk_labels == label
                if mask.any():
                    writers[split].append({k: v[:take][mask] for k, v in rows.items()})
            done += take
            bar.update(take)


def _merged_train_stats(running: dict[str, RunningStats], schema: CatalogSchema, comm):
    """Training statistics merged over ranks in rank order (identical on every rank)."""
    local = {name: rs.to_array() for name, rs in running.items()}
    gathered = comm.allgather(local) if comm is not None else [local]
    merged = {m.name: RunningStats(m.length) for m in schema}
    for part in gathered:
        for name, arr in part.items():
            merged[name].merge(RunningStats.from_array(arr))
    try:
        return stats_from_running(merged, default_norm_modes(schema))
    except ValueError as err:
        raise ValueError(f"catalog too small for normalisation statistics: {err}") from None


def world_comm():
    """mpi4py's COMM_WORLD when launched with more than one rank, else None (mpi4py not imported)."""
    sizes = [int(os.environ[v]) for v in _WORLD_SIZE_VARS if os.environ.get(v, "").isdigit()]
    if not sizes or max(sizes) <= 1:
        return None
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None
