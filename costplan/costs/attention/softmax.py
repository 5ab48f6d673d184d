"""What every softmax-attention variant shares: the Q/K/V/output projections, optional QK norms, the score
and value matmuls, and the tensors saved around the attention core.

Shapes for one sequence of s tokens: x (s × d_model) → q (s × H·d_head), k and v (s × G·d_head) with G = KV heads
(Ainslie et al. 2023: GQA shrinks only the K and V projections) → core → o (s × H·d_head) → (s × d_model).
"""
from __future__ import annotations

from costplan.costs import Cost, Shape, linear, matmul
from costplan.costs.norm import norm
from costplan.spec import ModelSpec


def projections(model: ModelSpec, shape: Shape) -> Cost:
    """W_q, W_k, W_v (bias: qkv_bias) and W_o (bias: bias)."""
    s, d = shape.seq_len, model.d_model
    return (linear(s, d, model.q_width, model.qkv_bias)          # q = x·W_q
            + linear(s, d, model.kv_width, model.qkv_bias) * 2  # k = x·W_k, v = x·W_v
            + linear(s, model.q_width, d, model.bias))          # out = o·W_o


def qk_norms(model: ModelSpec, shape: Shape) -> Cost:
    """Norms on q and k (OLMo 2, Qwen 3): per head over head_dim, or over the full q / k width."""
    if model.qk_norm == "head":
        return (norm(model.norm, model.head_dim, shape, rows_per_token=model.n_heads)
                + norm(model.norm, model.head_dim, shape, rows_per_token=model.n_kv_heads))
    if model.qk_norm == "full":
        return norm(model.norm, model.q_width, shape) + norm(model.norm, model.kv_width, shape)
    return Cost()


def score_flops(heads: int, pairs: int, d_qk: int, d_v: int) -> int:
    """Forward FLOPs of the core over `pairs` (query, key) pairs per head: one d_qk-long dot product for the
    score (QKᵀ) and one d_v-long multiply-add of a value row (AV) per pair."""
    return matmul(heads, pairs, d_qk, 1) + matmul(heads, pairs, 1, d_v)


def saved_around_core(model: ModelSpec, shape: Shape) -> int:
    """Bytes saved by the projections and the core's matmuls: the projections' shared input x, q, k and v as
    the core uses them (after RoPE; K and V at KV-head width, broadcast rather than copied for GQA), and the
    output projection's input."""
    per_token = model.d_model + model.q_width + 2 * model.kv_width + model.q_width
    return shape.seq_len * per_token * shape.act_bytes


def kv_cache(model: ModelSpec, shape: Shape) -> int:
    """Inference K and V cache bytes per token of context for one layer (stored at the activation precision)."""
    return 2 * model.kv_width * shape.act_bytes
