"""import-catalog beyond the values: ID and pass-through columns (issue 17, point 6), input
transforms such as log10 of magnitude errors (point 8), and a stored mapping that keeps names,
units and axes and reads back into the same mapping (point 10)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import yaml
from conftest import REPO
from test_importer import MAPPING, _columns, flat, write_csv, write_h5, write_mapping, write_parquet

from mosaic_hpc.data.catalog import Catalog, CatalogError
from mosaic_hpc.data.importer import import_catalog, load_mapping, mapping_record, parse_mapping, stored_mapping

BIG = 2**62 + 12345  # an LSST-sized object ID: float64 would round it


def _with_ids(n: int = 200) -> dict[str, np.ndarray]:
    cols = _columns(n)
    cols["objectId"] = BIG + np.arange(n, dtype=np.int64) * 7
    cols["ra"] = np.linspace(10.0, 20.0, n)
    return cols


@pytest.mark.parametrize("fmt", ["h5", "csv", "parquet"])
def test_id_and_passthrough_columns_travel_with_their_rows(tmp_path, fmt):
    cols = _with_ids()
    writer = {"h5": write_h5, "csv": write_csv, "parquet": write_parquet}[fmt]
    if fmt == "csv":  # write_csv renders floats; IDs must be written as the integers they are
        cols = {**cols, "objectId": cols["objectId"].astype(str).astype(object)}
    src = writer(tmp_path / f"cat.{fmt}", cols)
    mapping = {**(MAPPING if fmt == "h5" else flat(MAPPING)), "id": "objectId", "passthrough": ["ra"]}
    written = import_catalog(src, write_mapping(tmp_path / "m.yaml", mapping), tmp_path / "o", show_progress=False)
    seen = []
    for path in written.values():
        cat = Catalog.open(path)
        assert cat.id_column == "objectId"
        assert cat.column_roles == {"objectId": "id", "ra": "passthrough", "source_row": "source_row"}
        extra, rows = cat.read_columns(0, cat.n_rows), cat.read_all()
        assert extra["objectId"].dtype == np.int64
        src_row = extra["source_row"]
        np.testing.assert_array_equal(extra["objectId"], _with_ids()["objectId"][src_row])  # exact, not rounded
        np.testing.assert_array_equal(extra["ra"], _with_ids()["ra"][src_row])
        np.testing.assert_allclose(rows["scalars"][:, 0], _columns()["redshift"][src_row], rtol=1e-6)
        seen += src_row.tolist()
    assert sorted(seen) == list(range(200))


def test_string_ids_keep_leading_zeros(tmp_path):
    cols = {**_columns(50), "name": np.asarray([f"{i:05d}" for i in range(50)], dtype=object)}
    src = write_csv(tmp_path / "c.csv", cols)
    mapping = {**flat(MAPPING), "id": "name", "split": "none"}
    path = import_catalog(src, write_mapping(tmp_path / "m.yaml", mapping), tmp_path / "o", show_progress=False)["all"]
    ids = Catalog.open(path).read_columns(0, 50)["name"]
    assert ids.tolist() == [f"{i:05d}" for i in range(50)]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda c: c["objectId"].__setitem__(5, c["objectId"][3]), r"column 'objectId': ID .* appears more than once"),
        (
            lambda c: c.__setitem__("objectId", c["objectId"] + 0.5),
            r"column 'objectId': is an ID column but holds floats",
        ),
        (lambda c: c.pop("ra"), r"column 'ra'.*missing"),
    ],
)
def test_bad_id_or_passthrough_fails_with_one_line_and_writes_nothing(tmp_path, change, match):
    cols = _with_ids()
    change(cols)
    src = write_h5(tmp_path / "c.h5", cols)
    mapping = write_mapping(tmp_path / "m.yaml", {**MAPPING, "id": "objectId", "passthrough": ["ra"]})
    with pytest.raises(CatalogError, match=match) as info:
        import_catalog(src, mapping, tmp_path / "o", show_progress=False)
    assert "\n" not in str(info.value) and "c.h5" in str(info.value)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"id": "row"}, r"id: 'row' is reserved"),
        ({"id": "a/ra", "passthrough": ["b/ra"]}, r"would both be stored as 'ra'"),
        ({"passthrough": []}, r"passthrough: must be a non-empty list"),
        ({"modalities": {"s": {"kind": "scalars", "columns": ["a"], "transform": "sqrt"}}}, r"unknown transform"),
    ],
)
def test_mapping_errors_for_new_keys(patch, match):
    with pytest.raises(CatalogError, match=match):
        parse_mapping({**MAPPING, **patch}, "m.yaml")


def test_log10_transform_of_errors(tmp_path):
    cols = _columns()
    mapping = {**MAPPING, "modalities": {**MAPPING["modalities"], "lsst": dict(MAPPING["modalities"]["lsst"])}}
    mapping["modalities"]["lsst"]["errors"] = {**mapping["modalities"]["lsst"]["errors"], "transform": "log10"}
    written = import_catalog(
        write_h5(tmp_path / "c.h5", cols),
        write_mapping(tmp_path / "m.yaml", mapping),
        tmp_path / "o",
        show_progress=False,
    )
    cat = Catalog.open(written["train"])
    assert cat.schema["lsst_err"].unit == "log10 mag" and cat.schema["lsst"].unit == "AB mag"
    err, src_row = cat.read_all()["lsst_err"], cat.read_columns(0, cat.n_rows)["source_row"]
    expected = np.log10(cols["err_r"][src_row].astype(np.float64))
    np.testing.assert_allclose(err[:, 2], expected, rtol=1e-6)
    assert np.nanmax(err) < 0  # every error < 1 mag, as log10
    # a non-positive error cannot be log10'd: one line naming file, column and row
    cols["err_g"][17] = 0.0
    with pytest.raises(
        CatalogError, match=r"c.h5: column 'err_g': transform log10 needs values > 0, got 0.0 on data row 17"
    ):
        import_catalog(write_h5(tmp_path / "c.h5", cols), tmp_path / "m.yaml", tmp_path / "p", show_progress=False)
    assert not (tmp_path / "p").exists()


def test_shipped_photoz_mapping_takes_log10_errors():
    plain = load_mapping(REPO / "configs" / "mappings" / "dc2_rail.yaml")
    photoz = load_mapping(REPO / "configs" / "mappings" / "dc2_rail_photoz.yaml")
    assert photoz.schema()["lsst_err"].unit == "log10 mag"
    assert photoz.modalities[1].errors.transform == "log10" and plain.modalities[1].errors.transform == ""
    same = lambda m: dataclasses.replace(m, path=None, source="")
    no_transform = dataclasses.replace(
        photoz.modalities[1], errors=dataclasses.replace(photoz.modalities[1].errors, transform="")
    )
    assert same(dataclasses.replace(photoz, modalities=(photoz.modalities[0], no_transform))) == same(plain)


def test_stored_mapping_keeps_names_units_axes_and_reads_back(tmp_path):
    mapping = {**MAPPING, "id": "objectId", "passthrough": ["ra"]}
    mapping["modalities"] = {**MAPPING["modalities"], "lsst": {**MAPPING["modalities"]["lsst"], "transform": "log10"}}
    written = import_catalog(
        write_h5(tmp_path / "c.h5", _with_ids()),
        write_mapping(tmp_path / "m.yaml", mapping),
        tmp_path / "o",
        show_progress=False,
    )
    with h5py.File(written["train"], "r") as f:
        record = yaml.safe_load(f.attrs["mapping"])
    lsst = record["modalities"]["lsst"]
    assert lsst["names"] == ["u", "g", "r"] and lsst["unit"] == "AB mag" and lsst["transform"] == "log10"
    assert lsst["axis"] == {"values": [3671.0, 4827.0, 6223.0], "quantity": "wavelength", "unit": "Angstrom"}
    assert record["id"] == "objectId" and record["passthrough"] == ["ra"]
    original = load_mapping(tmp_path / "m.yaml")
    for back in (parse_mapping(record, "x"), stored_mapping(tmp_path / "o"), stored_mapping(written["test"])):
        assert dataclasses.replace(back, path=original.path) == original
    assert mapping_record(original) == record


def test_stored_mapping_of_a_mock_catalog_is_a_clear_error(tmp_path, toy_catalog_dir):
    with pytest.raises(CatalogError, match="no stored mapping"):
        stored_mapping(toy_catalog_dir)


def test_ids_survive_sharding_and_show_in_check_catalog(tmp_path, capsys):
    from mosaic_hpc.cli import main

    mapping = write_mapping(tmp_path / "m.yaml", {**MAPPING, "id": "objectId", "passthrough": ["ra"]})
    written = import_catalog(write_h5(tmp_path / "c.h5", _with_ids()), mapping, tmp_path / "o", show_progress=False)
    assert main(["shard-catalog", "--input", str(tmp_path / "o"), "--out", str(tmp_path / "s"), "--n-shards", "3"]) == 0
    sharded, single = Catalog.open(tmp_path / "s", "train"), Catalog.open(written["train"])
    assert len(sharded.paths) == 3 and sharded.column_roles == single.column_roles
    for name, values in single.read_columns(0, single.n_rows).items():
        np.testing.assert_array_equal(sharded.read_columns(0, sharded.n_rows)[name], values)
    np.testing.assert_array_equal(sharded.read_columns(10, 100)["objectId"], single.read_columns(10, 100)["objectId"])
    capsys.readouterr()
    assert main(["check-catalog", str(tmp_path / "s")]) == 0
    assert "columns: objectId (id), ra (passthrough), source_row (source_row)" in capsys.readouterr().out


def test_csv_that_is_not_utf8_is_a_one_line_error(tmp_path):
    src = tmp_path / "latin1.csv"
    src.write_bytes("objectId,redshift,mag_u\n1,0.5,24.1\n2,0.7,Caf\xe9\n".encode("latin-1"))
    mapping = {"modalities": {"scalars": {"kind": "scalars", "columns": ["redshift", "mag_u"]}}}
    with pytest.raises(CatalogError, match=r"latin1.csv: line 3: is not UTF-8 text \(byte 0xe9"):
        import_catalog(src, write_mapping(tmp_path / "m.yaml", mapping), tmp_path / "o", show_progress=False)
    assert not (tmp_path / "o").exists()
