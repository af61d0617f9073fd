"""MOSAIC's RAIL stages run through RAIL: discovery, Inform then Estimate through files, qp output.

Toy size: a smooth analytic photometry-redshift relation (not a mock of real galaxies), a model
of one block trained for 300 steps. The round trip goes through RAIL's own machinery: tables read
from HDF5 by RAIL, the model written and read by the stage's handle, the estimate computed chunk
by chunk and written by RAIL's qp handle, then read back with ``qp.read``.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("rail.estimation.estimator") is None or importlib.util.find_spec("qp") is None,
    reason="needs the 'rail' extra (pz-rail-base, qp-prob)",
)

BANDS = "ugrizy"
TINY = {
    "train.max_steps": 300,
    "train.lr": 3.0e-3,
    "train.warmup_steps": 5,
    "data.micro_batch_size": 64,
    "model.d_model": 16,
    "model.n_layers": 1,
    "model.n_heads": 2,
}


def toy_table(n: int, seed: int) -> dict[str, np.ndarray]:
    """DC2-named columns: magnitudes a smooth function of redshift plus 0.05 mag noise; 99 = non-detection."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 2.0, n)
    table = {"redshift": z}
    for i, b in enumerate(BANDS):
        table[f"mag_{b}_lsst"] = 23 + 1.5 * np.sin(z * (i + 1) / 2) + 0.3 * i * z + 0.05 * rng.standard_normal(n)
        table[f"mag_err_{b}_lsst"] = 0.02 + 0.02 * rng.random(n)
    table["mag_u_lsst"][:10] = 99.0  # non-detections, as in the DC2 files
    table["mag_err_u_lsst"][:10] = 99.0
    return table


def _write_table(path, table) -> str:
    import tables_io

    tables_io.write({"photometry": table}, str(path))
    return str(path)


def test_rail_discovers_the_mosaic_stages(tmp_path):
    # from another directory, as a RAIL user would: the installed namespace package, not the checkout's cwd
    code = (
        "import rail.stages\n"
        "from rail.core import RailEnv\n"
        "rail.stages.import_and_attach_all(silent=True)\n"
        "print('rail.mosaic' in RailEnv.list_rail_packages())\n"
        "print(rail.stages.MosaicInformer.__module__, rail.stages.MosaicEstimator.__module__)\n"
        "print(issubclass(rail.stages.MosaicEstimator, rail.stages.CatEstimator))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["True", "rail.estimation.algos.mosaic", "rail.estimation.algos.mosaic", "True"]


def test_inform_then_estimate_through_rail_files(tmp_path):
    import qp

    from mosaic_hpc.rail_bridge import MemberPredictor, MosaicRailModel
    from rail.estimation.algos.mosaic import MosaicEstimator, MosaicInformer

    train_path = _write_table(tmp_path / "train.hdf5", toy_table(800, 0))
    test_table = toy_table(400, 1)
    test_path = _write_table(tmp_path / "test.hdf5", test_table)
    model_path = tmp_path / "mosaic_model.json"
    inform = MosaicInformer.make_stage(
        name="inform_mosaic_toy",
        hdf5_groupname="photometry",
        config_overrides=TINY,
        run_dir=str(tmp_path / "runs"),
        n_members=2,
        model=str(model_path),
    )
    import tables_io

    inform.inform(tables_io.read(train_path))
    saved = json.loads(model_path.read_text())  # the RAIL model file is JSON, not a pickle
    assert len(saved["runs"]) == 2 and saved["photometry"]["bands"] == [f"mag_{b}_lsst" for b in BANDS]

    out_path = tmp_path / "pz.hdf5"
    estimate = MosaicEstimator.make_stage(
        name="estimate_mosaic_toy",
        hdf5_groupname="photometry",
        model=str(model_path),
        input=test_path,
        chunk_size=150,  # three chunks of 150, 150 and 100 rows, each written by RAIL's qp handle
        output=str(out_path),
    )
    estimate.run()  # as a ceci pipeline runs a stage: inputs and outputs are files
    estimate.finalize()
    ens = qp.read(str(out_path))
    assert ens.npdf == 400 and isinstance(ens.gen_obj, qp.mixmod_gen)
    # the chunks are in order: the file equals a direct prediction of the whole table
    mus, sigmas, weights = MemberPredictor(MosaicRailModel.read(model_path)).predict(test_table)
    np.testing.assert_allclose(ens.objdata["means"], mus.T, rtol=1e-5)
    np.testing.assert_allclose(ens.objdata["stds"], np.maximum(sigmas.T, 1e-6), rtol=1e-5)
    np.testing.assert_allclose(ens.objdata["weights"], weights.T, rtol=1e-6)
    per_member = weights.shape[0] // 2  # two members, each one Gaussian or its mixture components
    np.testing.assert_allclose(weights[:per_member].sum(0), 0.5, rtol=1e-6)  # equal weight per member
    np.testing.assert_allclose(weights[per_member:].sum(0), 0.5, rtol=1e-6)
    # it learned the relation: median p(z) well ahead of always predicting the training mean
    z = test_table["redshift"]
    mae = np.mean(np.abs(ens.median().ravel() - z))
    assert mae < 0.6 * np.mean(np.abs(z - z.mean())), mae
    assert np.isfinite(ens.cdf(np.vstack(z))).all()


@pytest.mark.parametrize("components", [1, 2])
def test_one_member_gives_its_own_distribution_per_galaxy(tmp_path, components):
    import qp

    from rail.estimation.algos.mosaic import MosaicEstimator, MosaicInformer

    inform = MosaicInformer.make_stage(
        name=f"inform_mosaic_one_{components}",
        hdf5_groupname="",
        config_overrides={**TINY, "train.max_steps": 5, "model.mixture_components": components},
        run_dir=str(tmp_path / "runs"),
        output_mode="return",
    )
    model = inform.inform(toy_table(300, 2))
    est = MosaicEstimator.make_stage(
        name=f"estimate_mosaic_one_{components}", hdf5_groupname="", model=model, output_mode="return"
    )
    ens = est.estimate(toy_table(50, 3)).data
    assert ens.npdf == 50
    if components == 1:  # one Gaussian head: one normal per galaxy
        assert isinstance(ens.gen_obj, qp.stats.norm_gen)
    else:  # mixture heads: the member's own mixture
        assert isinstance(ens.gen_obj, qp.mixmod_gen) and ens.objdata["weights"].shape == (50, components)
        np.testing.assert_allclose(ens.objdata["weights"].sum(1), 1.0, rtol=1e-6)


def test_bad_model_and_table_give_clear_errors(tmp_path):
    from mosaic_hpc.rail_bridge import MosaicRailModel
    from rail.estimation.algos.mosaic import MosaicEstimator, MosaicInformer

    evil = tmp_path / "model.json"
    evil.write_bytes(pickle.dumps({"runs": []}))  # a pickle is never unpickled: it is not JSON
    est = MosaicEstimator.make_stage(name="estimate_mosaic_bad", hdf5_groupname="", model=str(evil))
    with pytest.raises(ValueError, match="not a MOSAIC RAIL model"):
        est.estimate(toy_table(20, 4))
    with pytest.raises(ValueError, match="not a MOSAIC RAIL model"):
        MosaicRailModel.from_json('{"format": "other"}')
    table = toy_table(50, 5)
    del table["mag_err_z_lsst"]
    inform = MosaicInformer.make_stage(
        name="inform_mosaic_bad", hdf5_groupname="", run_dir=str(tmp_path / "r"), output_mode="return"
    )
    with pytest.raises(ValueError, match=r"no error column\(s\) \['mag_err_z_lsst'\]"):
        inform.inform(table)
