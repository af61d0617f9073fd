"""Photometric redshifts on cosmoDC2 (RAIL test data): MOSAIC against FlexZBoost, kNN and a forest, one run.

Data: the two cosmoDC2 files shipped with pz-rail-base (LSST 10-year noisy ugrizy magnitudes and
errors, i < 25.3): ``test_dc2_training_9816.hdf5`` (10,225 galaxies) is the training split and
``test_dc2_validation_9816.hdf5`` (20,449) the test split, imported with
``configs/mappings/dc2_rail.yaml`` into modalities scalars = [redshift], lsst (6, AB mag) and
lsst_err (6, mag); magnitude 99 (non-detection) becomes NaN on import.

Non-detections, the same for every method: a band's 5-sigma depth m5 is fitted to the fitting
rows' (magnitude, error) pairs with the Ivezic+19 error model, and a non-detection gets the
1-sigma limit m5 + 2.5 log10 5 as magnitude and 1.0857 mag (S/N = 1) as error (see
``mosaic_hpc.evaluation.photoz.NonDetectionFill``). All methods see the same filled magnitudes
and errors (as log10 of the magnitude error, see ``model_inputs``); baselines use magnitudes,
adjacent colours and errors as features.

Splits: the importer's seeded val split, 15% of the training file (``--val-fraction``, ``--split-seed``), is the
validation split; every method (depth fit, normalisation statistics, baselines, MOSAIC scratch
and fine-tuning) is fitted on the other 85% only, and there is no refit on train + validation, so
the validation scores are honest held-out scores of the very models scored on the test split.
MOSAIC's settings are chosen on the validation columns; the test split only reports.

Methods:
  flexzboost          RAIL's FlexZBoost (pz-rail-flexzboost) through its Inform/Estimate stages on the
                      fitting rows: i-band magnitude + 5 colours, 35 cosine basis functions, xgboost
                      max_depth 8, bump/sharpen chosen on its own 25% of the fitting rows (RAIL's
                      trainfrac 0.75) over 0.02-0.35 x 20 and 0.7-2.1 x 15, then refitted on all of
                      them; non-detections at the same 1-sigma limits as every other method
  knn                 distance-weighted k nearest neighbours, k by 5-fold CV on the fitting rows
  random_forest       200 trees, leaves >= 2 galaxies (not tuned)
  mosaic              MOSAIC (configs/photoz_dc2.yaml, Gaussian heads) trained on the fitting rows
  mosaic_pretrained   MOSAIC pretrained on the mock catalog, then --ensemble members fine-tuned on
                      the fitting rows (``train --init-from``: fresh optimizer, seeds seed, seed+1,
                      ...): the equal-weight mixture of their Gaussians
  mosaic_pretrained_single  the first member alone (with --ensemble > 1)
  mock_only           the pretrained model scored on DC2 without fine-tuning (the domain gap)

Transfer design: the mock catalog (``make_mock_catalog``, true magnitudes) has 3 scalars and
more modalities; it is re-written with the DC2 schema (redshift only; lsst observed through the
same error model and fitted DC2 depths; lsst_err from that model; non-detections filled the same
way), normalised with the *DC2 fitting-row* statistics so a normalised value means the same
magnitude in both catalogs. Weights then transfer one to one (same modalities, same lengths),
and fine-tuning uses the scratch run's config with its own step count and peak learning rate
(--finetune-steps, --finetune-lr).

Scoring, one code path for every method (``photoz.score``): each gives a point estimate and, where
it has one, its p(z) as a ``qp.Ensemble`` (MOSAIC: Gaussian or mixture; FlexZBoost: its gridded
p(z)); the point estimate of a p(z) is its median, the others' their prediction. Scores on the
validation and test splits: MAE, bias, sigma_NMAD, LSST SRD outlier fraction (|dz| / (1+z) > 0.15),
RAIL's sigma_IQR and outlier rate; for a p(z) also PIT (histogram, KS, CvM, AD), CDE loss, Brier
and CRPS on z = 0-3 in steps of 0.01 (qp's metrics; see ``mosaic_hpc.evaluation.photoz``).

Examples:
  python benchmarks/photoz_dc2.py --out runs/photoz_dc2 --record  # about 35 CPU-minutes on one core
  python benchmarks/photoz_dc2.py --quick --out /tmp/pz_quick      # CI size, under a minute
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # runnable as a script from a checkout without installing
    sys.path.insert(0, str(REPO))

from mosaic_hpc.bench.report import record_section  # noqa: E402
from mosaic_hpc.config import RunConfig, load_config  # noqa: E402
from mosaic_hpc.data.catalog import Catalog, write_catalog  # noqa: E402
from mosaic_hpc.data.importer import SplitRule, import_catalog  # noqa: E402
from mosaic_hpc.evaluation import photoz  # noqa: E402
from mosaic_hpc.evaluation.pdf import Components  # noqa: E402
from mosaic_hpc.schema import CatalogSchema  # noqa: E402

log = logging.getLogger("photoz_dc2")
Estimate = tuple[np.ndarray, Any]  # (point estimate [N], qp.Ensemble of p(z) or None)
DC2_FILES = ("test_dc2_training_9816.hdf5", "test_dc2_validation_9816.hdf5")
MAPPING = REPO / "configs" / "mappings" / "dc2_rail.yaml"
RESULTS_HEADING = "## Photo-z on DC2 (RAIL test data)"
METHOD_ORDER = ("flexzboost", "knn", "random_forest", "mosaic", "mosaic_pretrained")
BANDS = "ugrizy"
# FlexZBoost: the pz-rail-flexzboost 2.0.3 defaults, written out so that a new default cannot silently
# change the baseline.
FLEXZBOOST = {
    "trainfrac": 0.75,
    "bumpmin": 0.02,
    "bumpmax": 0.35,
    "nbump": 20,
    "sharpmin": 0.7,
    "sharpmax": 2.1,
    "nsharp": 15,
    "max_basis": 35,
    "basis_system": "cosine",
    "regression_params": {"max_depth": 8, "objective": "reg:squarederror"},
}
# Candidate pretraining mocks (--pretrain-mocks); the fine-tuned ensemble starts from the best on validation.
PRETRAIN_MOCKS = ["default", "survey+reweight"]
# Goals of issue 13 (test split, the MOSAIC variant chosen on validation), and of the mock-only row.
GOALS = {"sigma_nmad": 0.0175, "outlier_fraction": 0.020, "pit_ks": 0.03}
MOCK_ONLY_GOALS = {"sigma_nmad": 0.03, "outlier_fraction": 0.05}
# --quick: a CI-sized run that exercises every step of the full one (never timed or compared)
QUICK = {
    "n_train": 400,
    "n_test": 200,
    "n_mock": 500,
    "steps": 10,
    "pretrain_steps": 10,
    "finetune_steps": 10,
    "n_trees": 20,
    "fzb_grid": 3,  # FlexZBoost bump and sharpen grids of 3 points
}
QUICK_BATCH = 32
# Fine-tuning masks: redshift always hidden, magnitudes and errors always given, i.e. the photo-z task
# itself (chosen over the config's masking on the validation split; see RESULTS.md, tuning log).
FINETUNE_MASK = "scalars=1.0,lsst=0.0,lsst_err=0.0"
# What was tuned on which split (printed in the RESULTS section; keep it true when tuning again).
# The individual validation runs behind these choices are logged in RESULTS.md ("Photo-z on DC2: tuning log").
TUNING_NOTE = (
    "the fine-tuning choices (photo-z-task masks, 4,000 steps at the config's LR, an ensemble of 3) were made "
    "on the validation split, never on the test split (see the tuning log section); the ensemble was not itself "
    "selected on a gain, it steadies the seed-to-seed spread. Earlier choices in configs/photoz_dc2.yaml (log10 "
    "errors as input, mask embedding, photo-z-weighted masking, no partial band masking) were made before this "
    "split existed, with runs scored on the test split, and were not re-selected here. kNN's k is chosen by "
    "cross-validation on the fitting rows; the forest is not tuned. No model is refitted on fitting + "
    "validation rows. The pretraining mock is chosen in the run among --pretrain-mocks by the mock-only "
    "validation sigma_NMAD; the survey variant's ranges and the reweighting were set before any DC2 score of a model "
    "pretrained on them (the ranges after looking at DC2's colours, never at its redshifts)."
)


def dc2_paths() -> tuple[Path, Path]:
    """The two RAIL DC2 files, found inside the installed pz-rail-base package (no import)."""
    spec = importlib.util.find_spec("rail")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the DC2 test data come with pz-rail-base: pip install --no-deps pz-rail-base")
    for root in spec.submodule_search_locations:
        paths = tuple(Path(root) / "examples_data" / "testdata" / f for f in DC2_FILES)
        if all(p.is_file() for p in paths):
            return paths
    raise FileNotFoundError(f"{DC2_FILES} not found under {list(spec.submodule_search_locations)}")


def with_steps(cfg: RunConfig, steps: int) -> RunConfig:
    """A copy of ``cfg`` with ``steps`` optimizer steps (the LR schedule follows max_steps)."""
    warmup = min(cfg.train.warmup_steps, max(steps // 10, 1))
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_steps=steps, warmup_steps=warmup))


def parse_mask_overrides(text: str) -> dict[str, float]:
    """``"scalars=1,lsst=0"`` -> ``{"scalars": 1.0, "lsst": 0.0}`` (empty text: no overrides)."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--finetune-mask: {item!r} is not NAME=PROBABILITY")
        out[name.strip()] = float(value)
    return out


def finetune_config(cfg: RunConfig, steps: int, lr: float | None, mask: dict[str, float] | None = None) -> RunConfig:
    """A fine-tuning run's config: ``cfg`` with ``steps`` steps, peak LR ``lr`` and masking overrides ``mask``.

    ``mask`` updates ``masking.p_modality_overrides`` (whole-modality mask probabilities).
    """
    cfg = with_steps(cfg, steps)
    if lr is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=lr))
    if mask:
        overrides = {**cfg.masking.p_modality_overrides, **mask}
        cfg = dataclasses.replace(cfg, masking=dataclasses.replace(cfg.masking, p_modality_overrides=overrides))
    return cfg


def model_schema(schema: CatalogSchema) -> CatalogSchema:
    """The imported schema with lsst_err in log10 mag (see :func:`model_inputs`)."""
    specs = [dataclasses.replace(m, unit=photoz.ERR_UNIT) if m.name == "lsst_err" else m for m in schema]
    return CatalogSchema(tuple(specs))


def model_inputs(rows: dict[str, np.ndarray], fill: photoz.NonDetectionFill) -> dict[str, np.ndarray]:
    """Inputs of every method: non-detections filled, errors as log10 (``photoz.photometry_inputs``)."""
    mag, log_err = photoz.photometry_inputs(rows["lsst"], rows["lsst_err"], fill)
    return {**rows, "lsst": mag, "lsst_err": log_err}


def mock_as_dc2(
    mock_dir: Path,
    schema: CatalogSchema,
    m5: np.ndarray,
    fill: photoz.NonDetectionFill,
    seed: int,
    variant: str = "default",
) -> dict[str, np.ndarray]:
    """Rows of a noise-free mock catalog (both splits) observed like DC2, in the DC2 schema.

    Noise at the depths fitted to DC2: the Ivezic+19 model of ``photoz.observe`` (default variant)
    or photerr's LSST error model (survey variant, ``variants.lsst_photerr``).
    """
    from mosaic_hpc.data.mock.variants import lsst_photerr

    rng = np.random.default_rng(seed)
    parts = [Catalog.open(mock_dir, s).read_all(["scalars", "lsst"]) for s in ("train", "test")]
    true_mag = np.concatenate([p["lsst"] for p in parts]).astype(np.float64)
    z = np.concatenate([p["scalars"][:, :1] for p in parts])  # column 0 is redshift (mock schema)
    mag, err = photoz.observe(true_mag, m5, rng) if variant == "default" else lsst_photerr(true_mag, rng, m5)
    keep = np.isfinite(true_mag).all(axis=1)
    rows = model_inputs({"scalars": z, "lsst": mag, "lsst_err": err}, fill)
    return {name: rows[name][keep] for name in schema.names}


def parse_mock_spec(spec: str) -> tuple[str, bool]:
    """``"survey+reweight"`` -> ("survey", True): a mock variant, optionally resampled to DC2's photometry."""
    variant, _, option = spec.partition("+")
    if variant not in ("default", "survey") or option not in ("", "reweight"):
        raise ValueError(f"--pretrain-mocks: {spec!r} is not VARIANT or VARIANT+reweight (VARIANT: default, survey)")
    return variant, option == "reweight"


def write_mock(directory: Path, schema: CatalogSchema, rows: dict, stats: Any, source: str) -> None:
    """A pretraining catalog: the first 10% of the rows as test.h5, the rest train.h5, DC2 normalisation."""
    n_test = max(len(rows["scalars"]) // 10, 1)
    for s, sl in (("train", slice(n_test, None)), ("test", slice(0, n_test))):
        (directory / f"{s}.h5").unlink(missing_ok=True)
        write_catalog(
            directory / f"{s}.h5", schema, {k: v[sl] for k, v in rows.items()}, stats=stats, attrs={"source": source}
        )


def colour_features(rows: dict[str, np.ndarray]) -> np.ndarray:
    """[N, 2B - 1] magnitudes and adjacent colours (filled non-detections): the photometry, not its errors."""
    mag = rows["lsst"].astype(np.float64)
    return np.concatenate([mag, mag[:, :-1] - mag[:, 1:]], axis=1)


def reweight_like(
    mock: dict[str, np.ndarray], survey: dict[str, np.ndarray], seed: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Mock rows resampled so their magnitudes and colours follow the survey rows' (``domain_weights``).

    Errors are left out of the features: the two error models differ in detail, and a classifier
    would tell the catalogs apart by that instead of by their galaxy populations.
    """
    from mosaic_hpc.data.domain_weights import density_ratio_resample

    res = density_ratio_resample(colour_features(mock), colour_features(survey), seed=seed)
    log.info("mock reweighting: AUC %.3f, effective fraction %.3f", res.auc, res.effective_fraction)
    return {k: v[res.index] for k, v in mock.items()}, {"auc": res.auc, "effective_fraction": res.effective_fraction}


def train_mosaic(
    cfg: RunConfig, data_dir: Path, run_dir: Path, init_from: Path | None = None, reuse: bool = False
) -> float:
    """Train one MOSAIC run (``init_from``: from that run's weights, fresh optimizer); returns seconds.

    ``reuse``: continue the run in ``run_dir`` if there is one (a finished run is kept as it is;
    resuming checks that config and catalog are unchanged), instead of training from scratch.
    """
    from mosaic_hpc.training.runner import run_training

    t0 = time.perf_counter()
    run_training(cfg, data_dir, run_dir, resume="auto" if reuse else "none", init_from=init_from)
    return time.perf_counter() - t0


def predict_mosaic(run_dir: Path, rows: dict[str, np.ndarray]) -> Components:
    """The redshift's predictive components (Gaussian or mixture heads) from lsst + lsst_err only, scalars hidden."""
    from mosaic_hpc.evaluation.pdf import column_components
    from mosaic_hpc.evaluation.predictor import load_run

    pred = load_run(run_dir, device="cpu").predict({"lsst": rows["lsst"], "lsst_err": rows["lsst_err"]})
    if pred.sigma is None:
        raise ValueError(f"{run_dir}: the benchmark needs Gaussian heads (model.gaussian_heads in --config)")
    return column_components(pred, "scalars", 0)


def from_pdf(ens: Any) -> Estimate:
    """A p(z) method's estimate: the median of each p(z) as point estimate, and the p(z) itself."""
    return np.asarray(ens.median(), np.float64).reshape(-1), ens


def mosaic_estimate(members: list[Components]) -> Estimate:
    """One member's distribution or the equal-weight mixture of the members', as a p(z).

    The point estimate is the p(z) median from the exact mixture CDF (:func:`mixture.quantile`),
    not qp's: qp's mixmod median interpolates on one coarse grid over the whole ensemble.
    """
    from mosaic_hpc import mixture
    from mosaic_hpc.evaluation.pdf import mixture_ensemble, pool_members

    mus, sigmas, weights = pool_members(members)
    return mixture.quantile(weights.T, mus.T, sigmas.T, 0.5), mixture_ensemble(mus, sigmas, weights)


def rail_table(rows: dict[str, np.ndarray], nondetect: float = 99.0) -> dict[str, np.ndarray]:
    """Imported rows (NaN = non-detection) back as a RAIL DC2 table: mag_{b}_lsst, mag_err_{b}_lsst, redshift."""
    table = {"redshift": rows["scalars"][:, 0].astype(np.float64)}
    for i, b in enumerate(BANDS):
        mag, err = rows["lsst"][:, i].astype(np.float64), rows["lsst_err"][:, i].astype(np.float64)
        table[f"mag_{b}_lsst"] = np.where(np.isnan(mag), nondetect, mag)
        table[f"mag_err_{b}_lsst"] = np.where(np.isnan(mag) | np.isnan(err), nondetect, err)
    return table


def flexzboost(
    fit: dict[str, np.ndarray],
    evals: dict[str, dict[str, np.ndarray]],
    fill_mag: np.ndarray,
    quick: dict,
    seed: int,
    threads: int,
) -> tuple[dict[str, Estimate], dict[str, float]]:
    """FlexZBoost through RAIL's stages: Inform on the fitting rows, Estimate each split (raw rows, 99 = non-detection).

    Returns:
        (split -> estimate, the settings used plus the bump_threshold and sharpen_alpha it chose on
        its own validation part).
    """
    import os

    from rail.estimation.algos.flexzboost import FlexZBoostEstimator, FlexZBoostInformer

    # flexcode fits its 35 basis coefficients with sklearn's MultiOutputRegressor(n_jobs=-1): joblib
    # resolves -1 through LOKY_MAX_CPU_COUNT, so this (and xgboost's n_jobs) keeps it to --threads
    os.environ["LOKY_MAX_CPU_COUNT"] = str(threads)
    params = {**FLEXZBOOST, "regression_params": {**FLEXZBOOST["regression_params"], "n_jobs": threads}}
    if "fzb_grid" in quick:
        params.update(nbump=quick["fzb_grid"], nsharp=quick["fzb_grid"])
    shared = {
        "hdf5_groupname": "",
        "nondetect_val": 99.0,
        "mag_limits": {f"mag_{b}_lsst": float(m) for b, m in zip(BANDS, fill_mag, strict=True)},
        "zmin": float(photoz.Z_GRID[0]),
        "zmax": float(photoz.Z_GRID[-1]),
        "nzbins": photoz.Z_GRID.size,
        "output_mode": "return",
    }
    inform = FlexZBoostInformer.make_stage(name="inform_fzb", seed=seed, **params, **shared)
    model = inform.inform(rail_table(fit))
    out = {}
    for split, rows in evals.items():
        est = FlexZBoostEstimator.make_stage(name=f"estimate_fzb_{split}", model=model, **shared)
        out[split] = from_pdf(est.estimate(rail_table(rows)).data)
    chosen = {"bump_threshold": float(inform.model.bump_threshold), "sharpen_alpha": float(inform.model.sharpen_alpha)}
    return out, {**params, **chosen}


def write_split(directory: Path, schema: CatalogSchema, train: dict, test: dict, source: str) -> Any:
    """A catalog directory: train.h5 (its own statistics) and test.h5 normalised with them."""
    for f in ("train.h5", "test.h5"):
        (directory / f).unlink(missing_ok=True)
    write_catalog(directory / "train.h5", schema, train, attrs={"source": source})
    stats = Catalog.open(directory, "train").stats
    write_catalog(directory / "test.h5", schema, test, stats=stats, attrs={"source": source})
    return stats


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from mosaic_hpc.bench.machine import machine_info
    from mosaic_hpc.data.mock import make_mock_catalog
    from mosaic_hpc.data.mock.variants import survey_variant

    torch.set_num_threads(args.threads)
    quick = QUICK if args.quick else {}
    work = args.out
    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0, cpu0 = time.perf_counter(), time.process_time()
    machine = machine_info()  # at the start: the commit and load the run began with

    # 1. import both RAIL files with the importer (99 -> NaN), RAIL's own train/test split
    train_path, test_path = dc2_paths()
    raw_dir = work / "dc2_imported"
    # the validation rows are the importer's val split (the CLI's seeded rule), held out of every fit
    rule = SplitRule(val_fraction=args.val_fraction, seed=args.split_seed)
    import_catalog(train_path, MAPPING, raw_dir, input_test=test_path, overwrite=True, show_progress=False, split=rule)
    fit_cat = Catalog.open(raw_dir, "train")
    schema = fit_cat.schema
    fit_raw, val_raw, test_raw = (Catalog.open(raw_dir, s).read_all() for s in ("train", "val", "test"))
    val_rows = Catalog.open(raw_dir, "val").read_columns(0, len(val_raw["scalars"])).get("source_row")
    n_source_rows = len(fit_raw["scalars"]) + len(val_raw["scalars"])  # rows of the RAIL training file
    if args.quick:  # a random subset: the DC2 files are ordered by redshift
        rng = np.random.default_rng(args.seed)
        n_val = max(round(quick["n_train"] * args.val_fraction), 1)
        sizes = ((fit_raw, quick["n_train"] - n_val), (val_raw, n_val), (test_raw, quick["n_test"]))
        picks = [np.sort(rng.choice(len(d["scalars"]), min(n, len(d["scalars"])), replace=False)) for d, n in sizes]
        fit_raw, val_raw, test_raw = ({k: v[i] for k, v in d.items()} for (d, _), i in zip(sizes, picks, strict=True))
        val_rows = None if val_rows is None else np.asarray(val_rows)[picks[1]]

    # 2. depths from the fitting rows only; one non-detection rule for every method
    m5 = photoz.fit_depths(fit_raw["lsst"].astype(np.float64), fit_raw["lsst_err"].astype(np.float64))
    fill = photoz.NonDetectionFill.from_depths(m5)
    fit, val, test = (model_inputs(d, fill) for d in (fit_raw, val_raw, test_raw))
    schema = model_schema(schema)
    # MOSAIC's catalog: train.h5 = the fitting rows (their statistics normalise everything), test.h5 = validation
    dc2_dir = work / "dc2_filled"
    dc2_stats = write_split(dc2_dir, schema, fit, val, "DC2 (RAIL) training split, non-detections filled")
    timings["prepare_s"] = time.perf_counter() - t0
    z = {"val": val["scalars"][:, 0].astype(np.float64), "test": test["scalars"][:, 0].astype(np.float64)}
    evals = {"val": val, "test": test}
    scored: dict[str, dict[str, dict[str, Any]]] = {"val": {}, "test": {}}
    extra: dict[str, Any] = {}

    def predict_splits(predict) -> dict[str, Any]:
        """One model's predictions on every scored split, each made once."""
        return {split: predict(rows) for split, rows in evals.items()}

    def record_scores(name: str, estimates: dict[str, Estimate]) -> None:
        """The one scoring path: point metrics of every method, p(z) metrics where it has one."""
        for split, (point, ens) in estimates.items():
            scored[split][name] = photoz.score(point, ens, z[split])

    # 3. FlexZBoost through RAIL, on the raw fitting rows (99 = non-detection, filled by RAIL with our limits)
    if not args.no_flexzboost:
        t = time.perf_counter()
        fzb, extra["flexzboost_chosen"] = flexzboost(
            fit_raw, {"val": val_raw, "test": test_raw}, fill.mag, quick, args.seed, args.threads
        )
        record_scores("flexzboost", fzb)
        timings["flexzboost_s"] = time.perf_counter() - t

    # 4. baselines on magnitudes, colours and errors, fitted on the same rows as MOSAIC
    t = time.perf_counter()

    def features(rows: dict[str, np.ndarray]) -> np.ndarray:
        return photoz.photometric_features(rows["lsst"].astype(np.float64), rows["lsst_err"].astype(np.float64))

    models = photoz.fit_baselines(
        features(fit),
        fit["scalars"][:, 0].astype(np.float64),
        seed=args.seed,
        n_jobs=args.threads,
        n_trees=quick.get("n_trees", args.n_trees),
    )
    for name, model in models.items():
        record_scores(name, predict_splits(lambda rows, model=model: (model.predict(features(rows)), None)))
    timings["baselines_s"] = time.perf_counter() - t

    # 5. MOSAIC from scratch (one model)
    cfg = load_config(args.config)
    steps = quick.get("steps", args.steps or cfg.train.max_steps)
    cfg = with_steps(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=args.seed)), steps)
    if args.quick:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, micro_batch_size=QUICK_BATCH))
    if not args.no_scratch:
        timings["mosaic_train_s"] = train_mosaic(cfg, dc2_dir, work / "run_mosaic", reuse=args.reuse)
        record_scores(
            "mosaic", predict_splits(lambda rows: mosaic_estimate([predict_mosaic(work / "run_mosaic", rows)]))
        )

    # 6. pretrain on each candidate mock in the DC2 schema; fine-tune from the one best on validation
    if not args.no_pretrain:
        pre_cfg = with_steps(cfg, quick.get("pretrain_steps", args.pretrain_steps))
        timings["mock_s"] = timings["pretrain_s"] = 0.0
        extra["mock_reweight"] = {}
        for spec in args.pretrain_mocks:
            variant, reweight = parse_mock_spec(spec)
            slug = spec.replace("+", "_")
            t = time.perf_counter()
            mock_raw = work / f"mock_truth_{variant}"
            make_mock_catalog(
                mock_raw,
                quick.get("n_mock", args.n_mock),
                seed=args.seed,
                noise="none",
                overwrite=True,
                progress=False,
                variant=survey_variant(args.variant_set) if variant == "survey" else "default",
            )
            mock_rows = mock_as_dc2(mock_raw, schema, m5, fill, args.seed, variant)
            if reweight:  # photometry of the DC2 fitting rows only: no DC2 redshift is used
                mock_rows, extra["mock_reweight"][spec] = reweight_like(mock_rows, fit, args.seed)
            mock_dir = work / f"mock_dc2_{slug}"
            write_mock(mock_dir, schema, mock_rows, dc2_stats, f"mock catalog ({spec}) observed with the DC2 depths")
            timings["mock_s"] += time.perf_counter() - t
            timings["pretrain_s"] += train_mosaic(pre_cfg, mock_dir, work / f"run_pretrain_{slug}", reuse=args.reuse)
            record_scores(
                f"mock_only_{slug}",
                predict_splits(
                    lambda rows, d=work / f"run_pretrain_{slug}": mosaic_estimate([predict_mosaic(d, rows)])
                ),
            )
        # the pretraining to fine-tune from: the best mock-only validation sigma_NMAD (never the test split)
        chosen = min(
            args.pretrain_mocks, key=lambda sp: scored["val"][f"mock_only_{sp.replace('+', '_')}"]["sigma_nmad"]
        )
        extra["pretrain_chosen"] = chosen
        pretrained = work / f"run_pretrain_{chosen.replace('+', '_')}"
        ft_mask = parse_mask_overrides(args.finetune_mask)
        ft_cfg = finetune_config(cfg, quick.get("finetune_steps", args.finetune_steps), args.finetune_lr, ft_mask)
        members = []
        timings["finetune_s"] = 0.0  # --ensemble 0: mock-only ablations, no fine-tuning
        for i in range(args.ensemble):
            member_cfg = dataclasses.replace(ft_cfg, train=dataclasses.replace(ft_cfg.train, seed=args.seed + i))
            run_dir = work / f"run_finetune_{i}"
            timings["finetune_s"] += train_mosaic(member_cfg, dc2_dir, run_dir, init_from=pretrained, reuse=args.reuse)
            members.append(run_dir)
        member_preds = [predict_splits(lambda rows, d=d: predict_mosaic(d, rows)) for d in members]
        if members:
            record_scores("mosaic_pretrained", {s: mosaic_estimate([p[s] for p in member_preds]) for s in evals})
        if args.ensemble > 1:  # the first member alone: what the ensemble adds
            record_scores("mosaic_pretrained_single", {s: mosaic_estimate([member_preds[0][s]]) for s in evals})
    timings["total_s"] = time.perf_counter() - t0
    timings["cpu_total_s"] = time.process_time() - cpu0  # CPU time: the budget on a shared machine
    return {
        "benchmark": "photoz_dc2",
        "quick": bool(args.quick),
        "machine": machine,
        "config": str(args.config),
        "steps": None if args.no_scratch else steps,
        "pretrain_steps": None if args.no_pretrain else quick.get("pretrain_steps", args.pretrain_steps),
        "finetune_steps": None if args.no_pretrain else quick.get("finetune_steps", args.finetune_steps),
        "finetune_lr": None if args.no_pretrain else ft_cfg.train.lr,
        "finetune_mask": None if args.no_pretrain else ft_cfg.masking.p_modality_overrides,
        "ensemble": None if args.no_pretrain else args.ensemble,
        "knn_k": int(models["knn"][-1].n_neighbors),
        "flexzboost": None if args.no_flexzboost else extra["flexzboost_chosen"],
        "n_mock": None if args.no_pretrain else quick.get("n_mock", args.n_mock),
        "pretrain_mocks": None if args.no_pretrain else args.pretrain_mocks,
        "pretrain_chosen": extra.get("pretrain_chosen"),
        "variant_set": args.variant_set,
        "mock_reweight": extra.get("mock_reweight"),
        "n_train": len(fit_raw["scalars"]) + len(val_raw["scalars"]),
        "n_fit": len(fit_raw["scalars"]),
        "n_source_rows": n_source_rows,
        "n_val": len(val_raw["scalars"]),
        "n_test": len(test_raw["scalars"]),
        "val_fraction": args.val_fraction,
        "split_seed": args.split_seed,
        "val_rows": None if val_rows is None else np.asarray(val_rows).tolist(),
        "depths_5sigma": dict(zip("ugrizy", np.round(m5, 3).tolist(), strict=True)),
        "nondetection_fill_mag": dict(zip("ugrizy", np.round(fill.mag, 3).tolist(), strict=True)),
        "methods": scored["test"],
        "val_methods": scored["val"],
        "timings": timings,
    }


def _fmt(r: dict[str, Any], key: str, spec: str) -> str:
    return format(r[key], spec) if key in r else "-"


# (column heading, result key, format) of the RESULTS table; p(z) columns are "-" for point-only methods
TABLE = (
    ("MAE", "mae", ".4f"),
    ("bias", "bias", "+.4f"),
    ("sigma_NMAD", "sigma_nmad", ".4f"),
    ("outliers >0.15", "outlier_fraction", ".4f"),
    ("RAIL outlier rate", "outlier_rate_rail", ".4f"),
    ("sigma_IQR", "sigma_iqr", ".4f"),
    ("CRPS", "crps", ".4f"),
    ("PIT KS", "pit_ks", ".3f"),
    ("PIT CvM", "pit_cvm", ".2f"),
    ("PIT AD", "pit_ad", ".1f"),
    ("CDE loss", "cde_loss", ".3f"),
    ("Brier", "brier", ".4f"),
)
VAL_TABLE = (
    ("sigma_NMAD", "sigma_nmad", ".4f"),
    ("outliers", "outlier_fraction", ".4f"),
    ("PIT KS", "pit_ks", ".3f"),
    ("CDE loss", "cde_loss", ".3f"),
)


def _table(scored: dict[str, dict[str, Any]], names: list[str], columns: tuple) -> list[str]:
    """A markdown table, one row per method, one column per (heading, key, format) of ``columns``."""
    rows = ["| method | " + " | ".join(h for h, _, _ in columns) + " |", "|---|" + "---|" * len(columns)]
    return rows + [f"| {n} | " + " | ".join(_fmt(scored[n], k, f) for _, k, f in columns) + " |" for n in names]


def _pretraining(res: dict[str, Any]) -> str:
    """The pretraining and fine-tuning line of the RESULTS section ("skipped" with --no-pretrain)."""
    if res["pretrain_steps"] is None:
        return "pretraining and fine-tuning skipped"
    text = (
        f"pretraining {res['pretrain_steps']} steps on {res['n_mock']} mock galaxies for each of "
        f"{res['pretrain_mocks']} (reweighting: {res['mock_reweight']})"
    )
    if not res["ensemble"]:
        return text + "; no fine-tuning (--ensemble 0)"
    return (
        f"{text}; fine-tuned from `{res['pretrain_chosen']}` (best validation sigma_NMAD of the mock-only "
        f"rows), {res['ensemble']} member(s) (`--init-from`) of {res['finetune_steps']} steps at peak LR "
        f"{res['finetune_lr']} with whole-modality masks {res['finetune_mask']} (seeds seed, seed+1, ...), "
        "mixture of their Gaussians"
    )


def results_markdown(res: dict[str, Any]) -> str:
    """The RESULTS.md section: command, machine, tables of all methods of this run, PIT histograms, goals."""
    m = res["machine"]
    scratch = "skipped" if res["steps"] is None else f"{res['steps']} steps"
    fzb = res.get("flexzboost")
    lines = [
        RESULTS_HEADING,
        "",
        f"- command: `{m['command']}`",
        f"- machine: {m['cpu_model']}, {m['n_cores']} cores ({m['torch_threads']} torch threads, shared; "
        f"load {m['load_average']}), torch {m['torch']}, commit {m['commit']}, {m['date_utc']} UTC",
        f"- data: RAIL cosmoDC2 training split {res['n_train']} galaxies = {res['n_fit']} fitted on by every "
        f"method + {res['n_val']} validation ({res['val_fraction']:.0%}, split seed {res['split_seed']}, never "
        f"fitted on); test split {res['n_test']}",
        f"- MOSAIC: config `{Path(res['config']).name}`; from scratch {scratch}; {_pretraining(res)}; "
        f"kNN k = {res['knn_k']} (5-fold CV on the fitting rows)",
        "- FlexZBoost (RAIL stages): "
        + (
            "skipped"
            if fzb is None
            else f"max_basis {fzb['max_basis']} {fzb['basis_system']}, xgboost {fzb['regression_params']}, "
            f"trainfrac {fzb['trainfrac']}, bump {fzb['bumpmin']}-{fzb['bumpmax']} x {fzb['nbump']} (chose "
            f"{fzb['bump_threshold']:.3f}), sharpen {fzb['sharpmin']}-{fzb['sharpmax']} x {fzb['nsharp']} (chose "
            f"{fzb['sharpen_alpha']:.2f})"
        ),
        f"- non-detections filled with the 1-sigma limit {res['nondetection_fill_mag']} (fitted 5-sigma depths "
        f"{res['depths_5sigma']}) for every method (error 1.086 mag; FlexZBoost uses magnitudes only)",
        "- point estimate: the median of the p(z) (FlexZBoost, MOSAIC), the prediction (kNN, forest); p(z) scores "
        "on z = 0-3, step 0.01; one scoring path (`photoz.score`, qp/RAIL metrics)",
        f"- time (wall, except cpu_total): {', '.join(f'{k[:-2]} {v:.0f} s' for k, v in res['timings'].items())}",
    ]
    names = [n for n in METHOD_ORDER if n in res["methods"]] + [n for n in res["methods"] if n not in METHOD_ORDER]
    lines += ["", "Test split:", "", *_table(res["methods"], names, TABLE)]
    lines += [
        "",
        "Validation split (what the choices were made on):",
        "",
        *_table(res["val_methods"], names, VAL_TABLE),
    ]
    lines += [
        "",
        "PIT histograms on the test split (density in 10 bins of [0, 1]; 1.0 everywhere when calibrated):",
        "",
    ]
    for name in names:
        if "pit_histogram" in res["methods"][name]:
            lines.append(f"- {name}: " + " ".join(f"{v:.2f}" for v in res["methods"][name]["pit_histogram"]))
    return "\n".join([*lines, "", *comparison_notes(res)]) + "\n"


def comparison_notes(res: dict[str, Any]) -> list[str]:
    """The MOSAIC variant chosen on validation against FlexZBoost and the goals, on the test split."""
    methods, val = res["methods"], res["val_methods"]
    variants = [n for n in ("mosaic", "mosaic_pretrained", "mosaic_pretrained_single") if n in methods]
    notes = []
    if variants:
        best = min(variants, key=lambda n: val[n]["sigma_nmad"])  # chosen on validation, never on test
        m = methods[best]
        goals = ", ".join(f"{k} {m[k]:.4f} {'<' if m[k] < g else 'not <'} {g}" for k, g in GOALS.items() if k in m)
        notes.append(f"- Chosen on validation sigma_NMAD: `{best}`. Goals (test): {goals}.")
        if "flexzboost" in methods:
            f = methods["flexzboost"]
            keys = ("sigma_nmad", "outlier_fraction", "pit_ks", "cde_loss")
            ahead = [k for k in keys if m[k] < f[k]]
            behind = [k for k in keys if k not in ahead]
            notes.append(
                f"- `{best}` against FlexZBoost, same run, test split: ahead on {', '.join(ahead) or 'nothing'}"
                + (f"; not ahead on {', '.join(behind)}" if behind else "")
                + " ("
                + "; ".join(f"{k} {m[k]:.4f} vs {f[k]:.4f}" for k in keys)
                + ")."
            )
    for name in [n for n in methods if n.startswith("mock_only")]:
        mo = methods[name]
        goals = ", ".join(f"{k} {mo[k]:.4f} {'<=' if mo[k] <= g else 'not <='} {g}" for k, g in MOCK_ONLY_GOALS.items())
        notes.append(f"- `{name}` (no DC2 redshift in training), test split: {goals}.")
    notes += [
        f"- Tuning disclosure: {TUNING_NOTE}",
        "- `mock_only_*` are the pretrained models without fine-tuning: the gap between each mock and cosmoDC2; "
        "`mosaic_pretrained_single` is the first ensemble member alone.",
    ]
    return notes


def record(section: str, path: Path = REPO / "benchmarks" / "RESULTS.md") -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving other sections alone."""
    record_section(section, RESULTS_HEADING, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/photoz_dc2"), help="work directory; results.json goes here")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "photoz_dc2.yaml", help="MOSAIC run config")
    p.add_argument("--steps", type=int, default=None, help="MOSAIC steps (default: train.max_steps of --config)")
    p.add_argument("--pretrain-steps", type=int, default=3000, help="steps of pretraining on the mock catalog")
    p.add_argument("--n-mock", type=int, default=100_000, help="galaxies of the mock catalog for pretraining")
    p.add_argument("--no-pretrain", action="store_true", help="skip the mock-pretrained variant")
    p.add_argument(
        "--pretrain-mocks",
        type=lambda t: [x.strip() for x in t.split(",") if x.strip()],
        default=PRETRAIN_MOCKS,
        help="candidate pretraining mocks, VARIANT[+reweight],... (variant of make-catalog --variant; +reweight "
        "resamples it so its magnitudes and colours follow the DC2 fitting rows', no DC2 redshift used); each is "
        "pretrained and scored (mock_only_*), and the best on validation sigma_NMAD is fine-tuned. Default: "
        + ",".join(PRETRAIN_MOCKS),
    )
    p.add_argument(
        "--variant-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --mock-variant survey: override a range of mosaic_hpc.data.mock.variants.SurveyVariant",
    )
    p.add_argument("--n-trees", type=int, default=200, help="random-forest trees")
    p.add_argument("--seed", type=int, default=0, help="seeds MOSAIC, the forest and the mock catalog")
    p.add_argument("--finetune-steps", type=int, default=4000, help="fine-tuning steps on DC2 after pretraining")
    p.add_argument(
        "--finetune-lr", type=float, default=None, help="fine-tuning peak LR (default: train.lr of --config)"
    )
    p.add_argument(
        "--finetune-mask",
        default=FINETUNE_MASK,
        help="fine-tuning whole-modality mask probabilities over the config's, NAME=P,... ('' = the config's); "
        "default: the photo-z task exactly (redshift always hidden, photometry always given)",
    )
    p.add_argument(
        "--ensemble", type=int, default=3, help="fine-tuned members (seeds seed, seed+1, ...); 0 = mock-only"
    )
    p.add_argument("--no-scratch", action="store_true", help="skip the MOSAIC variant trained from scratch")
    p.add_argument("--no-flexzboost", action="store_true", help="skip FlexZBoost (about 3 CPU-minutes)")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of the training split held out")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the validation rows (fixed across --seed)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and scikit-learn threads (default 1: on a shared 2-core machine 2 threads oversubscribe)",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep the MOSAIC runs already in --out (finished ones as they are, interrupted ones resumed) "
        "instead of training them again: re-scores an earlier run, or continues an interrupted one",
    )
    p.add_argument("--quick", action="store_true", help=f"CI size: {QUICK}")
    p.add_argument("--record", action="store_true", help=f"write the '{RESULTS_HEADING}' section of RESULTS.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        res = run_benchmark(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"photoz_dc2: error: {err}", file=sys.stderr)
        return 2
    (args.out / "results.json").write_text(json.dumps(res, indent=1))
    section = results_markdown(res)
    print(section)
    if args.record:
        record(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
