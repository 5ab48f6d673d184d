"""FlashAttention (Dao et al. 2022; FlashAttention-2, Dao 2023): exact attention, tiled, never storing the
s × s matrix.

Model FLOPs equal dense attention's (convention 3). What the GPU executes differs in two ways (§4.1 of both
papers): a causal kernel skips key tiles wholly above the diagonal, and the backward recomputes QKᵀ, so it
is 2.5 × the forward instead of 2 ×. Saved for backward: q, k, v, the output and one fp32 log-sum-exp per
query and head, O(s) instead of O(s²) (FlashAttention Theorem 1). The kernel already recomputes its core,
so selective recomputation adds nothing (Korthikanti's and Dao's savings do not stack).
"""
from __future__ import annotations

from costplan.costs import STAT_BYTES, Cost, Shape
from costplan.costs.attention.softmax import kv_cache, projections, qk_norms, saved_around_core, score_flops
from costplan.spec import FlashAttention, ModelSpec

# Query-tile height of the FlashAttention-2 forward and backward kernels for head_dim ≤ 128 on A100/H100.
QUERY_BLOCK = 128


def causal_pairs(seq_len: int, block: int = QUERY_BLOCK) -> int:
    """(query, key) pairs a causal tiled kernel computes: each tile of `block` queries visits every key up to
    its last row, so the diagonal tiles are computed whole and the tiles above them are skipped."""
    full, rest = divmod(seq_len, block)
    # full tile i sees (i + 1)·block keys; a last, partial tile of `rest` rows sees all seq_len keys
    return block * block * full * (full + 1) // 2 + rest * seq_len


def cost(attention: FlashAttention, model: ModelSpec, shape: Shape) -> Cost:
    s, heads, d_head = shape.seq_len, model.n_heads, model.head_dim
    core = score_flops(heads, s * s, d_head, d_head)
    pairs = causal_pairs(s) if shape.skip_masked_tiles else s * s
    executed = score_flops(heads, pairs, d_head, d_head)
    return projections(model, shape) + qk_norms(model, shape) + Cost(
        flops=core,
        hw_fwd=executed,
        hw_flops=executed * 7 // 2,  # forward + backward at 2.5 × forward (exact: `executed` is even)
        activations=saved_around_core(model, shape) + heads * s * STAT_BYTES,
        kv_cache=kv_cache(model, shape),
    )
