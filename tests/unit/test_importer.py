"""import-catalog: HDF5, CSV and Parquet inputs, sentinels, errors, splits, train-only stats, and
malformed inputs that must fail with one line naming file and column while writing nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from conftest import REPO

from mosaic_hpc.cli import main
from mosaic_hpc.data.catalog import Catalog, CatalogError
from mosaic_hpc.data.importer import import_catalog, load_mapping, parse_mapping

N = 200
BANDS = ("u", "g", "r")
MAPPING = {
    "source": "unit test",
    "group": "photometry",
    "modalities": {
        "scalars": {"kind": "scalars", "columns": ["redshift", "mass"]},
        "lsst": {
            "kind": "vector",
            "columns": [f"mag_{b}" for b in BANDS],
            "names": list(BANDS),
            "unit": "AB mag",
            "axis": {"values": [3671.0, 4827.0, 6223.0], "quantity": "wavelength", "unit": "Angstrom"},
            "missing": [99.0, -99.0],
            "errors": {"columns": [f"err_{b}" for b in BANDS], "unit": "mag"},
        },
    },
    "split": {"test_fraction": 0.25, "seed": 3},
}


def _columns(n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {"redshift": rng.uniform(0, 3, n), "mass": rng.normal(10, 1, n)}
    for b in BANDS:
        cols[f"mag_{b}"] = rng.normal(24, 1, n).astype(np.float32)
        cols[f"err_{b}"] = rng.uniform(0.01, 0.3, n).astype(np.float32)
    cols["mag_u"][:10] = 99.0  # non-detections
    cols["err_u"][:10] = 26.5  # a limiting magnitude, not an error: must become NaN too
    cols["mag_g"][10:12] = -99.0
    return cols


def write_h5(path: Path, cols: dict[str, np.ndarray], group: str = "photometry") -> Path:
    with h5py.File(path, "w") as f:
        g = f.require_group(group)
        for k, v in cols.items():
            g.create_dataset(k, data=v)
    return path


def write_csv(path: Path, cols: dict[str, np.ndarray]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for row in zip(*cols.values()):
            w.writerow([repr(float(v)) if not isinstance(v, str) else v for v in row])
    return path


def write_parquet(path: Path, cols: dict[str, np.ndarray]) -> Path:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table(cols), path)
    return path


def write_mapping(path: Path, mapping: dict) -> Path:
    path.write_text(yaml.safe_dump(mapping, sort_keys=False))
    return path


def flat(mapping: dict) -> dict:
    """The mapping without an HDF5 group (CSV and Parquet have none)."""
    return {k: v for k, v in mapping.items() if k != "group"}


def assert_nothing_written(out_dir: Path) -> None:
    assert not out_dir.exists(), f"{out_dir} exists after a failed import"
    assert not list(out_dir.parent.glob(f".{out_dir.name}.import-*")), "staging directory left behind"


@pytest.mark.parametrize("fmt", ["h5", "csv", "parquet"])
def test_each_format_imports_with_sentinels_and_errors(tmp_path, fmt):
    cols = _columns()
    writer = {"h5": write_h5, "csv": write_csv, "parquet": write_parquet}[fmt]
    src = writer(tmp_path / f"cat.{fmt}", cols)
    mapping = write_mapping(tmp_path / "map.yaml", MAPPING if fmt == "h5" else flat(MAPPING))
    written = import_catalog(src, mapping, tmp_path / "out", show_progress=False)
    cats = [Catalog.open(written[s]) for s in ("train", "val", "test")]
    train = cats[0]
    assert [c.n_rows for c in cats] == [130, 20, 50]  # val_fraction default 0.1, test_fraction 0.25
    assert train.schema.names == ("scalars", "lsst", "lsst_err")
    assert train.schema["lsst"].columns == BANDS and train.schema["lsst_err"].unit == "mag"
    assert train.schema["lsst"].axis == (3671.0, 4827.0, 6223.0)
    rows = {k: np.concatenate([c.read_all()[k] for c in cats]) for k in train.schema.names}
    z_order = np.argsort(rows["scalars"][:, 0])  # compare independent of the split's order
    ref = np.argsort(cols["redshift"])
    lsst, err = rows["lsst"][z_order], rows["lsst_err"][z_order]
    nan_u = np.isin(ref, np.arange(10))
    np.testing.assert_array_equal(np.isnan(lsst[:, 0]), nan_u)
    np.testing.assert_array_equal(np.isnan(err[:, 0]), nan_u)  # error dropped with its value
    assert np.isnan(lsst[:, 1]).sum() == 2 and np.isnan(err[:, 1]).sum() == 2
    assert np.nanmax(lsst) < 90  # no sentinel survives
    np.testing.assert_allclose(rows["scalars"][z_order, 1], cols["mass"][ref], rtol=1e-6)


def test_split_is_seeded_and_stats_come_from_train_only(tmp_path):
    src = write_h5(tmp_path / "cat.h5", _columns())
    mapping = write_mapping(tmp_path / "map.yaml", MAPPING)
    a = import_catalog(src, mapping, tmp_path / "a", show_progress=False)
    b = import_catalog(src, mapping, tmp_path / "b", show_progress=False)
    ra, rb = Catalog.open(a["test"]).read_all(), Catalog.open(b["test"]).read_all()
    np.testing.assert_array_equal(ra["scalars"], rb["scalars"])
    train, test = Catalog.open(a["train"]), Catalog.open(a["test"])
    tr = train.read_all()
    np.testing.assert_allclose(train.stats.mean["scalars"], tr["scalars"].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(train.stats.std["scalars"], tr["scalars"].std(axis=0), rtol=1e-5)
    np.testing.assert_allclose(train.stats.mean["lsst"], np.nanmean(tr["lsst"]), rtol=1e-6)  # global mode
    for name in train.schema.names:
        np.testing.assert_array_equal(test.stats.mean[name], train.stats.mean[name])
        np.testing.assert_array_equal(test.stats.std[name], train.stats.std[name])
    all_z = np.concatenate([tr["scalars"][:, 0], test.read_all()["scalars"][:, 0]])
    assert train.stats.mean["scalars"][0] != pytest.approx(all_z.mean(), rel=1e-9)


def test_separate_test_file_and_train_only_stats(tmp_path):
    train_src = write_h5(tmp_path / "train.h5", _columns(120, seed=1))
    test_cols = _columns(80, seed=2)
    test_cols["redshift"] = test_cols["redshift"] + 10.0  # would shift the stats if it leaked
    test_src = write_h5(tmp_path / "test.h5", test_cols)
    mapping = write_mapping(tmp_path / "map.yaml", {k: v for k, v in MAPPING.items() if k != "split"})
    written = import_catalog(train_src, mapping, tmp_path / "out", input_test=test_src, show_progress=False)
    train, val, test = (Catalog.open(written[s]) for s in ("train", "val", "test"))
    assert (train.n_rows, val.n_rows, test.n_rows) == (108, 12, 80)  # val: 10% of the training file
    assert train.stats.mean["scalars"][0] < 3.0
    np.testing.assert_array_equal(test.stats.mean["scalars"], train.stats.mean["scalars"])


def test_per_column_sentinels(tmp_path):
    cols = _columns()
    cols["mag_r"][:5] = -1.0
    mapping = {**MAPPING}
    mapping["modalities"] = {**MAPPING["modalities"], "lsst": {**MAPPING["modalities"]["lsst"]}}
    mapping["modalities"]["lsst"]["missing"] = {"mag_u": 99.0, "mag_r": [-1.0]}
    written = import_catalog(
        write_h5(tmp_path / "c.h5", cols),
        write_mapping(tmp_path / "m.yaml", mapping),
        tmp_path / "o",
        show_progress=False,
    )
    rows = [Catalog.open(p).read_all()["lsst"] for p in written.values()]
    lsst = np.concatenate(rows)
    assert np.isnan(lsst[:, 0]).sum() == 10 and np.isnan(lsst[:, 2]).sum() == 5
    assert (lsst[:, 1] == -99.0).sum() == 2  # g has no sentinel in this mapping: -99 stays a value


# ------------------------------------------------------------------------ malformed inputs


def _fail(tmp_path: Path, src: Path, mapping: dict, match: str, out_exists: bool = False) -> None:
    out = tmp_path / "out"
    if out_exists:
        out.mkdir()
    with pytest.raises((ValueError, FileNotFoundError), match=match) as info:
        import_catalog(src, write_mapping(tmp_path / "map.yaml", mapping), out, show_progress=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert src.name in msg or "map.yaml" in msg
    if out_exists:
        assert list(out.iterdir()) == [] and not list(tmp_path.glob(".out.import-*"))
    else:
        assert_nothing_written(out)


def test_missing_column_names_file_and_column(tmp_path):
    cols = _columns()
    del cols["err_g"]
    _fail(tmp_path, write_h5(tmp_path / "c.h5", cols), MAPPING, "column 'err_g'.*missing")
    _fail(tmp_path, write_csv(tmp_path / "c.csv", cols), flat(MAPPING), "c.csv: column 'err_g'.*missing", True)


def test_non_numeric_column(tmp_path):
    cols = _columns()
    text = cols["mag_r"].astype(str).astype(object)
    text[7] = "bright"
    _fail(tmp_path, write_csv(tmp_path / "c.csv", {**cols, "mag_r": text}), flat(MAPPING), "column 'mag_r'.*'bright'")
    with h5py.File(write_h5(tmp_path / "c.h5", {k: v for k, v in cols.items() if k != "mass"}), "a") as f:
        f["photometry"].create_dataset("mass", data=np.array([b"x"] * N))
    _fail(tmp_path, tmp_path / "c.h5", MAPPING, "column 'mass'.*non-numeric")


def test_all_missing_column(tmp_path):
    cols = _columns()
    cols["mag_g"][:] = 99.0
    _fail(tmp_path, write_h5(tmp_path / "c.h5", cols), MAPPING, "column 'mag_g'.*no valid value", True)


def test_unknown_file_type(tmp_path):
    src = tmp_path / "cat.txt"
    src.write_text("redshift\n1.0\n")
    _fail(tmp_path, src, flat(MAPPING), "unknown file type '.txt'")


def test_mismatched_lengths(tmp_path):
    cols = _columns()
    cols["err_r"] = cols["err_r"][:-3]
    _fail(tmp_path, write_h5(tmp_path / "c.h5", cols), MAPPING, "column 'err_r'.*197 rows")
    src = write_csv(tmp_path / "c.csv", _columns())
    lines = src.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0]
    src.write_text("\n".join(lines) + "\n")
    _fail(tmp_path, src, flat(MAPPING), "line 6.*fields")


def test_parquet_non_numeric_column(tmp_path):
    cols = _columns()
    src = write_parquet(tmp_path / "c.parquet", {**cols, "redshift": cols["redshift"].astype(str)})
    _fail(tmp_path, src, flat(MAPPING), "c.parquet: column 'redshift'.*non-numeric")


def test_existing_catalog_needs_overwrite(tmp_path):
    src = write_h5(tmp_path / "c.h5", _columns())
    mapping = write_mapping(tmp_path / "m.yaml", MAPPING)
    import_catalog(src, mapping, tmp_path / "out", show_progress=False)
    with pytest.raises(ValueError, match="--overwrite"):
        import_catalog(src, mapping, tmp_path / "out", show_progress=False)
    import_catalog(src, mapping, tmp_path / "out", overwrite=True, show_progress=False)


# ------------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"colour": 1}, r"mapping: colour: unknown key \['colour'\]"),
        ({"modalities": {"lsst": {"kind": "vector", "columns": ["a"], "bands": ["u"]}}}, r"modalities.lsst.bands"),
        ({"modalities": {"lsst": {"kind": "image", "columns": ["a"]}}}, r"modalities.lsst.kind"),
        ({"modalities": {"lsst": {"kind": "vector", "columns": ["a"], "missing": {"b": 99}}}}, r"missing.b"),
        ({"modalities": {"s": {"kind": "scalars", "columns": ["a"], "errors": {"columns": ["e", "f"]}}}}, r"errors"),
        ({"split": {"test_fraction": 1.5}}, r"split.test_fraction"),
        ({"modalities": {"a/b": {"kind": "scalars", "columns": ["a"]}}}, r"not a valid modality name"),
    ],
)
def test_mapping_errors_name_the_key(patch, match):
    data = {**MAPPING, **patch}
    with pytest.raises(CatalogError, match=match):
        parse_mapping(data, "mapping")


def test_split_conflicts_with_separate_test_file(tmp_path):
    src = write_h5(tmp_path / "c.h5", _columns())
    with pytest.raises(ValueError, match="split.test_fraction: conflicts"):
        import_catalog(src, write_mapping(tmp_path / "m.yaml", MAPPING), tmp_path / "o", input_test=src)
    assert_nothing_written(tmp_path / "o")


def test_shipped_dc2_mapping_parses():
    mapping = load_mapping(REPO / "configs" / "mappings" / "dc2_rail.yaml")
    schema = mapping.schema()
    assert schema.names == ("scalars", "lsst", "lsst_err")
    assert schema["lsst"].columns == tuple("ugrizy") and schema["scalars"].columns == ("redshift",)


# ----------------------------------------------------------------------------------- CLI


def test_cli_imports_and_bad_input_exits_2_with_one_line(tmp_path, capsys):
    src = write_h5(tmp_path / "c.h5", _columns())
    mapping = write_mapping(tmp_path / "m.yaml", MAPPING)
    code = main(["import-catalog", "--input", str(src), "--mapping", str(mapping), "--out", str(tmp_path / "o")])
    assert code == 0 and (tmp_path / "o" / "train.h5").is_file()
    capsys.readouterr()
    code = main(["import-catalog", "--input", str(src), "--mapping", str(mapping), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0]
    bad = tmp_path / "bad.csv"
    bad.write_text("redshift,mass\n1,2\n")
    code = main(["import-catalog", "--input", str(bad), "--mapping", str(mapping), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "bad.csv: column 'mag_u'" in err[0]
    assert_nothing_written(tmp_path / "p")
