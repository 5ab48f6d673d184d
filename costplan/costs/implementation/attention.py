"""What one layer's attention modules save beyond the fused estimate: the core, the rotary tables where a class
builds them per layer, and each class's own copies."""
from __future__ import annotations

from costplan.costs import INDEX_BYTES, STAT_BYTES, Shape
from costplan.costs.attention import COST as ATTENTION_COST
from costplan.costs.attention.softmax import around_core
from costplan.costs.class_modules import class_modules
from costplan.costs.implementation.common import COMPLEX_BYTES, MASKED, modules, rotary_bytes, softmax_bytes
from costplan.costs.implementation.mla import mla_extra
from costplan.spec import ModelSpec
from costplan.spec_attention import AttentionSpec


def attention_extra(attention: AttentionSpec, model: ModelSpec, shape: Shape) -> int:
    """Bytes one softmax-attention layer's modules save beyond its fused estimate: K and V repeated to n_heads
    where the modules repeat them, and the core's own tensors instead of the fused core's."""
    if not modules(shape):
        return 0
    if attention.type == "mla":
        return mla_extra(attention, model, shape)
    s, e, heads, cls = shape.seq_len, shape.act_bytes, model.n_heads, class_modules(shape)
    fused_core = (ATTENTION_COST[attention.type](attention, model, shape).activations
                  - around_core(model, shape, cached_tokens=0).activations)
    repeated = 2 * s * (heads - model.n_kv_heads) * model.head_dim * e
    own = fused_qkv_output(model, shape) - fused_core
    if shape.implementation == "eager":
        return repeated + eager_scores(model, shape) + fp32_qk(model, shape) + own
    flash = heads * s * STAT_BYTES                                # SDPA's flash kernel: a log-sum-exp per row
    if attention.type in MASKED or cls.explicit_mask:             # its own s × s mask, and K and V repeated
        return repeated + s * s * e + flash + own
    return (repeated if cls.repeats_kv else 0) + flash + own


def eager_scores(model: ModelSpec, shape: Shape) -> int:
    """What eager_attention_forward saves for one layer's s × s scores per head: the fp32 softmax and its copy
    in the activation dtype that multiplies V (one tensor in fp32 training), the soft-cap's tanh where the class
    soft-caps, or the softmax over a sink column where the class has sinks."""
    if model.attention_sinks:
        return sink_scores(model, shape)
    s = shape.seq_len
    return model.n_heads * s * s * softmax_bytes(shape) + capped_scores(model, shape)


def capped_scores(model: ModelSpec, shape: Shape) -> int:
    """Gemma2's eager_attention_forward soft-caps the scaled scores, c·tanh(x / c), before the mask: tanh saves
    its output, one s × s tensor per head in the activation dtype (division and scaling by constants save
    nothing). Gemma2 has no sdpa attention: sdpa_attention_forward takes no soft-cap."""
    if not class_modules(shape).softcapped_scores:
        return 0
    return model.n_heads * shape.seq_len ** 2 * shape.act_bytes


def sink_scores(model: ModelSpec, shape: Shape) -> int:
    """gpt-oss's eager_attention_forward concatenates each head's sink logit to the scores as one more column,
    subtracts the row maximum (max saves its int64 index per row and head) and takes the softmax in the scores'
    own dtype: it saves the softmax output, s × (s + 1) per head, which also multiplies V (the sink column
    sliced off, a view): no fp32 copy in 16-bit training. Under autocast the fp32 causal mask (and the fp32
    sinks) make the scores fp32, and the matmul with V saves its own 16-bit cast of the s × s slice. GptOss has
    no sdpa attention."""
    s, e = shape.seq_len, shape.act_bytes
    softmax = (s + 1) * STAT_BYTES + s * e if shape.autocast else (s + 1) * e
    return model.n_heads * s * (softmax + INDEX_BYTES)


def fused_qkv_output(model: ModelSpec, shape: Shape) -> int:
    """Bytes a fused q/k/v projection's output keeps alive beyond the q, k and v the estimate counts: the core
    saves q as a view of it (SDPA as it is passed; eager's batched matmul folding batch and heads into a view,
    one sequence per micro-batch) while K and V are saved as copies (the cache's torch.cat, eager's transposed
    reshape of K), so the k and v parts of the output stay allocated too: 2 × s × n_kv_heads × head_dim.
    With more sequences per micro-batch eager's matmul copies q instead and saves that much less (measured:
    GPT-2's tiny eager class at two sequences saves 4.8% less than this estimate; costs are per sequence)."""
    if not class_modules(shape).qkv_output_kept:
        return 0
    return 2 * shape.seq_len * model.n_kv_heads * model.head_dim * shape.act_bytes


def rotary_tables(model: ModelSpec, shape: Shape) -> int:
    """Bytes of one cos and one sin table, s × width each: the rotated features of a head (model.rope_dim: all
    of head_dim, or the rotated part of a partial rotary; half of it where one table rotates both halves), in
    rotary_bytes: what the multiplications by cos and sin save. A complex rotary's one table instead
    (complex_rotary)."""
    if class_modules(shape).complex_rotary:
        return complex_rotary(model, shape)
    width = model.rotary_dim // 2 if class_modules(shape).half_rotary else model.rotary_dim
    return 2 * shape.seq_len * width * rotary_bytes(shape)


def complex_rotary(model: ModelSpec, shape: Shape) -> int:
    """Llama4TextRotaryEmbedding returns freqs_cis = torch.polar(ones, freqs): one complex64 rotation per
    position and pair of features, s × rotary_dim / 2 × 8 bytes whatever the dtype (autocast included).
    apply_rotary_emb multiplies the complex views of q and k by it (`xq_ * freqs_cis`): the mul saves only
    freqs_cis, which carries no gradient, and every layer shares the model's one table."""
    return shape.seq_len * model.rotary_dim // 2 * COMPLEX_BYTES


def l2_qk_norm(attention: AttentionSpec, model: ModelSpec, shape: Shape) -> int:
    """Llama4TextL2Norm on q and k, built only on the rotated layers (`use_qk_norm and use_rope`): `x.float()`
    makes an fp32 copy of the rotated 16-bit q and k (in fp32 training the rotation's own output), which pow
    and the product with rsqrt save, and rsqrt saves its output, one fp32 per token and head. The normed q and
    k it casts back (`type_as`) are what the attention core saves, as the fused estimate counts them."""
    if not class_modules(shape).l2_qk_norm or not attention.rope:
        return 0
    return shape.seq_len * (model.q_width + model.kv_width + model.n_heads + model.n_kv_heads) * STAT_BYTES


def temperature_scales(attention: AttentionSpec, shape: Shape) -> int:
    """Llama4TextAttention's attn_temperature_tuning on a NoPE layer: `query_states * attn_scales` multiplies q
    by an fp32 factor per position (log1p(floor((pos + 1) / floor_scale)) · attn_scale + 1), which the mul
    saves, s × 4 bytes, each layer computing its own."""
    if not class_modules(shape).temperature_tuning or attention.rope:
        return 0
    return shape.seq_len * STAT_BYTES


def rotary_per_layer(model: ModelSpec, shape: Shape) -> int:
    """GPT-J's apply_rotary_pos_emb repeat_interleaves sin and cos in each call, once for q and once for k:
    two tables' worth per layer, saved by the multiplications, instead of one set per model."""
    return 2 * rotary_tables(model, shape) if class_modules(shape).rotary_per_call else 0


def fp32_qk(model: ModelSpec, shape: Shape) -> int:
    """GPT-J's eager_attention_forward: the score matmul saves fp32 copies of q and k (K at n_heads) instead
    of 16-bit ones. Under autocast the matmul casts them back to 16 bits, so they save nothing more."""
    if not class_modules(shape).fp32_qk or shape.autocast:
        return 0
    return 2 * shape.seq_len * model.n_heads * model.head_dim * (STAT_BYTES - shape.act_bytes)


def clamp_copies(model: ModelSpec, shape: Shape) -> int:
    """Bytes of q, k and v as their projections return them, where the attention clamps them in place
    (`clip_qkv`: OlmoAttention, OlmoeAttention `query_states.clamp_(...)`): clamp's backward needs its input,
    which the in-place op overwrites, so autograd saves a copy of each in the activation dtype (16 bits under
    autocast too: the projections' outputs)."""
    if not modules(shape) or model.clip_qkv is None:
        return 0
    return shape.seq_len * (model.q_width + 2 * model.kv_width) * shape.act_bytes


def output_copy(model: ModelSpec, shape: Shape) -> int:
    """Bytes of the attention output copied before the output projection, which saves the copy: SDPA's kernel
    lays its output out as the query is laid out (measured on torch's CPU kernel), so a head-major query (q
    rebuilt by torch.cat: Phi-3's rotary, GPT-NeoX's and Phi's after .transpose(1, 2)) gives a head-major output
    that `transpose(1, 2).contiguous()` copies to token-major. The Llama family's rotary products keep q
    token-major and the transpose is a view. Eager attention copies for every family (its matmul's output is
    head-major), as the estimate already counts."""
    if shape.implementation != "sdpa" or not class_modules(shape).head_major_query:
        return 0
    return shape.seq_len * model.q_width * shape.act_bytes


def family_attention_extra(attention: AttentionSpec, model: ModelSpec, shape: Shape) -> int:
    """Bytes one attention layer's modules save beyond the Llama family's, where the family's module differs."""
    if not modules(shape):
        return 0
    return (clamp_copies(model, shape) + output_copy(model, shape) + rotary_per_layer(model, shape)
            + l2_qk_norm(attention, model, shape) + temperature_scales(attention, shape))
