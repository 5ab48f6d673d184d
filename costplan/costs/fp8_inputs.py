"""Saved activations of Transformer Engine's fp8 linears (training.fp8_saved_inputs).

TE's Linear and LayerNormLinear (Megatron-Core's and NeMo's fp8 layers) save the fp8 copy of their input that
their weight-gradient GEMM reads (transformer_engine/pytorch/module/linear.py: the quantized input, kept for the
wgrad), 1 byte an element, where a 16-bit linear saves its e-byte input. An input nothing else saves is then held
in 1 byte; one that another op saves too is held in both: a flash core saves its output, which the output
projection reads, and ReLU its output, which the down projection reads. The attention core's matmuls, the
router and the head stay 16-bit (Megatron-Core runs them outside TE's fp8 linears). MLA's linears are TE's as
well (Megatron-Core's MLASelfAttention). torchao's Float8Linear
(torchtitan) saves the 16-bit input: fp8_saved_inputs false.
"""
from __future__ import annotations

from costplan.costs import FP8_BYTES, Shape
from costplan.spec import ModelSpec, MoESpec
from costplan.spec_attention import AttentionSpec, LatentAttention


def _input(elements: int, shared: bool, e: int) -> int:
    """Bytes an fp8 linear's input adds to what its 16-bit input took: its fp8 copy, and the 16-bit one no longer
    where nothing else saves it."""
    return FP8_BYTES * elements - (0 if shared else e * elements)


def _mlp(model: ModelSpec, d_ff: int, rows: int, e: int, input_shared: bool) -> tuple[int, int]:
    """(bytes added, of them by the d_model-wide input): an MLP's up (and gate) projection's input and its down
    projection's input, over `rows` rows."""
    inputs = _input(rows * model.d_model, input_shared, e)
    return inputs + _input(rows * d_ff, model.mlp == "relu", e), inputs


def attention(attention: AttentionSpec, model: ModelSpec, shape: Shape) -> tuple[int, int]:
    """(bytes added to the attention block's activations, of them to its d_model-wide part): the Q/K/V
    projections' input and the output projection's, which a flash core saves too (as its output)."""
    s, e = shape.seq_len, shape.act_bytes
    inputs = _input(s * model.d_model, False, e)
    return inputs + _input(s * model.q_width, not attention.materializes, e), inputs


def latent_attention(attention: LatentAttention, model: ModelSpec, shape: Shape) -> tuple[int, int]:
    """(bytes added to an MLA block's activations, of them to its per-token part): the normed block input,
    of which the two down (or query and key-value down) projections each save their own copy (separate linears in
    Megatron-Core's MLASelfAttention; its opt-in fused down projection, one), the normed latents the up
    projections read (the queries' only where they are compressed), and the core's output, which the core saves
    too (attention/mla.py)."""
    s, e = shape.seq_len, shape.act_bytes
    inputs = _input(s * model.d_model, False, e) + _input(s * model.d_model, True, e)
    latents = _input(s * (attention.kv_lora_rank + (attention.q_lora_rank or 0)), False, e)   # per token, as x
    return inputs + latents + _input(s * model.n_heads * attention.v_head_dim, True, e), inputs + latents


def mlp(model: ModelSpec, d_ff: int, shape: Shape) -> tuple[int, int]:
    """(bytes added to a dense MLP's activations, of them to its d_model-wide part)."""
    return _mlp(model, d_ff, shape.seq_len, shape.act_bytes, False)


def moe(moe: MoESpec, model: ModelSpec, rows: int, shape: Shape) -> tuple[int, int, int]:
    """(bytes added to a MoE block's activations, of them to its d_model-wide part and to its routed rows'
    part): each routed row's gathered input and down-projection input; the block input, which the 16-bit
    router saves, gains the shared experts' fp8 copy."""
    s, e = shape.seq_len, shape.act_bytes
    routed, per_row_input = _mlp(model, moe.d_ff_expert, rows, e, False)
    shared, wide = _mlp(model, moe.d_ff_shared, s, e, True) if moe.n_shared_experts else (0, 0)
    return routed + shared, wide, per_row_input
