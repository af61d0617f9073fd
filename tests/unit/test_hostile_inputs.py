"""Hostile inputs to predict, evaluate and embed (issue 15, items 2, 4, 9, 10; docs/hardening.md).

Sizes below one are refused before any work; impossible values (inf, corrupt bytes) are errors
naming file, modality and row; inputs the model never saw in training (40 mag, fluxes passed as
magnitudes, an empty modality, a --given modality absent from the file) give a warning naming
the modality, the share of rows and the training range, and with --strict an error.
"""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from hostile import catalog_with, write_inputs

from mosaic_hpc.cli import main
from mosaic_hpc.data.catalog import Catalog


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def test_rows(toy_catalog_dir) -> dict[str, np.ndarray]:
    return Catalog.open(toy_catalog_dir, "test").read(0, 40)


def predict(tiny_run_dir, inputs, out, *extra: str) -> int:
    return main(["predict", "--run", str(tiny_run_dir), "--input", str(inputs), "--out", str(out), *extra])


def evaluate(tiny_run_dir, data, out, *extra: str) -> int:
    args = ["evaluate", "--run", str(tiny_run_dir), "--data", str(data), "--out", str(out), "--no-figures"]
    return main([*args, "--max-rows", "64", *extra])


# ------------------------------------------------------------------------------ item 2


@pytest.mark.parametrize("size", ["-3", "0"])
def test_predict_refuses_a_batch_size_below_one(tiny_run_dir, test_rows, tmp_path, capsys, size):
    inputs = write_inputs(tmp_path / "in.h5", lsst=test_rows["lsst"])
    assert predict(tiny_run_dir, inputs, tmp_path / "p.h5", "--batch-size", size) == 2
    assert f"--batch-size must be >= 1, got {size}" in one_line(capsys)
    assert not (tmp_path / "p.h5").exists()


@pytest.mark.parametrize("size", ["-1", "0"])
def test_evaluate_refuses_a_batch_size_below_one(tiny_run_dir, toy_catalog_dir, tmp_path, capsys, size):
    assert evaluate(tiny_run_dir, toy_catalog_dir, tmp_path / "ev", "--batch-size", size) == 2
    assert f"--batch-size must be >= 1, got {size}" in one_line(capsys)
    assert not (tmp_path / "ev").exists()


def test_the_python_api_refuses_a_batch_size_below_one(tiny_run_dir, test_rows):
    from mosaic_hpc import load_run

    with pytest.raises(ValueError, match="batch size must be >= 1, got -3"):
        load_run(tiny_run_dir).predict({"lsst": test_rows["lsst"]}, batch_size=-3)


# ------------------------------------------------------------------------------ item 4: impossible values


def test_evaluate_refuses_an_inf_row_naming_file_and_row(tiny_run_dir, toy_catalog_dir, tmp_path, capsys):
    data = catalog_with(toy_catalog_dir, tmp_path / "cat", "test", "lsst", 17, np.inf)
    assert evaluate(tiny_run_dir, data, tmp_path / "ev") == 2
    assert f"{data / 'test.h5'}: /modalities/lsst: row 17 holds inf" in one_line(capsys)


def test_evaluate_refuses_corrupt_values_in_an_unchecksummed_file(tiny_run_dir, toy_catalog_dir, tmp_path, capsys):
    data = catalog_with(toy_catalog_dir, tmp_path / "cat", "test", "sed", 5, 3.1e29)  # flipped exponent bits
    assert evaluate(tiny_run_dir, data, tmp_path / "ev") == 2
    assert "/modalities/sed: row 5 holds inf or a value more than 1e+06 standard deviations" in one_line(capsys)


def test_predict_refuses_inf_inputs(tiny_run_dir, test_rows, tmp_path, capsys):
    lsst = test_rows["lsst"].copy()
    lsst[3, 2] = -np.inf
    inputs = write_inputs(tmp_path / "in.h5", lsst=lsst)
    assert predict(tiny_run_dir, inputs, tmp_path / "p.h5") == 2
    assert "in.h5: /modalities/lsst: row 3 holds inf" in one_line(capsys)


# ------------------------------------------------------------------------------ item 4: out of distribution


def test_in_distribution_inputs_give_no_warning(tiny_run_dir, test_rows, tmp_path, caplog):
    inputs = write_inputs(tmp_path / "in.h5", lsst=test_rows["lsst"], spherex=test_rows["spherex"])
    assert predict(tiny_run_dir, inputs, tmp_path / "p.h5", "--strict") == 0
    assert "warning" not in caplog.text


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(lambda m: m + 15.0, id="40-mag"),
        pytest.param(lambda m: 10 ** (-0.4 * (m - 8.9)), id="fluxes-in-jansky-as-magnitudes"),
    ],
)
def test_inputs_outside_the_training_range_warn_and_fail_when_strict(
    tiny_run_dir, test_rows, tmp_path, capsys, caplog, case
):
    inputs = write_inputs(tmp_path / "in.h5", lsst=case(test_rows["lsst"]))
    assert predict(tiny_run_dir, inputs, tmp_path / "p.h5") == 0
    assert "in.h5: lsst: 100.0% of rows (40 of 40) hold values outside the training range" in caplog.text
    assert "AB mag" in caplog.text
    capsys.readouterr()
    assert predict(tiny_run_dir, inputs, tmp_path / "q.h5", "--strict") == 2
    assert "(--strict)" in one_line(capsys)
    assert not (tmp_path / "q.h5").exists()


def test_an_all_nan_modality_warns_that_the_model_sees_nothing(tiny_run_dir, test_rows, tmp_path, capsys, caplog):
    inputs = write_inputs(tmp_path / "in.h5", lsst=np.full_like(test_rows["lsst"], np.nan))
    assert predict(tiny_run_dir, inputs, tmp_path / "p.h5") == 0
    assert "lsst: every value is missing (NaN): the model sees nothing of it" in caplog.text
    capsys.readouterr()
    assert predict(tiny_run_dir, inputs, tmp_path / "q.h5", "--strict") == 2
    one_line(capsys)


def test_a_given_modality_absent_from_the_file_is_an_error(tiny_run_dir, test_rows, tmp_path, capsys):
    inputs = write_inputs(tmp_path / "in.h5", lsst=test_rows["lsst"])
    assert predict(tiny_run_dir, inputs, tmp_path / "p.h5", "--given", "lsst,spherex") == 2
    assert "/modalities/spherex: given=lsst,spherex gives 'spherex', but the input holds only ['lsst']" in one_line(
        capsys
    )


def test_evaluate_warns_about_a_test_split_outside_the_training_range(
    tiny_run_dir, toy_catalog_dir, tmp_path, capsys, caplog
):
    rows = Catalog.open(toy_catalog_dir, "test").read(0, 64)["scalars"]
    shifted = rows[:, 0] + 40.0  # redshift 40: far beyond the catalog
    data = catalog_with(toy_catalog_dir, tmp_path / "cat", "test", "scalars", slice(0, 64), np.c_[shifted, rows[:, 1:]])
    assert evaluate(tiny_run_dir, data, tmp_path / "ev") == 0
    assert "scalars[redshift]: 100.0% of rows (64 of 64) hold values outside the training range" in caplog.text
    capsys.readouterr()
    assert evaluate(tiny_run_dir, data, tmp_path / "ev2", "--strict") == 2
    one_line(capsys)


def test_the_warning_reaches_the_terminal(tiny_run_dir, test_rows, tmp_path):
    """Outside pytest's log capture: the warning is one line on stderr of the real command."""
    inputs = write_inputs(tmp_path / "in.h5", lsst=test_rows["lsst"] + 15.0)
    cmd = [sys.executable, "-m", "mosaic_hpc.cli", "predict", "--run", str(tiny_run_dir), "--input", str(inputs)]
    proc = subprocess.run([*cmd, "--out", str(tmp_path / "p.h5")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "lsst: 100.0% of rows (40 of 40)" in warnings[0], proc.stderr


# ------------------------------------------------------------------------------ items 9 / 10: files


def test_evaluate_does_not_replace_an_existing_report(tiny_run_dir, toy_catalog_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "table1.md").write_text("my earlier result\n")
    assert evaluate(tiny_run_dir, toy_catalog_dir, out) == 2
    assert "already holds table1.md; pass --overwrite to replace them" in one_line(capsys)
    assert (out / "table1.md").read_text() == "my earlier result\n"
    assert evaluate(tiny_run_dir, toy_catalog_dir, out, "--overwrite") == 0
    assert "Input configuration" in (out / "table1.md").read_text()


def test_predict_out_is_a_directory(tiny_run_dir, test_rows, tmp_path, capsys):
    inputs = write_inputs(tmp_path / "in.h5", lsst=test_rows["lsst"])
    (tmp_path / "outdir").mkdir()
    assert predict(tiny_run_dir, inputs, tmp_path / "outdir", "--overwrite") == 2
    assert "is a directory; give the output file's name" in one_line(capsys)


def test_predict_on_a_checksum_failure_is_one_line(tiny_run_dir, test_rows, tmp_path, capsys):
    inputs = tmp_path / "in.h5"
    with h5py.File(inputs, "w") as f:
        f.create_dataset("modalities/lsst", data=test_rows["lsst"], chunks=(8, 6), fletcher32=True)
    with h5py.File(inputs) as f:
        chunk = f["modalities/lsst"].id.get_chunk_info(0)
    with open(inputs, "r+b") as fh:
        fh.seek(chunk.byte_offset + 4)
        fh.write(os.urandom(8))
    assert predict(tiny_run_dir, inputs, tmp_path / "p.h5") == 2
    assert "in.h5: /modalities/lsst: cannot be read, corrupt" in one_line(capsys)
