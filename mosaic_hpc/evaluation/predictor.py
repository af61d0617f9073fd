"""Use a trained run: any subset of modalities in, every modality out, in physical units.

    run = mosaic_hpc.load_run("runs/quickstart")
    pred = run.predict({"lsst": mags})          # mags: [N, 6] AB mag, NaN = missing
    pred.values["scalars"][:, 0]                # photo-z
    pred.sigma["sed"]                           # per-value uncertainty (Gaussian heads only)

A run directory resolves to its latest checkpoint; a checkpoint directory works too. Loading
verifies the checkpoint's checksums and reads YAML/JSON metadata and ``model.pt`` with
``torch.load(weights_only=True)``, so a checkpoint from an untrusted source cannot execute code,
and a damaged or diverged one is refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy import stats

from .. import mixture
from ..config import RunConfig, config_from_dict
from ..data.batch import Batch, make_batch
from ..data.configurations import InputConfiguration, parse_configuration
from ..data.normalization import NormStats
from ..data.validation import check_inputs
from ..devices import choose_device
from ..model import ModelOutput, MosaicModel, build_model
from ..schema import CatalogSchema
from ..training.checkpoint import resolve_checkpoint, verify_for_inference
from ..training.engine import load_weights
from ..training.safe_load import safe_torch_load


@dataclass
class Prediction:
    """Physical-unit predictions, [N, L] per modality; ``sigma`` only with Gaussian heads.

    ``given`` marks the values the model saw (True), so callers can tell inputs from predictions.
    With Gaussian heads each predicted value has an independent normal predictive distribution
    N(values, sigma^2), with mixture heads a Gaussian mixture (``mixture``); the heads model each
    value's marginal, not correlations between values;
    :meth:`sample` and :meth:`log_prob` use it. Given values are inputs, not predictions: they are
    returned unchanged by :meth:`sample` and get no log-probability.
    """

    values: dict[str, np.ndarray]
    sigma: dict[str, np.ndarray] | None
    given: dict[str, np.ndarray]
    mixture: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
    """With mixture heads: per modality the weights, means and standard deviations of each value's
    Gaussian components, [N, L, K] each (physical units); ``values`` and ``sigma`` are then the
    mixture's mean and standard deviation, and the distributions below are the mixtures."""

    def _require_sigma(self) -> dict[str, np.ndarray]:
        if self.sigma is None:
            raise ValueError(
                "this run has point heads (model.gaussian_heads: false): no predictive distribution to "
                "sample or score; train with model.gaussian_heads: true"
            )
        return self.sigma

    def sample(self, n: int, seed: int = 0) -> dict[str, np.ndarray]:
        """``n`` draws from the predictive distribution, [n, N, L] per modality (float32).

        Hidden values are drawn independently per value; given values are repeated as they are.
        """
        sigma = self._require_sigma()
        if n < 1:
            raise ValueError(f"number of samples must be >= 1, got {n}")
        rng = np.random.default_rng(seed)
        out = {}
        for name, mu in self.values.items():
            if self.mixture is not None:
                draw = np.where(self.given[name][None], mu[None], mixture.sample(*self.mixture[name], n, rng))
            else:
                noise = rng.standard_normal((n, *mu.shape), dtype=np.float32)
                draw = mu[None] + np.where(self.given[name][None], 0.0, sigma[name][None]) * noise
            out[name] = draw.astype(np.float32)
        return out

    def cdf(self, name: str, x: np.ndarray) -> np.ndarray:
        """The predictive CDF of modality ``name`` at ``x`` [N, L] (the PIT when ``x`` is the truth)."""
        sigma = self._require_sigma()
        x = np.asarray(x, np.float64)
        if self.mixture is not None:
            return mixture.cdf(*(np.asarray(a, np.float64) for a in self.mixture[name]), x)
        return stats.norm.cdf((x - self.values[name]) / sigma[name].astype(np.float64))

    def log_prob(self, truth: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Gaussian log-density of ``truth`` under each predicted value, [N, L] per modality.

        In natural log per physical unit of the value (e.g. per AB mag); NaN where the value was
        given or the truth is missing. Modalities absent from ``truth`` are left out.
        """
        sigma = self._require_sigma()
        out = {}
        for name, t in truth.items():
            if name not in self.values:
                raise ValueError(f"truth has modality {name!r}, the prediction has {list(self.values)}")
            t = np.asarray(t, np.float64)
            if t.shape != self.values[name].shape:
                raise ValueError(f"truth {name!r} has shape {t.shape}, the prediction {self.values[name].shape}")
            if self.mixture is not None:
                lp = mixture.log_pdf(*(np.asarray(a, np.float64) for a in self.mixture[name]), t)
            else:
                s = sigma[name].astype(np.float64)
                z = (t - self.values[name]) / s
                lp = -0.5 * z * z - np.log(s) - 0.5 * np.log(2.0 * np.pi)
            out[name] = np.where(self.given[name], np.nan, lp)
        return out


class Predictor:
    """A trained MOSAIC model with its schema and normalisation, ready for inference."""

    def __init__(
        self,
        model: MosaicModel,
        config: RunConfig,
        schema: CatalogSchema,
        stats: NormStats,
        device: torch.device | str | None = None,
        checkpoint: Path | None = None,
    ) -> None:
        self.device = choose_device(device)
        self.model = model.to(self.device).eval()
        self.config, self.schema, self.stats = config, schema, stats
        self.checkpoint = checkpoint

    @classmethod
    def load(cls, path: Path | str, device: torch.device | str | None = None) -> Predictor:
        ckpt = resolve_checkpoint(path)
        for name in ("config.yaml", "schema.json", "normalization.json", "model.pt"):
            if not (ckpt / name).is_file():
                raise ValueError(f"{ckpt}: incomplete checkpoint, {name} missing")
        verify_for_inference(ckpt)  # checksums, no code in model.pt, finite weights
        config = config_from_dict(yaml.safe_load((ckpt / "config.yaml").read_text()))
        schema = CatalogSchema.from_dict(json.loads((ckpt / "schema.json").read_text()))
        stats = NormStats.from_dict(json.loads((ckpt / "normalization.json").read_text()))
        model = build_model(schema, config.model, config.masking.mask_value)
        state = safe_torch_load(ckpt / "model.pt")
        load_weights(model, state, ckpt / "model.pt")
        return cls(model, config, schema, stats, device=device, checkpoint=ckpt)

    def _check_inputs(self, inputs: Mapping[str, np.ndarray]) -> int:
        n = None
        for name, x in inputs.items():
            spec = self.schema[name]  # unknown modality -> ValueError listing the valid ones
            x = np.asarray(x)
            if x.ndim != 2 or x.shape[1] != spec.length:
                raise ValueError(f"input {name!r} has shape {x.shape}, expected [N, {spec.length}]")
            if n is not None and x.shape[0] != n:
                raise ValueError(f"input {name!r} has {x.shape[0]} rows, other inputs have {n}")
            n = x.shape[0]
        if n is None:
            raise ValueError(f"no input given; provide at least one of {list(self.schema.names)}")
        return n

    def batches(
        self,
        inputs: Mapping[str, np.ndarray],
        given: InputConfiguration | None = None,
        targets: Mapping[str, np.ndarray] | None = None,
        batch_size: int = 1024,
    ) -> Iterator[tuple[slice, Batch]]:
        """Normalised batches: inputs (NaN = missing) restricted by ``given``; all else hidden.

        A NaN among the given inputs is a missing value (``Batch.absent``: the model may be told
        it does not exist, as in training); values outside ``given`` and modalities not in
        ``inputs`` are hidden. ``targets`` (physical, all modalities) fill the batch's targets for
        scoring; without them, targets of modalities not in ``inputs`` are NaN (invalid), and an
        input NaN where the target has a value is hidden, not missing.
        """
        n = self._check_inputs(inputs)
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        check_inputs(inputs, self.stats, given)  # impossible values (inf, corrupt) are errors, never scored
        given_mask = given.given_mask(self.schema) if given is not None else None
        for s in range(0, n, batch_size):
            sl = slice(s, min(s + batch_size, n))
            raw, hidden = {}, {}
            for spec in self.schema:
                m = sl.stop - sl.start
                src = targets if targets is not None else inputs
                raw[spec.name] = (
                    np.asarray(src[spec.name][sl], np.float32)
                    if spec.name in src
                    else np.full((m, spec.length), np.nan, np.float32)
                )
                if spec.name not in inputs:
                    h = np.ones((m, spec.length), dtype=bool)
                elif targets is not None:
                    h = np.isnan(np.asarray(inputs[spec.name][sl], np.float32)) & ~np.isnan(raw[spec.name])
                else:  # NaN inputs become missing values in make_batch (hidden and absent)
                    h = np.zeros((m, spec.length), dtype=bool)
                if given_mask is not None:
                    h |= ~given_mask[spec.name][None, :]
                hidden[spec.name] = h
            yield sl, make_batch(raw, np.arange(sl.start, sl.stop), self.stats, hidden)

    @torch.no_grad()
    def forward(self, batch: Batch, return_hidden_states: bool = False) -> ModelOutput:
        b = batch.to_torch(self.device)
        # The model sees only non-hidden values; targets of hidden entries are never read.
        return self.model(b.targets, b.hidden, b.absent, return_hidden_states=return_hidden_states)

    def predict(
        self,
        inputs: Mapping[str, np.ndarray],
        given: InputConfiguration | str | None = None,
        batch_size: int = 1024,
    ) -> Prediction:
        """Predict every modality from the given ones (physical units in, physical units out).

        Args:
            inputs: physical values per modality, [N, L]; NaN marks a value not given.
            given: optionally restrict further, e.g. ``"given=lsst,sfh[t>=10Gyr]"``.
            batch_size: galaxies per forward pass.
        """
        if isinstance(given, str):
            given = parse_configuration(given, self.schema)
        n = self._check_inputs(inputs)
        # NaN-filled, not np.empty: a row the loop below did not reach can never look like a prediction
        values = {m.name: np.full((n, m.length), np.nan, np.float32) for m in self.schema}
        sigma = {m.name: np.full((n, m.length), np.nan, np.float32) for m in self.schema} if self.gaussian else None
        k = self.config.model.mixture_components
        mix = {m.name: np.full((3, n, m.length, k), np.nan, np.float32) for m in self.schema} if k > 1 else None
        seen = {m.name: np.empty((n, m.length), bool) for m in self.schema}
        for sl, batch in self.batches(inputs, given, batch_size=batch_size):
            out = self.forward(batch)
            for name in self.schema.names:
                values[name][sl] = self.stats.denormalize(name, out.mean[name].float().cpu().numpy())
                if sigma is not None:
                    s = torch.exp(0.5 * out.logvar[name].float()).cpu().numpy()
                    sigma[name][sl] = self.stats.denormalize_sigma(name, s)
                if mix is not None:
                    self._put_components(mix[name][:, sl], name, out.components[name].float().cpu())
                seen[name][sl] = ~batch.hidden[name]
        components = {name: tuple(m) for name, m in mix.items()} if mix is not None else None
        return Prediction(values=values, sigma=sigma, given=seen, mixture=components)

    def _put_components(self, dest: np.ndarray, name: str, c: torch.Tensor) -> None:
        """Weights, means and standard deviations [3, n, L, K] in physical units from components [n, L, 3, K]."""
        dest[0] = torch.softmax(c[:, :, mixture.LOGITS], dim=-1).numpy()
        for k in range(c.shape[-1]):  # the statistics are per value, [L]: one component at a time
            dest[1, ..., k] = self.stats.denormalize(name, c[:, :, mixture.MEANS, k].numpy())
            sd = torch.exp(0.5 * c[:, :, mixture.LOGVARS, k]).numpy()
            dest[2, ..., k] = self.stats.denormalize_sigma(name, sd)

    @property
    def gaussian(self) -> bool:
        return self.config.model.gaussian_heads


def load_run(path: Path | str, device: torch.device | str | None = None) -> Predictor:
    """Load a run directory (latest checkpoint), a checkpoint directory or an exported model directory.

    Model directories (``mosaic-hpc export``) are recognised by their ``model.safetensors``, so
    every command taking ``--run`` also takes a model directory.
    """
    if (Path(path) / "model.safetensors").is_file():
        from ..lifecycle.model_dir import from_pretrained  # lazy: lifecycle imports this module

        return from_pretrained(path, device=device)
    return Predictor.load(path, device=device)
