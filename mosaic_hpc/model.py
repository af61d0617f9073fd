"""MOSAIC: a BERT-style encoder over every value of a galaxy (paper Sec. 2, Fig. 1, App. B).

Each modality's values become tokens through its own linear map (paper mode: one token per value,
``h = W_M x + b_M``; patched mode: P consecutive values per token). Tokens of all modalities are
concatenated, a learned positional embedding shared over the whole sequence is added, a pre-LN
Transformer encoder mixes them, and the sequence is split back into per-modality regression heads.
The model takes and returns dicts keyed by modality; lengths come from the catalog schema.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import mixture
from .config import ModelConfig
from .schema import CatalogSchema

LOGVAR_LIMIT = 12.0  # soft bound on predicted log-variance, |log sigma^2| < 12 in normalised units


class ModelOutput(NamedTuple):
    """Predictions in normalised units, [B, L] per modality.

    A NamedTuple rather than a dataclass because DeepSpeed's ZeRO-3 finds the tensors a module
    returns (to re-gather its parameters for backward) by walking tuples, lists and dicts only.

    Attributes:
        mean: predicted values.
        logvar: predicted log-variance (Gaussian heads only), else None.
        hidden_states: last hidden state per modality, [B, n_tokens, d] (only when requested).
        components: with ``model.mixture_components`` > 1, each value's mixture, [B, L, 3, K]
            (logits, means, log-variances; :mod:`.mixture`); ``mean`` and ``logvar`` are then
            the mixture's mean and log-variance.
    """

    mean: dict[str, Tensor]
    logvar: dict[str, Tensor] | None = None
    hidden_states: dict[str, Tensor] | None = None
    components: dict[str, Tensor] | None = None


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2)  # (B, nh, T, hs)
        # No attention mask: masked values are real tokens (set to mask_value), and patched mode
        # pads only inside a modality's last token, so every position may attend everywhere.
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C)
        return self.proj(y)


class PeriodicValueEmbedding(nn.Module):
    """A token's P values and their sines and cosines at F learned frequencies, mapped to d.

    Gorishniy et al. (2022, "On Embeddings for Numerical Features in Tabular Deep Learning") show
    that a linear map of a raw number is a poor input for a Transformer: resolving a small
    difference between two values (a galaxy colour of 0.05 mag, a quarter of a per cent of a
    magnitude's spread) then takes many MLP layers. Periodic features at frequencies spread over
    two decades give the encoder that resolution from the first layer. Frequencies are shared by
    the values of a modality and learned; the raw value is kept as an input too.
    """

    def __init__(self, patch: int, d_model: int, n_frequencies: int, max_frequency: float) -> None:
        super().__init__()
        freq = max_frequency * torch.logspace(-2.0, 0.0, n_frequencies)
        self.freq = nn.Parameter(2.0 * math.pi * freq)  # radians per normalised unit
        self.linear = nn.Linear(patch * (1 + 2 * n_frequencies), d_model)

    def forward(self, x: Tensor) -> Tensor:
        angle = x.unsqueeze(-1) * self.freq  # (B, n_tok, P, F)
        feats = torch.cat([x.unsqueeze(-1), torch.sin(angle), torch.cos(angle)], dim=-1)  # (B, n_tok, P, 1 + 2F)
        return self.linear(feats.flatten(-2))  # (B, n_tok, d)


class Block(nn.Module):
    """Pre-LN Transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = int(cfg.mlp_ratio * cfg.d_model)
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, hidden), nn.GELU(), nn.Linear(hidden, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class MosaicModel(nn.Module):
    """The MOSAIC encoder for one catalog schema.

    Args:
        schema: modalities, their order and lengths (from the catalog file).
        cfg: model hyper-parameters.
        mask_value: value fed at hidden positions (paper App. A: 0, the normalised mean).
    """

    def __init__(self, schema: CatalogSchema, cfg: ModelConfig, mask_value: float = 0.0) -> None:
        super().__init__()
        unknown = sorted(set(cfg.patch_size) - set(schema.names))
        if unknown:
            raise ValueError(f"model.patch_size names modalities {unknown} not in the catalog {list(schema.names)}")
        self.schema = schema
        self.cfg = cfg
        self.mask_value = float(mask_value)
        self.patch = {m.name: cfg.patch(m.name) for m in schema}
        self.n_tokens = {m.name: math.ceil(m.length / self.patch[m.name]) for m in schema}
        self.seq_len = sum(self.n_tokens.values())
        self.n_components = cfg.mixture_components
        # head outputs per value: the mean; + log-variance; or logits, means and log-variances of K
        self.out_per_value = (3 * self.n_components if self.n_components > 1 else 2) if cfg.gaussian_heads else 1
        self.embed = nn.ModuleDict({n: self._value_embedding(p) for n, p in self.patch.items()})
        self.mask_embed = (
            nn.ModuleDict({n: nn.Linear(p, cfg.d_model, bias=False) for n, p in self.patch.items()})
            if cfg.mask_embedding
            else None
        )
        self.missing_embed = (
            nn.ModuleDict({n: nn.Linear(p, cfg.d_model, bias=False) for n, p in self.patch.items()})
            if cfg.missing_embedding
            else None
        )
        self.pos = nn.Parameter(torch.zeros(1, self.seq_len, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.heads = nn.ModuleDict({n: nn.Linear(cfg.d_model, p * self.out_per_value) for n, p in self.patch.items()})
        self._init_weights()

    def _value_embedding(self, patch: int) -> nn.Module:
        if self.cfg.value_embedding == "periodic":
            return PeriodicValueEmbedding(patch, self.cfg.d_model, self.cfg.n_frequencies, self.cfg.max_frequency)
        return nn.Linear(patch, self.cfg.d_model)

    def _init_weights(self) -> None:
        # GPT-2 style: N(0, 0.02), residual output projections scaled by 1/sqrt(2 n_layers) so the
        # residual stream's variance does not grow with depth.
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.normal_(mod.weight, std=0.02)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
        nn.init.normal_(self.pos, std=0.02)
        for blk in self.blocks:
            for proj in (blk.attn.proj, blk.mlp[2]):
                nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * self.cfg.n_layers))
        if self.n_components > 1:
            # Component k starts k units wider in log-variance: a core and wider tails from the
            # first step, rather than K copies that only the random weights tell apart.
            with torch.no_grad():
                for name, head in self.heads.items():
                    bias = head.bias.view(3, self.n_components, self.patch[name])
                    bias[mixture.LOGVARS] = torch.arange(self.n_components, dtype=bias.dtype)[:, None]

    def _tokens(self, x: Tensor, name: str) -> Tensor:
        """[B, L] values -> [B, n_tokens, P], right-padding the last token with mask_value."""
        B, L = x.shape
        pad = self.n_tokens[name] * self.patch[name] - L
        if pad:
            x = F.pad(x, (0, pad), value=self.mask_value)
        return x.view(B, self.n_tokens[name], self.patch[name])  # (B, n_tok, P)

    def forward(
        self,
        values: dict[str, Tensor],
        hidden: dict[str, Tensor],
        absent: dict[str, Tensor] | None = None,
        return_hidden_states: bool = False,
    ) -> ModelOutput:
        """Predict every value of every modality.

        Args:
            values: normalised values, [B, L] per modality (anything at hidden positions).
            hidden: bool [B, L], True where the model must not see the value.
            absent: bool [B, L], True where the value is missing and was not masked
                (``Batch.absent``); read only with ``missing_embedding``.
            return_hidden_states: also return the last hidden state of each modality's tokens.
        """
        dtype = self.pos.dtype
        parts = []
        for name in self.schema.names:
            h = hidden[name]
            x = torch.where(h, torch.full_like(values[name], self.mask_value), values[name]).to(dtype)
            emb = self.embed[name](self._tokens(x, name))  # (B, n_tok, d)
            if self.mask_embed is not None:
                emb = emb + self.mask_embed[name](self._tokens(h.to(dtype), name))
            if self.missing_embed is not None and absent is not None:
                emb = emb + self.missing_embed[name](self._tokens(absent[name].to(dtype), name))
            parts.append(emb)
        x = torch.cat(parts, dim=1) + self.pos  # (B, T, d)
        for blk in self.blocks:
            x = blk(x)
        x = self.ln_f(x)
        mean, logvar, states, components = {}, {}, {}, {}
        for (name, n_tok), seg in zip(self.n_tokens.items(), x.split(list(self.n_tokens.values()), dim=1), strict=True):
            B, L = values[name].shape
            head = self.heads[name]
            # Heads outside autocast, in their weights' dtype (fp32 on the plain engine): a bf16
            # output would round a normalised redshift to 3 digits, coarser than a good photo-z.
            with torch.autocast(device_type=seg.device.type, enabled=False):
                out = head(seg.to(head.weight.dtype))  # (B, n_tok, P * k)
            if self.n_components > 1:
                K, P = self.n_components, self.patch[name]
                c = out.view(B, n_tok, 3, K, P).permute(0, 1, 4, 2, 3).reshape(B, n_tok * P, 3, K)[:, :L]
                c = torch.cat([c[:, :, :2], LOGVAR_LIMIT * torch.tanh(c[:, :, 2:] / LOGVAR_LIMIT)], dim=2)
                components[name] = c
                mean[name], logvar[name] = mixture.moments(c)
            elif self.cfg.gaussian_heads:
                mu, lv = out.chunk(2, dim=-1)  # (B, n_tok, P) each
                mean[name] = mu.reshape(B, n_tok * self.patch[name])[:, :L]
                lv = lv.reshape(B, n_tok * self.patch[name])[:, :L]
                logvar[name] = LOGVAR_LIMIT * torch.tanh(lv / LOGVAR_LIMIT)
            else:
                mean[name] = out.reshape(B, n_tok * self.patch[name])[:, :L]
            if return_hidden_states:
                states[name] = seg
        return ModelOutput(
            mean=mean,
            logvar=logvar if self.cfg.gaussian_heads else None,
            hidden_states=states if return_hidden_states else None,
            components=components if self.n_components > 1 else None,
        )

    def num_params(self, exclude_positions: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.pos.numel() if exclude_positions else n

    def flops_per_sample(self) -> float:
        """Training FLOPs (forward + backward = 3x forward) for one galaxy.

        Counted: every matmul as 2 FLOPs per multiply-add (Kaplan et al. 2020; PaLM App. B).
        Per token and layer the linear layers cost 2 * (3d^2 + d^2 + 2 d h) with h the MLP width;
        attention scores and the weighted sum cost 2 * 2 * T * d per token and layer. Embeddings
        and heads cost 2 * P * d * (V + mask_embed + missing_embed) and 2 * d * P * k per token, with V = 1
        (linear value embedding) or 1 + 2F (periodic, F frequencies; its sines are not counted). Left out:
        layer norms, GELU, softmax, biases and the loss (O(T d), under 1% at these sizes).
        """
        d, T, n_layers = self.cfg.d_model, self.seq_len, self.cfg.n_layers
        h = int(self.cfg.mlp_ratio * d)
        k = self.out_per_value
        per_layer = T * 2 * (4 * d * d + 2 * d * h) + 4 * T * T * d
        n_embed = (1 + 2 * self.cfg.n_frequencies if self.cfg.value_embedding == "periodic" else 1) + (
            (self.mask_embed is not None) + (self.missing_embed is not None)
        )
        io = sum(self.n_tokens[n] * (2 * p * d * n_embed + 2 * d * p * k) for n, p in self.patch.items())
        return 3.0 * (n_layers * per_layer + io)


def build_model(schema: CatalogSchema, cfg: ModelConfig, mask_value: float = 0.0) -> MosaicModel:
    return MosaicModel(schema, cfg, mask_value)
