"""The validation split (issue 17, point 7): make-catalog and import-catalog write train, val and
test (fractions configurable, seeded); training validates on val and never on test; catalogs
written before the validation split still open and train, without validation."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import REPO
from test_importer import MAPPING, _columns, write_csv, write_h5, write_mapping

from mosaic_hpc.cli import main
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.data.importer import import_catalog, parse_mapping
from mosaic_hpc.data.mock import make_mock_catalog
from mosaic_hpc.data.splits import SplitCounts, split_counts, split_labels


def _rows(path: Path) -> np.ndarray:
    return Catalog.open(path).read_all()["scalars"]


def test_split_counts_and_labels():
    assert split_counts(100, 0.1, 0.2) == SplitCounts(70, 10, 20)
    labels = split_labels(split_counts(100, 0.1, 0.2), np.random.default_rng(5))
    assert np.bincount(labels).tolist() == [70, 10, 20]
    # test rows are the first of the permutation: the same with or without a validation split
    without_val = split_labels(split_counts(100, 0.0, 0.2), np.random.default_rng(5))
    np.testing.assert_array_equal(labels == 2, without_val == 2)
    for args, match in [
        ((10, 0.5, 0.5), "must be < 1"),
        ((10, -0.1, 0.1), "val_fraction"),
        ((3, 0.3, 0.4), "at least 2"),
    ]:
        with pytest.raises(ValueError, match=match):
            split_counts(*args)


def test_mock_catalog_has_three_splits_and_keeps_its_test_rows(tmp_path):
    make_mock_catalog(tmp_path / "new", 400, seed=2, progress=False)
    make_mock_catalog(tmp_path / "old", 400, seed=2, val_fraction=0.0, progress=False)
    new = {s: _rows(tmp_path / "new" / f"{s}.h5") for s in ("train", "val", "test")}
    assert [len(v) for v in new.values()] == [320, 40, 40]
    assert not (tmp_path / "old" / "val.h5").exists()
    np.testing.assert_array_equal(new["test"], _rows(tmp_path / "old" / "test.h5"))  # same test galaxies
    old_train = _rows(tmp_path / "old" / "train.h5")
    # validation rows come out of the former training rows; the remaining training rows keep their order
    as_set = lambda a: {tuple(r) for r in a.tolist()}
    assert as_set(new["train"]) | as_set(new["val"]) == as_set(old_train)
    assert not as_set(new["train"]) & as_set(new["val"])
    kept = np.isin(old_train[:, 0], new["train"][:, 0])
    np.testing.assert_array_equal(old_train[kept], new["train"])
    train = Catalog.open(tmp_path / "new", "train")
    np.testing.assert_allclose(train.stats.mean["scalars"], new["train"].mean(axis=0), rtol=1e-5)  # train rows only
    for s in ("val", "test"):
        np.testing.assert_array_equal(
            Catalog.open(tmp_path / "new", s).stats.mean["scalars"], train.stats.mean["scalars"]
        )
    with h5py.File(tmp_path / "new" / "val.h5", "r") as f:
        assert (f.attrs["split"], f.attrs["val_fraction"], f.attrs["test_fraction"]) == ("val", 0.1, 0.1)


def test_make_catalog_cli_val_fraction(tmp_path, capsys):
    assert (
        main(
            [
                "make-catalog",
                "--n-galaxies",
                "200",
                "--val-fraction",
                "0.25",
                "--out",
                str(tmp_path / "c"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert [Catalog.open(tmp_path / "c", s).n_rows for s in ("train", "val", "test")] == [130, 50, 20]
    capsys.readouterr()
    assert main(["make-catalog", "--n-galaxies", "200", "--val-fraction", "0.95", "--out", str(tmp_path / "d")]) == 2
    assert "must be < 1" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_import_splits_are_seeded_disjoint_and_complete(tmp_path):
    src = write_h5(tmp_path / "c.h5", _columns())
    mapping = {**MAPPING, "split": {"val_fraction": 0.2, "test_fraction": 0.1, "seed": 7}}
    a = import_catalog(src, write_mapping(tmp_path / "m.yaml", mapping), tmp_path / "a", show_progress=False)
    b = import_catalog(src, tmp_path / "m.yaml", tmp_path / "b", show_progress=False)
    assert sorted(a) == ["test", "train", "val"]
    sizes = {s: len(_rows(p)) for s, p in a.items()}
    assert sizes == {"train": 140, "val": 40, "test": 20}
    for s in a:
        np.testing.assert_array_equal(_rows(a[s]), _rows(b[s]))  # same seed, same split
    z = np.concatenate([_rows(a[s])[:, 0] for s in a])
    np.testing.assert_allclose(np.sort(z), np.sort(_columns()["redshift"]), rtol=1e-6)  # every row once
    # the test rows do not depend on the validation fraction (catalogs from before val keep their test rows)
    mapping["split"] = {"val_fraction": 0.0, "test_fraction": 0.1, "seed": 7}
    c = import_catalog(src, write_mapping(tmp_path / "m0.yaml", mapping), tmp_path / "c", show_progress=False)
    assert sorted(c) == ["test", "train"]
    np.testing.assert_array_equal(_rows(c["test"]), _rows(a["test"]))


def test_split_none_writes_every_row_to_all(tmp_path, capsys):
    src = write_csv(tmp_path / "new.csv", _columns(50))
    mapping = {k: v for k, v in MAPPING.items() if k != "group"}
    written = import_catalog(
        src, write_mapping(tmp_path / "m.yaml", {**mapping, "split": "none"}), tmp_path / "o", show_progress=False
    )
    assert list(written) == ["all"] and sorted(p.name for p in (tmp_path / "o").iterdir()) == ["all.h5"]
    np.testing.assert_allclose(_rows(written["all"])[:, 0], _columns(50)["redshift"], rtol=1e-6)  # input order
    # the same from the command line, overriding the mapping's rule; an existing catalog is replaced whole
    args = ["import-catalog", "--input", str(src), "--mapping", str(tmp_path / "m.yaml"), "--out", str(tmp_path / "p")]
    assert main([*args, "--val-fraction", "0.2", "--test-fraction", "0.2"]) == 0
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["test.h5", "train.h5", "val.h5"]
    assert main([*args, "--no-split", "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["all.h5"]  # no stale train/val/test left
    capsys.readouterr()
    assert main([*args, "--no-split", "--test-fraction", "0.2", "--overwrite"]) == 2
    assert "--no-split conflicts with --test-fraction" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("split", "match"),
    [
        ({"val_fraction": 1.0}, r"split.val_fraction: must be in \[0, 1\)"),
        ({"val_fraction": 0.6, "test_fraction": 0.4}, r"split: val_fraction \+ test_fraction must be < 1"),
        ("random", r"split: must be 'none' or a mapping"),
        ({"test_fraction": "a"}, r"split.test_fraction: must be a number"),
    ],
)
def test_bad_split_rules_name_the_key(split, match):
    with pytest.raises(ValueError, match=match):
        parse_mapping({**MAPPING, "split": split}, "map.yaml")


def test_separate_test_file_still_cuts_validation_rows(tmp_path):
    train_src = write_h5(tmp_path / "train.h5", _columns(100, seed=1))
    test_src = write_h5(tmp_path / "test.h5", _columns(30, seed=2))
    mapping = write_mapping(tmp_path / "m.yaml", {**MAPPING, "split": {"val_fraction": 0.15, "seed": 1}})
    written = import_catalog(train_src, mapping, tmp_path / "o", input_test=test_src, show_progress=False)
    assert {s: len(_rows(p)) for s, p in written.items()} == {"train": 85, "val": 15, "test": 30}


# ------------------------------------------------------------------------- training


def _train(catalog: Path, run: Path, caplog) -> list[dict]:
    caplog.set_level(logging.INFO, logger="mosaic_hpc.train")
    args = ["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--data", str(catalog), "--out", str(run)]
    args += [
        "--threads",
        "1",
        "--set",
        "train.max_steps=4",
        "--set",
        "train.eval_every=2",
        "--set",
        "train.log_every=2",
    ]
    assert main(args) == 0
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_training_validates_on_val_and_never_reads_test(tmp_path, caplog):
    from toy_catalog import write_toy_catalog

    cat = write_toy_catalog(tmp_path / "cat", n_train=256, n_test=64, n_val=64)
    (cat / "test.h5").write_bytes(b"not a catalog")  # reading it would fail the run
    records = _train(cat, tmp_path / "run", caplog)
    assert [r["step"] for r in records if "val/all" in r] == [2, 4]


def test_catalog_without_val_trains_without_validation_and_says_so(tmp_path, toy_catalog_dir, caplog):
    records = _train(toy_catalog_dir, tmp_path / "run", caplog)  # the toy catalog has train and test only
    assert records and not any("val/all" in r for r in records)
    notes = [r.getMessage() for r in caplog.records if "no validation split" in r.getMessage()]
    assert len(notes) == 1 and "test split is never used for validation" in notes[0]
