"""Task-specific baselines: fitted on training rows only, scored on exactly MOSAIC's cells."""

import json

import numpy as np
import pytest
from toy_catalog import toy_rows, toy_schema

from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.data.configurations import paper_configurations, parse_configuration
from mosaic_hpc.evaluation.baselines import BaselineSettings, GivenFeatures, knn_predict, predict_baselines
from mosaic_hpc.evaluation.metrics import evaluate, read_fit_rows, score_values, write_table1
from mosaic_hpc.evaluation.predictor import load_run

SCHEMA = toy_schema()
FAST = BaselineSettings(n_trees=10, knn_k=5)


def _rows(n: int, seed: int) -> dict[str, np.ndarray]:
    return toy_rows(n, np.random.default_rng(seed))


def test_predictions_depend_on_the_training_rows_and_the_scored_rows_given_values_only():
    fit, rows = _rows(600, 0), _rows(200, 1)
    cfg = parse_configuration("given=lsst", SCHEMA)
    a = predict_baselines(cfg, SCHEMA, fit, rows, FAST)
    # scramble everything the configuration hides in the scored rows: nothing may change
    leaked = {k: v.copy() for k, v in rows.items()}
    leaked["scalars"][:] = 1e6
    for name in ("spherex", "sfh", "sed"):
        leaked[name][:] = -1e6
    b = predict_baselines(cfg, SCHEMA, fit, leaked, FAST)
    for name in SCHEMA.names:
        np.testing.assert_array_equal(a.values[name], b.values[name])
    # the training rows' targets do drive the predictions
    shifted = {k: v.copy() for k, v in fit.items()}
    shifted["scalars"][:, 0] += 5.0
    c = predict_baselines(cfg, SCHEMA, shifted, rows, FAST)
    shift = c.values["scalars"][:, 0] - a.values["scalars"][:, 0]
    assert np.median(shift) == pytest.approx(5.0, abs=1e-6) and np.abs(shift - 5.0).max() < 0.2  # (split ties)


def test_given_values_are_copied_and_scored_cells_match_the_prediction_convention():
    fit, rows = _rows(400, 2), _rows(100, 3)
    cfg = parse_configuration("given=lsst,sfh[t<10Gyr]", SCHEMA)
    base = predict_baselines(cfg, SCHEMA, fit, rows, FAST)
    g = cfg.given_mask(SCHEMA)
    np.testing.assert_array_equal(base.values["lsst"], rows["lsst"])
    np.testing.assert_array_equal(base.values["sfh"][:, g["sfh"]], rows["sfh"][:, g["sfh"]])
    never = np.isnan(fit["sfh"]).all(axis=0)  # bins no training galaxy has (and no scored one)
    assert never.any() and np.isnan(rows["sfh"][:, never]).all()
    assert not np.isnan(base.values["sfh"][:, ~g["sfh"] & ~never]).any()  # a prediction for every other bin
    _, counts, _ = score_values(base.values, base.given, rows, SCHEMA)
    hidden_defined = (~g["sfh"][None, :] & ~np.isnan(rows["sfh"])).sum()
    assert counts["sfh"] == hidden_defined and counts["lsst"] == 0 and counts["redshift"] == len(rows["lsst"])


def test_missing_given_values_are_flagged_from_the_fitting_rows():
    fit = _rows(300, 4)
    cfg = parse_configuration("given=sfh", SCHEMA)
    feats = GivenFeatures(cfg, SCHEMA, fit)
    x = feats(fit)
    n_flagged = int(np.isnan(fit["sfh"]).any(axis=0).sum())
    assert n_flagged > 0 and x.shape == (300, SCHEMA["sfh"].length + n_flagged)
    assert not np.isnan(x).any()
    np.testing.assert_array_equal(x[:, SCHEMA["sfh"].length :], np.isnan(fit["sfh"][:, feats.flagged]))


def test_knn_skips_missing_neighbour_values_and_falls_back_to_the_mean():
    x_fit = np.array([[0.0], [1.0], [10.0]])
    y_fit = np.array([[1.0, np.nan], [3.0, np.nan], [5.0, 7.0]])
    pred = knn_predict(x_fit, y_fit, np.array([[0.5]]), k=2)
    assert pred[0, 0] == pytest.approx(2.0)  # equal distances: the plain mean of 1 and 3
    assert pred[0, 1] == pytest.approx(7.0)  # both neighbours lack it: the fitting rows' mean


def test_knn_predicts_a_bin_no_fitting_row_has_from_the_nearest_bin():
    # a subsample can miss the last SFH bin of the lowest-redshift scored galaxy: the baseline
    # must still predict it, or the whole cell's MAE is NaN (seen on the 200,000-galaxy mock)
    x_fit = np.array([[0.0], [1.0]])
    y_fit = np.array([[1.0, 2.0, np.nan], [3.0, np.nan, np.nan]])
    pred = knn_predict(x_fit, y_fit, np.array([[0.5]]), k=2)
    assert np.isfinite(pred).all()
    assert pred[0, 2] == pytest.approx(2.0)  # the nearest defined bin's fitting mean


def test_fit_rows_are_a_seeded_subsample_above_the_budget(toy_catalog_dir):
    train = Catalog.open(toy_catalog_dir, "train")
    small = BaselineSettings(max_fit_rows=500, seed=1)
    a, b = read_fit_rows(train, small), read_fit_rows(train, small)
    assert len(a["scalars"]) == 500
    np.testing.assert_array_equal(a["scalars"], b["scalars"])
    everything = train.read(0, train.n_rows)["scalars"]
    assert np.isin(a["scalars"][:, 0], everything[:, 0]).all()
    assert len(read_fit_rows(train, BaselineSettings(max_fit_rows=10**6))["scalars"]) == train.n_rows


def test_settings_are_checked():
    with pytest.raises(ValueError, match="n_trees must be >= 1"):
        BaselineSettings(n_trees=0)
    with pytest.raises(ValueError, match="max_fit_rows must be >= 1"):
        BaselineSettings(max_fit_rows=-5)


def test_evaluate_puts_baselines_beside_every_cell(tiny_run_dir, toy_catalog_dir, tmp_path):
    predictor = load_run(tiny_run_dir)
    test, train = Catalog.open(toy_catalog_dir, "test"), Catalog.open(toy_catalog_dir, "train")
    configs = paper_configurations(predictor.schema)
    results = evaluate(predictor, test, configs, max_rows=200, fit_catalog=train, baselines=FAST)
    for r in results:
        assert set(r.baseline_mae) == set(r.mae)
        for key, n in r.counts.items():
            if n:
                assert np.isfinite(r.baseline_mae[key]) and r.ratio(key) == pytest.approx(
                    r.mae[key] / r.baseline_mae[key]
                )
            else:
                assert np.isnan(r.baseline_mae[key])
    lsst = next(r for r in results if r.name == "lsst_only")
    assert lsst.baseline_photoz["n"] == lsst.photoz["n"] == 200
    md, js = write_table1(results, {k: "" for k in results[0].mae}, tmp_path, FAST)
    payload = json.loads(js.read_text())
    assert payload["baselines"]["n_trees"] == 10
    first = payload["configurations"][0]
    assert set(first) >= {"mae", "baseline_mae", "ratio"}
    assert " / " in md.read_text() and "(" in md.read_text()
    alone = evaluate(predictor, test, configs[:1], max_rows=50)
    assert (
        alone[0].baseline_mae == {}
        and " / " not in write_table1(alone, {k: "" for k in alone[0].mae}, tmp_path)[0].read_text()
    )
