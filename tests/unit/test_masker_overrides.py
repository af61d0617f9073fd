"""masking.p_modality_overrides: per-modality whole-mask probabilities; empty = paper masks, bit for bit."""

import numpy as np
import pytest
from toy_catalog import toy_schema

from mosaic_hpc.config import MaskConfig, config_from_dict
from mosaic_hpc.data.masker import HierarchicalMasker

N = 20_000


def test_empty_overrides_reproduce_the_paper_masks_exactly():
    a = HierarchicalMasker(toy_schema(), MaskConfig(), seed=5)(np.arange(1000), epoch=2)
    b = HierarchicalMasker(toy_schema(), MaskConfig(p_modality_overrides={}), seed=5)(np.arange(1000), epoch=2)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_overrides_set_the_whole_modality_rate_of_the_named_modalities_only():
    cfg = MaskConfig(p_modality_overrides={"scalars": 0.9, "sed": 0.0})
    masks = HierarchicalMasker(toy_schema(), cfg, seed=1)(np.arange(N), epoch=0)
    se = 3 * np.sqrt(0.25 / N)  # 3 standard errors of a rate near 0.5
    # scalars: hidden whole (0.9) or else each of 3 columns with p_scalar = 0.5 -> all hidden 0.9 + 0.1/8
    assert masks["scalars"].all(axis=1).mean() == pytest.approx(0.9 + 0.1 / 8, abs=se)
    assert masks["scalars"][:, 0].mean() == pytest.approx(0.9 + 0.1 * 0.5, abs=se)
    assert not masks["sed"].all(axis=1).any()  # never whole; spans still hide ceil(0.2 L) at most
    assert masks["sed"].any(axis=1).all()
    assert masks["lsst"].all(axis=1).mean() == pytest.approx(0.5, abs=se + 0.01)  # default (+ spans of all 6: rare)


def test_overrides_are_checked():
    with pytest.raises(ValueError, match="masking.p_modality_overrides.lsst must be in"):
        MaskConfig(p_modality_overrides={"lsst": 1.5})
    with pytest.raises(ValueError, match=r"names modalities \['spectra'\] not in the catalog"):
        HierarchicalMasker(toy_schema(), MaskConfig(p_modality_overrides={"spectra": 0.5}))
    cfg = config_from_dict({"masking": {"p_modality_overrides": {"scalars": 0.8}}})
    assert cfg.masking.modality_probability("scalars") == 0.8 and cfg.masking.modality_probability("lsst") == 0.5
