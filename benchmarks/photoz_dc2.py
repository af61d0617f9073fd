"""Photometric redshifts on cosmoDC2 (RAIL test data): MOSAIC against kNN and random forest, one run.

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

Splits: a fixed random 15% of the training file (``--val-fraction``, ``--split-seed``) is the
validation split; every method (depth fit, normalisation statistics, baselines, MOSAIC scratch
and fine-tuning) is fitted on the other 85% only, and there is no refit on train + validation, so
the validation scores are honest held-out scores of the very models scored on the test split.
MOSAIC's settings are chosen on the validation columns; the test split only reports.

Methods:
  knn                 distance-weighted k nearest neighbours, k by 5-fold CV on the fitting rows
  random_forest       200 trees, leaves >= 2 galaxies (not tuned)
  mosaic              MOSAIC (configs/photoz_dc2.yaml, Gaussian heads) trained on the fitting rows
  mosaic_pretrained   MOSAIC pretrained on the mock catalog, then --ensemble members fine-tuned on
                      the fitting rows (fresh optimizer, seeds seed, seed+1, ...): the mean of their
                      means, and the standard deviation of the equal-weight mixture of their Gaussians
  mosaic_pretrained_single  the first member alone (with --ensemble > 1)
  mock_only           the pretrained model scored on DC2 without fine-tuning (the domain gap)

Transfer design: the mock catalog (``make_mock_catalog``, true magnitudes) has 3 scalars and
more modalities; it is re-written with the DC2 schema (redshift only; lsst observed through the
same error model and fitted DC2 depths; lsst_err from that model; non-detections filled the same
way), normalised with the *DC2 fitting-row* statistics so a normalised value means the same
magnitude in both catalogs. Weights then transfer one to one (same modalities, same lengths),
and fine-tuning uses the scratch run's config with its own step count and peak learning rate
(--finetune-steps, --finetune-lr).

Scores on the validation and test splits: MAE, bias, sigma_NMAD, outlier fraction (|dz| / (1+z)
> 0.15); for the Gaussian heads also the PIT histogram, its KS statistic and the mean CRPS.

Examples:
  python benchmarks/photoz_dc2.py --out runs/photoz_dc2 --record  # about 30 CPU-minutes on one core
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

from mosaic_hpc.config import RunConfig, load_config  # noqa: E402
from mosaic_hpc.data.catalog import Catalog, write_catalog  # noqa: E402
from mosaic_hpc.data.importer import import_catalog  # noqa: E402
from mosaic_hpc.evaluation import photoz  # noqa: E402
from mosaic_hpc.schema import CatalogSchema  # noqa: E402

log = logging.getLogger("photoz_dc2")
DC2_FILES = ("test_dc2_training_9816.hdf5", "test_dc2_validation_9816.hdf5")
MAPPING = REPO / "configs" / "mappings" / "dc2_rail.yaml"
RESULTS_HEADING = "## Photo-z on DC2 (RAIL test data)"
ERR_UNIT = "log10 mag"  # unit of lsst_err as the methods see it (model_inputs)
METHOD_ORDER = ("knn", "random_forest", "mosaic", "mosaic_pretrained")
# --quick: a CI-sized run that exercises every step of the full one (never timed or compared)
QUICK = {
    "n_train": 400,
    "n_test": 200,
    "n_mock": 500,
    "steps": 10,
    "pretrain_steps": 10,
    "finetune_steps": 10,
    "n_trees": 20,
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
    "validation rows."
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
    specs = [dataclasses.replace(m, unit=ERR_UNIT) if m.name == "lsst_err" else m for m in schema]
    return CatalogSchema(tuple(specs))


def model_inputs(rows: dict[str, np.ndarray], fill: photoz.NonDetectionFill) -> dict[str, np.ndarray]:
    """Inputs of every method: non-detections filled, magnitude errors as log10(error / mag).

    Errors span 0.005 to 10 mag with a long tail (faint u-band detections): standardised as they
    are, the typical 0.01-0.1 mag errors would all map to about the same value, and a Gaussian
    head would fit them with a vanishing sigma whose NLL gradient swamps the redshift term. In
    log10 they spread over about two units. The log is monotonic, so the forest is unaffected.
    """
    mag, err = fill.apply(rows["lsst"], rows["lsst_err"])
    return {**rows, "lsst": mag.astype(np.float32), "lsst_err": np.log10(err).astype(np.float32)}


def mock_as_dc2(
    mock_dir: Path, schema: CatalogSchema, m5: np.ndarray, fill: photoz.NonDetectionFill, seed: int
) -> dict[str, np.ndarray]:
    """Rows of a noise-free mock catalog (both splits) observed like DC2, in the DC2 schema."""
    rng = np.random.default_rng(seed)
    parts = [Catalog.open(mock_dir, s).read_all(["scalars", "lsst"]) for s in ("train", "test")]
    true_mag = np.concatenate([p["lsst"] for p in parts]).astype(np.float64)
    z = np.concatenate([p["scalars"][:, :1] for p in parts])  # column 0 is redshift (mock schema)
    mag, err = photoz.observe(true_mag, m5, rng)
    keep = np.isfinite(true_mag).all(axis=1)
    rows = model_inputs({"scalars": z, "lsst": mag, "lsst_err": err}, fill)
    return {name: rows[name][keep] for name in schema.names}


def train_mosaic(cfg: RunConfig, data_dir: Path, run_dir: Path, init_from: Path | None = None) -> float:
    """Train one MOSAIC run (optionally from pretrained weights, fresh optimizer); returns seconds."""
    import torch

    from mosaic_hpc.training.runner import plain_engine_factory, run_training

    factory = plain_engine_factory
    if init_from is not None:

        def factory(model, cfg, env):
            model.load_state_dict(torch.load(init_from / "model.pt", map_location="cpu", weights_only=True))
            return plain_engine_factory(model, cfg, env)

    t0 = time.perf_counter()
    run_training(cfg, data_dir, run_dir, engine_factory=factory, resume="none")
    return time.perf_counter() - t0


def predict_mosaic(run_dir: Path, rows: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """Redshift mean (and sigma, Gaussian heads) from lsst + lsst_err only, scalars hidden."""
    from mosaic_hpc.evaluation.predictor import load_run

    pred = load_run(run_dir, device="cpu").predict({"lsst": rows["lsst"], "lsst_err": rows["lsst_err"]})
    sigma = None if pred.sigma is None else pred.sigma["scalars"][:, 0].astype(np.float64)
    return pred.values["scalars"][:, 0].astype(np.float64), sigma


def combine(preds: list[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray | None]:
    """Ensemble of Gaussian predictions: the equal-weight mixture's mean and standard deviation.

    The mean is the average of the members' means; the variance is the mixture's, the average
    member variance plus the spread of the means (law of total variance).
    """
    mus = np.stack([m for m, _ in preds])
    mu = mus.mean(axis=0)
    if any(s is None for _, s in preds):
        return mu, None
    var = np.stack([s**2 for _, s in preds]).mean(axis=0) + mus.var(axis=0)
    return mu, np.sqrt(var)


def scores(pred: tuple[np.ndarray, np.ndarray | None], z: np.ndarray) -> dict[str, Any]:
    """Point metrics of the mean; PIT, KS and CRPS of the Gaussian of that mean and sigma."""
    mu, sigma = pred
    return photoz.point_metrics(mu, z) if sigma is None else photoz.gaussian_metrics(mu, sigma, z)


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (fit, validation) row indices: a seeded random ``fraction`` of the training split."""
    n_val = round(fraction * n)
    if not 0 < n_val < n:
        raise ValueError(f"--val-fraction {fraction} leaves no validation or no fitting rows of {n}")
    val = np.sort(np.random.default_rng(seed).choice(n, n_val, replace=False))
    return np.setdiff1d(np.arange(n), val), val


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

    from mosaic_hpc.bench.common import machine_info
    from mosaic_hpc.data.mock import make_mock_catalog

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
    import_catalog(train_path, MAPPING, raw_dir, input_test=test_path, overwrite=True, show_progress=False)
    train_cat, test_cat = Catalog.open(raw_dir, "train"), Catalog.open(raw_dir, "test")
    schema = train_cat.schema
    train_raw, test_raw = train_cat.read_all(), test_cat.read_all()
    if args.quick:  # a random subset: the DC2 files are ordered by redshift
        rng = np.random.default_rng(args.seed)
        train_raw, test_raw = (
            {k: v[np.sort(rng.choice(len(v), quick[n], replace=False))] for k, v in d.items()}
            for d, n in ((train_raw, "n_train"), (test_raw, "n_test"))
        )
    # validation rows: held out of every fit, they score the MOSAIC tuning choices (never the test split)
    fit_idx, val_idx = split_validation(len(train_raw["scalars"]), args.val_fraction, args.split_seed)
    fit_raw = {k: v[fit_idx] for k, v in train_raw.items()}
    val_raw = {k: v[val_idx] for k, v in train_raw.items()}

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

    def predict_splits(predict) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """One model's predictions on every scored split, each made once."""
        return {split: predict(rows) for split, rows in evals.items()}

    def record_scores(name: str, preds: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> None:
        for split, pred in preds.items():
            scored[split][name] = scores(pred, z[split])

    # 3. baselines on magnitudes, colours and errors, fitted on the same rows as MOSAIC
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

    # 4. MOSAIC from scratch (one model)
    cfg = load_config(args.config)
    steps = quick.get("steps", args.steps or cfg.train.max_steps)
    cfg = with_steps(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=args.seed)), steps)
    if args.quick:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, micro_batch_size=QUICK_BATCH))
    if not args.no_scratch:
        timings["mosaic_train_s"] = train_mosaic(cfg, dc2_dir, work / "run_mosaic")
        record_scores("mosaic", predict_splits(lambda rows: predict_mosaic(work / "run_mosaic", rows)))

    # 5. pretrain on the mock catalog in the DC2 schema, then fine-tune an ensemble on DC2
    if not args.no_pretrain:
        t = time.perf_counter()
        mock_raw = work / "mock_truth"
        make_mock_catalog(
            mock_raw, quick.get("n_mock", args.n_mock), seed=args.seed, noise="none", overwrite=True, progress=False
        )
        mock_rows = mock_as_dc2(mock_raw, schema, m5, fill, args.seed)
        n_mock_test = max(len(mock_rows["scalars"]) // 10, 1)
        mock_dir = work / "mock_dc2"
        for f in ("train.h5", "test.h5"):
            (mock_dir / f).unlink(missing_ok=True)
        attrs = {"source": "mock catalog observed with the DC2 error model"}
        split = {
            s: {k: v[sl] for k, v in mock_rows.items()}
            for s, sl in (("train", slice(n_mock_test, None)), ("test", slice(0, n_mock_test)))
        }
        for s in ("train", "test"):
            write_catalog(mock_dir / f"{s}.h5", schema, split[s], stats=dc2_stats, attrs=attrs)
        timings["mock_s"] = time.perf_counter() - t
        pre_cfg = with_steps(cfg, quick.get("pretrain_steps", args.pretrain_steps))
        timings["pretrain_s"] = train_mosaic(pre_cfg, mock_dir, work / "run_pretrain")
        record_scores("mock_only", predict_splits(lambda rows: predict_mosaic(work / "run_pretrain", rows)))
        from mosaic_hpc.training.checkpoint import CheckpointManager

        ckpt = CheckpointManager(work / "run_pretrain").latest()
        ft_mask = parse_mask_overrides(args.finetune_mask)
        ft_cfg = finetune_config(cfg, quick.get("finetune_steps", args.finetune_steps), args.finetune_lr, ft_mask)
        members = []
        timings["finetune_s"] = 0.0
        for i in range(args.ensemble):
            member_cfg = dataclasses.replace(ft_cfg, train=dataclasses.replace(ft_cfg.train, seed=args.seed + i))
            run_dir = work / f"run_finetune_{i}"
            timings["finetune_s"] += train_mosaic(member_cfg, dc2_dir, run_dir, init_from=ckpt)
            members.append(run_dir)
        member_preds = [predict_splits(lambda rows, d=d: predict_mosaic(d, rows)) for d in members]
        record_scores("mosaic_pretrained", {s: combine([p[s] for p in member_preds]) for s in evals})
        if args.ensemble > 1:  # the first member alone: what the ensemble adds
            record_scores("mosaic_pretrained_single", member_preds[0])
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
        "n_mock": None if args.no_pretrain else quick.get("n_mock", args.n_mock),
        "n_train": len(train_raw["scalars"]),
        "n_fit": len(fit_idx),
        "n_val": len(val_idx),
        "n_test": len(test_raw["scalars"]),
        "val_fraction": args.val_fraction,
        "split_seed": args.split_seed,
        "val_rows": val_idx.tolist(),
        "depths_5sigma": dict(zip("ugrizy", np.round(m5, 3).tolist(), strict=True)),
        "nondetection_fill_mag": dict(zip("ugrizy", np.round(fill.mag, 3).tolist(), strict=True)),
        "methods": scored["test"],
        "val_methods": scored["val"],
        "timings": timings,
    }


def results_markdown(res: dict[str, Any]) -> str:
    """The RESULTS.md section: command, machine, table of all methods of this run, PIT histograms."""
    m = res["machine"]
    scratch = "skipped" if res["steps"] is None else f"{res['steps']} steps"
    lines = [
        RESULTS_HEADING,
        "",
        f"- command: `{m['command']}`",
        f"- machine: {m['cpu_model']}, {m['n_cores']} cores ({m['torch_threads']} torch threads, shared; "
        f"load {m['load_average']}), torch {m['torch']}, commit {m['commit']}, {m['date_utc']} UTC",
        f"- data: RAIL cosmoDC2 training split {res['n_train']} galaxies = {res['n_fit']} fitted on by every "
        f"method + {res['n_val']} validation ({res['val_fraction']:.0%}, split seed {res['split_seed']}, never "
        f"fitted on); test split {res['n_test']}",
        f"- MOSAIC: config `{Path(res['config']).name}`; from scratch {scratch}; pretraining "
        f"{res['pretrain_steps']} steps on {res['n_mock']} mock galaxies, then {res['ensemble']} fine-tuned "
        f"member(s) of {res['finetune_steps']} steps at peak LR {res['finetune_lr']} with whole-modality masks "
        f"{res['finetune_mask']} (seeds seed, seed+1, ...), "
        f"mixture of their Gaussians; kNN k = {res['knn_k']} (5-fold CV on the fitting rows)",
        f"- non-detections filled with the 1-sigma limit {res['nondetection_fill_mag']} (fitted 5-sigma depths "
        f"{res['depths_5sigma']}) and error 1.086 mag, for every method",
        f"- time (wall, except cpu_total): {', '.join(f'{k[:-2]} {v:.0f} s' for k, v in res['timings'].items())}",
        "",
        "| method | MAE | bias | sigma_NMAD | outlier frac | CRPS | PIT KS | val sigma_NMAD | val outlier frac |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = [n for n in METHOD_ORDER if n in res["methods"]] + [n for n in res["methods"] if n not in METHOD_ORDER]
    for name in names:
        r, v = res["methods"][name], res["val_methods"][name]
        crps = f"{r['crps']:.4f}" if "crps" in r else "-"
        ks = f"{r['pit_ks']:.3f}" if "pit_ks" in r else "-"
        lines.append(
            f"| {name} | {r['mae']:.4f} | {r['bias']:+.4f} | {r['sigma_nmad']:.4f} | {r['outlier_fraction']:.4f} "
            f"| {crps} | {ks} | {v['sigma_nmad']:.4f} | {v['outlier_fraction']:.4f} |"
        )
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
    """Where the MOSAIC variant chosen on validation stands against the random forest on the test split."""
    methods, val = res["methods"], res["val_methods"]
    rf = methods["random_forest"]
    variants = [n for n in ("mosaic", "mosaic_pretrained", "mosaic_pretrained_single") if n in methods]
    best = min(variants, key=lambda n: val[n]["sigma_nmad"])  # chosen on validation, never on test
    m = methods[best]
    beats = [k for k in ("sigma_nmad", "outlier_fraction") if m[k] < rf[k]]
    if len(beats) == 2:
        verdict = "below the forest on both"
    else:
        verdict = f"below the forest on {beats[0]} only" if beats else "not below the forest"
    return [
        f"- Goal (MOSAIC below the random forest on sigma_NMAD and outlier fraction, test split): the variant "
        f"with the best validation sigma_NMAD, `{best}`, is {verdict} (sigma_NMAD "
        f"{m['sigma_nmad']:.4f} vs {rf['sigma_nmad']:.4f}, outliers {m['outlier_fraction']:.4f} vs "
        f"{rf['outlier_fraction']:.4f}). Reference: RAIL's FlexZBoost reports sigma_MAD 0.0209 on this split.",
        f"- Tuning disclosure: {TUNING_NOTE}",
        "- `mock_only` is the pretrained model without fine-tuning: the gap between the mock and cosmoDC2; "
        "`mosaic_pretrained_single` is the first ensemble member alone.",
    ]


def record(section: str, path: Path = REPO / "benchmarks" / "RESULTS.md") -> None:
    """Replace (or append) this benchmark's section of RESULTS.md, leaving other sections alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start = text.find(RESULTS_HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(RESULTS_HEADING))
        text = text[:start] + section + ("" if end < 0 else "\n" + text[end + 1 :])
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/photoz_dc2"), help="work directory; results.json goes here")
    p.add_argument("--config", type=Path, default=REPO / "configs" / "photoz_dc2.yaml", help="MOSAIC run config")
    p.add_argument("--steps", type=int, default=None, help="MOSAIC steps (default: train.max_steps of --config)")
    p.add_argument("--pretrain-steps", type=int, default=3000, help="steps of pretraining on the mock catalog")
    p.add_argument("--n-mock", type=int, default=100_000, help="galaxies of the mock catalog for pretraining")
    p.add_argument("--no-pretrain", action="store_true", help="skip the mock-pretrained variant")
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
    p.add_argument("--ensemble", type=int, default=3, help="fine-tuned members (seeds seed, seed+1, ...), averaged")
    p.add_argument("--no-scratch", action="store_true", help="skip the MOSAIC variant trained from scratch")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of the training split held out")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the validation rows (fixed across --seed)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and scikit-learn threads (default 1: on a shared 2-core machine 2 threads oversubscribe)",
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
