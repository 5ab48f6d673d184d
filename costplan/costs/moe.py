"""A mixture-of-experts block replacing a layer's MLP (Shazeer et al. 2017; GShard; Switch Transformer, Fedus
et al. 2021 §2; Mixtral, Jiang et al. 2024; DeepSeekMoE, Dai et al. 2024 §3).

- Router: a d_model × n_experts matrix, with a bias of n_experts when router_bias (gpt-oss); its softmax is
  taken in fp32 and each token goes to its top_k experts.
- Routed experts: n_experts MLPs of width d_ff_expert, the model's MLP kind. Parameters count every expert;
  a token touches top_k of them (the rest are `inactive_params`).
- Shared experts: always active, fused into one MLP of width d_ff_shared (DeepSeekMoE's isolation), with an
  optional d_model × 1 sigmoid gate on its output (Qwen-MoE).
- Capacity (Switch §2.1): with a capacity factor, each expert gets a buffer of ⌈cf · s · top_k / n_experts⌉
  token slots per routing group, a group being one sequence (GShard's groups); the buffers are computed whole
  whether full or not (hardware FLOPs) and tokens beyond them are dropped. Model FLOPs are always top_k experts
  per token, the convention of every MoE paper's "activated parameters".

Saved for backward, per sequence: the block input x (router and shared expert), the fp32 router probabilities,
and per routed row (s · top_k, or the padded buffers): its gathered input, the expert's inner tensors, its
output, its fp32 gate weight and two int64 indices: the token it was gathered from (and is scatter-added back
to) and the (token, expert) entry its gate weight was read from. A gather-based dispatch needs both; the top-k
choices themselves are not kept (measured on the reference model, costplan/profiling/moe.py).
"""
from __future__ import annotations

import math

from costplan.costs import INDEX_BYTES, STAT_BYTES, Cost, Shape, linear, unquantized
from costplan.costs.mlp import feed_forward, saved_inner
from costplan.spec import ModelSpec, MoESpec


def capacity(moe: MoESpec, seq_len: int) -> int:
    """Token slots per expert in one routing group of seq_len tokens: ⌈cf · s · top_k / n_experts⌉, with cf
    taken as the decimal written in the spec (1.1 is 11/10, not the nearest binary float)."""
    from fractions import Fraction   # here: only a capacity factor needs it, and importing it costs a start

    return math.ceil(Fraction(repr(moe.capacity_factor)) * seq_len * moe.top_k / moe.n_experts)


def routed_rows(moe: MoESpec, seq_len: int) -> int:
    """Rows the experts compute for one sequence: top_k per token, or the whole padded buffers."""
    return moe.n_experts * capacity(moe, seq_len) if moe.capacity_factor else seq_len * moe.top_k


def routes_dropless(model: ModelSpec) -> bool:
    """Whether the model's experts take every token routed to them (no capacity buffers): their rows, and so
    their GEMMs' shapes, follow the routing."""
    return model.moe is not None and not model.moe.capacity_factor


def moe_block(moe: MoESpec, model: ModelSpec, shape: Shape) -> Cost:
    s, d, e = shape.seq_len, model.d_model, shape.act_bytes
    f = moe.d_ff_expert
    expert_weights = feed_forward(model, f, 0, e)
    inner = saved_inner(model, shape)
    ideal = feed_forward(model, f, s * moe.top_k, e, inner)
    rows = routed_rows(moe, s)
    executed = feed_forward(model, f, rows, e, inner)
    # per routed row: its gathered input, its output, its gate weight, and its token and weight indices
    per_row = rows * (2 * d * e + STAT_BYTES + 2 * INDEX_BYTES)
    experts = Cost(
        params=expert_weights.params * moe.n_experts,
        factored=expert_weights.factored * moe.n_experts, factors=expert_weights.factors * moe.n_experts,
        inactive_params=expert_weights.params * (moe.n_experts - moe.top_k),
        routed_params=expert_weights.params * moe.n_experts,
        flops=ideal.flops, hw_fwd=executed.hw_fwd, hw_flops=executed.hw_flops,
        matrices=expert_weights.matrices * moe.n_experts, matrix_rows=expert_weights.matrix_rows * moe.n_experts,
        matrix_params=expert_weights.matrix_params * moe.n_experts,
        activations=executed.activations + per_row,
        act_routed_rows=per_row,
    )
    # Quantized checkpoints keep the router in 16 bits (DeepSeek-V3's fp8 release; AWQ/GPTQ skip the gate); every
    # tensor rank holds it whole (Megatron-Core's TopKRouter weight is not split; vLLM's gate a ReplicatedLinear).
    gate = unquantized(linear(s, d, moe.n_experts, moe.router_bias))
    router = gate.replace(tensor_whole=gate.params) + Cost(activations=s * moe.n_experts * STAT_BYTES)
    block = router + experts + Cost(activations=s * d * e)          # the block input, saved once
    if moe.n_shared_experts:
        block = block + feed_forward(model, moe.d_ff_shared, s, e, inner)
        if moe.shared_expert_gate:
            # sigmoid(x·w_g) ⊙ shared: the mul saves the gate and the shared output
            shared_gate = unquantized(linear(s, d, 1))
            block = block + shared_gate.replace(tensor_whole=shared_gate.params) + Cost(activations=s * (1 + d) * e)
    return block

