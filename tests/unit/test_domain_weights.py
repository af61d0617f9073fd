"""Density-ratio resampling against distributions with a known ratio."""

from __future__ import annotations

import numpy as np
import pytest

from mosaic_hpc.data.domain_weights import density_ratio_resample


def test_resampled_source_follows_the_target():
    rng = np.random.default_rng(0)
    source = rng.normal(0.0, 1.0, (6000, 2))
    target = rng.normal([0.8, -0.5], 0.7, (3000, 2))  # inside the source's support
    res = density_ratio_resample(source, target, seed=1)
    drawn = source[res.index]
    np.testing.assert_allclose(drawn.mean(axis=0), [0.8, -0.5], atol=0.12)
    np.testing.assert_allclose(drawn.std(axis=0), 0.7, atol=0.12)
    assert (
        res.auc > 0.7 and res.weights.mean() == pytest.approx(1.0) and res.weights.max() <= 22.0
    )  # capped at 20, then renormalised
    assert 0.05 < res.effective_fraction < 0.9


def test_same_distribution_gives_flat_weights():
    rng = np.random.default_rng(2)
    res = density_ratio_resample(rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3)), seed=0)
    assert abs(res.auc - 0.5) < 0.05
    assert res.effective_fraction > 0.8


def test_bad_features_are_refused():
    with pytest.raises(ValueError, match="same F"):
        density_ratio_resample(np.zeros((10, 2)), np.zeros((10, 3)))
    bad = np.zeros((10, 2))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        density_ratio_resample(bad, np.zeros((10, 2)))
