"""The mosaic-hpc command: every subcommand has --help, and bad input exits 2 with one line."""

import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import REPO

from mosaic_hpc.cli import COMMANDS, main


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "mosaic_hpc.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_top_level_help_lists_every_command():
    res = _run("--help")
    assert res.returncode == 0
    for name in COMMANDS:
        assert name in res.stdout


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"mosaic-hpc {name}" in out


def test_unknown_command_exits_2(capsys):
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


def test_train_with_missing_config_exits_2(tmp_path, capsys):
    code = main(
        ["train", "--config", str(tmp_path / "nope.yaml"), "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.yaml does not exist" in err[0]


def test_train_with_bad_catalog_exits_2(tmp_path, capsys):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "train.h5").write_text("not hdf5")
    code = main(
        [
            "train",
            "--config",
            str(REPO / "configs/tiny.yaml"),
            "--data",
            str(tmp_path / "cat"),
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2
    assert "train.h5: file: is not an HDF5 file" in capsys.readouterr().err


def test_train_with_unknown_override_exits_2(tmp_path, toy_catalog_dir, capsys):
    code = main(
        [
            "train",
            "--config",
            str(REPO / "configs/tiny.yaml"),
            "--data",
            str(toy_catalog_dir),
            "--out",
            str(tmp_path / "r"),
            "--set",
            "train.speed=9",
        ]
    )
    assert code == 2
    assert "unknown config key 'train.speed'" in capsys.readouterr().err


def test_evaluate_writes_table1(tiny_run_dir, toy_catalog_dir, tmp_path):
    res = _run(
        "evaluate",
        "--run",
        str(tiny_run_dir),
        "--data",
        str(toy_catalog_dir),
        "--out",
        str(tmp_path / "ev"),
        "--no-figures",
        "--configuration",
        "late:given=lsst,sfh[t>=10Gyr]",
    )
    assert res.returncode == 0, res.stderr
    table = (tmp_path / "ev" / "table1.md").read_text()
    for label in ("LSST magnitudes only", "LSST + SFH (0-10 Gyr given)", "LSST + SFH (10-13.8 Gyr given)", "| late |"):
        assert label in table
    assert "sigma_NMAD" in table


def test_evaluate_rejects_a_bad_configuration(tiny_run_dir, toy_catalog_dir):
    res = _run("evaluate", "--run", str(tiny_run_dir), "--data", str(toy_catalog_dir), "--configuration", "given=xray")
    assert res.returncode == 2
    assert "unknown modality 'xray'" in res.stderr


def test_predict_from_file_to_file(tiny_run_dir, toy_catalog_dir, tmp_path):
    with h5py.File(toy_catalog_dir / "test.h5") as f:
        lsst = f["modalities/lsst"][:50]
    inp = tmp_path / "in.h5"
    with h5py.File(inp, "w") as f:
        f["modalities/lsst"] = lsst
    out = tmp_path / "pred.h5"
    res = _run("predict", "--run", str(tiny_run_dir), "--input", str(inp), "--given", "lsst", "--out", str(out))
    assert res.returncode == 0, res.stderr
    with h5py.File(out) as f:
        assert f["predictions/sed"].shape == (50, 40)
        assert f["predictions/scalars"].attrs["columns"].tolist() == [
            "redshift",
            "log10_halo_mass",
            "log10_stellar_mass",
        ]
        assert f["given/lsst"][()].all() and not f["given/sed"][()].any()
        assert np.isfinite(f["predictions/scalars"][()]).all()
    again = _run("predict", "--run", str(tiny_run_dir), "--input", str(inp), "--out", str(out))
    assert again.returncode == 2 and "exists; pass --overwrite" in again.stderr


def test_predict_rejects_wrong_lengths(tiny_run_dir, tmp_path):
    inp = tmp_path / "in.h5"
    with h5py.File(inp, "w") as f:
        f["modalities/lsst"] = np.zeros((4, 5), np.float32)
    res = _run("predict", "--run", str(tiny_run_dir), "--input", str(inp), "--out", str(tmp_path / "p.h5"))
    assert res.returncode == 2
    assert "in.h5: /modalities/lsst: shape (4, 5), expected [N, 6]" in res.stderr
    assert not (tmp_path / "p.h5").exists()
