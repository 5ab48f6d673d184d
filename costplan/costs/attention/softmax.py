"""What every softmax-attention variant shares: the Q/K/V/output projections, optional QK norms, the score
and value matmuls, and the tensors saved around the attention core.

Shapes for one sequence of s tokens: x (s × d_model) → q (s × H·d_head), k and v (s × G·d_head) with G = KV heads
(Ainslie et al. 2023: GQA shrinks only the K and V projections) → core → o (s × H·d_head) → (s × d_model).
"""
from __future__ import annotations

from costplan.costs import STAT_BYTES, Cost, Shape, linear, matmul, vector
from costplan.costs.attention.pairs import causal_pairs
from costplan.costs.norm import norm
from costplan.spec import ModelSpec


def projections(model: ModelSpec, shape: Shape) -> Cost:
    """W_q, W_k, W_v (bias: qkv_bias) and W_o (bias: o_bias)."""
    s, d = shape.seq_len, model.d_model
    return (linear(s, d, model.q_width, model.qkv_bias)          # q = x·W_q
            + linear(s, d, model.kv_width, model.qkv_bias) * 2  # k = x·W_k, v = x·W_v
            + linear(s, model.q_width, d, model.o_bias, row_parallel=True))        # out = o·W_o


def qk_norms(model: ModelSpec, shape: Shape) -> Cost:
    """Norms on q and k (OLMo 2, Qwen 3): per head over head_dim, or over the full q / k width."""
    if model.qk_norm == "head":     # one weight over head_dim that every head shares: whole on each tensor rank
        pair = (norm(model.norm, model.head_dim, shape, rows_per_token=model.n_heads)
                + norm(model.norm, model.head_dim, shape, rows_per_token=model.n_kv_heads))
        return pair.replace(tensor_whole=pair.params)       # (Megatron-Core's q_layernorm and k_layernorm)
    if model.qk_norm == "full":
        return norm(model.norm, model.q_width, shape) + norm(model.norm, model.kv_width, shape)
    return Cost()


def sinks(model: ModelSpec) -> Cost:
    """gpt-oss's attention sinks: one learned logit per query head that joins the denominator of each of the
    head's softmax rows (exp(sink) with no value row), scaling the row's probabilities down. An add to a sum,
    not a matmul: no FLOPs (convention 2). What it saves depends on the core (dense.py; a flash kernel keeps
    the same log-sum-exp, now of the row with its sink)."""
    return vector(model.n_heads) if model.attention_sinks else Cost()


def score_flops(heads: int, pairs: int, d_qk: int, d_v: int) -> int:
    """Forward FLOPs of the core over `pairs` (query, key) pairs per head: one d_qk-long dot product for the
    score (QKᵀ) and one d_v-long multiply-add of a value row (AV) per pair."""
    return matmul(heads, pairs, d_qk, 1) + matmul(heads, pairs, 1, d_v)


def materialised_core(heads: int, d_qk: int, d_v: int, pairs: int, executed: int, shape: Shape) -> Cost:
    """A core that stores its probabilities (one per computed pair and head) for the backward: 2 × forward
    backward (dV, dP, dQ, dK); selective recomputation (Korthikanti et al. 2022 §5) keeps none and runs the
    core forward once more."""
    forward = score_flops(heads, executed, d_qk, d_v)
    selective = shape.recompute == "selective"
    return Cost(
        flops=score_flops(heads, pairs, d_qk, d_v),
        hw_fwd=forward,
        hw_flops=(4 if selective else 3) * forward,
        activations=0 if selective else heads * executed * shape.act_bytes,
    )


def flash_core(heads: int, d_qk: int, d_v: int, pairs: int, executed: int, shape: Shape) -> Cost:
    """A FlashAttention kernel (Dao 2023 §4.1) over `executed` pairs: its backward recomputes S = QKᵀ and then
    computes dV = PᵀdO, dP = dO·Vᵀ, dQ = dS·K and dK = dSᵀ·Q, three products over d_qk and two over d_v (2.5 ×
    forward when d_qk = d_v; MLA's 192 vs 128 makes it 2.6 ×); it saves an fp32 log-sum-exp per query and head,
    not the probabilities; selective recomputation adds nothing."""
    forward = score_flops(heads, executed, d_qk, d_v)
    return Cost(
        flops=score_flops(heads, pairs, d_qk, d_v),
        hw_fwd=forward,
        hw_flops=forward + score_flops(heads, executed, 3 * d_qk, 2 * d_v),
        activations=heads * shape.seq_len * STAT_BYTES,
    )


def causal_executed(shape: Shape) -> int:
    """Pairs a causal flash kernel over the whole sequence computes; the full square when counting like a FLOP
    counter, which does not see the skipped tiles."""
    s = shape.seq_len
    return causal_pairs(s) if shape.skip_masked_tiles else s * s


CORES = {"flash": flash_core, "materialized": materialised_core}


def saved_around_core(model: ModelSpec, shape: Shape) -> int:
    """Bytes saved by the projections and the core's matmuls: the projections' shared input x, q, k and v as
    the core uses them (after RoPE; K and V at KV-head width, broadcast rather than copied for GQA), and the
    output projection's input."""
    per_token = model.d_model + model.q_width + 2 * model.kv_width + model.q_width
    return shape.seq_len * per_token * shape.act_bytes


def around_core(model: ModelSpec, shape: Shape, cached_tokens: int) -> Cost:
    """Everything of a softmax-attention layer except its core: projections, QK norms, sinks, the tensors saved
    around the core, and the K/V cache (2 · G · d_head elements per token) holding `cached_tokens` tokens."""
    per_token = 2 * model.kv_width * shape.act_bytes
    return projections(model, shape) + qk_norms(model, shape) + sinks(model) + Cost(
        activations=saved_around_core(model, shape), kv_cache=per_token, kv_cache_seq=per_token * cached_tokens)
