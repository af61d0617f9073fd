"""Catalog format: round trips, statistics on training rows, and one clear error per bad input."""

import os
import shutil

import h5py
import numpy as np
import pytest
from toy_catalog import toy_rows, toy_schema, write_toy_catalog

from mosaic_hpc.data.catalog import Catalog, CatalogError, CatalogWriter, write_catalog
from mosaic_hpc.data.normalization import RunningStats


@pytest.fixture()
def cat_dir(tmp_path):
    return write_toy_catalog(tmp_path / "cat", n_train=300, n_test=100)


def test_schema_and_lengths_come_from_the_file(cat_dir):
    cat = Catalog.open(cat_dir, "train")
    assert cat.schema.names == ("scalars", "lsst", "spherex", "sfh", "sed")
    assert cat.schema.lengths == {"scalars": 3, "lsst": 6, "spherex": 12, "sfh": 20, "sed": 40}
    assert cat.schema["scalars"].columns == ("redshift", "log10_halo_mass", "log10_stellar_mass")
    assert cat.schema["sfh"].axis_quantity == "cosmic_time" and cat.schema["sfh"].axis_unit == "Gyr"
    assert cat.n_rows == 300


def test_stats_come_from_training_rows_only(cat_dir):
    train, test = Catalog.open(cat_dir, "train"), Catalog.open(cat_dir, "test")
    rows = train.read_all()
    np.testing.assert_allclose(train.stats.mean["scalars"], np.nanmean(rows["scalars"], axis=0), rtol=1e-5)
    # vectors: one global mean/std (paper Sec. 2), NaN ignored
    np.testing.assert_allclose(train.stats.mean["sfh"], np.nanmean(rows["sfh"]), rtol=1e-5)
    np.testing.assert_allclose(train.stats.std["sed"], np.nanstd(rows["sed"]), rtol=1e-4)
    for name in train.schema.names:  # test split carries the training statistics
        np.testing.assert_array_equal(test.stats.mean[name], train.stats.mean[name])


def test_normalisation_round_trip(cat_dir):
    cat = Catalog.open(cat_dir, "train")
    rows = cat.read(0, 50)
    for name, x in rows.items():
        z = cat.stats.normalize(name, x)
        back = cat.stats.denormalize(name, z)
        np.testing.assert_allclose(back, x, rtol=1e-5, atol=1e-4)
        np.testing.assert_array_equal(np.isnan(back), np.isnan(x))
    import torch

    t = torch.from_numpy(rows["sed"])
    np.testing.assert_allclose(
        cat.stats.denormalize("sed", cat.stats.normalize("sed", t)).numpy(), rows["sed"], atol=1e-4
    )


def test_running_stats_merge_equals_one_pass():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(1000, 4))
    x[rng.random(x.shape) < 0.1] = np.nan
    a, b, whole = RunningStats(4), RunningStats(4), RunningStats(4)
    a.update(x[:300])
    b.update(x[300:])
    a.merge(b)
    whole.update(x)
    np.testing.assert_allclose(a.mean, np.nanmean(x, axis=0))
    np.testing.assert_allclose(a.m2 / a.count, np.nanvar(x, axis=0))
    np.testing.assert_allclose(whole.mean, a.mean)


def test_read_spans_shards(tmp_path):
    rng = np.random.default_rng(1)
    schema = toy_schema()
    parts = [toy_rows(n, rng) for n in (70, 50)]
    stats = None
    for i, rows in enumerate(parts):
        from mosaic_hpc.data.catalog import default_norm_modes, stats_from_running

        w = CatalogWriter(tmp_path / "c" / "train" / f"shard-{i:05d}.h5", schema)
        w.append(rows)
        stats = stats or stats_from_running(w.running, default_norm_modes(schema))
        w.close(stats)
    cat = Catalog.open(tmp_path / "c", "train")
    assert cat.n_rows == 120
    got = cat.read(60, 80)["lsst"]
    want = np.concatenate([parts[0]["lsst"][60:], parts[1]["lsst"][:10]]).astype(np.float32)
    np.testing.assert_array_equal(got, want)


# --- bad input: each gets one clear error naming the file and the field ----------------------


def _copy(cat_dir, tmp_path):
    dst = tmp_path / "bad.h5"
    shutil.copy(cat_dir / "train.h5", dst)
    return dst


def _replace(path, name, data):
    """Rewrite /modalities/<name> with ``data`` but the original attributes."""
    with h5py.File(path, "r+") as f:
        attrs = dict(f[f"modalities/{name}"].attrs)
        del f[f"modalities/{name}"]
        f.create_dataset(f"modalities/{name}", data=data).attrs.update(attrs)


def _expect(path, field, match):
    with pytest.raises(CatalogError, match=match) as info:
        Catalog([path])
    assert str(path) in str(info.value)
    assert field in str(info.value)


def test_missing_group(cat_dir, tmp_path):
    p = _copy(cat_dir, tmp_path)
    with h5py.File(p, "r+") as f:
        del f["modalities"]
    _expect(p, "/modalities", "missing group")


def test_missing_dataset_axis(cat_dir, tmp_path):
    p = _copy(cat_dir, tmp_path)
    with h5py.File(p, "r+") as f:
        del f["axes/sfh"]
    _expect(p, "/axes/sfh", "missing dataset")


def test_wrong_rank(cat_dir, tmp_path):
    p = _copy(cat_dir, tmp_path)
    _replace(p, "lsst", np.zeros(300, np.float32))
    _expect(p, "/modalities/lsst", "rank 1")


def test_wrong_dtype(cat_dir, tmp_path):
    p = _copy(cat_dir, tmp_path)
    _replace(p, "lsst", np.zeros((300, 6), np.int32))
    _expect(p, "/modalities/lsst", "dtype int32")


def test_row_counts_disagree(cat_dir, tmp_path):
    p = _copy(cat_dir, tmp_path)
    _replace(p, "sed", np.zeros((299, 40), np.float32))
    _expect(p, "/modalities/sed", "299 rows")


def test_missing_stats(cat_dir, tmp_path):
    p = _copy(cat_dir, tmp_path)
    with h5py.File(p, "r+") as f:
        del f["stats/sfh/std"]
    _expect(p, "/stats/sfh/std", "missing dataset")


def test_zero_std(cat_dir, tmp_path):
    p = _copy(cat_dir, tmp_path)
    with h5py.File(p, "r+") as f:
        f["stats/lsst/std"][2] = 0.0
    _expect(p, "/stats/lsst/std", "zero or negative std")


def test_not_hdf5(tmp_path):
    p = tmp_path / "fake.h5"
    p.write_text("galaxy,redshift\n1,0.5\n")
    _expect(p, "file", "not an HDF5 file")


def test_truncated(cat_dir, tmp_path):
    p = _copy(cat_dir, tmp_path)
    os.truncate(p, p.stat().st_size // 2)
    with pytest.raises(CatalogError, match="truncated|corrupt|failed") as info:
        cat = Catalog([p])
        cat.read_all()
    assert str(p) in str(info.value)


def test_missing_split(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CatalogError, match="no train.h5"):
        Catalog.open(tmp_path / "empty", "train")


def test_writer_is_atomic_on_error(tmp_path):
    schema = toy_schema()
    rows = toy_rows(10, np.random.default_rng(0))
    rows["lsst"] = rows["lsst"][:, :5]  # wrong shape
    with pytest.raises(ValueError, match="lsst"):
        write_catalog(tmp_path / "x.h5", schema, rows)
    assert not (tmp_path / "x.h5").exists()
    assert not (tmp_path / "x.h5.tmp").exists()


def test_constant_column_cannot_be_normalised(tmp_path):
    rows = toy_rows(20, np.random.default_rng(0))
    rows["scalars"][:, 1] = 12.0
    with pytest.raises(ValueError, match="scalars: zero standard deviation in columns \\[1\\]"):
        write_catalog(tmp_path / "x.h5", toy_schema(), rows)
    assert not (tmp_path / "x.h5").exists()
