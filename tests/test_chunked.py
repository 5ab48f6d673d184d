"""Chunked local attention (Llama 4) and NoPE layers, by hand: FLOPs of the keys each query's chunk holds, the
tiles a causal kernel computes per chunk, one chunk of KV cache, and NoPE layers that cost what RoPE layers
cost but for the rotation's memory traffic."""
from __future__ import annotations

import costplan
from costplan.costs import Shape
from costplan.costs.attention import COST
from costplan.costs.layers import Layer
from costplan.costs.ops import Stream, attention_ops
from costplan.costs.serving import kv_cache_bytes

H, G, D, S = 4, 2, 64, 1024      # query heads, K/V heads, head_dim, tokens
MODEL = {"vocab_size": 512, "d_model": H * D, "n_layers": 2, "n_heads": H, "n_kv_heads": G, "max_seq_len": S,
         "mlp": "swiglu", "norm": "rmsnorm", "position": "rope", "bias": False}


def spec(attention):
    return costplan.load_spec({"model": {**MODEL, "attention": attention}, "training": {"tokens": 1e6}})


def core(attention, seq_len: int = S):
    """The attention core's cost: the layer's minus a flash layer's of the same sequence (same projections)."""
    model = spec(attention).model
    shape = Shape(seq_len=seq_len, act_bytes=2)
    a, flash = model.attention, spec("flash").model.attention
    return COST[a.type](a, model, shape), COST["flash"](flash, model, shape)


def test_model_flops_count_each_query_s_whole_chunk():
    # 1,000 tokens in chunks of 256: three whole chunks and one of 232; per pair and head a 64-long dot product
    # for the score and a 64-long multiply-add of a value row: 2·64 + 2·64 FLOPs.
    chunked, flash = core({"type": "chunked", "chunk": 256}, 1000)
    pairs = 3 * 256 * 256 + 232 * 232
    flash_pairs = 1000 * 1000
    assert chunked.flops - flash.flops == H * (pairs - flash_pairs) * 4 * D


def test_hardware_flops_are_a_causal_kernel_per_chunk():
    # Chunks of 256 are two 128-row tiles each: tiles (1,1), (2,1), (2,2) computed, 3 · 128² pairs per chunk,
    # 4 chunks; the flash kernel's backward is 2.5 × its forward.
    chunked, flash = core({"type": "chunked", "chunk": 256})
    executed = 4 * 3 * 128 * 128
    flash_executed = sum(range(1, S // 128 + 1)) * 128 * 128
    assert chunked.hw_fwd - flash.hw_fwd == H * (executed - flash_executed) * 4 * D
    assert chunked.hw_flops - flash.hw_flops == 3.5 * H * (executed - flash_executed) * 4 * D


def test_a_chunk_as_long_as_the_sequence_is_causal_flash_attention():
    chunked, flash = core({"type": "chunked", "chunk": S})
    assert (chunked.flops, chunked.hw_fwd, chunked.hw_flops, chunked.activations) == (
        flash.flops, flash.hw_fwd, flash.hw_flops, flash.activations)


def test_the_kv_cache_holds_one_chunk_per_chunked_layer():
    # Layer 0 chunked (at most 256 tokens), layer 1 global NoPE (every token): K and V of 2 heads of 64, bf16.
    s = spec([{"type": "chunked", "chunk": 256}, {"type": "flash", "rope": False}])
    per_token = 2 * G * D * 2
    assert kv_cache_bytes(s, 1000) == per_token * (256 + 1000)
    assert kv_cache_bytes(s, 100) == per_token * (100 + 100)


def test_a_nope_layer_costs_a_rope_layer_less_its_rotation():
    model_rope, model_nope = spec("flash").model, spec({"type": "flash", "rope": False}).model
    shape = Shape(seq_len=S, act_bytes=2)
    rope = attention_ops(Layer(model_rope.attention, model_rope.d_ff), model_rope, shape)
    nope = attention_ops(Layer(model_nope.attention, model_nope.d_ff), model_nope, shape)
    rotary = [op for op in rope if isinstance(op, Stream) and op.kind == "rotary"]
    assert [op for op in rope if op not in rotary] == nope
    assert rotary == [Stream("rotary", 2 * S * (H * D + G * D) * 2, kernels=(2, 2))]   # q and k read, written, bf16
    a, b = costplan.estimate(spec("flash")), costplan.estimate(spec({"type": "flash", "rope": False}))
    assert (a.params.total, a.flops.training_per_token, a.memory.activations) == (
        b.params.total, b.flops.training_per_token, b.memory.activations)
