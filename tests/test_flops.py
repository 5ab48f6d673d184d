"""FLOPs: closed forms from the literature, hand-derived pieces, hardware FLOPs."""
from __future__ import annotations

import pytest

import costplan
from conftest import make_spec
from costplan.costs.attention.pairs import causal_pairs


def matmul_weights(spec: costplan.Spec) -> int:
    """Parameters of every weight matrix a token multiplies by, derived here from the shape alone."""
    m = spec.model
    attention = m.d_model * (m.n_heads + 2 * m.n_kv_heads) * m.head_dim + m.n_heads * m.head_dim * m.d_model
    mlp = (3 if m.mlp in ("swiglu", "geglu") else 2) * m.d_model * m.d_ff
    return m.n_layers * (attention + mlp) + m.vocab_size * m.d_model   # + the LM head, tied or not


@pytest.mark.parametrize("preset", ["gpt2-small", "gpt3-175b", "llama2-7b", "llama2-70b", "llama3-8b"])
def test_palm_6n_plus_12lhqt(preset):
    # PaLM (Chowdhery et al. 2022) App. B: training FLOPs per token = 6N + 12·L·H·Q·T, N the matmul weights,
    # attention over the full (non-causal) context T. Exact: both count the same matmuls.
    spec = costplan.load_spec(preset)
    m = spec.model
    palm = 6 * matmul_weights(spec) + 12 * m.n_layers * m.n_heads * m.head_dim * spec.seq_len
    assert costplan.estimate(spec).flops.training_per_token == palm


def test_llama3_8b_at_8k_matches_reference_figure():
    # formulas reference §8: 6·7.505e9 = 4.50e10 plus attention 1.29e10 → 5.79e10 per token (c = 1).
    f = costplan.estimate(costplan.load_spec("llama3-8b")).flops
    assert f.training_per_token == pytest.approx(5.79e10, rel=2e-3)


def test_forward_by_hand_tiny():
    # s = 128 tokens, d = 64, 4 heads of 16, f = 256, vocab 1000, tied, gelu. Per token, per layer:
    #   q, k, v, o projections: 4 matmuls of 64×64 → 4·2·64·64; scores and values: 2·2·128·64; MLP 2·2·64·256.
    spec = make_spec()
    per_layer = 4 * 2 * 64 * 64 + 2 * 2 * 128 * 64 + 2 * 2 * 64 * 256
    head = 2 * 64 * 1000
    f = costplan.estimate(spec).flops
    assert f.forward_per_token == 2 * per_layer + head
    assert f.by_component == {"embedding": 0, "attention": 2 * (4 * 2 * 64 * 64 + 2 * 2 * 128 * 64),
                              "mlp": 2 * 2 * 2 * 64 * 256, "norms": 0, "head": head}
    assert f.training_per_token == 3 * f.forward_per_token


def test_training_total_is_per_token_times_tokens():
    f = costplan.estimate(make_spec(training={"tokens": 123_456_789})).flops
    assert f.training_total == f.training_per_token * 123_456_789


def test_dense_hardware_flops_equal_model_flops_without_recompute():
    f = costplan.estimate(make_spec()).flops
    assert f.hardware_per_token == f.training_per_token


def test_selective_recompute_adds_one_core_forward():
    plain = costplan.estimate(make_spec()).flops
    selective = costplan.estimate(make_spec(training={"recompute": "selective"})).flops
    core_forward_per_token = 2 * 2 * 2 * 128 * 64          # two layers, QKᵀ and AV, 128 keys, width 64
    assert selective.hardware_per_token - plain.hardware_per_token == core_forward_per_token
    assert selective.training_per_token == plain.training_per_token   # model FLOPs never include recompute


def test_full_recompute_adds_one_layer_forward():
    plain = costplan.estimate(make_spec()).flops
    full = costplan.estimate(make_spec(training={"recompute": "full"})).flops
    layers_forward = plain.forward_per_token - plain.by_component["head"]
    assert full.hardware_per_token == plain.hardware_per_token + layers_forward


def test_causal_pairs_against_brute_force():
    for s in (1, 100, 128, 129, 256, 300, 1000):
        brute = sum(min((q // 128 + 1) * 128, s) for q in range(s))   # keys up to the end of each query's tile
        assert causal_pairs(s) == brute
    assert causal_pairs(4096) / 4096**2 == pytest.approx(0.5 + 0.5 / 32)   # (n + 1)/(2n) of the square


def test_flash_hardware_flops_by_hand():
    # Flash: core executed over causal tiles, forward + backward = 3.5 × that (FlashAttention-2 §4.1).
    spec = make_spec({"attention": {"type": "flash"}, "max_seq_len": 256})
    f = costplan.estimate(spec).flops
    dense = costplan.estimate(make_spec({"max_seq_len": 256})).flops
    core_model = 2 * 2 * 2 * 256 * 64                         # per token, two layers
    core_exec = 2 * 2 * 2 * causal_pairs(256) * 64 / 256
    assert f.training_per_token == dense.training_per_token
    assert f.hardware_per_token == pytest.approx(dense.hardware_per_token - 3 * core_model + 3.5 * core_exec)


def test_flops_per_token_exact_int_for_dense():
    f = costplan.estimate(costplan.load_spec("llama2-7b")).flops
    assert isinstance(f.forward_per_token, int) and isinstance(f.training_total, int)


def test_flash_without_tile_skipping_is_the_counter_convention():
    # What torch's FLOP counter reports for SDPA: the whole square forward, 2.5 × that backward.
    from costplan.costs import Shape
    from costplan.costs.estimate import components

    spec = make_spec({"attention": "flash", "max_seq_len": 256})
    attention = components(spec, Shape(256, 2, skip_masked_tiles=False))["attention"]
    core = 2 * 2 * 2 * 256 * 256 * 64            # two layers, QKᵀ + AV over the full square, width 64
    assert attention.hw_flops - 3 * (attention.flops - core) == core * 7 // 2
