"""export from DeepSpeed runs (2 gloo CPU ranks, ZeRO-2 and ZeRO-3): from_pretrained predicts what load_run predicts.

ZeRO-2 shards the optimizer state and ZeRO-3 the parameters themselves; rank 0 consolidates the
fp32 weights into each checkpoint's model.pt, which export reads. The runs are 4 steps of
configs/tiny.yaml: the point is the checkpoint layout, not the fit.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_deepspeed_train import _common, _deepspeed, _launch, _ok, pytestmark  # noqa: F401 (shared launch helpers)

import mosaic_hpc
from mosaic_hpc.data.catalog import Catalog
from mosaic_hpc.lifecycle.model_dir import export_model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from toy_catalog import write_toy_catalog

    return write_toy_catalog(tmp_path_factory.mktemp("catalog"))


@pytest.mark.parametrize("ds_json", ["zero2.json", "zero3.json"])
def test_export_of_a_zero_run_predicts_exactly_what_load_run_predicts(ds_json, data_dir, tmp_path):
    run = tmp_path / "run"
    cmd = _deepspeed(2, ds_json) + _common(data_dir, run) + ["--max-steps", "4", "--set", "train.save_every=4"]
    _ok(_launch(cmd))
    model = export_model(run, tmp_path / "model")
    truth = Catalog.open(data_dir, "test").read(0, 48)
    inputs = {"lsst": truth["lsst"]}
    expected = mosaic_hpc.load_run(run).predict(inputs, batch_size=16)
    got = mosaic_hpc.from_pretrained(model).predict(inputs, batch_size=16)
    for name, values in expected.values.items():
        assert np.max(np.abs(values - got.values[name])) == 0.0, name
