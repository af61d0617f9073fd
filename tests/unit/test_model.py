"""MOSAIC model: shapes from the schema, paper vs patched tokens, options, FLOP count."""

import pytest
import torch
from toy_catalog import toy_schema

from mosaic_hpc.config import ModelConfig
from mosaic_hpc.model import build_model


def _inputs(schema, b=4):
    values = {m.name: torch.randn(b, m.length) for m in schema}
    hidden = {m.name: torch.rand(b, m.length) < 0.3 for m in schema}
    return values, hidden


@pytest.mark.parametrize("patch", [{}, {"sed": 7, "sfh": 3}])
def test_output_shapes_follow_the_schema(patch):
    schema = toy_schema()
    model = build_model(schema, ModelConfig(d_model=16, n_layers=1, n_heads=2, patch_size=patch))
    out = model(*_inputs(schema))
    for m in schema:
        assert out.mean[m.name].shape == (4, m.length)
    assert out.logvar is None
    expected_tokens = 3 + 6 + 12 + (20 if not patch else 7) + (40 if not patch else 6)
    assert model.seq_len == expected_tokens


def test_paper_mode_is_one_token_per_value():
    schema = toy_schema()
    model = build_model(schema, ModelConfig(d_model=8, n_layers=1, n_heads=1))
    assert model.seq_len == schema.n_values
    assert model.embed["sed"].weight.shape == (8, 1)  # W_M in R^{d x 1}, App. B


def test_hidden_values_do_not_leak_into_predictions():
    schema = toy_schema()
    model = build_model(schema, ModelConfig(d_model=16, n_layers=2, n_heads=2, mask_embedding=True)).eval()
    values, hidden = _inputs(schema)
    hidden["sed"][:] = True
    out1 = model(values, hidden).mean
    values["sed"] = values["sed"] + 100.0  # what hides behind the mask must not matter
    out2 = model(values, hidden).mean
    for k in out1:
        torch.testing.assert_close(out1[k], out2[k])


def test_gaussian_heads_give_bounded_logvar():
    schema = toy_schema()
    model = build_model(schema, ModelConfig(d_model=16, n_layers=1, n_heads=2, gaussian_heads=True))
    out = model(*_inputs(schema))
    for m in schema:
        assert out.logvar[m.name].shape == (4, m.length)
        assert out.logvar[m.name].abs().max() < 12


def test_patched_mode_has_far_fewer_flops():
    schema = toy_schema()
    paper = build_model(schema, ModelConfig(d_model=32, n_layers=2, n_heads=2))
    patched = build_model(schema, ModelConfig(d_model=32, n_layers=2, n_heads=2, patch_size={"sed": 10, "sfh": 5}))
    assert patched.flops_per_sample() < 0.6 * paper.flops_per_sample()
    # the formula is dominated by 6 * N_params * T for short sequences
    n_block = sum(p.numel() for p in paper.blocks.parameters() if p.ndim == 2)
    assert paper.flops_per_sample() >= 6 * n_block * paper.seq_len


def test_patch_size_for_unknown_modality_is_an_error():
    with pytest.raises(ValueError, match="model.patch_size names modalities \\['spectra'\\]"):
        build_model(toy_schema(), ModelConfig(patch_size={"spectra": 4}))


def test_missing_embedding_tells_absent_values_from_hidden_ones():
    schema = toy_schema()
    model = build_model(
        schema, ModelConfig(d_model=16, n_layers=1, n_heads=2, mask_embedding=True, missing_embedding=True)
    ).eval()
    values, hidden = _inputs(schema)
    hidden["sfh"][:, -5:] = True
    none = {k: torch.zeros_like(v) for k, v in hidden.items()}
    absent = {k: v.clone() for k, v in none.items()}
    absent["sfh"][:, -5:] = True  # the same values hidden, now flagged as not existing
    with torch.no_grad():
        a = model(values, hidden, none).mean
        b = model(values, hidden, absent).mean
        c = model(values, hidden).mean  # no absent flags at all: as if nothing were missing
    assert not torch.allclose(a["scalars"], b["scalars"])
    torch.testing.assert_close(a["scalars"], c["scalars"])
    plain = build_model(schema, ModelConfig(d_model=16, n_layers=1, n_heads=2)).eval()
    with torch.no_grad():  # without the option the flags are ignored
        torch.testing.assert_close(plain(values, hidden, none).mean["sed"], plain(values, hidden, absent).mean["sed"])


def test_periodic_value_embedding_resolves_small_differences_and_is_counted():
    schema = toy_schema()
    cfg = ModelConfig(d_model=16, n_layers=1, n_heads=2, value_embedding="periodic", n_frequencies=4)
    model = build_model(schema, cfg)
    out = model(*_inputs(schema))
    assert out.mean["sed"].shape == (4, schema["sed"].length)
    emb = model.embed["lsst"]
    assert emb.linear.in_features == 1 * (1 + 2 * 4) and emb.freq.shape == (4,)
    linear = build_model(schema, ModelConfig(d_model=16, n_layers=1, n_heads=2))
    assert model.flops_per_sample() > linear.flops_per_sample()  # the wider input map is counted
    with pytest.raises(ValueError, match="model.value_embedding must be one of"):
        ModelConfig(value_embedding="fourier")
    with pytest.raises(ValueError, match="model.n_frequencies must be >= 1"):
        ModelConfig(n_frequencies=0)
