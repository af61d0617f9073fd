"""The generator's contract: bad input, determinism, atomic output, overwrite rules, CLI, noise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from mosaic_hpc.cli import main
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.data.mock import generator, make_mock_catalog


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r", locking=False) as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_galaxies": 0}, "positive integer"),
        ({"n_galaxies": -5}, "positive integer"),
        ({"n_galaxies": 2.5}, "positive integer"),
        ({"n_galaxies": 100, "test_fraction": 0.0}, "strictly between 0 and 1"),
        ({"n_galaxies": 100, "test_fraction": 1.0}, "strictly between 0 and 1"),
        ({"n_galaxies": 100, "test_fraction": -0.2}, "strictly between 0 and 1"),
        ({"n_galaxies": 100, "noise": "gaussian"}, "noise must be one of"),
        ({"n_galaxies": 100, "seed": -1}, "non-negative"),
        ({"n_galaxies": 2, "test_fraction": 0.5}, "need at least 2"),
    ],
)
def test_bad_input_is_a_value_error(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_mock_catalog(tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


def test_existing_directory_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "cat"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty; pass --overwrite"):
        make_mock_catalog(out, 300, progress=False)
    make_mock_catalog(out, 300, progress=False, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"  # only the catalog's own files are replaced
    assert sum(Catalog.open(out, s).n_rows for s in ("train", "val", "test")) == 300
    make_mock_catalog(out, 200, seed=1, val_fraction=0.0, progress=False, overwrite=True)
    assert sum(Catalog.open(out, s).n_rows for s in ("train", "test")) == 200
    assert not (out / "val.h5").exists()  # the old validation split went with the old catalog


def test_a_file_as_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        make_mock_catalog(tmp_path / "file", 100, progress=False)


def test_same_seed_gives_identical_datasets(tmp_path: Path) -> None:
    make_mock_catalog(tmp_path / "a", 1500, seed=4, progress=False)
    make_mock_catalog(tmp_path / "b", 1500, seed=4, progress=False)
    make_mock_catalog(tmp_path / "c", 1500, seed=5, progress=False)
    for split in ("train.h5", "val.h5", "test.h5"):
        a, b, c = (_datasets(tmp_path / d / split) for d in "abc")
        assert a.keys() == b.keys()
        for name in a:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert not np.array_equal(a["modalities/scalars"], c["modalities/scalars"])


def test_failure_leaves_no_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = generator.simulate_chunk

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(generator, "simulate_chunk", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        make_mock_catalog(tmp_path / "cat", 20000, progress=False)
    assert list((tmp_path / "cat").iterdir()) == []  # no final file, no temporary left behind


def test_noise_model(tmp_path: Path) -> None:
    """LSST 10-year noise scatters the magnitudes of the same galaxies; SPHEREx all-sky noise makes
    most faint galaxies non-detections (NaN), never fake magnitudes."""
    make_mock_catalog(tmp_path / "noisy", 1200, seed=2, noise="lsst10", progress=False)
    noisy = Catalog.open(tmp_path / "noisy", "train").read_all()
    assert np.isnan(noisy["spherex"]).mean() > 0.5
    assert np.isfinite(noisy["lsst"][:, 1:5]).mean() > 0.99  # g-z detected for i < 25.3 but rare dropouts
    i_mag, seen = noisy["lsst"][:, 3], np.isfinite(noisy["spherex"][:, :34])  # bands 1-2, the deepest
    assert seen[i_mag < 21.0].mean() > seen[i_mag > 24.0].mean() + 0.3  # bright galaxies are seen by SPHEREx
    assert np.isfinite(noisy["sed"]).all() and np.isfinite(noisy["scalars"]).all()


def test_cli_help_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["make-catalog", "--help"])
    assert exc.value.code == 0
    assert "--n-galaxies" in capsys.readouterr().out
    assert main(["make-catalog", "--n-galaxies", "0", "--out", str(tmp_path / "x")]) == 2
    assert "positive integer" in capsys.readouterr().err
    assert main(["make-catalog", "--n-galaxies", "10", "--test-fraction", "1.5", "--out", str(tmp_path / "x")]) == 2


def test_cli_writes_a_catalog_without_importing_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from mosaic_hpc.cli import main; "
        f"rc = main(['make-catalog', '--n-galaxies', '200', '--out', r'{tmp_path / 'cat'}', '--no-progress']); "
        "assert 'torch' not in sys.modules and 'mpi4py' not in sys.modules; sys.exit(rc)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "wrote 200 galaxies" in res.stdout
    assert sorted(p.name for p in (tmp_path / "cat").iterdir()) == ["test.h5", "train.h5", "val.h5"]
