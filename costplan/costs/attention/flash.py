"""FlashAttention (Dao et al. 2022; FlashAttention-2, Dao 2023): exact attention, tiled, never storing the
s × s matrix.

Model FLOPs equal dense attention's (convention 3). What the GPU executes differs in two ways (§4.1 of both
papers): a causal kernel skips key tiles wholly above the diagonal, and the backward recomputes QKᵀ, so it
is 2.5 × the forward instead of 2 ×. Saved: q, k, v, the output and one fp32 log-sum-exp per query and head,
O(s) instead of O(s²) (FlashAttention Theorem 1).
"""
from __future__ import annotations

from costplan.costs import Cost, Shape
from costplan.costs.attention.softmax import around_core, causal_executed, flash_core
from costplan.spec import ModelSpec
from costplan.spec_attention import FlashAttention


def cost(attention: FlashAttention, model: ModelSpec, shape: Shape) -> Cost:
    s = shape.seq_len
    core = flash_core(model.n_heads, model.head_dim, model.head_dim, s * s, causal_executed(shape), shape)
    return around_core(model, shape, cached_tokens=s) + core
