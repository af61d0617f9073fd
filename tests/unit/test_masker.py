"""Masking statistics (paper App. A) measured over 10,000 galaxies."""

import math

import numpy as np
import pytest
from toy_catalog import toy_schema

from mosaic_hpc.config import MaskConfig
from mosaic_hpc.data.masker import HierarchicalMasker
from mosaic_hpc.schema import CatalogSchema, ModalitySpec

N = 10_000


def paper_schema() -> CatalogSchema:
    return CatalogSchema(
        (
            ModalitySpec("scalars", "scalars", 3),
            ModalitySpec("lsst", "vector", 6),
            ModalitySpec("spherex", "vector", 102),
            ModalitySpec("sfh", "vector", 117),
            ModalitySpec("sed", "vector", 921),
        )
    )


@pytest.fixture(scope="module")
def masks():
    masker = HierarchicalMasker(paper_schema(), MaskConfig(), seed=3)
    return masker(np.arange(N), epoch=0)


def _runs(row: np.ndarray) -> int:
    return int(row[0]) + int(np.sum(row[1:] & ~row[:-1]))


def test_whole_modality_masked_half_the_time(masks):
    for name, m in masks.items():
        if name == "scalars":
            continue
        assert abs(m.all(axis=1).mean() - 0.5) < 0.02, name


def test_scalar_elements_masked_half_the_time_given_modality_visible(masks):
    # P(element hidden) = 0.5 (whole) + 0.5 * 0.5 (element) = 0.75 overall; among galaxies whose
    # scalars are not hidden whole (not all hidden), each element is hidden with p = 0.5.
    m = masks["scalars"]
    overall = m.mean(axis=0)
    np.testing.assert_allclose(overall, 0.75, atol=0.02)
    # element-level p from the conditional: P(hidden | modality not whole) = 0.5
    p_elem = (overall - 0.5) / 0.5
    np.testing.assert_allclose(p_elem, 0.5, atol=0.02 / 0.5 * 1.0)


@pytest.mark.parametrize("name,length", [("lsst", 6), ("spherex", 102), ("sfh", 117), ("sed", 921)])
def test_partly_masked_vectors_use_the_span_budget(masks, name, length):
    m = masks[name]
    partial = m[~m.all(axis=1)]
    budget = math.ceil(0.2 * length)
    counts = partial.sum(axis=1)
    assert counts.max() <= budget
    assert counts.min() >= 1
    # overlapping spans make the share a little smaller than the budget, never much smaller
    assert counts.mean() >= 0.8 * budget


@pytest.mark.parametrize("name,length", [("spherex", 102), ("sfh", 117), ("sed", 921)])
def test_masked_values_come_in_contiguous_spans(masks, name, length):
    m = masks[name]
    partial = m[~m.all(axis=1)][:500]
    runs = np.array([_runs(r) for r in partial])
    budget = math.ceil(0.2 * length)
    # i.i.d. masking at this rate would give ~0.8 * budget runs; spans give ~ln(budget) + 1
    assert runs.mean() < 0.1 * budget + 3
    assert runs.mean() < math.log(budget) + 4


def test_masks_depend_only_on_seed_epoch_and_row():
    masker = HierarchicalMasker(toy_schema(), MaskConfig(), seed=1)
    a = masker(np.arange(100), epoch=2)
    b = masker(np.arange(100)[::-1], epoch=2)  # other batch order, same rows
    for k in a:
        np.testing.assert_array_equal(a[k], b[k][::-1])
    c = masker(np.arange(100), epoch=3)
    assert any((a[k] != c[k]).any() for k in a)
    d = HierarchicalMasker(toy_schema(), MaskConfig(), seed=2)(np.arange(100), epoch=2)
    assert any((a[k] != d[k]).any() for k in a)
