"""Typed run configuration loaded from YAML: one dataclass per section, unknown keys rejected.

A run's resolved config is saved as ``config.yaml`` in the run directory and in every
checkpoint, so a run can be reproduced and loaded without the file it was started from. Field
checks live in ``__post_init__`` and name the dotted key, e.g. ``train.lr must be > 0``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

VALUE_EMBEDDINGS = ("linear", "periodic")


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` reading numbers as YAML 1.2 does: ``1e-3`` is a float.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-3``), so ``lr: 1e-3`` (the way
    everyone writes a learning rate, and the README's own ``--set train.lr=1e-3``) arrived as the
    string "1e-3". Still the safe loader: no tag constructs an object.
    """


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """Plain data from YAML text (:class:`ConfigLoader`); raises ``yaml.YAMLError`` on bad syntax."""
    return yaml.load(text, Loader=ConfigLoader)


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ValueError(f"{key} {msg}")


@dataclass
class ModelConfig:
    """MOSAIC encoder (paper Sec. 2 and App. B)."""

    d_model: int = 128
    """Hidden size of tokens and the encoder."""
    n_layers: int = 4
    """Number of pre-LN Transformer blocks."""
    n_heads: int = 4
    """Attention heads; must divide d_model."""
    mlp_ratio: float = 4.0
    """Width of the block MLP relative to d_model."""
    dropout: float = 0.0
    """Dropout on attention weights and residual branches (0 in the paper setting)."""
    patch_size: dict[str, int] = field(default_factory=dict)
    """Values per token per modality. 1 (default for any modality not named) is the paper's one
    token per value; P > 1 groups P consecutive values into one token (patched mode, for speed)."""
    mask_embedding: bool = False
    """Add a learned embedding at masked positions (beyond the paper; off in paper mode)."""
    missing_embedding: bool = False
    """Add a learned embedding at values missing from the catalog (NaN) that the mask did not hide,
    so the model can tell "no such value" (an SFH bin after the galaxy's epoch, a non-detection)
    from "hidden" (beyond the paper; off in paper mode)."""
    gaussian_heads: bool = False
    """Heads predict mean and log-variance and train with Gaussian NLL (beyond the paper)."""
    mixture_components: int = 1
    """With Gaussian heads: Gaussians in each value's predictive mixture (1: one Gaussian). A
    photometric redshift's error has a narrow core and far tails (degenerate colours); one
    Gaussian must take the tails' width everywhere and its central intervals hold the truth too
    often, a mixture gives the core its own width (mosaic_hpc.mixture)."""
    value_embedding: str = "linear"
    """How a token's values become its embedding: 'linear' (paper App. B, ``h = W x + b``) or
    'periodic' (each value also as sines and cosines of learned frequencies, then linear: the
    numerical embeddings of Gorishniy et al. 2022, which let an encoder resolve small differences
    such as colours without many layers of MLP)."""
    n_frequencies: int = 16
    """Learned frequencies per modality of the periodic value embedding."""
    max_frequency: float = 16.0
    """Largest initial frequency (per normalised unit) of the periodic embedding; the initial
    frequencies are log-spaced from max_frequency / 100 up to it, then learned."""

    def __post_init__(self) -> None:
        _check(self.d_model > 0, "model.d_model", "must be > 0")
        _check(self.n_layers > 0, "model.n_layers", "must be > 0")
        _check(self.n_heads > 0 and self.d_model % self.n_heads == 0, "model.n_heads", "must divide model.d_model")
        _check(self.mlp_ratio > 0, "model.mlp_ratio", "must be > 0")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        _check(self.value_embedding in VALUE_EMBEDDINGS, "model.value_embedding", f"must be one of {VALUE_EMBEDDINGS}")
        _check(self.n_frequencies >= 1, "model.n_frequencies", "must be >= 1")
        _check(self.max_frequency > 0, "model.max_frequency", "must be > 0")
        _check(self.mixture_components >= 1, "model.mixture_components", "must be >= 1")
        _check(
            self.mixture_components == 1 or self.gaussian_heads,
            "model.mixture_components",
            "> 1 needs model.gaussian_heads: true",
        )
        for name, p in self.patch_size.items():
            _check(isinstance(p, int) and p >= 1, f"model.patch_size.{name}", "must be an integer >= 1")

    def patch(self, modality: str) -> int:
        return int(self.patch_size.get(modality, 1))


@dataclass
class MaskConfig:
    """Hierarchical dynamic masking (paper App. A)."""

    p_modality: float = 0.5
    """Probability that a whole modality is hidden."""
    p_scalar: float = 0.5
    """Probability that each scalar element is hidden."""
    span_ratio: float = 0.2
    """Budget of a partly masked vector: ceil(span_ratio * L) values, covered by random spans."""
    mask_value: float = 0.0
    """Value fed in place of hidden entries after normalisation (0 = the training mean)."""
    p_modality_overrides: dict[str, float] = field(default_factory=dict)
    """Whole-modality mask probability for the named modalities, instead of p_modality (beyond
    the paper; empty = paper behaviour). E.g. ``{scalars: 0.9}`` hides the scalars 90% of the
    time to stress a downstream task such as photo-z; names are checked against the catalog."""
    p_condition: float = 0.0
    """Share of galaxies trained with a condition mask instead of the hierarchical one: a random
    subset of the units (each scalar column, each vector) is given, the rest hidden whole
    (data/condition_masks.py; beyond the paper: 0 = paper behaviour)."""
    p_partial: float = 0.0
    """In a condition mask, the chance that a given vector is given only on one side of a random
    cut along its axis (as "SFH before 10 Gyr given"), the other side hidden."""
    cut_anywhere: float = 0.0
    """Share of those cuts placed uniformly on the whole axis instead of among the row's defined
    values. A user's cut sits at a fixed place ("10 Gyr"), often past where a galaxy's SFH ends,
    so the given side shows the missing tail and the hidden side holds no value: cuts only
    among defined values never train that pattern (0: every cut among the defined values)."""
    max_given: int = 0
    """Most units a condition mask gives (0: all but one). The number given is uniform over
    1 .. max_given, so a small cap trains the sparse questions users ask most (photo-z from LSST,
    SFH from a stellar mass) more often; richer inputs still come from the hierarchical share."""

    def __post_init__(self) -> None:
        for key in ("p_modality", "p_scalar", "span_ratio", "p_condition", "p_partial", "cut_anywhere"):
            v = getattr(self, key)
            _check(0.0 <= v <= 1.0, f"masking.{key}", "must be in [0, 1]")
        for name, v in self.p_modality_overrides.items():
            _check(0.0 <= v <= 1.0, f"masking.p_modality_overrides.{name}", "must be in [0, 1]")
        _check(self.max_given >= 0, "masking.max_given", "must be >= 0")

    def modality_probability(self, name: str) -> float:
        """Whole-modality mask probability of modality ``name``."""
        return float(self.p_modality_overrides.get(name, self.p_modality))


@dataclass
class DataConfig:
    """Input pipeline."""

    micro_batch_size: int = 64
    """Galaxies per rank per forward pass."""
    block_rows: int = 1024
    """Rows per contiguous read block (aligned to HDF5 chunks); blocks are shuffled per epoch."""
    shuffle_buffer: int = 8192
    """Rows shuffled together inside a rank (0 disables in-rank shuffling)."""
    in_memory: bool = False
    """Load the rank's rows into memory once (for catalogs that fit)."""
    num_workers: int = 0
    """Background worker threads preparing batches (0: prepare in the training loop)."""
    prefetch_batches: int = 4
    """Batches prepared ahead of the training loop per rank when num_workers > 0 (at least one
    2048-row task per worker is in flight anyway); enough to hide a slow read. Each batch costs
    about 6 bytes per value (float32 target, two boolean masks)."""
    val_fraction: float = 0.0
    """Unused (reserved): validation reads the catalog's val split, which make-catalog and
    import-catalog write; a catalog without one trains without validation, never on test."""

    def __post_init__(self) -> None:
        _check(self.micro_batch_size > 0, "data.micro_batch_size", "must be > 0")
        _check(self.block_rows > 0, "data.block_rows", "must be > 0")
        _check(self.shuffle_buffer >= 0, "data.shuffle_buffer", "must be >= 0")
        _check(self.num_workers >= 0, "data.num_workers", "must be >= 0")
        _check(self.prefetch_batches >= 1, "data.prefetch_batches", "must be >= 1")
        _check(0.0 <= self.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)")


@dataclass
class TrainConfig:
    """Optimisation, schedule, evaluation and checkpoint cadence."""

    max_steps: int = 1000
    """Optimizer steps to train for."""
    lr: float = 3e-4
    """Peak learning rate (AdamW)."""
    min_lr_ratio: float = 0.1
    """Cosine schedule floor as a fraction of lr."""
    warmup_steps: int = 100
    """Linear warm-up steps before the cosine decay."""
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    grad_accum_steps: int = 1
    """Micro-batches accumulated per optimizer step."""
    loss_on: str = "all"
    """'all' tokens (paper App. C: unmasked tokens too) or only 'masked' ones."""
    loss_weights: dict[str, float] = field(default_factory=dict)
    """Weight of each named modality in the mean over modalities (others 1; empty = the paper's
    equal weights). Names are checked against the catalog."""
    nll_beta: float = 0.0
    """Gaussian heads: beta of the beta-NLL (Seitzer et al. 2022), each token's NLL weighted by
    its predicted variance to this power (held constant): 0 is plain NLL, whose 1/s^2 gradient can
    leave a hard value at the mean; 0.5 is the authors' default (loss.token_losses)."""
    nll_variance: str = "beta"
    """With nll_beta > 0: 'beta' weights the whole NLL (Seitzer et al.); 'plain' weights only the
    mean's part and fits the variance by plain NLL, so a precise value's variance does not lag
    behind its mean and end too wide (loss.token_losses)."""
    ema_decay: float = 0.0
    """Decay per step of the moving average of the weights that checkpoints hand out for
    prediction, export and fine-tuning (0: the last weights; training resumes from those either
    way). Averages over about 1 / (1 - decay) steps (training.weight_average)."""
    precision: str = "fp32"
    """'fp32' or 'bf16' (autocast on the plain engine; DeepSpeed bf16 on the DeepSpeed engine)."""
    compile: bool = False
    """torch.compile the model: on GPUs it fuses layer norms, GELU, bias and residual adds between
    the matmuls; the first steps are slower while it compiles (once per process)."""
    seed: int = 0
    """Seeds weights, data order and masks."""
    eval_every: int = 200
    """Steps between validation losses (0 disables)."""
    eval_batches: int = 10
    """Validation micro-batches per evaluation (fixed masks, so comparable across steps)."""
    save_every: int = 500
    """Steps between checkpoints (0: only at the end)."""
    keep_last: int = 3
    """Checkpoints kept on disk; older ones are deleted after a newer one is complete."""
    log_every: int = 10
    """Steps between metric records."""
    wall_time_budget_s: float = 0.0
    """Save and stop cleanly after this many seconds (0: no budget)."""

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)
        _check(self.max_steps > 0, "train.max_steps", "must be > 0")
        _check(self.lr > 0, "train.lr", "must be > 0")
        _check(0.0 <= self.min_lr_ratio <= 1.0, "train.min_lr_ratio", "must be in [0, 1]")
        _check(self.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "train.betas", "must be two values in [0, 1)"
        )
        _check(self.grad_clip >= 0, "train.grad_clip", "must be >= 0")
        _check(self.grad_accum_steps >= 1, "train.grad_accum_steps", "must be >= 1")
        _check(self.loss_on in ("all", "masked"), "train.loss_on", "must be 'all' or 'masked'")
        _check(0.0 <= self.nll_beta <= 1.0, "train.nll_beta", "must be in [0, 1]")
        _check(self.nll_variance in ("beta", "plain"), "train.nll_variance", "must be 'beta' or 'plain'")
        _check(0.0 <= self.ema_decay < 1.0, "train.ema_decay", "must be in [0, 1)")
        for name, w in self.loss_weights.items():
            _check(w >= 0, f"train.loss_weights.{name}", "must be >= 0")
        _check(self.precision in ("fp32", "bf16"), "train.precision", "must be 'fp32' or 'bf16'")
        for key in ("eval_every", "eval_batches", "save_every", "log_every"):
            _check(getattr(self, key) >= 0, f"train.{key}", "must be >= 0")
        _check(self.keep_last >= 1, "train.keep_last", "must be >= 1")
        _check(self.wall_time_budget_s >= 0, "train.wall_time_budget_s", "must be >= 0")


@dataclass
class LoggingConfig:
    """Where metrics go. JSONL is always written by rank 0; W&B is optional."""

    wandb: bool = False
    """Log to Weights & Biases (offline when no API key is set)."""
    wandb_project: str = "mosaic-hpc"
    wandb_entity: str = ""
    wandb_group: str = ""
    wandb_mode: str = ""
    """'online', 'offline' or '' (auto: WANDB_MODE, else offline without an API key)."""
    peak_tflops: float = 0.0
    """Device peak for MFU; 0 looks the device up in the built-in table."""


@dataclass
class RunConfig:
    """A whole run: the sections above, loaded from one YAML file."""

    name: str = "mosaic"
    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskConfig = field(default_factory=MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


def _to_plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _to_plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_to_plain(x) for x in v]
    return v


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check a YAML value against a field type; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    if origin is dict:
        _check(isinstance(value, dict), key, f"must be a mapping, got {type(value).__name__}")
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        _check(isinstance(value, (list, tuple)), key, f"must be a list, got {type(value).__name__}")
        return tuple(_coerce(v, t, key) for v, t in zip(value, typing.get_args(tp), strict=False))
    if tp is bool:
        _check(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, f"must be an integer, got {value!r}")
        return value
    if tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, f"must be a number, got {value!r}")
        _check(math.isfinite(value), key, f"must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys by their dotted name."""
    where = prefix or "config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - fields)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ValueError(f"unknown config key {key!r}; valid keys{' in ' + prefix if prefix else ''}: {sorted(fields)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def load_config(path: Path | str, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Load a YAML run config with ``yaml.safe_load`` (no object construction from YAML tags).

    Args:
        path: YAML file.
        overrides: dotted keys to set after loading, e.g. ``{"train.max_steps": 10}``.

    Raises:
        ValueError: unreadable YAML, unknown keys, wrong types or out-of-range values; the
            message names the file and the dotted key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = parse_yaml(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if data is None:
        raise ValueError(f"{path}: the file is empty; a run config names its sections (see configs/tiny.yaml)")
    try:
        data = apply_overrides(data, overrides or {})
        return from_dict(RunConfig, data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Set dotted keys in a nested mapping (copying the sections it touches)."""
    data = dict(data)
    for dotted, value in overrides.items():
        node = data
        parts = dotted.split(".")
        for p in parts[:-1]:
            node[p] = dict(node.get(p) or {})
            node = node[p]
        node[parts[-1]] = value
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``train.lr=1e-3`` -> ("train.lr", 0.001); the value is parsed as YAML (safe, :class:`ConfigLoader`)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), parse_yaml(raw)
    except yaml.YAMLError as err:
        raise ValueError(f"--set {text}: the value is not valid YAML ({' '.join(str(err).split())})") from None


def save_config(config: RunConfig, path: Path | str) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    return from_dict(RunConfig, data)


# The shipped configs: ``mosaic_hpc/configs`` is package data (a symlink to the checkout's
# top-level ``configs/`` in the repository, a real directory in an installed wheel), so presets
# resolve the same from a checkout, an editable install and ``pip install .``, from any directory.
CONFIG_DIR = (Path(__file__).parent / "configs").resolve()


def resolve_config(name_or_path: str | Path) -> Path:
    """A run-config YAML: the path as given, else the shipped preset of that name (``tiny``, ``small``).

    The one resolver of every command that takes ``--config`` (train, quickstart, bench, the
    DeepSpeed entry point), so a preset name means the same file everywhere.

    Raises:
        FileNotFoundError: a path (``.yaml`` or with a directory) that does not exist.
        ValueError: a name that is no preset (lists the presets).
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix.lower() in (".yaml", ".yml") or len(path.parts) > 1:  # meant as a path, not a preset name
        raise FileNotFoundError(f"config file {path} does not exist")
    preset = CONFIG_DIR / f"{path.name}.yaml"
    if preset.is_file():
        return preset
    names = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
    raise ValueError(
        f"config {str(name_or_path)!r} not found (unknown config: neither a file nor a preset); "
        f"presets: {names}, or a YAML path"
    )


def resolve_deepspeed_config(name_or_path: str | Path) -> Path:
    """A DeepSpeed JSON as given, else the shipped one of that name (``zero2``, ``configs/zero2.json``).

    Docs and launchers name the shipped JSONs relative to the checkout, and jobs start from a
    scratch run directory, not the checkout: the name finds the shipped file there too.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (path.name if path.suffix == ".json" else f"{path.name}.json")
    if shipped.is_file():
        return shipped
    names = sorted(q.name for q in CONFIG_DIR.glob("*.json"))
    raise ValueError(f"DeepSpeed config {name_or_path} does not exist; shipped: {names}, or a path to a JSON file")
