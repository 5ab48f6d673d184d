"""Serving: weight bytes per format, KV cache per sequence, prefill and decode FLOPs, derived by hand."""
from __future__ import annotations

import pytest

import costplan
from conftest import make_spec
from costplan.costs import serving
from costplan.errors import CostplanError

KIB = 1024

# Llama 2 7B: 32 layers of d = 4096, SwiGLU d_ff = 11008, vocab 32000, untied head (Touvron et al. 2023;
# 6,738,415,616 parameters in the released checkpoint).
L7, D7, F7, V7 = 32, 4096, 11008, 32000
LLAMA2_7B_PARAMS = 6_738_415_616
LAYER_MATRICES = 4 * D7 * D7 + 3 * D7 * F7          # q, k, v, o and gate, up, down
QUANTIZED_7B = L7 * LAYER_MATRICES                   # 6,476,005,376
KEPT_7B = LLAMA2_7B_PARAMS - QUANTIZED_7B            # embedding + head + 65 RMSNorm weights
ROWS_7B = L7 * (4 * D7 + 2 * F7 + D7)                # output rows: q, k, v, o (d each), gate, up (d_ff), down (d)


@pytest.fixture(scope="module")
def llama2_7b():
    return costplan.load_spec("llama2-7b")


def test_what_stays_16_bit_is_embedding_head_and_norms(llama2_7b):
    assert QUANTIZED_7B == 6_476_005_376
    assert KEPT_7B == 2 * V7 * D7 + (2 * L7 + 1) * D7
    assert serving.quantized(llama2_7b).matrix_params == QUANTIZED_7B


def test_bf16_weights_are_two_bytes_per_parameter(llama2_7b):
    assert serving.weight_bytes(llama2_7b) == 2 * 6_738_415_616


def test_int4_is_half_a_byte_plus_a_16_bit_scale_per_group(llama2_7b):
    # 0.5 byte + 2/128 byte per quantized weight at group 128.
    expected = QUANTIZED_7B // 2 + QUANTIZED_7B // 128 * 2 + KEPT_7B * 2
    assert serving.weight_bytes(llama2_7b, "int4", 128) == expected
    assert serving.weight_bytes(llama2_7b, "int4", 64) == expected + QUANTIZED_7B // 128 * 2


def test_int4_without_groups_has_one_scale_per_output_row(llama2_7b):
    assert serving.weight_bytes(llama2_7b, "int4", None) == QUANTIZED_7B // 2 + ROWS_7B * 2 + KEPT_7B * 2


def test_int8_has_one_scale_per_output_row(llama2_7b):
    assert serving.weight_bytes(llama2_7b, "int8") == QUANTIZED_7B + ROWS_7B * 2 + KEPT_7B * 2


def test_fp8_has_one_fp32_scale_per_matrix(llama2_7b):
    assert serving.weight_bytes(llama2_7b, "fp8") == QUANTIZED_7B + L7 * 7 * 4 + KEPT_7B * 2


def test_moe_router_stays_16_bit():
    spec = make_spec({"moe": {"n_experts": 4, "top_k": 2}, "bias": False})
    d, f, layers = 64, 256, 2                          # d_ff defaults to 4·d_model; GELU experts: up and down
    experts = layers * 4 * 2 * d * f
    attention = layers * 4 * d * d
    q = serving.quantized(spec)
    assert (q.matrix_params, q.matrices) == (experts + attention, layers * (4 + 4 * 2))
    assert q.matrix_rows == layers * (4 * d + 4 * (f + d))
    # every other parameter (the router d × 4 among them) keeps 2 bytes
    params = costplan.estimate(spec).params.total
    assert serving.weight_bytes(spec, "int8") == 2 * (params - q.matrix_params) + q.matrix_params + 2 * q.matrix_rows


def test_a_router_bias_stays_16_bit():
    moe = {"n_experts": 4, "top_k": 2}
    plain = make_spec({"moe": moe, "bias": False})
    biased = make_spec({"moe": {**moe, "router_bias": True}, "bias": False})
    q, q_plain = serving.quantized(biased), serving.quantized(plain)
    matrices = (q.matrices, q.matrix_rows, q.matrix_params)
    assert matrices == (q_plain.matrices, q_plain.matrix_rows, q_plain.matrix_params)
    assert serving.weight_bytes(biased, "int4") - serving.weight_bytes(plain, "int4") == 2 * 2 * 4   # 2 layers


@pytest.mark.parametrize("preset, kib", [("llama2-7b", 512), ("llama3-8b", 128), ("llama2-70b", 320)])
def test_kv_cache_per_token(preset, kib):
    spec = costplan.load_spec(preset)
    assert serving.kv_cache_bytes_per_token(spec) == kib * KIB
    assert serving.kv_cache_bytes(spec, 1000) == 1000 * kib * KIB
    assert serving.kv_cache_bytes(spec, 1000, "fp8") == 1000 * kib * KIB // 2


def test_mla_caches_576_elements_per_layer_per_token():
    spec = costplan.load_spec("deepseek-v3")
    assert serving.kv_cache_bytes(spec, 10) == 10 * 61 * (512 + 64) * 2


def test_mistral_window_caps_the_cache_at_4096_tokens():
    spec = costplan.load_spec("mistral-7b")
    per_token = 32 * 2 * 8 * 128 * 2
    assert serving.kv_cache_bytes(spec, 1000) == 1000 * per_token
    assert serving.kv_cache_bytes(spec, 8192) == 4096 * per_token == serving.kv_cache_bytes(spec, 4096)


def test_aft_simple_keeps_a_constant_state():
    spec = make_spec({"attention": "aft_simple"})
    # two running sums of width n_heads·head_dim = 64 per layer, 2 layers, bf16
    assert serving.kv_cache_bytes(spec, 5) == serving.kv_cache_bytes(spec, 100) == 2 * 2 * 64 * 2


def test_prefill_flops_by_hand(llama2_7b):
    p = 100
    # every prompt token through every matrix, attention over the whole prompt (4·d·p per token and layer:
    # QKᵀ and AV), and the logits of the last token
    expected = 2 * p * QUANTIZED_7B + L7 * 4 * D7 * p * p + 2 * D7 * V7
    assert serving.prefill_flops(llama2_7b, p) == expected
    # a causal kernel skips the tiles above the diagonal: fewer executed FLOPs than the convention counts
    assert serving.prefill_executed_flops(llama2_7b, 1024) < serving.prefill_flops(llama2_7b, 1024)


def test_decode_flops_by_hand(llama2_7b):
    context = 999
    expected = 2 * QUANTIZED_7B + 2 * D7 * V7 + L7 * 4 * D7 * (context + 1)
    assert serving.decode_flops(llama2_7b, context) == expected


def test_decode_flops_of_a_window_stop_growing():
    spec = costplan.load_spec("mistral-7b")
    assert serving.decode_flops(spec, 4095) == serving.decode_flops(spec, 8000)
    assert serving.decode_flops(spec, 100) < serving.decode_flops(spec, 4095)


@pytest.mark.parametrize("call", [
    lambda s: serving.weight_bytes(s, "int3"),
    lambda s: serving.kv_cache_bytes(s, 10, "int8"),
    lambda s: serving.kv_cache_bytes(s, 0),
    lambda s: serving.prefill_flops(s, 0),
    lambda s: serving.decode_flops(s, -1),
    lambda s: serving.weight_bytes(s, "int4", 0),
])
def test_bad_arguments_are_user_errors(call):
    with pytest.raises(CostplanError):
        call(make_spec())


def test_serving_defaults_fit_the_models_context():
    assert (costplan.load_spec("llama3-8b").serving.prompt_tokens,
            costplan.load_spec("llama3-8b").serving.output_tokens) == (1024, 256)
    gpt2 = costplan.load_spec("gpt2-small").serving            # max_seq_len 1024
    assert (gpt2.prompt_tokens, gpt2.output_tokens) == (768, 256)
    tiny = make_spec().serving                                 # max_seq_len 128
    assert (tiny.prompt_tokens, tiny.output_tokens) == (96, 32)


def test_serving_rules_name_the_numbers():
    with pytest.raises(CostplanError) as exc:
        make_spec(serving={"prompt_tokens": 100, "output_tokens": 29, "tensor": 3, "gpus": 4})
    text = str(exc.value)
    assert "serving: prompt_tokens (100) + output_tokens (29) = 129 is longer than model.max_seq_len (128)" in text
    assert "serving.tensor: 3 does not divide model.n_heads (4)" in text
    assert "serving.tensor: 3 does not divide serving.gpus (4)" in text


def test_every_kernel_efficiency_has_a_source():
    from costplan import hardware, kernels

    for key in ["default", *hardware.catalogue()]:
        eff = kernels.efficiencies(key)
        for name in [*kernels.FIELDS, *kernels.WEIGHT_FIELDS.values()]:
            figure = getattr(eff, name)
            if figure is None:          # an optional weight-format figure the device does not have
                continue
            assert figure.source.strip()
            assert 0 < figure.value <= (100 if name in kernels.LATENCIES else 1)
    assert kernels.efficiencies("h100-sxm").device == "h100-sxm"
    l4 = kernels.efficiencies("l4")         # PCIe: its own all-reduce latency, the default fractions
    assert (l4.device, l4.latency_device) == ("default", "l4")
    assert kernels.efficiencies("v100").device == "default"


def test_weight_formats_without_a_kernel_figure_stream_at_the_hbm_efficiency():
    from costplan import kernels

    a100, h100 = kernels.efficiencies("a100-80gb"), kernels.efficiencies("h100-sxm")
    assert a100.weight_memory("int8").value < a100.memory.value      # int8 GEMMs at one token: 35-40%
    assert a100.weight_memory("bf16") == a100.memory
    assert a100.weight_memory("int4") == a100.memory                 # FP16xINT4 kernels: near ideal
    assert h100.weight_memory("int8") == h100.memory                 # no H100 figure
    assert h100.weight_memory("fp8").value == 0.71                   # fp8 GEMMs at one token: 2.37 of 3.35 TB/s
    assert a100.weight_memory("fp8") == a100.memory                  # moot: the A100 has no fp8 GEMMs


def test_an_all_reduce_across_nodes_takes_the_internode_latency():
    from costplan import kernels

    h100 = kernels.efficiencies("h100-sxm")
    assert h100.allreduce_latency(8, 8) == h100.allreduce_latency_us
    assert h100.allreduce_latency(16, 8) == h100.allreduce_latency_internode_us
    assert h100.allreduce_latency_internode_us.value > h100.allreduce_latency_us.value
