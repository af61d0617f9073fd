"""encode: chunked HDF5 embeddings equal the in-memory per-modality means, for a run or a model directory."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import mosaic_hpc
from mosaic_hpc.cli import main
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.data.configurations import parse_configuration
from mosaic_hpc.evaluation.embedding import modality_embeddings
from mosaic_hpc.lifecycle.model_dir import export_model


def test_chunked_file_equals_one_pass_embeddings(tiny_run_dir, toy_catalog_dir, tmp_path, capsys):
    out = tmp_path / "emb.h5"
    argv = ["encode", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--given", "lsst"]
    assert main([*argv, "--out", str(out), "--chunk-rows", "37", "--batch-size", "16", "--no-progress"]) == 0
    predictor = mosaic_hpc.load_run(tiny_run_dir)
    catalog = Catalog.open(toy_catalog_dir, "test")
    ref = modality_embeddings(predictor, catalog.read(0, catalog.n_rows), parse_configuration("lsst", predictor.schema))
    with h5py.File(out) as f:
        assert sorted(f["embeddings"]) == sorted(predictor.schema.names)
        for name, values in ref.items():
            assert f[f"embeddings/{name}"].shape == (catalog.n_rows, predictor.config.model.d_model)
            np.testing.assert_allclose(f[f"embeddings/{name}"][:], values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(f["pooled"][:], np.mean(list(ref.values()), axis=0), rtol=1e-5, atol=1e-6)
        assert np.array_equal(f["row"][:], np.arange(catalog.n_rows))
        assert f.attrs["given"] == "given=lsst"
    assert [p.name for p in tmp_path.iterdir()] == ["emb.h5"]  # no temporary left


def test_a_model_directory_gives_the_same_embeddings(tiny_run_dir, toy_catalog_dir, tmp_path):
    model = export_model(tiny_run_dir, tmp_path / "model")
    files = []
    for flag, src in (("--run", tiny_run_dir), ("--model", model)):
        out = tmp_path / f"{flag[2:]}.h5"
        argv = ["encode", flag, str(src), "--data", str(toy_catalog_dir), "--given", "lsst,scalars", "--out", str(out)]
        assert main([*argv, "--no-progress"]) == 0
        files.append(out)
    with h5py.File(files[0]) as a, h5py.File(files[1]) as b:
        assert np.array_equal(a["pooled"][:], b["pooled"][:])


@pytest.mark.parametrize(("extra", "needle"), [(["--chunk-rows", "0"], "--chunk-rows"), (["--given", "nope"], "nope")])
def test_bad_input_is_one_line_and_writes_nothing(tiny_run_dir, toy_catalog_dir, tmp_path, capsys, extra, needle):
    out = tmp_path / "emb.h5"
    argv = ["encode", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--given", "lsst", "--out", str(out)]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()


def test_existing_out_is_kept_without_overwrite(tiny_run_dir, toy_catalog_dir, tmp_path, capsys):
    out = tmp_path / "emb.h5"
    out.write_text("mine")
    argv = ["encode", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--given", "lsst", "--out", str(out)]
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "mine"
