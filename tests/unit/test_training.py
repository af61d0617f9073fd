"""Plain-engine training: it learns the catalog's structure, and resume is exact."""

import json

import numpy as np
import pytest
from conftest import REPO

from mosaic_hpc.config import load_config
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.data.configurations import paper_configurations
from mosaic_hpc.evaluation.metrics import evaluate
from mosaic_hpc.evaluation.predictor import load_run
from mosaic_hpc.training.runner import run_training


def _losses(run_dir, key="loss/total"):
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if key in rec:
            out[rec["step"]] = rec[key]
    return out


def test_tiny_model_beats_the_mean_on_masked_modalities(tiny_run_dir, toy_catalog_dir):
    predictor = load_run(tiny_run_dir)
    test = Catalog.open(toy_catalog_dir, "test")
    lsst_only = [c for c in paper_configurations(predictor.schema) if c.name == "lsst_only"]
    (res,) = evaluate(predictor, test, lsst_only)
    truth = test.read_all()
    train_mean = Catalog.open(toy_catalog_dir, "train").stats.mean
    for key, name, col in [("log10_stellar_mass", "scalars", 2), ("sed", "sed", None)]:
        x = truth[name] if col is None else truth[name][:, col]
        mu = train_mean[name] if col is None else train_mean[name][col]
        baseline = float(np.nanmean(np.abs(x - mu)))
        assert res.mae[key] < 0.5 * baseline, (key, res.mae[key], baseline)


def test_training_loss_goes_down(tiny_run_dir):
    losses = _losses(tiny_run_dir)
    steps = sorted(losses)
    assert np.mean([losses[s] for s in steps[-3:]]) < 0.6 * np.mean([losses[s] for s in steps[:3]])


def test_resume_reproduces_the_uninterrupted_run(tmp_path, toy_catalog_dir):
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        {"train.max_steps": 40, "train.log_every": 1, "train.save_every": 20, "train.eval_every": 0},
    )
    full, part = tmp_path / "full", tmp_path / "part"
    run_training(cfg, toy_catalog_dir, full, resume="none")
    first = run_training(cfg, toy_catalog_dir, part, resume="none", max_steps=20)
    assert first.steps == 20 and first.last_checkpoint.name == "step_00000020"
    second = run_training(cfg, toy_catalog_dir, part, resume="auto")
    assert second.steps == 40
    a, b = _losses(full), _losses(part)
    for step in range(21, 41):
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-7), step


def test_checkpoints_are_pruned_and_latest_points_to_a_complete_one(tmp_path, toy_catalog_dir):
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        {"train.max_steps": 50, "train.save_every": 10, "train.keep_last": 2, "train.eval_every": 0},
    )
    run_training(cfg, toy_catalog_dir, tmp_path / "r", resume="none")
    ckpts = tmp_path / "r" / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step_*")) == ["step_00000040", "step_00000050"]
    assert (ckpts / "latest").read_text() == "step_00000050"
    assert not list(ckpts.glob(".tmp-*"))
    for f in ("model.pt", "engine.pt", "client_state.json", "config.yaml", "schema.json", "normalization.json"):
        assert (ckpts / "step_00000050" / f).is_file(), f


def test_predict_returns_physical_units(tiny_run_dir, toy_catalog_dir):
    predictor = load_run(tiny_run_dir)
    truth = Catalog.open(toy_catalog_dir, "test").read(0, 200)
    pred = predictor.predict({"lsst": truth["lsst"], "spherex": truth["spherex"]})
    assert set(pred.values) == set(predictor.schema.names)
    assert pred.sigma is None
    # given values are reconstructed in AB mag; unseen ones land in the catalog's physical range
    spread = np.nanstd(truth["lsst"])  # a few mag; normalised-unit output would be off by ~20 mag
    assert np.median(np.abs(pred.values["lsst"] - truth["lsst"])) < 0.25 * spread
    assert pred.given["lsst"].all() and not pred.given["sed"].any()
    for name in ("scalars", "sed", "sfh"):
        lo, hi = np.nanpercentile(truth[name], [0.5, 99.5], axis=0)
        inside = (pred.values[name] >= lo - 0.5 * (hi - lo)) & (pred.values[name] <= hi + 0.5 * (hi - lo))
        scored = ~np.isnan(truth[name]) & np.isfinite(lo) & np.isfinite(hi)  # SFH after t_obs is undefined
        assert inside[scored].mean() > 0.95, name
    z_err = np.abs(pred.values["scalars"][:, 0] - truth["scalars"][:, 0])
    assert np.median(z_err) < np.median(np.abs(truth["scalars"][:, 0] - truth["scalars"][:, 0].mean()))


def test_predict_rejects_bad_inputs(tiny_run_dir):
    predictor = load_run(tiny_run_dir)
    with pytest.raises(ValueError, match="unknown modality 'ugriz'"):
        predictor.predict({"ugriz": np.zeros((2, 5))})
    with pytest.raises(ValueError, match=r"input 'lsst' has shape \(2, 5\), expected \[N, 6\]"):
        predictor.predict({"lsst": np.zeros((2, 5))})
    with pytest.raises(ValueError, match="no input given"):
        predictor.predict({})


def test_gaussian_heads_give_physical_sigma(tmp_path, toy_catalog_dir):
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        {"model.gaussian_heads": True, "model.mask_embedding": True, "train.max_steps": 60, "train.eval_every": 0},
    )
    run_training(cfg, toy_catalog_dir, tmp_path / "g", resume="none")
    predictor = load_run(tmp_path / "g")
    truth = Catalog.open(toy_catalog_dir, "test").read(0, 64)
    pred = predictor.predict({"lsst": truth["lsst"]})
    for name in predictor.schema.names:
        s = pred.sigma[name]
        assert s.shape == truth[name].shape and np.isfinite(s).all() and (s > 0).all()
    # sigma is scaled by the modality's std: the SED's is in log10 Jy, not normalised units
    std = predictor.stats.std["sed"][0]
    assert 0.01 * std < np.median(pred.sigma["sed"]) < 10 * std


def test_compiled_training_matches_eager_and_saves_eager_checkpoints(tmp_path, toy_catalog_dir):
    """train.compile changes speed, not results: same losses, and checkpoints load without it."""
    overrides = {"train.max_steps": 6, "train.log_every": 1, "train.save_every": 0, "train.eval_every": 0}
    eager, compiled = tmp_path / "eager", tmp_path / "compiled"
    run_training(load_config(REPO / "configs" / "tiny.yaml", overrides), toy_catalog_dir, eager, resume="none")
    cfg = load_config(REPO / "configs" / "tiny.yaml", {**overrides, "train.compile": True})
    run_training(cfg, toy_catalog_dir, compiled, resume="none")
    a, b = _losses(eager), _losses(compiled)
    assert sorted(a) == sorted(b) == list(range(1, 7))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4), step
    predictor = load_run(compiled)  # an eager model: the state_dict keys carry no "_orig_mod."
    truth = Catalog.open(toy_catalog_dir, "test").read(0, 8)
    assert np.isfinite(predictor.predict({"lsst": truth["lsst"]}).values["scalars"]).all()
