"""export -> from_pretrained: the same predictions as the run, and clear refusals of bad model directories."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import mosaic_hpc
from mosaic_hpc.cli import main
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.lifecycle.model_dir import CARD, CONFIG, WEIGHTS, export_model


@pytest.fixture(scope="module")
def inputs(toy_catalog_dir) -> dict[str, np.ndarray]:
    truth = Catalog.open(toy_catalog_dir, "test").read(0, 64)
    return {"lsst": truth["lsst"], "scalars": truth["scalars"]}


@pytest.fixture(scope="module")
def model_dir(tiny_run_dir, tmp_path_factory):
    return export_model(tiny_run_dir, tmp_path_factory.mktemp("export") / "model")


def _assert_same_predictions(a, b, inputs) -> None:
    pa, pb = a.predict(inputs, batch_size=16), b.predict(inputs, batch_size=16)
    for name in pa.values:
        assert np.array_equal(pa.values[name], pb.values[name], equal_nan=True), name
        assert np.array_equal(pa.given[name], pb.given[name]), name
        if pa.sigma is not None:
            assert np.array_equal(pa.sigma[name], pb.sigma[name], equal_nan=True), name


def test_fp32_export_predicts_exactly_what_the_run_predicts(tiny_run_dir, model_dir, inputs):
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([CARD, CONFIG, WEIGHTS])
    _assert_same_predictions(mosaic_hpc.load_run(tiny_run_dir), mosaic_hpc.from_pretrained(model_dir), inputs)


def test_load_run_and_predict_accept_a_model_directory(tiny_run_dir, model_dir, inputs):
    _assert_same_predictions(mosaic_hpc.load_run(tiny_run_dir), mosaic_hpc.load_run(model_dir), inputs)


def test_loading_never_imports_pickle_based_loaders(model_dir, monkeypatch):
    import torch

    def refuse(*args, **kwargs):
        raise AssertionError("from_pretrained called torch.load")

    monkeypatch.setattr(torch, "load", refuse)
    mosaic_hpc.from_pretrained(model_dir)


def test_config_json_carries_schema_normalisation_masking_and_provenance(tiny_run_dir, model_dir):
    config = json.loads((model_dir / CONFIG).read_text())
    run = mosaic_hpc.load_run(tiny_run_dir)
    assert config["schema"] == run.schema.to_dict()
    assert config["normalization"] == run.stats.to_dict()
    assert config["config"]["masking"] == run.config.to_dict()["masking"]
    assert config["provenance"]["step"] == 300
    assert config["provenance"]["seed"] == run.config.train.seed
    assert {"commit", "catalog_source"} <= set(config["provenance"])
    card = (model_dir / CARD).read_text()
    assert card.startswith("---\nlibrary_name: mosaic-hpc") and "Citation" in card and "lsst" in card


def test_bf16_export_is_half_the_size_and_close(tiny_run_dir, model_dir, tmp_path, inputs):
    small = export_model(tiny_run_dir, tmp_path / "bf16", dtype="bf16")
    assert (small / WEIGHTS).stat().st_size < 0.6 * (model_dir / WEIGHTS).stat().st_size
    exact = mosaic_hpc.from_pretrained(model_dir).predict(inputs).values["scalars"]
    approx = mosaic_hpc.from_pretrained(small).predict(inputs).values["scalars"]
    assert not np.array_equal(exact, approx)  # really rounded
    np.testing.assert_allclose(approx, exact, rtol=0.1, atol=0.1)


def test_step_selects_an_older_checkpoint_and_the_catalog_source_reaches_the_card(tiny_run_dir, tmp_path):
    argv = ["export", "--run", str(tiny_run_dir), "--step", "200", "--out", str(tmp_path / "m")]
    assert main([*argv, "--catalog-source", "toy mock v1"]) == 0
    provenance = json.loads((tmp_path / "m" / CONFIG).read_text())["provenance"]
    assert provenance["step"] == 200 and provenance["catalog_source"] == "toy mock v1"
    assert "toy mock v1" in (tmp_path / "m" / CARD).read_text()


def _cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_step_names_the_steps_there_are(tiny_run_dir, tmp_path, capsys):
    err = _cli_error(["export", "--run", str(tiny_run_dir), "--step", "7", "--out", str(tmp_path / "m")], capsys)
    assert "--step 7" in err and "300" in err
    assert not (tmp_path / "m").exists()


def test_existing_out_is_kept_without_overwrite(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "m"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    err = _cli_error(["export", "--run", str(tiny_run_dir), "--out", str(out)], capsys)
    assert "--overwrite" in err
    assert (out / "notes.txt").read_text() == "mine"


def test_overwrite_replaces_and_a_failed_export_keeps_the_old_directory(tiny_run_dir, tmp_path, monkeypatch):
    from mosaic_hpc.lifecycle import model_dir as md

    out = export_model(tiny_run_dir, tmp_path / "m", step=200)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(md, "write_model_card", boom)
    with pytest.raises(OSError):
        export_model(tiny_run_dir, out, overwrite=True)
    assert json.loads((out / CONFIG).read_text())["provenance"]["step"] == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left behind
    monkeypatch.undo()
    export_model(tiny_run_dir, out, overwrite=True)
    assert json.loads((out / CONFIG).read_text())["provenance"]["step"] == 300


def test_missing_model_directory_is_one_line(tmp_path, capsys):
    err = _cli_error(["export", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "m")], capsys)
    assert "nope" in err
    with pytest.raises(FileNotFoundError, match="nope"):
        mosaic_hpc.from_pretrained(tmp_path / "nope")


@pytest.fixture
def copy_of(model_dir, tmp_path):
    import shutil

    return shutil.copytree(model_dir, tmp_path / "copy")


def test_corrupt_safetensors_is_refused_by_name(copy_of):
    data = bytearray((copy_of / WEIGHTS).read_bytes())
    data[-5] ^= 0xFF
    (copy_of / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"model\.safetensors.*SHA-256"):
        mosaic_hpc.from_pretrained(copy_of)


def test_truncated_safetensors_with_matching_digest_is_refused_by_name(copy_of):
    from mosaic_hpc.training.integrity import file_digest

    (copy_of / WEIGHTS).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    config = json.loads((copy_of / CONFIG).read_text())
    config["weights_sha256"] = file_digest(copy_of / WEIGHTS)
    (copy_of / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
        mosaic_hpc.from_pretrained(copy_of)


def test_config_not_matching_the_tensors_names_the_field(copy_of):
    config = json.loads((copy_of / CONFIG).read_text())
    name = next(iter(config["tensors"]))
    config["tensors"][name]["shape"] = [1, 2, 3]
    (copy_of / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"config\.json: tensors\.{name}\.shape"):
        mosaic_hpc.from_pretrained(copy_of)


def test_config_with_another_model_size_is_refused(copy_of):
    config = json.loads((copy_of / CONFIG).read_text())
    config["config"]["model"]["d_model"] = 64
    config["config"]["model"]["n_heads"] = 2
    (copy_of / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"model\.safetensors.*do not fit"):
        mosaic_hpc.from_pretrained(copy_of)


def test_config_json_that_is_not_json_is_refused_by_name(copy_of):
    (copy_of / CONFIG).write_text("{")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        mosaic_hpc.from_pretrained(copy_of)


def test_loading_imports_no_hub_client(model_dir):
    import subprocess

    code = (
        "import sys, mosaic_hpc; mosaic_hpc.from_pretrained(sys.argv[1]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('huggingface_hub', 'requests', 'urllib3')))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(model_dir)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
