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


def _single_and_sharded(tmp_path, sizes=(70, 50, 33), chunk_rows=16):
    """The same rows as one file and as a directory of shards (shared statistics)."""
    from mosaic_hpc.data.catalog import default_norm_modes, stats_from_running

    rng = np.random.default_rng(4)
    schema = toy_schema()
    parts = [toy_rows(n, rng) for n in sizes]
    whole = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    with CatalogWriter(tmp_path / "one" / "train.h5", schema, chunk_rows=chunk_rows) as w:
        w.append(whole)
        stats = stats_from_running(w.running, default_norm_modes(schema))
        w.close(stats)
    for i, rows in enumerate(parts):
        with CatalogWriter(tmp_path / "many" / "train" / f"shard-{i:05d}.h5", schema, chunk_rows=chunk_rows) as w:
            w.append(rows)
            w.close(stats)
    return Catalog.open(tmp_path / "one", "train"), Catalog.open(tmp_path / "many", "train"), whole


@pytest.mark.parametrize("sizes", [(70, 50, 33), (70, 0, 50, 33)])  # an empty shard is skipped
def test_sharded_directory_reads_equal_the_single_file(tmp_path, sizes):
    one, many, whole = _single_and_sharded(tmp_path, sizes)
    assert one.n_rows == many.n_rows == 153
    # every kind of range: inside a shard, across one or two shard boundaries, whole split
    for a, b in [(0, 153), (0, 1), (69, 71), (60, 125), (65, 121), (10, 10), (152, 153), (3, 40)]:
        got_one, got_many = one.read(a, b), many.read(a, b)
        assert list(got_one) == list(got_many) == list(one.schema.names)
        for name in one.schema.names:
            want = np.asarray(whole[name][a:b], dtype=np.float32)
            assert got_one[name].dtype == got_many[name].dtype == np.float32
            assert got_one[name].tobytes() == want.tobytes() == got_many[name].tobytes()  # NaNs bit for bit


def test_read_into_fills_the_requested_rows_only(tmp_path):
    one, many, whole = _single_and_sharded(tmp_path)
    for cat in (one, many):
        out = {n: np.full((40, cat.schema[n].length), -7.0, np.float32) for n in ("lsst", "sed")}
        cat.read_into(60, 80, out, offset=5)  # crosses the first shard boundary (row 70)
        cat.read_into(150, 153, out, offset=30)
        for name, buf in out.items():
            assert buf[5:25].tobytes() == whole[name][60:80].astype(np.float32).tobytes()
            assert buf[30:33].tobytes() == whole[name][150:153].astype(np.float32).tobytes()
            assert (buf[:5] == -7).all() and (buf[25:30] == -7).all() and (buf[33:] == -7).all()
    with pytest.raises(IndexError, match="outside catalog"):
        one.read_into(150, 154, {"lsst": np.empty((10, 6), np.float32)})
    with pytest.raises(IndexError, match="cannot take rows"):
        one.read_into(0, 10, {"lsst": np.empty((10, 6), np.float32)}, offset=1)
    with pytest.raises(IndexError, match="cannot take rows"):
        one.read_into(0, 10, {"lsst": np.empty((10, 6), np.float64)})


def test_read_converts_other_float_types_as_numpy_does(cat_dir, tmp_path):
    """A float64 dataset (valid per the format) is read through numpy's cast, as before."""
    p = _copy(cat_dir, tmp_path)
    with h5py.File(p, "r") as f:
        sed = f["modalities/sed"][()].astype(np.float64) + 1e-9  # bits float32 rounding must drop
    _replace(p, "sed", sed)
    got = Catalog([p]).read(10, 90)["sed"]
    assert got.dtype == np.float32
    assert got.tobytes() == np.asarray(sed[10:90], dtype=np.float32).tobytes()


def test_checksum_failure_names_file_dataset_and_rows(cat_dir, tmp_path):
    """fletcher32 (CatalogWriter) catches flipped bytes on every read path, with the file named."""
    p = _copy(cat_dir, tmp_path)
    with h5py.File(p, "r") as f:
        info = f["modalities/spherex"].id.get_chunk_info(0)
    with open(p, "r+b") as f:
        f.seek(info.byte_offset + 8)
        f.write(b"\x00\x01\x02\x03" * 4)
    cat = Catalog([p])
    for read in (lambda: cat.read(0, 5), lambda: cat.read_into(0, 5, {"spherex": np.empty((5, 12), np.float32)})):
        with pytest.raises(CatalogError, match=r"bad\.h5: /modalities/spherex: read of rows 0:5 failed"):
            read()
    assert cat.read(0, 5, ["lsst"])["lsst"].shape == (5, 6)  # other datasets still read


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
