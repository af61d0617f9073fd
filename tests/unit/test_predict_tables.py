"""predict from survey tables through the import mapping (issue 17, point 4), IDs and pass-through
columns in every output format (point 6), and the warning when the scalars to predict are given
(point 9). Runs the real CLI on the session's tiny run (toy schema)."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from test_importer import write_csv, write_h5

from mosaic_hpc.cli import main
from mosaic_hpc.data.catalog import Catalog

N = 40
SCALARS = ["redshift", "log10_halo_mass", "log10_stellar_mass"]
TOY_MAPPING = {
    "group": "photometry",  # HDF5 tables only; CSV and Parquet have no groups
    "id": "name",
    "passthrough": ["ra"],
    "modalities": {
        "scalars": {"kind": "scalars", "columns": ["z_spec", "mh", "ms"], "names": SCALARS, "unit": "mixed"},
        "lsst": {
            "kind": "vector",
            "columns": [f"mag_{b}" for b in "ugrizy"],
            "names": list("ugrizy"),
            "unit": "AB mag",
        },
    },
}


@pytest.fixture(scope="module")
def toy_table(toy_catalog_dir):
    """N galaxies of the toy test split as table columns, IDs as strings with leading zeros."""
    rows = Catalog.open(toy_catalog_dir, "test").read(0, N)
    cols = {"name": np.asarray([f"gal{i:04d}" for i in range(N)], dtype=object), "ra": np.linspace(0, 1, N)}
    cols |= {c: rows["scalars"][:, j].astype(np.float64) for j, c in enumerate(["z_spec", "mh", "ms"])}
    cols |= {f"mag_{b}": rows["lsst"][:, j].astype(np.float64) for j, b in enumerate("ugrizy")}
    return cols, rows


def _mapping(tmp_path, data=TOY_MAPPING, name="m.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _predict(run, inp, out, *extra) -> int:
    return main(["predict", "--run", str(run), "--input", str(inp), "--out", str(out), *extra])


def test_table_formats_give_the_same_predictions_with_ids(tiny_run_dir, toy_table, tmp_path):
    cols, rows = toy_table
    new = {k: v for k, v in cols.items() if k != "z_spec"}  # new galaxies: no redshift column
    mapping = _mapping(tmp_path)
    csv_in = write_csv(tmp_path / "new.csv", new)
    h5_in = write_h5(tmp_path / "new.h5", {k: v.astype("S") if v.dtype == object else v for k, v in new.items()})
    pq_in = tmp_path / "new.parquet"
    pd.DataFrame(new).to_parquet(pq_in)
    outs = {}
    for inp in (csv_in, h5_in, pq_in):
        out = tmp_path / f"pred_{inp.suffix[1:]}.csv"
        assert _predict(tiny_run_dir, inp, out, "--mapping", str(mapping), "--given", "lsst") == 0
        outs[inp.suffix] = pd.read_csv(out, dtype={"name": str})
    base = outs[".csv"]
    assert list(base.columns[:3]) == ["name", "ra", "row"]
    assert base["name"].tolist() == [f"gal{i:04d}" for i in range(N)]  # string IDs kept, zeros included
    for other in outs.values():
        pd.testing.assert_frame_equal(other, base, check_exact=False, rtol=1e-6)
    # the same model on the same values as a catalog-layout file: the mapping reads tables exactly
    layout = tmp_path / "layout.h5"
    with h5py.File(layout, "w") as f:
        f["modalities/lsst"] = rows["lsst"]
    assert _predict(tiny_run_dir, layout, tmp_path / "layout.csv", "--given", "lsst") == 0
    np.testing.assert_allclose(
        pd.read_csv(tmp_path / "layout.csv")["scalars_redshift"], base["scalars_redshift"], rtol=1e-5
    )


@pytest.mark.parametrize("suffix", [".h5", ".parquet", ".csv"])
def test_every_output_format_carries_id_passthrough_and_row(tiny_run_dir, toy_table, tmp_path, suffix):
    cols, _ = toy_table
    src = write_csv(tmp_path / "t.csv", cols)
    out = tmp_path / f"p{suffix}"
    assert _predict(tiny_run_dir, src, out, "--mapping", str(_mapping(tmp_path)), "--given", "lsst") == 0
    if suffix == ".h5":
        with h5py.File(out, "r") as f:
            ids = f["columns/name"].asstr()[()].tolist()
            ra, row = f["columns/ra"][()], f["columns/row"][()]
            assert f.attrs["id_column"] == "name" and f["predictions/sed"].shape == (N, 40)
            assert not f["given/scalars"][()].any() and f["given/lsst"][()].all()
    else:
        table = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out, dtype={"name": str})
        ids, ra, row = table["name"].tolist(), table["ra"].to_numpy(), table["row"].to_numpy()
        assert {"scalars_redshift", "lsst_u", "sed_00", "sed_39", "scalars_n_given"} <= set(table.columns)
        assert (table["scalars_n_given"] == 0).all() and (table["lsst_n_given"] == 6).all()
    assert ids == cols["name"].tolist()
    np.testing.assert_allclose(ra, cols["ra"])
    np.testing.assert_array_equal(row, np.arange(N))


def test_given_redshift_warns_unless_given_is_chosen(tiny_run_dir, toy_table, tmp_path, capsys):
    cols, _ = toy_table
    src = write_csv(tmp_path / "t.csv", cols)  # still holds the true redshift and masses
    mapping = str(_mapping(tmp_path))
    assert _predict(tiny_run_dir, src, tmp_path / "a.csv", "--mapping", mapping) == 0
    err = capsys.readouterr().err
    assert "warning: no --given" in err and "scalars[redshift, log10_halo_mass, log10_stellar_mass]" in err
    assert _predict(tiny_run_dir, src, tmp_path / "b.csv", "--mapping", mapping, "--given", "lsst") == 0
    assert "warning" not in capsys.readouterr().err
    # the trap the warning names: with the true redshift given, the "photo-z" is its reconstruction
    mae = {f: np.abs(pd.read_csv(tmp_path / f)["scalars_redshift"] - cols["z_spec"]).mean() for f in ("a.csv", "b.csv")}
    assert mae["a.csv"] < 0.5 * mae["b.csv"], mae


def _fails(capsys, code: int, match: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and match in err[0], err


def test_bad_table_inputs_are_one_line_errors(tiny_run_dir, toy_table, tmp_path, capsys):
    cols, _ = toy_table
    src = write_csv(tmp_path / "t.csv", cols)
    _fails(capsys, _predict(tiny_run_dir, src, tmp_path / "p.csv"), "is a table: pass --mapping")
    _fails(
        capsys,
        _predict(tiny_run_dir, src, tmp_path / "p.txt", "--mapping", str(_mapping(tmp_path))),
        "unknown output type",
    )
    log_units = copy.deepcopy(TOY_MAPPING)
    log_units["modalities"]["lsst"]["transform"] = "log10"
    code = _predict(tiny_run_dir, src, tmp_path / "p.csv", "--mapping", str(_mapping(tmp_path, log_units, "log.yaml")))
    _fails(capsys, code, "modalities.lsst: unit 'log10 AB mag', but the run was trained on 'AB mag'")
    no_id = write_csv(tmp_path / "no_id.csv", {k: v for k, v in cols.items() if k != "name"})
    _fails(
        capsys,
        _predict(tiny_run_dir, no_id, tmp_path / "p.csv", "--mapping", str(_mapping(tmp_path))),
        "column 'name': missing",
    )
    nothing = write_csv(tmp_path / "nothing.csv", {"name": cols["name"], "other": cols["ra"]})
    _fails(
        capsys,
        _predict(tiny_run_dir, nothing, tmp_path / "p.csv", "--mapping", str(_mapping(tmp_path))),
        "holds none of the mapping's columns",
    )
    assert not list(tmp_path.glob("p.*"))  # nothing written by a failed prediction
