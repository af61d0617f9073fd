"""make_batch and gather_batch against the plain numpy expressions they replace, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from toy_catalog import toy_rows, toy_schema

from mosaic_hpc.config import MaskConfig
from mosaic_hpc.data.batch import gather_batch, make_batch
from mosaic_hpc.data.masker import HierarchicalMasker
from mosaic_hpc.data.normalization import NormStats

N = 700
# 3e38 / std < 1 overflows to inf on purpose (a value the reader's range check must see as inf)
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


def reference_batch(raw, row_ids, stats, hidden) -> dict[str, dict[str, np.ndarray]]:
    """The definition: z = normalize(float32 x); valid = ~isnan(z); targets = where(valid, z, 0); hidden |= ~valid;
    absent = ~valid & ~hidden (before the |=)."""
    out: dict[str, dict[str, np.ndarray]] = {"targets": {}, "valid": {}, "hidden": {}, "absent": {}}
    for name, x in raw.items():
        z = stats.normalize(name, np.asarray(x, dtype=np.float32))
        v = ~np.isnan(z)
        out["targets"][name] = np.where(v, z, np.float32(0.0)).astype(np.float32, copy=False)
        out["valid"][name] = v
        h = np.zeros(v.shape, dtype=bool) if hidden is None else np.asarray(hidden[name], dtype=bool)
        out["hidden"][name] = h | ~v
        out["absent"][name] = ~v & ~h  # missing, and the mask did not hide it
    return out


def assert_same(batch, expect, row_ids) -> None:
    for field in ("targets", "valid", "hidden", "absent"):
        got = getattr(batch, field)
        assert list(got) == list(expect[field])
        for name, e in expect[field].items():
            g = got[name]
            assert g.dtype == e.dtype and g.shape == e.shape and g.flags.c_contiguous, (field, name)
            assert g.tobytes() == e.tobytes(), (field, name)  # bit for bit, signed zeros included
    assert batch.row_ids.dtype == np.int64 and np.array_equal(batch.row_ids, row_ids)


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    """Toy rows with every awkward value: NaN (whole rows too), +-inf, huge, negative zero, denormals."""
    rows = {k: v.astype(np.float32) for k, v in toy_rows(N, np.random.default_rng(3)).items()}
    rows["sed"][5, 7] = np.inf
    rows["sed"][6, 0] = -np.inf
    rows["spherex"][9] = np.nan
    rows["lsst"][10, 2] = 3e38
    rows["lsst"][11, 3] = -0.0
    rows["scalars"][12, 1] = np.nan
    rows["scalars"][13, 0] = 1e-42
    return rows


@pytest.fixture(scope="module", params=["global", "per_bin"])
def stats(request, raw) -> NormStats:
    rng = np.random.default_rng(4)
    if request.param == "global":
        mean = {k: np.full(v.shape[1], float(np.nanmedian(v))) for k, v in raw.items()}
        std = {k: np.full(v.shape[1], 1.7) for k, v in raw.items()}
    else:
        mean = {k: rng.normal(size=v.shape[1]) * 5 for k, v in raw.items()}
        std = {k: rng.uniform(0.01, 9.0, v.shape[1]) for k, v in raw.items()}
    return NormStats(mean=mean, std=std, modes={k: request.param for k in raw})


@pytest.fixture(scope="module")
def hidden() -> dict[str, np.ndarray]:
    return HierarchicalMasker(toy_schema(), MaskConfig(), seed=1)(np.arange(N), 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_make_batch_matches_the_definition_and_leaves_its_inputs_alone(raw, stats, hidden, dtype):
    x = {k: v.astype(dtype) for k, v in raw.items()}
    if dtype == np.float64:  # values that round differently to float32 than they subtract in float64
        x = {k: v + np.random.default_rng(0).normal(size=v.shape) * 1e-7 for k, v in x.items()}
    before = {k: (v.copy(), hidden[k].copy()) for k, v in x.items()}
    ids = np.arange(100, 100 + N)
    batch = make_batch(x, ids, stats, hidden)
    expect = reference_batch(x, ids, stats, hidden)
    assert_same(batch, expect, ids)
    for k, (v, h) in before.items():
        assert np.array_equal(x[k], v, equal_nan=True) and np.array_equal(hidden[k], h)


def test_make_batch_with_a_broadcast_hidden_mask(raw, stats):
    hidden = {k: np.arange(v.shape[1])[None, :] % 2 == 0 for k, v in raw.items()}  # [1, L]
    batch = make_batch(raw, np.arange(N), stats, hidden)
    assert_same(batch, reference_batch(raw, np.arange(N), stats, hidden), np.arange(N))


@pytest.mark.parametrize("masked", [True, False])
def test_gather_batch_matches_make_batch_of_the_gathered_rows(raw, stats, hidden, masked):
    rows = np.random.default_rng(5).permutation(N)[:300]
    rows[:3] = [5, 9, 12]  # rows holding inf, an all-NaN vector and a NaN scalar
    ids = rows * 3 + 1
    h = {k: v[:300] for k, v in hidden.items()} if masked else None
    batch = gather_batch(raw, rows, ids, stats, h)
    assert_same(batch, reference_batch({k: v[rows] for k, v in raw.items()}, ids, stats, h), ids)


def test_gather_batch_keeps_indexing_semantics(raw, stats):
    """Negative indices and other dtypes take the plain indexing path; bad indices still raise."""
    rows = np.array([-1, 0, -N, 3])
    x64 = {k: v.astype(np.float64) for k, v in raw.items()}
    ids = np.arange(4)
    for data in (raw, x64):
        expect = reference_batch({k: v[rows] for k, v in data.items()}, ids, stats, None)
        assert_same(gather_batch(data, rows, ids, stats, None), expect, ids)
    for bad in ([0, N], [-N - 1]):
        with pytest.raises(IndexError):
            gather_batch(raw, np.array(bad), np.arange(len(bad)), stats, None)


def test_empty_batch(raw, stats):
    batch = gather_batch(raw, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), stats, None)
    assert batch.size == 0
    assert all(batch.targets[k].shape == (0, v.shape[1]) for k, v in raw.items())
