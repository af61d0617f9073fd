"""Presets and evaluation configurations fit any schema (issue 17, points 1 and 3): on a catalog of
redshift + ugrizy, every shipped preset builds its model and masker after its settings for absent
modalities are dropped (with one info line), and the paper's configurations that need absent
modalities or columns are skipped with a note instead of a KeyError."""

from __future__ import annotations

import logging

import pytest
from conftest import REPO
from toy_catalog import toy_schema

from mosaic_hpc.config import load_config
from mosaic_hpc.data.configurations import PAPER_CONFIGURATIONS, expressible, paper_configurations
from mosaic_hpc.data.masker import HierarchicalMasker
from mosaic_hpc.model import build_model
from mosaic_hpc.schema import CatalogSchema, ModalitySpec
from mosaic_hpc.training.config_fit import fit_and_report, fit_config_to_schema

MAGNITUDES_ONLY = CatalogSchema(
    (ModalitySpec("scalars", "scalars", 1, "", columns=("redshift",)), toy_schema()["lsst"])
)
PRESETS = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))


def test_every_preset_is_tested():
    assert {"tiny", "small", "base", "paper", "photoz_dc2"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_builds_on_a_magnitudes_only_catalog(preset):
    cfg = load_config(REPO / "configs" / f"{preset}.yaml")
    fitted, dropped = fit_config_to_schema(cfg, MAGNITUDES_ONLY)
    for section, key in (("model", "patch_size"), ("masking", "p_modality_overrides")):
        before, after = getattr(getattr(cfg, section), key), getattr(getattr(fitted, section), key)
        assert set(after) <= set(MAGNITUDES_ONLY.names)
        assert after == {n: v for n, v in before.items() if n in MAGNITUDES_ONLY}  # kept settings unchanged
        assert dropped.get(f"{section}.{key}", []) == sorted(set(before) - set(after))
    build_model(MAGNITUDES_ONLY, fitted.model, fitted.masking.mask_value)
    HierarchicalMasker(MAGNITUDES_ONLY, fitted.masking)
    # as shipped, the preset stopped the run on this catalog wherever something had to be dropped
    if "model.patch_size" in dropped:
        with pytest.raises(ValueError, match="model.patch_size names modalities"):
            build_model(MAGNITUDES_ONLY, cfg.model, cfg.masking.mask_value)
    if "masking.p_modality_overrides" in dropped:
        with pytest.raises(ValueError, match="masking.p_modality_overrides names modalities"):
            HierarchicalMasker(MAGNITUDES_ONLY, cfg.masking)


def test_fitting_logs_one_line_naming_what_went(caplog):
    caplog.set_level(logging.INFO, logger="mosaic_hpc.train")
    fit_and_report(load_config(REPO / "configs" / "photoz_dc2.yaml"), MAGNITUDES_ONLY)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "config photoz_dc2: dropped settings for modalities not in this catalog ['scalars', 'lsst']: "
        "masking.p_modality_overrides[lsst_err]"
    ]
    caplog.clear()
    fit_and_report(
        load_config(REPO / "configs" / "photoz_dc2.yaml", {"masking.p_modality_overrides": {}}), MAGNITUDES_ONLY
    )
    assert not caplog.records  # nothing dropped, nothing said


def test_paper_configurations_skip_what_the_catalog_lacks_with_a_reason():
    notes: list[str] = []
    assert [c.name for c in paper_configurations(MAGNITUDES_ONLY, notes)] == ["lsst_only"]
    assert notes == [
        "lsst_spherex: no modality 'spherex' in ['scalars', 'lsst']",
        "lsst_sfh_0_10gyr: no modality 'sfh' in ['scalars', 'lsst']",
        "lsst_sfh_10_13.8gyr: no modality 'sfh' in ['scalars', 'lsst']",
        "stellar_mass_only: modality 'scalars' has no column 'log10_stellar_mass'; columns: ['redshift']",
    ]
    ok, skipped = expressible(PAPER_CONFIGURATIONS, MAGNITUDES_ONLY)
    assert len(ok) + len(skipped) == 5
    with pytest.raises(ValueError, match="no modality 'spherex'"):  # a ValueError, not the KeyError of issue 17
        PAPER_CONFIGURATIONS[1].given_mask(MAGNITUDES_ONLY)
