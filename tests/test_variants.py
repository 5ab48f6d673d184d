"""Attention variants: hand-derived parameters, FLOPs, activations and KV cache, and their scaling with s."""
from __future__ import annotations

import math

import pytest

import costplan
from conftest import make_spec
from costplan.costs import Shape
from costplan.costs.attention.pairs import (
    block_pairs, causal_pairs, column_pairs, summary_keys, tiled_pairs,
)
from costplan.costs.estimate import components

# The tiny base: d = 64, 4 heads of 16, 2 layers, vocab 1000, max_seq_len 128, GPT-style (gelu, layernorm).
S, D, H, HD, L = 128, 64, 4, 16, 2


def attention(spec: costplan.Spec, **shape):
    """The attention component of one sequence (all layers)."""
    return components(spec, Shape(spec.seq_len, 2, **shape) if shape else None)["attention"]


def core_per_layer(spec: costplan.Spec) -> int:
    """Forward FLOPs of the attention core of one layer: the attention component minus its projections."""
    projections = 2 * S * D * 4 * D                     # q, k, v, o: four (s × 64)·(64 × 64) matmuls
    return attention(spec).flops // L - projections


# ---------------------------------------------------------------------------------------------- pair counts
def test_pair_counts_against_brute_force():
    def tiled(s, w, b):
        back = math.ceil((w - 1) / b)
        return sum(min((q // b + 1) * b, s) - max(0, q // b - back) * b for q in range(s))

    for s in (1, 7, 64, 100, 128, 129, 300):
        for w in (1, 3, 16, 100, 128, 500):
            for b in (1, 4, 16, 128):
                assert tiled_pairs(s, w, b) == tiled(s, w, b)
        for l in (1, 3, 8, 16, 64):
            assert column_pairs(s, l) == sum((i - j) % l == 0 for i in range(s) for j in range(s))
            assert block_pairs(s, l) == sum(i // l == j // l for i in range(s) for j in range(s))
            for c in range(1, l + 1):
                assert summary_keys(s, l, c) == sum(j % l >= l - c for j in range(s))
        assert causal_pairs(s, 16) == tiled_pairs(s, s, 16)


# ---------------------------------------------------------------------------------------------- sliding window
def test_sliding_window_flops_by_hand():
    spec = make_spec({"attention": {"type": "sliding_window", "window": 32}})
    assert core_per_layer(spec) == 4 * H * HD * S * 32                     # 32 keys per query, QKᵀ and AV
    # hardware: tiles of 32 queries, each computing its own and the previous key tile (the first only its own)
    executed = 32 * 32 * (1 + 2 + 2 + 2)
    hw = components(spec)["attention"].hw_fwd // L - 2 * S * D * 4 * D
    assert hw == 4 * H * HD * executed


def test_window_at_least_seq_len_is_dense():
    dense = costplan.estimate(make_spec())
    for window in (128, 1000):
        windowed = costplan.estimate(make_spec({"attention": {"type": "sliding_window", "window": window}}))
        assert windowed.flops.training_per_token == dense.flops.training_per_token
        assert windowed.memory.activations <= dense.memory.activations


def test_sliding_window_grows_linearly():
    # Attention FLOPs per token stop growing once s > window (O(s·w) per sequence); dense keeps growing.
    def attention_per_token(s, kind):
        spec = make_spec({"max_seq_len": s, "attention": kind})
        return costplan.estimate(spec).flops.by_component["attention"]

    window = {"type": "sliding_window", "window": 64}
    assert attention_per_token(256, window) == attention_per_token(1024, window)
    assert attention_per_token(1024, "dense") > attention_per_token(256, "dense")


def test_sliding_window_cache_is_a_rolling_buffer():
    e = costplan.estimate(make_spec({"attention": {"type": "sliding_window", "window": 32}}))
    per_token = L * 2 * H * HD * 2
    assert e.memory.kv_cache_per_token == per_token and e.memory.kv_cache_at_seq_len == 32 * per_token
    assert costplan.estimate(make_spec()).memory.kv_cache_at_seq_len == S * per_token


def test_mistral_7b():
    # Jiang et al. 2023, Table 1: 7.24B parameters; KV cache of 8 KV heads × 128, rolling over 4,096 tokens.
    e = costplan.estimate(costplan.load_spec("mistral-7b"))
    assert e.params.total == 7_241_732_096
    assert e.memory.kv_cache_per_token == 32 * 2 * 8 * 128 * 2
    assert e.memory.kv_cache_at_seq_len == 4096 * e.memory.kv_cache_per_token


# ---------------------------------------------------------------------------------------------- sparse
def test_sparse_strided_by_hand():
    # l = 16: heads 0-1 see the 16 most recent keys, heads 2-3 the 8 keys of their column (128 / 16).
    spec = make_spec({"attention": {"type": "sparse", "pattern": "strided", "block": 16}})
    per_pair = 4 * HD                                   # QKᵀ and AV, one multiply-add per dimension each
    assert core_per_layer(spec) == 2 * per_pair * (S * 16) + 2 * per_pair * (S * 8)


def test_sparse_fixed_by_hand():
    # l = 16, c = 4: heads 0-1 see their own block of 16; heads 2-3 the 4 last cells of all 8 blocks (32 keys).
    spec = make_spec({"attention": {"type": "sparse", "pattern": "fixed", "block": 16, "summary": 4}})
    per_pair = 4 * HD
    assert core_per_layer(spec) == 2 * per_pair * (S * 16) + 2 * per_pair * (S * 32)


@pytest.mark.parametrize("n", [256, 1024, 4096, 16384])
def test_sparse_strided_grows_like_n_root_n(n):
    # With l = √n, keys per query ≈ 2√n: core FLOPs / (n·√n) is constant (Child et al. 2019 §4.2).
    l = math.isqrt(n)
    spec = make_spec({"max_seq_len": n, "attention": {"type": "sparse", "pattern": "strided", "block": l}})
    core = attention(spec).flops - 2 * n * D * 4 * D * L
    # two heads × l keys + two heads × n/l keys, 4·d_head FLOPs per pair: 2·4·HD·(l + n/l) = 16·HD·√n per token
    assert core / (n * math.sqrt(n)) == pytest.approx(16 * HD * L, rel=1e-9)


def test_sparse_needs_two_heads(run):
    result = run("estimate", "gpt2-small", "--set", "model.attention.type=sparse", "--set",
                 "model.attention.pattern=strided", "--set", "model.attention.block=32", "--set", "model.n_heads=1")
    assert result.exit_code == 2 and "model.n_heads: sparse attention gives half of the heads" in result.stderr


# ---------------------------------------------------------------------------------------------- MLA
DEEPSEEK_LAYER = {
    # DeepSeek-V3 attention parameters per layer, from the HF checkpoint's tensor shapes:
    "q_a_proj": 7168 * 1536, "q_a_layernorm": 1536, "q_b_proj": 1536 * 128 * 192,
    "kv_a_proj_with_mqa": 7168 * 576, "kv_a_layernorm": 512, "kv_b_proj": 512 * 128 * 256,
    "o_proj": 128 * 128 * 7168,
}


def test_mla_parameters_and_cache():
    e = costplan.estimate(costplan.load_spec("deepseek-v3"))
    assert e.params.by_component["attention"] == 61 * sum(DEEPSEEK_LAYER.values())
    # DeepSeek-V2 §2.1.3: only the latent (512) and the RoPE key (64) are cached, per layer and token.
    assert e.memory.kv_cache_per_token == 61 * (512 + 64) * 2


def test_mla_flops_by_hand():
    spec = make_spec({"n_heads": 4, "position": "rope", "attention": {
        "type": "mla", "kv_lora_rank": 32, "q_lora_rank": 24, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
        "v_head_dim": 16}})
    per_token = (2 * 64 * 24 + 2 * 24 * 4 * 24          # q down, q up to 4 heads of 16 + 8
                 + 2 * 64 * 40 + 2 * 32 * 4 * 32        # kv down to 32 + 8, kv up to 4 heads of 16 + 16
                 + 2 * 4 * S * 24 + 2 * 4 * S * 16      # scores over 24 dims, values of 16, all 128 keys
                 + 2 * 4 * 16 * 64)                     # output projection
    assert attention(spec).flops == L * S * per_token


def test_flash_backward_with_unequal_head_dims():
    # MLA's q·k runs over d_qk = 16 + 8 = 24 dims, p·v over d_v = 16. A flash backward recomputes S = QKᵀ (24),
    # then dV = PᵀdO and dP = dO·Vᵀ (16 each), dQ = dS·K and dK = dSᵀ·Q (24 each): 3 · 24 + 2 · 16 = 104 per pair
    # and head, against 24 + 16 = 40 forward (2.6 ×, not the 2.5 × of equal head dims). Counted on the full
    # square, as a FLOP counter sees it.
    spec = make_spec({"n_heads": 4, "position": "rope", "attention": {
        "type": "mla", "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16}})
    a = attention(spec, skip_masked_tiles=False)
    core_forward = 2 * 4 * S * S * (24 + 16)
    core_backward = 2 * 4 * S * S * (3 * 24 + 2 * 16)
    projections = a.flops - L * core_forward
    assert a.hw_flops == 3 * projections + L * (core_forward + core_backward)


def test_mla_without_query_compression():
    base = {"type": "mla", "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16}
    p = costplan.estimate(make_spec({"bias": False, "attention": base})).params.by_component["attention"]
    per_layer = 64 * 4 * 24 + 64 * 40 + 2 * 32 + 32 * 4 * 32 + 4 * 16 * 64   # q, kv down, norm, kv up, o
    assert p == L * per_layer


# ---------------------------------------------------------------------------------------------- AFT
@pytest.mark.parametrize("kind, bias_params", [
    ({"type": "aft_full"}, 128 * 128),
    ({"type": "aft_local", "window": 32}, 128 * 128),
    ({"type": "aft_simple"}, 0),
    ({"type": "aft_conv", "window": 32}, H * 32),        # one kernel of `window` taps per head
])
def test_aft_parameters(kind, bias_params):
    p = costplan.estimate(make_spec({"bias": False, "attention": kind})).params.by_component["attention"]
    assert p == L * (4 * D * D + bias_params)


@pytest.mark.parametrize("kind, keys", [({"type": "aft_full"}, S), ({"type": "aft_local", "window": 32}, 32),
                                        ({"type": "aft_simple"}, 0), ({"type": "aft_conv", "window": 32}, 32)])
def test_aft_flops_by_hand(kind, keys):
    # Two products (numerator, denominator) of the position weights with s × 64 matrices.
    assert core_per_layer(make_spec({"attention": kind})) == 2 * 2 * S * keys * D


def test_aft_simple_flops_are_linear_in_seq_len():
    def per_sequence(s):
        return costplan.estimate(make_spec({"max_seq_len": s, "attention": "aft_simple"})).flops.forward_per_token * s

    assert per_sequence(1024) == 2 * per_sequence(512) == 4 * per_sequence(256)


def test_aft_conv_keeps_its_kernel_once_per_micro_batch():
    # The two convolutions keep their kernel exp(w) − 1, 4 heads × 32 taps (bf16), computed once per
    # micro-batch from w: per micro-batch, not per sequence.
    def shared(micro_batch):
        spec = make_spec({"attention": {"type": "aft_conv", "window": 32}}, {"micro_batch_size": micro_batch})
        return costplan.estimate(spec).memory.activations

    assert 2 * shared(1) - shared(2) == L * H * 32 * 2


def test_aft_memory_and_cache():
    def estimate(kind, s=S):
        return costplan.estimate(make_spec({"max_seq_len": s, "attention": kind}))

    # aft_full saves exp(w), s × s, once per micro-batch, and exp(K)⊙V (s × 64) as its matmul's input;
    # aft_simple has nothing quadratic, and its running sums keep no input.
    grow_full = estimate("aft_full", 256).memory.activations - estimate("aft_full", 128).memory.activations
    grow_simple = estimate("aft_simple", 256).memory.activations - estimate("aft_simple", 128).memory.activations
    assert grow_full - grow_simple == L * (256**2 - 128**2) * 2 + L * (256 - 128) * D * 2
    # aft_simple keeps two running sums per layer and no per-token cache, like an RNN.
    simple = estimate("aft_simple").memory
    assert simple.kv_cache_per_token == 0 and simple.kv_cache_at_seq_len == L * 2 * D * 2
    local = estimate({"type": "aft_local", "window": 32}).memory
    assert local.kv_cache_at_seq_len == L * (32 * 2 * D * 2 + 2 * D * 2)


# ---------------------------------------------------------------------------------------------- all types
ALL_TYPES = [
    "dense", "flash", {"type": "sliding_window", "window": 32},
    {"type": "sparse", "pattern": "strided", "block": 16},
    {"type": "sparse", "pattern": "fixed", "block": 16, "summary": 4},
    {"type": "mla", "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16},
    "aft_full", {"type": "aft_local", "window": 32}, "aft_simple", {"type": "aft_conv", "window": 32},
]


@pytest.mark.parametrize("kind", ALL_TYPES)
def test_every_type_reports_everything(kind):
    e = costplan.estimate(make_spec({"attention": kind, "position": "rope"}))
    assert e.params.total > 0 and e.flops.training_per_token > 0 and e.memory.activations > 0
    assert e.flops.hardware_per_token > 0 and e.memory.kv_cache_at_seq_len > 0
    assert sum(e.params.by_component.values()) == e.params.total


@pytest.mark.parametrize("kind", ALL_TYPES[2:5] + ALL_TYPES[7:])
def test_sub_quadratic_types_beat_dense_at_long_context(kind):
    def attention_and_memory(k):
        e = costplan.estimate(make_spec({"attention": k, "max_seq_len": 4096, "position": "rope"}))
        return e.flops.by_component["attention"], e.memory.activations

    flops, memory = attention_and_memory(kind)
    dense_flops, dense_memory = attention_and_memory("dense")
    assert flops < dense_flops / 4 and memory < dense_memory / 4


def test_kernel_choice_for_windowed_attention():
    # Materialising: the probabilities of every computed tile pair (H heads × executed pairs, 16-bit);
    # flash: one fp32 log-sum-exp per query and head. Same FLOPs; flash's backward is 2.5 × forward.
    def core(kernel):
        spec = make_spec({"attention": {"type": "sliding_window", "window": 32, "kernel": kernel}})
        return attention(spec)

    materialized, flash = core("materialized"), core("flash")
    executed = 32 * 32 * (1 + 2 + 2 + 2)
    assert materialized.activations - flash.activations == L * (H * executed * 2 - H * S * 4)
    assert materialized.flops == flash.flops
    core_forward = L * 4 * H * HD * executed
    assert flash.hw_flops - materialized.hw_flops == core_forward // 2


def test_sparse_materialized_stores_each_part():
    spec = make_spec({"attention": {"type": "sparse", "pattern": "fixed", "block": 16, "summary": 4,
                                    "kernel": "materialized"}})
    flash = make_spec({"attention": {"type": "sparse", "pattern": "fixed", "block": 16, "summary": 4}})
    probabilities = 2 * (S * 16) + 2 * (S * 32)           # two heads on blocks of 16, two on 32 summary keys
    lse = 2 * S + 2 * S
    assert attention(spec).activations - attention(flash).activations == L * (probabilities * 2 - lse * 4)
