"""Masking statistics (paper App. A) measured over 10,000 galaxies."""

import math

import numpy as np
import pytest
from toy_catalog import toy_schema

from mosaic_hpc.config import MaskConfig
from mosaic_hpc.data import keyed_random
from mosaic_hpc.data.masker import HierarchicalMasker
from mosaic_hpc.schema import CatalogSchema, ModalitySpec, paper_schema

N = 10_000


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


# ------------------------------------------------- the vectorised masker against the rule itself


def reference_masks(schema: CatalogSchema, config: MaskConfig, seed: int, epoch: int, rows) -> dict[str, np.ndarray]:
    """The masking rule of App. A written out row by row, span by span (the spec, slow on purpose).

    Draw numbers (keyed_random): per row, draw k of counter block 0 decides whether modality k is
    hidden whole; modality k owns the block starting at 2**16 (k + 1): scalars draw one number per
    element there, a vector draws (span length, span start) as numbers 2r, 2r + 1 in round r.
    """
    out = {spec.name: np.zeros((len(rows), spec.length), dtype=bool) for spec in schema}
    keys = keyed_random.row_keys(seed, epoch, np.asarray(rows))
    for i in range(len(rows)):
        key = keys[i : i + 1]
        whole = keyed_random.uniform(key, 0, len(schema))[0]
        for k, spec in enumerate(schema):
            block = (1 << 16) * (k + 1)
            row = out[spec.name][i]
            if whole[k] < config.modality_probability(spec.name):
                row[:] = True
            elif spec.is_scalars:
                row[:] = keyed_random.uniform(key, block, spec.length)[0] < config.p_scalar
            else:
                remaining, r = math.ceil(config.span_ratio * spec.length), 0
                while remaining > 0:
                    u_len, u_start = (float(u) for u in keyed_random.uniform(key, block + 2 * r, 2)[0])
                    span = 1 + math.floor(u_len * remaining)  # uniform in 1 .. remaining
                    start = math.floor(u_start * (spec.length - span + 1))  # the span fits in the vector
                    row[start : start + span] = True
                    remaining -= span
                    r += 1
    return out


ODD = CatalogSchema(
    (
        ModalitySpec("a", "vector", 1),
        ModalitySpec("s", "scalars", 5),
        ModalitySpec("b", "vector", 2),
        ModalitySpec("c", "vector", 33),
        ModalitySpec("d", "vector", 1000),
    )
)


@pytest.mark.parametrize(
    "schema,config,seed,epoch,n",
    [
        (paper_schema(), MaskConfig(), 0, 0, 1500),
        (paper_schema(), MaskConfig(), 2**40 + 7, 5, 500),
        (paper_schema(), MaskConfig(p_modality_overrides={"scalars": 0.9, "sed": 0.0, "lsst": 1.0}), 3, 1, 500),
        (paper_schema(), MaskConfig(p_modality=0.2, p_scalar=0.9, span_ratio=0.55), -5, 2, 400),
        (toy_schema(), MaskConfig(span_ratio=1.0), 11, 0, 600),
        (ODD, MaskConfig(span_ratio=0.37, p_modality=0.3), 1, 7, 400),
        (ODD, MaskConfig(span_ratio=0.0), 4, 0, 200),
        (ODD, MaskConfig(p_modality=0.0, span_ratio=0.99), 9, 3, 300),
    ],
)
def test_masks_follow_the_rule_row_by_row(schema, config, seed, epoch, n):
    rows = np.random.default_rng(seed & 0xFFFF).choice(10**9, n, replace=False)
    got = HierarchicalMasker(schema, config, seed=seed)(rows, epoch)
    expect = reference_masks(schema, config, seed, epoch, rows)
    assert list(got) == list(schema.names)
    for name in schema.names:
        assert got[name].dtype == bool and got[name].flags.c_contiguous
        np.testing.assert_array_equal(got[name], expect[name], err_msg=name)


def test_any_subset_of_rows_gets_the_same_masks():
    """Rows finish their spans in different rounds; a row's mask must not depend on its batch mates."""
    masker = HierarchicalMasker(paper_schema(), MaskConfig(), seed=2)
    rows = np.arange(5000, 7000)
    full = masker(rows, 3)
    for part in (rows[:1], rows[::7], rows[1999:], np.zeros(0, dtype=np.int64)):
        sub = masker(part, 3)
        for name in full:
            assert sub[name].shape == (len(part), full[name].shape[1])
            np.testing.assert_array_equal(sub[name], full[name][part - 5000])


def test_uniform_at_draws_each_keys_own_counter():
    keys = keyed_random.row_keys(7, 2, np.arange(300))
    counters = np.random.default_rng(0).integers(0, 2**20, 300)
    got = keyed_random.uniform_at(keys, counters, 3)
    expect = np.concatenate([keyed_random.uniform(keys[i : i + 1], int(c), 3) for i, c in enumerate(counters)])
    np.testing.assert_array_equal(got, expect)
