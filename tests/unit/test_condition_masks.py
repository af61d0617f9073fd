"""masking.p_condition / p_partial: condition masks give a random subset of units and hide the rest."""

import itertools

import numpy as np
import pytest
from toy_catalog import toy_schema

from mosaic_hpc.config import MaskConfig
from mosaic_hpc.data import keyed_random
from mosaic_hpc.data.masker import HierarchicalMasker

N = 30_000
SCHEMA = toy_schema()
UNITS = [
    ("scalars", 0),
    ("scalars", 1),
    ("scalars", 2),
    ("lsst", None),
    ("spherex", None),
    ("sfh", None),
    ("sed", None),
]


def _given_units(masks: dict[str, np.ndarray]) -> np.ndarray:
    """[N, U] bool: a unit is given when none of its values is hidden."""
    cols = []
    for name, col in UNITS:
        m = masks[name][:, col] if col is not None else masks[name]
        cols.append(~m if col is not None else ~m.any(axis=1))
    return np.stack(cols, axis=1)


def test_no_condition_share_leaves_the_hierarchical_masks_bit_for_bit():
    rows = np.arange(2000)
    a = HierarchicalMasker(SCHEMA, MaskConfig(), seed=3)(rows, epoch=1)
    b = HierarchicalMasker(SCHEMA, MaskConfig(p_condition=0.0, p_partial=0.7), seed=3)(rows, epoch=1)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_rows_without_a_condition_mask_keep_their_hierarchical_mask():
    rows = np.arange(5000)
    plain = HierarchicalMasker(SCHEMA, MaskConfig(), seed=3)(rows, epoch=0)
    masker = HierarchicalMasker(SCHEMA, MaskConfig(p_condition=0.4), seed=3)
    mixed = masker(rows, epoch=0)
    chosen = masker.condition.chosen(keyed_random.row_keys(3, 0, rows))
    assert 0.35 < chosen.mean() < 0.45
    for name in plain:
        np.testing.assert_array_equal(mixed[name][~chosen], plain[name][~chosen])


def test_every_proper_subset_of_units_is_given_and_the_rest_hidden_whole():
    masks = HierarchicalMasker(SCHEMA, MaskConfig(p_condition=1.0), seed=0)(np.arange(N), epoch=0)
    given = _given_units(masks)
    # whole units only: each vector is either fully given or fully hidden
    for name in ("lsst", "spherex", "sfh", "sed"):
        frac = masks[name].mean(axis=1)
        assert set(np.unique(frac)) <= {0.0, 1.0}
    k = given.sum(axis=1)
    assert k.min() == 1 and k.max() == len(UNITS) - 1  # never nothing given, never nothing hidden
    counts = np.bincount(k, minlength=len(UNITS))[1:-1] / N
    np.testing.assert_allclose(counts, 1 / (len(UNITS) - 1), atol=0.01)  # the number given is uniform
    # all 2^7 - 2 subsets occur; within a size they are equally likely
    seen = {tuple(r) for r in given}
    assert len(seen) == 2 ** len(UNITS) - 2
    size2 = [tuple(i in c for i in range(len(UNITS))) for c in itertools.combinations(range(len(UNITS)), 2)]
    freq = np.array([np.mean(np.all(given == np.array(s), axis=1)) for s in size2])
    expected = (1 / 6) / len(size2)
    assert np.all(np.abs(freq - expected) < 5 * np.sqrt(expected / N))


def test_partial_vectors_are_given_on_one_side_of_a_cut():
    masks = HierarchicalMasker(SCHEMA, MaskConfig(p_condition=1.0, p_partial=1.0), seed=1)(np.arange(4000), epoch=0)
    sfh = masks["sfh"]
    given_any = ~sfh.all(axis=1)
    assert given_any.mean() > 0.3
    for row in sfh[given_any][:500]:
        hidden = np.flatnonzero(row)
        assert 0 < len(hidden) < len(row)  # a cut leaves values on both sides
        # one contiguous hidden block touching an end: a prefix or a suffix
        assert np.all(np.diff(hidden) == 1) and (hidden[0] == 0 or hidden[-1] == len(row) - 1)
    starts_hidden = sfh[given_any][:, 0]
    assert 0.4 < starts_hidden.mean() < 0.6  # prefix and suffix equally likely


def test_condition_masks_are_a_function_of_the_row_not_the_batch():
    masker = HierarchicalMasker(SCHEMA, MaskConfig(p_condition=0.5, p_partial=0.5), seed=7)
    whole = masker(np.arange(300), epoch=4)
    part = masker(np.arange(100, 200)[::-1], epoch=4)
    for name in whole:
        np.testing.assert_array_equal(part[name], whole[name][100:200][::-1])


@pytest.mark.parametrize("key", ["p_condition", "p_partial"])
def test_condition_keys_are_checked(key):
    with pytest.raises(ValueError, match=f"masking.{key} must be in"):
        MaskConfig(**{key: 1.5})


def test_max_given_caps_the_number_of_given_units():
    masks = HierarchicalMasker(SCHEMA, MaskConfig(p_condition=1.0, max_given=2), seed=2)(np.arange(N), epoch=0)
    k = _given_units(masks).sum(axis=1)
    assert set(np.unique(k)) == {1, 2}
    assert abs((k == 1).mean() - 0.5) < 0.02


def test_partial_cuts_fall_among_the_defined_values_when_validity_is_known():
    n, length = 3000, SCHEMA["sfh"].length
    rng = np.random.default_rng(0)
    t_obs = rng.integers(0, length + 1, n)  # defined up to a per-galaxy epoch, as an SFH
    valid = {name: np.ones((n, SCHEMA[name].length), bool) for name in ("lsst", "spherex", "sed")}
    valid["sfh"] = np.arange(length)[None, :] < t_obs[:, None]
    masker = HierarchicalMasker(SCHEMA, MaskConfig(p_condition=1.0, p_partial=1.0), seed=4)
    assert masker.needs_validity
    masks = masker(np.arange(n), epoch=0, valid=valid)["sfh"]
    given_some = ~masks.all(axis=1)
    split = given_some & masks.any(axis=1)  # given on one side of a cut
    defined = valid["sfh"]
    # every cut leaves defined values on both sides; rows with fewer than two defined are given whole
    assert np.all((defined & ~masks)[split].any(axis=1)) and np.all((defined & masks)[split].any(axis=1))
    assert not split[defined.sum(axis=1) < 2].any()
    assert split[given_some & (defined.sum(axis=1) >= 2)].all()
    # without validity the cut is uniform on the axis, so it often falls past the defined values
    blind = masker(np.arange(n), epoch=0)["sfh"]
    blind_split = ~blind.all(axis=1) & blind.any(axis=1)
    assert (~(defined & blind).any(axis=1) & blind_split).mean() > 0.1


def test_cut_anywhere_trains_the_fixed_cuts_users_make_past_a_young_galaxys_sfh():
    # "SFH before 10 Gyr given" on a galaxy whose SFH ends at 6 Gyr: the given side holds the
    # whole defined SFH and a missing tail, the hidden side no value. Cuts among the defined
    # values never make that pattern; masking.cut_anywhere makes it for its share of cuts.
    n, length = 6000, SCHEMA["sfh"].length
    t_obs = np.random.default_rng(1).integers(2, length + 1, n)
    valid = {name: np.ones((n, SCHEMA[name].length), bool) for name in ("lsst", "spherex", "sed")}
    valid["sfh"] = np.arange(length)[None, :] < t_obs[:, None]
    defined = valid["sfh"]

    def past_the_end(share: float) -> float:
        cfg = MaskConfig(p_condition=1.0, p_partial=1.0, cut_anywhere=share)
        masks = HierarchicalMasker(SCHEMA, cfg, seed=4)(np.arange(n), epoch=0, valid=valid)["sfh"]
        split = ~masks.all(axis=1) & masks.any(axis=1)
        return float((split & ~(defined & masks).any(axis=1)).sum() / split.sum())

    assert past_the_end(0.0) == 0.0
    # half the cuts anywhere; of those, the prefix-given half falls past the end about half the time
    assert 0.08 < past_the_end(0.5) < 0.2
    with pytest.raises(ValueError, match="cut_anywhere"):
        MaskConfig(cut_anywhere=1.5)
