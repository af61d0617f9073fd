"""Hostile tables and catalog directories (issue 15, items 9, 10, 11; docs/hardening.md).

import-catalog names the file and the line of undecodable bytes, refuses duplicate columns,
values the catalog's float32 cannot hold and finite sentinels that would wreck the statistics;
check-catalog finds such a sentinel in a catalog written by another tool; shard-catalog never
leaves a directory holding both ``train.h5`` and ``train/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from mosaic_hpc.cli import main
from mosaic_hpc.data.catalog import Catalog, CatalogWriter, default_norm_modes, stats_from_running

N = 300
MAPPING = {
    "modalities": {
        "scalars": {"kind": "scalars", "columns": ["redshift"]},
        "lsst": {"kind": "vector", "columns": ["mag_g", "mag_r"], "unit": "AB mag", "missing": [99.0]},
    }
}


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def columns(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"redshift": rng.uniform(0, 3, N), "mag_g": rng.normal(24, 1, N), "mag_r": rng.normal(23.5, 1, N)}


def write_csv(path: Path, cols: dict[str, np.ndarray], header: list[str] | None = None) -> Path:
    names = header or list(cols)
    lines = [",".join(names)] + [",".join(repr(float(cols[c][i])) for c in cols) for i in range(N)]
    path.write_text("\n".join(lines) + "\n")
    return path


def import_table(tmp_path: Path, table: Path) -> int:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump(MAPPING))
    args = ["import-catalog", "--input", str(table), "--mapping", str(mapping), "--out", str(tmp_path / "out")]
    return main([*args, "--no-progress"])


# ------------------------------------------------------------------------------ item 11


def test_undecodable_bytes_name_the_file_and_line(tmp_path, capsys):
    table = write_csv(tmp_path / "t.csv", columns())
    data = bytearray(table.read_bytes())
    at = data.index(b"\n", data.index(b"\n") + 1) + 3  # inside the second data line
    data[at] = 0xFF
    table.write_bytes(bytes(data))
    assert import_table(tmp_path, table) == 2
    assert f"{table}: line 3: is not UTF-8 text (byte 0xff" in one_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sentinel", [3e38, -1e30])
def test_a_finite_sentinel_is_refused_before_it_wrecks_the_statistics(tmp_path, capsys, sentinel):
    cols = columns()
    cols["mag_r"][[7, 50, 51]] = sentinel
    assert import_table(tmp_path, write_csv(tmp_path / "t.csv", cols)) == 2
    err = one_line(capsys)
    assert "column 'mag_r': data row 7 holds" in err and "robust standard deviations" in err and "missing:" in err
    assert not (tmp_path / "out").exists()


def test_a_value_beyond_float32_is_not_called_a_constant_column(tmp_path, capsys):
    cols = columns()
    cols["redshift"][12] = 1e300
    assert import_table(tmp_path, write_csv(tmp_path / "t.csv", cols)) == 2
    err = one_line(capsys)
    assert "column 'redshift': data row 12 holds 1e+300, beyond the catalog's float32 range" in err
    assert "constant" not in err


def test_a_duplicate_csv_column_is_refused(tmp_path, capsys):
    table = write_csv(tmp_path / "t.csv", columns(), header=["redshift", "mag_g", "mag_g"])
    assert import_table(tmp_path, table) == 2
    assert "column 'mag_g': appears 2 times in the file's columns" in one_line(capsys)


def test_a_duplicate_parquet_column_is_one_line(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    cols = columns()
    names = ["redshift", "mag_g", "mag_r", "mag_r"]
    table = pa.Table.from_arrays([pa.array(cols[c]) for c in names], names=names)
    pq.write_table(table, tmp_path / "t.parquet")
    assert import_table(tmp_path, tmp_path / "t.parquet") == 2
    assert "column 'mag_r': appears 2 times in the file's columns" in one_line(capsys)


def test_check_catalog_finds_a_sentinel_another_tool_left(tmp_path, toy_catalog_dir, capsys):
    """A catalog written without import-catalog's check: the sentinel inflates the stored std."""
    rows = Catalog.open(toy_catalog_dir, "train").read_all()
    rows["lsst"][100:104, 2] = 3e38
    cat = Catalog.open(toy_catalog_dir, "train")
    with CatalogWriter(tmp_path / "train.h5", cat.schema) as w:
        w.append(rows)
        w.close(stats_from_running(w.running, default_norm_modes(cat.schema)))
    assert main(["check-catalog", str(tmp_path / "train.h5")]) == 2
    assert "train.h5: /modalities/lsst: row 100 column 2 holds 3e+38" in one_line(capsys)


# ------------------------------------------------------------------------------ item 9


def test_sharding_beside_a_single_file_split_is_refused(toy_catalog_dir, tmp_path, capsys):
    out = Path(shutil.copytree(toy_catalog_dir, tmp_path / "out"))
    before = sorted(p.name for p in out.iterdir())
    args = ["shard-catalog", "--input", str(toy_catalog_dir), "--out", str(out), "--n-shards", "2"]
    assert main(args) == 2
    assert "holds train.h5: shards written beside it would leave a catalog no command can open" in one_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == before
    assert main([*args, "--overwrite"]) == 0
    assert not (out / "train.h5").exists() and len(list((out / "train").glob("*.h5"))) == 2
    assert Catalog.open(out, "train").n_rows == Catalog.open(toy_catalog_dir, "train").n_rows
