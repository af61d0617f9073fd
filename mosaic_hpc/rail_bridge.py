"""What the RAIL stages need from mosaic-hpc, in RAIL's terms: a photometry table in, runs and p(z) out.

RAIL estimators take tables whose columns are named by the shared options ``bands``,
``err_bands`` and ``redshift_col`` (DC2: ``mag_u_lsst`` ... , ``mag_err_u_lsst`` ...,
``redshift``), with non-detections marked by ``nondetect_val`` (99) and replaced by
``mag_limits``. :class:`Photometry` turns such a table into MOSAIC's modalities (``scalars`` =
[redshift], ``lsst`` = magnitudes, ``lsst_err`` = log10 magnitude errors; the names and units of
``benchmarks/photoz_dc2.py``, so its pretrained runs fine-tune through RAIL too), with the
non-detection rule of :class:`~.evaluation.photoz.NonDetectionFill`. :class:`MosaicRailModel` is
the model a ``MosaicInformer`` hands to a ``MosaicEstimator``: the trained run directories and the
photometry recipe, stored as JSON, so reading a RAIL model file never unpickles anything; weights
stay in the runs (``torch.load(weights_only=True)``).

No ``rail`` import here: the stages themselves live in ``rail/estimation/algos/mosaic.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .evaluation.pdf import Components, column_components, pool_members
from .evaluation.photoz import ERR_UNIT, NonDetectionFill, photometry_inputs
from .schema import CatalogSchema, ModalitySpec

MODEL_FORMAT = "mosaic-rail-model-1"
NONDETECT_ATOL = 0.01  # |value - nondetect_val| below this is a non-detection (RAIL's own tolerance)


@dataclass(frozen=True)
class Photometry:
    """How the columns of a RAIL table become MOSAIC inputs.

    Attributes:
        bands: magnitude columns (AB), in wavelength order.
        err_bands: their 1-sigma error columns (mag), same order.
        fill_mag: magnitude given to a non-detection per band (RAIL's ``mag_limits``).
        nondetect_val: value marking a non-detection in the table (NaN also counts).
        redshift_col: true-redshift column (training tables only).
    """

    bands: tuple[str, ...]
    err_bands: tuple[str, ...]
    fill_mag: tuple[float, ...]
    nondetect_val: float = 99.0
    redshift_col: str = "redshift"

    def __post_init__(self) -> None:
        if not self.bands or len(self.bands) != len(self.err_bands) or len(self.bands) != len(self.fill_mag):
            raise ValueError(
                f"bands ({len(self.bands)}), err_bands ({len(self.err_bands)}) and mag_limits "
                f"({len(self.fill_mag)}) must name the same non-zero number of bands"
            )

    @classmethod
    def from_rail(
        cls,
        bands: list[str],
        err_bands: list[str],
        mag_limits: Mapping[str, float],
        nondetect_val: float,
        redshift_col: str,
    ) -> Photometry:
        """From RAIL's shared options; ``mag_limits`` must hold every band."""
        missing = [b for b in bands if b not in mag_limits]
        if missing:
            raise ValueError(f"mag_limits has no value for bands {missing}")
        return cls(
            tuple(bands),
            tuple(err_bands),
            tuple(float(mag_limits[b]) for b in bands),
            float(nondetect_val),
            redshift_col,
        )

    def schema(self) -> CatalogSchema:
        """scalars = [redshift], lsst = magnitudes (AB mag), lsst_err = log10 errors."""
        n = len(self.bands)
        return CatalogSchema(
            (
                ModalitySpec("scalars", "scalars", 1, "", ("redshift",)),
                ModalitySpec("lsst", "vector", n, "AB mag", self.bands),
                ModalitySpec("lsst_err", "vector", n, ERR_UNIT, self.err_bands),
            )
        )

    def _columns(self, table: Mapping[str, Any], names: tuple[str, ...], what: str) -> np.ndarray:
        missing = [c for c in names if c not in table]
        if missing:
            raise ValueError(f"input table has no {what} column(s) {missing}; columns: {sorted(table)[:20]}")
        return np.stack([np.asarray(table[c], np.float64) for c in names], axis=1)

    def inputs(self, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """``lsst`` and ``lsst_err`` of every row: non-detections filled, errors as log10."""
        mag = self._columns(table, self.bands, "band")
        err = self._columns(table, self.err_bands, "error")
        nondetect = ~np.isfinite(mag) | np.isclose(mag, self.nondetect_val, rtol=0.0, atol=NONDETECT_ATOL)
        nondetect |= ~np.isfinite(err) | (err <= 0)
        mag, err = np.where(nondetect, np.nan, mag), np.where(nondetect, np.nan, err)
        lsst, lsst_err = photometry_inputs(mag, err, NonDetectionFill(np.asarray(self.fill_mag)))
        return {"lsst": lsst, "lsst_err": lsst_err}

    def rows(self, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Training rows: :meth:`inputs` plus the redshift; rows without a finite redshift dropped."""
        if self.redshift_col not in table:
            raise ValueError(f"training table has no redshift column {self.redshift_col!r} (redshift_col)")
        z = np.asarray(table[self.redshift_col], np.float64)
        keep = np.isfinite(z)
        if not keep.any():
            raise ValueError(f"training table: no finite value in {self.redshift_col!r}")
        rows = {"scalars": z[:, None].astype(np.float32), **self.inputs(table)}
        return {k: v[keep] for k, v in rows.items()}


@dataclass(frozen=True)
class MosaicRailModel:
    """The model of a ``MosaicInformer``: trained runs (ensemble members) and their photometry."""

    runs: tuple[str, ...]
    photometry: Photometry
    column: str = "redshift"
    format: str = field(default=MODEL_FORMAT)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "model") -> MosaicRailModel:
        try:
            data = json.loads(text)
            if data.get("format") != MODEL_FORMAT:
                raise ValueError(f"format {data.get('format')!r}, expected {MODEL_FORMAT!r}")
            phot = data["photometry"]
            photometry = Photometry(
                tuple(phot["bands"]),
                tuple(phot["err_bands"]),
                tuple(phot["fill_mag"]),
                float(phot["nondetect_val"]),
                phot["redshift_col"],
            )
            return cls(tuple(data["runs"]), photometry, data.get("column", "redshift"))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{source}: not a MOSAIC RAIL model ({err})") from None

    def write(self, path: Path | str) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def read(cls, path: Path | str) -> MosaicRailModel:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"MOSAIC RAIL model {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a MOSAIC RAIL model (not a JSON text file)") from None
        return cls.from_json(text, str(path))


def train_members(
    photometry: Photometry,
    table: Mapping[str, Any],
    config_path: Path | str,
    run_dir: Path | str,
    overrides: Mapping[str, Any] | None = None,
    n_members: int = 1,
    seed: int = 0,
    init_from: Path | str | None = None,
) -> MosaicRailModel:
    """Train (or, with ``init_from``, fine-tune) ``n_members`` MOSAIC runs on a RAIL training table.

    The rows go into ``run_dir/catalog/train.h5``, normalised with the pretrained run's statistics
    when fine-tuning (a normalised value then means the same magnitude as in pretraining), else
    with their own. Member i is trained with seed ``seed + i`` into ``run_dir/member_i``.
    """
    from .config import load_config
    from .data.catalog import write_catalog
    from .data.normalization import NormStats
    from .training.checkpoint import resolve_checkpoint
    from .training.runner import run_training

    if n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    run_dir = Path(run_dir)
    data_dir = run_dir / "catalog"
    data_dir.mkdir(parents=True, exist_ok=True)
    stats = None
    if init_from:
        stats = NormStats.from_dict(json.loads((resolve_checkpoint(init_from) / "normalization.json").read_text()))
    (data_dir / "train.h5").unlink(missing_ok=True)
    write_catalog(data_dir / "train.h5", photometry.schema(), photometry.rows(table), stats=stats)
    runs = []
    for i in range(n_members):
        cfg = load_config(config_path, {**(overrides or {}), "train.seed": seed + i})
        member = run_dir / f"member_{i}"
        run_training(cfg, data_dir, member, resume="none", init_from=init_from or None)
        runs.append(str(member.resolve()))
    return MosaicRailModel(tuple(runs), photometry)


class MemberPredictor:
    """The runs of a :class:`MosaicRailModel`, loaded once, predicting one scalar from photometry."""

    def __init__(self, model: MosaicRailModel, device: str = "cpu") -> None:
        from .evaluation.pdf import scalar_column
        from .evaluation.predictor import load_run

        self.model = model
        self.predictors = [load_run(r, device=device) for r in model.runs]
        for p in self.predictors:
            if not p.gaussian:
                raise ValueError(f"{p.checkpoint}: the RAIL estimator needs Gaussian heads (model.gaussian_heads)")
        self.modality, self.index = scalar_column(self.predictors[0].schema, model.column)

    def predict(self, table: Mapping[str, Any], batch_size: int = 4096) -> Components:
        """[C, N] means, sigmas and weights of the scalar from the table's photometry: the members'
        components pooled with equal weight per member (C = members for Gaussian heads)."""
        inputs = self.model.photometry.inputs(table)
        members = [column_components(p.predict(inputs, batch_size=batch_size), self.modality, self.index)
                   for p in self.predictors]  # fmt: skip
        return pool_members(members)
