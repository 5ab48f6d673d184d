"""Parameter counts: published totals, hand-derived components, closed forms."""
from __future__ import annotations

import pytest

import costplan
from conftest import make_spec


# Unique parameters of the released checkpoints (tied matrices once). Sources: the test vectors, which
# match the HF checkpoints: openai-community/gpt2 (124,439,808), meta-llama/Llama-2-7b-hf, Llama-2-70b-hf,
# Meta-Llama-3-8B (also listed in formulas reference §8).
@pytest.mark.parametrize("preset, total", [
    ("gpt2-small", 124_439_808),
    ("llama2-7b", 6_738_415_616),
    ("llama2-70b", 68_976_648_192),
    ("llama3-8b", 8_030_261_248),
    ("gpt2-xl", 1_557_611_200),     # openai-community/gpt2-xl
])
def test_published_totals(preset, total):
    assert costplan.estimate(costplan.load_spec(preset)).params.total == total


def test_gpt2_small_components_by_hand():
    p = costplan.estimate(costplan.load_spec("gpt2-small")).params
    d, layers, vocab, ctx = 768, 12, 50257, 1024
    assert p.by_component["embedding"] == vocab * d + ctx * d                   # tokens + learned positions
    assert p.by_component["attention"] == layers * (4 * d * d + 4 * d)         # q, k, v, o with biases
    assert p.by_component["mlp"] == layers * (2 * d * 4 * d + 4 * d + d)       # up + down with biases
    assert p.by_component["norms"] == (2 * layers + 1) * 2 * d                 # LayerNorm weight + bias
    assert p.by_component["head"] == 0                                         # tied to the embedding
    assert p.embedding == vocab * d + ctx * d
    assert p.non_embedding == p.total - p.embedding


def test_llama2_7b_components_by_hand():
    p = costplan.estimate(costplan.load_spec("llama2-7b")).params
    d, layers, vocab, f = 4096, 32, 32000, 11008
    assert p.by_component["attention"] == layers * 4 * d * d
    assert p.by_component["mlp"] == layers * 3 * d * f                         # gate, up, down
    assert p.by_component["norms"] == (2 * layers + 1) * d                     # RMSNorm weight only
    assert p.by_component["head"] == vocab * d                                 # untied
    assert p.active == p.total                                                 # dense


def test_megatron_closed_form_for_gpt_style():
    # Narayanan et al. 2021 eq. 2: P = 12·l·h²·(1 + 13/(12h) + (V + s)/(12·l·h)) for GPT layers with biases and
    # LayerNorm, tied embeddings and learned positions. It leaves out the final LayerNorm (2h).
    for name, l, h in [("gpt2-small", 12, 768), ("gpt2-medium", 24, 1024), ("gpt2-xl", 48, 1600)]:
        V, s = 50257, 1024
        megatron = 12 * l * h * h + 13 * l * h + (V + s) * h
        assert costplan.estimate(costplan.load_spec(name)).params.total == megatron + 2 * h


@pytest.mark.parametrize("layers, d", [(2, 64), (12, 768), (48, 1600)])
def test_kaplan_12_l_d_squared(layers, d):
    # Kaplan et al. 2020 eq. 2.1: N ≈ 12·n_layer·d_model² for d_attn = d_ff/4 = d_model, excluding embeddings.
    # Exact once biases and norms (which Kaplan drops) are off the count.
    spec = make_spec({"d_model": d, "n_layers": layers, "n_heads": 4, "bias": False})
    p = costplan.estimate(spec).params
    assert p.non_embedding - p.by_component["norms"] == 12 * layers * d * d
    with_bias = costplan.estimate(make_spec({"d_model": d, "n_layers": layers, "n_heads": 4})).params
    assert with_bias.non_embedding == pytest.approx(12 * layers * d * d, rel=0.02)


def test_grouped_query_attention_shrinks_only_k_and_v():
    d, heads, kv, hd = 64, 8, 2, 8
    mha = costplan.estimate(make_spec({"n_heads": heads, "bias": False})).params.by_component["attention"]
    gqa = costplan.estimate(make_spec({"n_heads": heads, "n_kv_heads": kv, "bias": False})).params
    assert gqa.by_component["attention"] == mha - 2 * 2 * d * (heads - kv) * hd   # two layers, K and V


def test_qkv_bias_overrides_bias_for_q_k_v_only():
    base = {"bias": False}
    none = costplan.estimate(make_spec(base)).params.by_component["attention"]
    qkv = costplan.estimate(make_spec({**base, "qkv_bias": True, "n_kv_heads": 2})).params.by_component
    gqa = costplan.estimate(make_spec({**base, "n_kv_heads": 2})).params.by_component
    assert qkv["attention"] - gqa["attention"] == 2 * (64 + 2 * 32)    # q bias 64, k and v biases 32 each
    assert none > gqa["attention"]


def test_qk_norm_head_and_full():
    base = {"norm": "rmsnorm", "n_kv_heads": 2}
    plain = costplan.estimate(make_spec(base)).params.by_component["attention"]
    head = costplan.estimate(make_spec({**base, "qk_norm": "head"})).params.by_component["attention"]
    full = costplan.estimate(make_spec({**base, "qk_norm": "full"})).params.by_component["attention"]
    assert head - plain == 2 * (16 + 16)          # two layers × (q norm + k norm) of head_dim 16
    assert full - plain == 2 * (64 + 32)          # two layers × norms of n_heads·16 and n_kv_heads·16


def test_nonparametric_layernorm_has_no_parameters():
    # OLMo 1 (Groeneveld et al. 2024 §2.1): LayerNorm without weight or bias, also as QK and embedding norms.
    layernorm = {"qk_norm": "full", "embedding_norm": True}
    with_affine = costplan.estimate(make_spec(layernorm)).params
    without = costplan.estimate(make_spec({**layernorm, "norm": "nonparametric_layernorm"})).params
    assert without.by_component.get("norms", 0) == 0
    norms = (2 * 2 + 2) * 2 * 64                 # two per layer, embedding and final, weight + bias of d_model
    qk = 2 * 2 * (64 + 64)                        # two layers × weight + bias of the q and k norms (4·16 wide)
    assert with_affine.total - without.total == norms + qk


@pytest.mark.parametrize("attention", ["dense", "flash", "sliding_window", "sparse"])
def test_attention_sinks_add_a_logit_per_query_head(attention):
    shapes = {"sliding_window": {"window": 32}, "sparse": {"pattern": "strided", "block": 16}}
    model = {"attention": {"type": attention, **shapes.get(attention, {})}, "n_kv_heads": 2}
    plain = costplan.estimate(make_spec(model))
    sinks = costplan.estimate(make_spec({**model, "attention_sinks": True}))
    assert sinks.params.by_component["attention"] - plain.params.by_component["attention"] == 2 * 4   # 2 layers
    assert sinks.flops.forward_per_token == plain.flops.forward_per_token                          # no matmul


def test_embedding_norm_and_untied_head():
    tied = costplan.estimate(make_spec()).params
    untied = costplan.estimate(make_spec({"tie_embeddings": False})).params
    assert untied.total - tied.total == 1000 * 64 == untied.by_component["head"]
    normed = costplan.estimate(make_spec({"embedding_norm": True})).params
    assert normed.by_component["norms"] - tied.by_component["norms"] == 2 * 64    # LayerNorm weight + bias


@pytest.mark.parametrize("position, extra", [("learned", 128 * 64), ("rope", 0), ("alibi", 0), ("none", 0)])
def test_position_parameters(position, extra):
    p = costplan.estimate(make_spec({"position": position})).params
    assert p.by_component["embedding"] == 1000 * 64 + extra


@pytest.mark.parametrize("mlp, matrices", [("gelu", 2), ("relu", 2), ("swiglu", 3), ("geglu", 3)])
def test_mlp_matrices(mlp, matrices):
    p = costplan.estimate(make_spec({"mlp": mlp, "d_ff": 100, "bias": False})).params
    assert p.by_component["mlp"] == 2 * matrices * 64 * 100


def test_o_bias_overrides_bias_for_the_output_projection_only():
    # GPT-J: biases in the MLP only (bias true, qkv_bias and o_bias false)
    gptj = costplan.estimate(make_spec({"qkv_bias": False, "o_bias": False})).params.by_component
    qkv_only = costplan.estimate(make_spec({"qkv_bias": False})).params.by_component
    full = costplan.estimate(make_spec()).params.by_component
    assert qkv_only["attention"] - gptj["attention"] == 2 * 64                # two layers × W_o's bias of d
    assert full["attention"] - qkv_only["attention"] == 2 * 3 * 64            # and q, k, v's
    assert gptj["mlp"] == full["mlp"] == 2 * (2 * 64 * 256 + 256 + 64)
    assert costplan.estimate(make_spec({"bias": False, "o_bias": True})).params.by_component["attention"] == (
        2 * (4 * 64 * 64 + 64))


@pytest.mark.parametrize("tied", [True, False])
def test_head_bias_is_a_vocabulary_vector_tied_or_not(tied):
    plain = costplan.estimate(make_spec({"tie_embeddings": tied})).params
    biased = costplan.estimate(make_spec({"tie_embeddings": tied, "head_bias": True})).params
    assert biased.by_component["head"] - plain.by_component["head"] == 1000
    assert biased.embedding == plain.embedding


@pytest.mark.parametrize("block, norms", [
    ("sequential", 2), ("sandwich", 4), ("parallel", 2), ("parallel_shared_norm", 1)])
def test_norms_per_layer_by_block(block, norms):
    p = costplan.estimate(make_spec({"block": block})).params
    assert p.by_component["norms"] == (2 * norms + 1) * 2 * 64                # two layers and the final norm
    plain = costplan.estimate(make_spec()).params.by_component
    assert {k: v for k, v in p.by_component.items() if k != "norms"} == {
        k: v for k, v in plain.items() if k != "norms"}
