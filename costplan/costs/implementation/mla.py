"""DeepSeek-V2 / V3: what their MLA attention and their routers save (DeepseekV2Attention / DeepseekV3Attention,
DeepseekV2TopkRouter / DeepseekV3TopkRouter, sdpa_attention_forward / eager_attention_forward, transformers
5.24.0): 16-bit or fp32 weights, or autocast."""
from __future__ import annotations

from costplan.costs import STAT_BYTES, ZERO, Cost, Shape
from costplan.costs.attention import COST as ATTENTION_COST
from costplan.costs.class_modules import class_modules
from costplan.costs.implementation.common import COMPLEX_BYTES, modules, rotary_bytes, softmax_bytes
from costplan.costs.moe import routed_rows
from costplan.costs.norm import norm
from costplan.spec import ModelSpec, MoESpec
from costplan.spec_attention import LatentAttention


def mla_extra(attention: LatentAttention, model: ModelSpec, shape: Shape) -> int:
    """Bytes DeepseekV2/V3Attention saves beyond the fused MLA estimate (costs/attention/mla.py)."""
    return mla_modules(attention, model, shape) - ATTENTION_COST["mla"](attention, model, shape).activations


def mla_modules(attention: LatentAttention, model: ModelSpec, shape: Shape) -> int:
    """What DeepseekV2/V3Attention saves for one sequence: the normed input x (q_proj or q_a_proj and
    kv_a_proj_with_mqa read it); q_a_layernorm's and kv_a_layernorm's tensors (Python RMSNorms: the fp32 copy
    of their input, 1/rms and the normed value in the input's dtype) and each up projection's input, the norm's
    output; the core's tensors (mla_core); o_proj's input. The rotary parts save only the
    tables, once per model (mla_rope_tables), and neither the cat of the nope and rope parts nor the copy into
    key_states saves anything."""
    a, s, e = attention, shape.seq_len, shape.act_bytes
    saved = s * model.d_model * e + s * model.n_heads * a.v_head_dim * e
    for width in (a.q_lora_rank, a.kv_lora_rank):
        if width:
            saved += norm(model.norm, width, shape).activations + s * width * e
    if e == STAT_BYTES:
        # In fp32 training the norm's upcast is no copy: it saves its input, a slice of kv_a_proj_with_mqa's
        # output that holds the rope part's storage too.
        saved += s * a.qk_rope_head_dim * e
    return saved + mla_core(attention, model, shape)


def mla_core(attention: LatentAttention, model: ModelSpec, shape: Shape) -> int:
    """The core's saved tensors. q is the cat of its nope and rope parts and k a new tensor of both (H × s ×
    d_qk each); v is a slice of kv_b_proj's output, whose whole storage (H × s × (d_nope + d_v)) it keeps.
    - eager: q, k and v for the two matmuls, the fp32 softmax and its 16-bit copy (as attention_extra);
    - SDPA, d_v = d_qk: the CPU flash kernel keeps q, k, v, its output and an fp32 log-sum-exp per row;
    - SDPA, d_v ≠ d_qk (DeepSeek's 192 vs 128): torch's CPU flash kernel needs one head width, so the math
      fallback runs, which computes 16-bit inputs in fp32 and saves the scaled q and k, the probabilities and v,
      all fp32 (v converted, or in fp32 training the slice itself). (A CUDA run takes the memory-efficient
      kernel instead, which saves as flash does.)"""
    a, s, e, heads = attention, shape.seq_len, shape.act_bytes, model.n_heads
    d_qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    q_k, v = 2 * heads * s * d_qk * e, heads * s * (a.qk_nope_head_dim + a.v_head_dim) * e
    if shape.implementation == "eager":
        return q_k + heads * s * s * softmax_bytes(shape) + v
    if a.v_head_dim == d_qk:
        return q_k + v + heads * s * a.v_head_dim * e + heads * s * STAT_BYTES
    # fp32 inputs are not converted: v is then kv_b_proj's slice itself
    math_v = v if e == STAT_BYTES else heads * s * a.v_head_dim * STAT_BYTES
    return heads * s * (2 * d_qk + s) * STAT_BYTES + math_v


def mla_rope_tables(attention: LatentAttention, shape: Shape) -> int:
    """The rotary tables of the rope width r, saved once per model by the first layer's multiplications:
    DeepSeek-V2's are complex64 frequencies (ClassModules.complex_rotary: s × r/2, whatever the dtype); V3's cos
    and sin are in the activation dtype, fp32 under autocast (they take the fp32 residual's dtype)."""
    s, r = shape.seq_len, attention.qk_rope_head_dim
    if class_modules(shape).complex_rotary:
        return s * r // 2 * COMPLEX_BYTES
    return 2 * s * r * rotary_bytes(shape)


def deepseek_router(moe: MoESpec, model: ModelSpec, shape: Shape) -> Cost:
    """What DeepseekV2/V3TopkRouter saves beyond the router moe_extra describes (Mixtral's: softmax, top-k
    indices, renormalised fp32 weights and their sum).
    - Both compute their logits as F.linear(x.type(float32), weight.type(float32)): in 16-bit training that
      saves an fp32 copy of the block input and of the router weight (once per micro-batch); under autocast
      F.linear casts both to 16 bits, as any router (moe_autocast).
    - V2 (softmax, group-limited greedy): scores.masked_fill(~mask) keeps the bool mask (s × n_experts bytes);
      its top-k weights are only scaled by a constant, not renormalised (the import's moe.renormalize false).
    - V3 (sigmoid, group-limited top-k with e_score_correction_bias, normalised top-k): its scores are the
      logits' sigmoid gathered at the top-k, the sum divided in place, as Mixtral's; under autocast its logits
      are 16-bit, so its scores, top-k weights, their sum and the weight of each routed row are too.
    The group selection's own top-k indices and mask lead only to indices: autograd frees them with the router's
    locals, before backward, so they hold no memory then (profiling/memory.py saved_bytes counts only what is
    alive when the forward ends)."""
    if not modules(shape) or shape.modules not in ("deepseek_v2", "deepseek_v3"):
        return ZERO
    s, d, e, k, n = shape.seq_len, model.d_model, shape.act_bytes, moe.top_k, moe.n_experts
    cost = ZERO
    if not shape.autocast and e != STAT_BYTES:
        cost = Cost(activations=s * d * STAT_BYTES, shared_activations=n * d * STAT_BYTES)
    if shape.modules == "deepseek_v2":
        return cost + Cost(activations=s * n)
    if shape.autocast:
        scores = s * n + s * k + s + routed_rows(moe, s)
        return cost + Cost(activations=-scores * (STAT_BYTES - e))
    return cost
