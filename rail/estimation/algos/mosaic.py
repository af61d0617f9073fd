"""MOSAIC as a RAIL estimator: ``MosaicInformer`` trains (or fine-tunes) runs, ``MosaicEstimator`` gives p(z).

Use as any RAIL ``CatInformer`` / ``CatEstimator`` pair::

    inform = MosaicInformer.make_stage(name="inform_mosaic", hdf5_groupname="photometry",
                                       mosaic_config="configs/photoz_dc2.yaml", run_dir="runs/rail")
    model = inform.inform(training_table)
    estimate = MosaicEstimator.make_stage(name="estimate_mosaic", hdf5_groupname="photometry", model=model)
    ensemble = estimate.estimate(test_table).data      # qp.Ensemble: one p(z) per galaxy

Photometry follows RAIL's shared options (``bands``, ``err_bands``, ``mag_limits``,
``nondetect_val``, ``redshift_col``); see :mod:`mosaic_hpc.rail_bridge` for how a table becomes
MOSAIC's inputs. With ``n_members`` > 1 the informer trains that many runs (seeds ``seed``,
``seed + 1``, ...) and the estimator returns the equal-weight mixture of their Gaussians
(``qp.mixmod``), otherwise one Gaussian per galaxy (``qp.stats.norm``). ``init_from`` names a
pretrained run (e.g. mock-pretrained) to fine-tune from with a fresh optimizer.

The model file is JSON (:class:`MosaicModelHandle`), never a pickle; it points to the run
directories, whose weights load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tables_io
from ceci.config import StageParameter as Param
from rail.core.common_params import SHARED_PARAMS
from rail.core.data import ModelHandle
from rail.estimation.estimator import CatEstimator
from rail.estimation.informer import CatInformer

from mosaic_hpc.evaluation.pdf import mixture_ensemble
from mosaic_hpc.rail_bridge import MemberPredictor, MosaicRailModel, Photometry, train_members

DEFAULT_CONFIG = Path(__file__).resolve().parents[3] / "configs" / "photoz_dc2.yaml"  # in a checkout
# RAIL's shared photometry options, the same for both stages (a model is only valid for its bands)
PHOTOMETRY_OPTIONS = {k: SHARED_PARAMS for k in ("nondetect_val", "mag_limits", "bands", "err_bands")}


class MosaicModelHandle(ModelHandle):
    """A ``MosaicRailModel`` as a JSON file: RAIL's default model handle would pickle it."""

    suffix = "json"

    @classmethod
    def _open(cls, path: str, **kwargs: Any) -> Any:
        if kwargs.get("mode", "r") == "w":
            return open(path, mode="w", encoding="utf-8")
        return cls._read(path)

    @classmethod
    def _read(cls, path: str, **kwargs: Any) -> MosaicRailModel:
        return MosaicRailModel.read(path)

    @classmethod
    def _write(cls, data: MosaicRailModel, path: str, **kwargs: Any) -> None:
        data.write(path)


def _photometry(config: Any) -> Photometry:
    return Photometry.from_rail(
        list(config.bands), list(config.err_bands), dict(config.mag_limits), config.nondetect_val, config.redshift_col
    )


def _numpy_table(stage: Any, data: Any) -> dict[str, np.ndarray]:
    if tables_io.types.table_type(data) != 1:  # 1 = numpyDict
        data = stage._convert_table_format(data, out_fmt_str="numpyDict")
    return data


class MosaicInformer(CatInformer):
    """Train MOSAIC (Gaussian heads) on a photometric training table, or fine-tune a pretrained run."""

    name = "MosaicInformer"
    entrypoint_function = "inform"
    outputs = [("model", MosaicModelHandle)]
    config_options = CatInformer.config_options.copy()
    config_options.update(
        zmin=SHARED_PARAMS,
        zmax=SHARED_PARAMS,
        nzbins=SHARED_PARAMS,
        redshift_col=SHARED_PARAMS,
        **PHOTOMETRY_OPTIONS,
        mosaic_config=Param(str, "", msg="MOSAIC run config YAML (default: configs/photoz_dc2.yaml of the checkout)"),
        config_overrides=Param(dict, {}, msg="dotted MOSAIC config keys to override, e.g. {'train.max_steps': 500}"),
        run_dir=Param(str, "mosaic_rail_run", msg="directory of the trained runs (member_0, member_1, ...)"),
        n_members=Param(int, 1, msg="ensemble members (seeds seed, seed+1, ...); p(z) is their mixture"),
        seed=Param(int, 0, msg="seed of the first member"),
        init_from=Param(str, "", msg="pretrained MOSAIC run to fine-tune from (fresh optimizer); '' = from scratch"),
    )

    def run(self) -> None:
        data = self.get_data("input")
        if self.config.hdf5_groupname:
            data = data[self.config.hdf5_groupname]
        config_path = Path(self.config.mosaic_config) if self.config.mosaic_config else DEFAULT_CONFIG
        self.model = train_members(
            _photometry(self.config),
            _numpy_table(self, data),
            config_path,
            self.config.run_dir,
            overrides=dict(self.config.config_overrides),
            n_members=self.config.n_members,
            seed=self.config.seed,
            init_from=self.config.init_from or None,
        )
        self.add_data("model", self.model)


class MosaicEstimator(CatEstimator):
    """p(z) from a ``MosaicInformer`` model, chunk by chunk: Gaussian, or a mixture over members."""

    name = "MosaicEstimator"
    entrypoint_function = "estimate"
    inputs = [("model", MosaicModelHandle), ("input", CatEstimator.inputs[1][1])]
    config_options = CatEstimator.config_options.copy()
    config_options.update(
        **PHOTOMETRY_OPTIONS,
        batch_size=Param(int, 4096, msg="galaxies per MOSAIC forward pass"),
    )

    def __init__(self, args: Any, **kwargs: Any) -> None:
        super().__init__(args, **kwargs)
        self._members: MemberPredictor | None = None

    def open_model(self, **kwargs: Any) -> Any:
        model = super().open_model(**kwargs)
        if isinstance(model, dict):  # an in-memory model handed over as a plain mapping
            model = MosaicRailModel.from_json(json.dumps(model))
        if not isinstance(model, MosaicRailModel):
            raise ValueError(f"{self.name}: model must come from MosaicInformer, got {type(model).__name__}")
        if tuple(self.config.bands) != model.photometry.bands:
            raise ValueError(
                f"{self.name}: bands {list(self.config.bands)} differ from the model's {list(model.photometry.bands)}"
            )
        self.model = model
        self._members = MemberPredictor(model)
        return model

    def _process_chunk(self, start: int, end: int, data: Any, first: bool) -> None:
        assert self._members is not None, "open_model runs before the chunks"
        mus, sigmas, weights = self._members.predict(_numpy_table(self, data), batch_size=self.config.batch_size)
        ens = mixture_ensemble(mus, sigmas, weights)
        self._do_chunk_output(ens, start, end, first, data=data)
