"""``train --init-from`` (fine-tuning from a run's weights) and ``predict --format qp`` (p(z) read back by qp).

A toy photo-z catalog (the analytic photometry of test_rail_stages, in the DC2 benchmark's
schema) and a small Gaussian-head run trained on it through the CLI.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO
from test_rail_stages import BANDS, toy_table

from mosaic_hpc import mixture
from mosaic_hpc.data.catalog import Catalog, write_catalog
from mosaic_hpc.rail_bridge import Photometry

CONFIG = REPO / "configs" / "photoz_dc2.yaml"
SMALL = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "data.micro_batch_size=64", "train.warmup_steps=5"]
needs_qp = pytest.mark.skipif(importlib.util.find_spec("qp") is None, reason="needs the 'rail' extra (qp-prob)")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mosaic_hpc.cli", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def _sets(*extra: str) -> list[str]:
    return [a for s in (*SMALL, *extra) for a in ("--set", s)]


def _train(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _cli("train", "--config", str(CONFIG), "--data", str(data), "--out", str(out), *extra)


@pytest.fixture(scope="module")
def photometry() -> Photometry:
    return Photometry.from_rail(
        [f"mag_{b}_lsst" for b in BANDS],
        [f"mag_err_{b}_lsst" for b in BANDS],
        dict.fromkeys([f"mag_{b}_lsst" for b in BANDS], 27.0),
        99.0,
        "redshift",
    )


@pytest.fixture(scope="module")
def photoz_catalog(tmp_path_factory, photometry) -> Path:
    out = tmp_path_factory.mktemp("photoz_catalog")
    write_catalog(out / "train.h5", photometry.schema(), photometry.rows(toy_table(800, 0)))
    stats = Catalog.open(out, "train").stats
    write_catalog(out / "test.h5", photometry.schema(), photometry.rows(toy_table(200, 1)), stats=stats)
    return out


@pytest.fixture(scope="module")
def photoz_run(tmp_path_factory, photoz_catalog) -> Path:
    run = tmp_path_factory.mktemp("photoz_run")
    res = _train(photoz_catalog, run, "--max-steps", "200", *_sets("train.lr=0.003"))
    assert res.returncode == 0, res.stderr[-3000:]
    return run


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from mosaic_hpc.training.checkpoint import CheckpointManager

    return torch.load(CheckpointManager(run).latest() / "model.pt", weights_only=True)


def test_init_from_starts_from_the_weights_with_a_fresh_optimizer(photoz_run, photoz_catalog, tmp_path):
    ft, fresh = tmp_path / "ft", tmp_path / "fresh"
    common = ["--max-steps", "2", *_sets("train.lr=0.00001")]
    res = _train(photoz_catalog, ft, *common, "--init-from", str(photoz_run))
    assert res.returncode == 0, res.stderr[-3000:]
    assert _train(photoz_catalog, fresh, *common).returncode == 0
    pre, after, scratch = _weights(photoz_run), _weights(ft), _weights(fresh)

    def dist(a, b):
        return sum(float((a[k] - b[k]).abs().sum()) for k in a)

    assert dist(after, pre) < 0.01 * dist(scratch, pre)  # two tiny steps away from the pretrained weights
    # a fresh optimizer and schedule: the step count starts at 0, not at the pretrained run's 200
    from mosaic_hpc.training.checkpoint import CheckpointManager, read_client_state

    assert read_client_state(CheckpointManager(ft).latest())["step"] == 2
    steps = [json.loads(line)["step"] for line in (ft / "metrics.jsonl").read_text().splitlines() if '"step"' in line]
    assert max(steps) <= 2


def test_init_from_names_both_sides_of_a_schema_mismatch(tiny_run_dir, photoz_catalog, tmp_path):
    res = _train(photoz_catalog, tmp_path / "x", "--init-from", str(tiny_run_dir))
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]
    assert "schema mismatch" in line and str(tiny_run_dir) in line and str(photoz_catalog) in line
    assert "spherex[12" in line and "lsst_err[6" in line


def test_init_from_with_another_model_config_is_a_clear_error(photoz_run, photoz_catalog, tmp_path):
    res = _train(photoz_catalog, tmp_path / "x", "--init-from", str(photoz_run), *_sets("model.d_model=32"))
    assert res.returncode == 2
    assert "do not fit this run's model config" in res.stderr and "config.yaml" in res.stderr


@needs_qp
def test_predict_format_qp_is_read_back_by_qp(photoz_run, photoz_catalog, tmp_path):
    import qp

    with h5py.File(photoz_catalog / "test.h5") as f:
        inputs = {m: f[f"modalities/{m}"][()] for m in ("lsst", "lsst_err")}
        z = f["modalities/scalars"][:, 0]
    inp = tmp_path / "in.h5"
    with h5py.File(inp, "w") as f:
        for m, v in inputs.items():
            f[f"modalities/{m}"] = v
    qp_out, h5_out = tmp_path / "pz.hdf5", tmp_path / "pred.h5"
    res = _cli("predict", "--run", str(photoz_run), "--input", str(inp), "--format", "qp", "--out", str(qp_out))
    assert res.returncode == 0, res.stderr
    assert _cli("predict", "--run", str(photoz_run), "--input", str(inp), "--out", str(h5_out)).returncode == 0
    ens = qp.read(str(qp_out))
    # the config's mixture heads: the qp file holds each galaxy's mixture, as the prediction file does
    assert isinstance(ens.gen_obj, qp.mixmod_gen) and ens.npdf == len(z)
    with h5py.File(h5_out) as f:
        mean = f["predictions/scalars"][:, 0]
        w, m, s = (f[f"mixture/scalars/{part}"][:, 0] for part in ("weight", "mean", "sigma"))
    for key, part in (("weights", w), ("means", m), ("stds", s)):
        np.testing.assert_allclose(ens.objdata[key], part, rtol=1e-6)
    np.testing.assert_allclose(ens.ancil["mean"], mean, rtol=1e-6)
    assert not ens.ancil["given"].any()
    np.testing.assert_allclose(ens.cdf(np.vstack(z)).ravel(), mixture.cdf(w, m, s, z.astype(np.float64)), atol=1e-6)


@needs_qp
def test_predict_format_qp_refuses_what_it_cannot_write(photoz_run, tiny_run_dir, photoz_catalog, tmp_path):
    with h5py.File(photoz_catalog / "test.h5") as f:
        scalars, lsst = f["modalities/scalars"][()], f["modalities/lsst"][()]
    inp = tmp_path / "in.h5"
    with h5py.File(inp, "w") as f:
        f["modalities/lsst"], f["modalities/scalars"] = lsst, scalars
    out = str(tmp_path / "pz.hdf5")
    bogus = _cli(
        "predict",
        "--run",
        str(photoz_run),
        "--input",
        str(inp),
        "--format",
        "qp",
        "--scalar",
        "mass",
        "--given",
        "lsst",
        "--out",
        out,
    )
    assert bogus.returncode == 2 and "no scalar column 'mass'" in bogus.stderr and "['redshift']" in bogus.stderr
    given = _cli("predict", "--run", str(photoz_run), "--input", str(inp), "--format", "qp", "--out", out)
    assert given.returncode == 2 and "'redshift' was an input for every galaxy" in given.stderr
    with h5py.File(inp, "a") as f:
        del f["modalities/scalars"]
    no_sigma = _cli("predict", "--run", str(tiny_run_dir), "--input", str(inp), "--format", "qp", "--out", out)
    assert no_sigma.returncode == 2 and "without Gaussian heads" in no_sigma.stderr
    txt = _cli(
        "predict", "--run", str(photoz_run), "--input", str(inp), "--format", "qp", "--out", str(tmp_path / "pz.txt")
    )
    assert txt.returncode == 2 and "must be an HDF5 file" in txt.stderr
