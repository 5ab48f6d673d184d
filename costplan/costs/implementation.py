"""Saved activations as transformers' PyTorch modules spend them (`training.implementation: sdpa | eager`),
beyond what the fused kernels of the component formulas save (`fused`, the default).

Derived tensor by tensor from the modules of the Llama family (Llama, Mistral, Qwen2/3: LlamaRMSNorm, rotary
embeddings, repeat_kv, sdpa_attention_forward, eager_attention_forward) and measured on their classes
(`costplan check CONFIG --against transformers`, tests/test_implementation.py), 16-bit weights, one unpadded
sequence:

- a Python RMSNorm saves an fp32 copy of its input more than a fused norm (costs/norm.py `python_copy`);
- the rotary tables cos and sin are computed in every forward rather than kept as buffers, and the
  multiplications save them: 2 × s × d_rope in the activation dtype, once per model;
- SDPA without a mask (full causal layers: is_causal) runs a flash kernel over grouped-query heads as they are
  (torch ≥ 2.5), saving what the fused estimate saves; a masked layer (a window) repeats K and V to n_heads
  first (repeat_kv) and passes its own s × s mask in the activation dtype, which the kernel saves;
- eager attention repeats K and V to n_heads, computes every pair, and saves the softmax's fp32 output and its
  16-bit copy that multiplies V: (4 + 2) bytes per pair and head in 16-bit training, 4 in fp32;
- MLA and DeepSeek's MoE routers: DeepseekV2/V3Attention and TopkRouter, below (mla_modules, deepseek_router).

GPT-2's, OPT's and BLOOM's modules (training.modules, measured the same way) differ where the constants below
say: a fused q/k/v projection kept whole, GPT-2's softmax in the scores' dtype and its Python GELU, learned
position ids; and a long eager step peaks at its last softmax rather than at the loss (scores_transient).

Under 16-bit autocast over fp32 weights (`training.autocast`), measured the same way:

- every matmul casts its weight to 16 bits once per forward and saves the copy: 2 bytes per matrix element,
  once per micro-batch, the LM head's (or the tied embedding's) included;
- every projection casts its input itself and saves its own copy: q, k and v each one of the normed input (two
  more than one shared input), gate and up each one (one more);
- the residual stream stays fp32, so each d_model-wide norm saves its input (LayerNorm) or its normalized
  output (RMSNorm) in fp32: 4 − 2 bytes more per element than in 16-bit training; the rotary tables are fp32;
- a MoE block's grouped expert matmuls are on no autocast list and run in fp32 (moe_autocast).

Where a family's modules differ (training.modules, the config's model_type: ClassModules below; or the spec
field that decides it), also derived and measured:

- OLMo's rotary tables stay fp32 and its clip_qkv clamps save q, k and v; its LayerNorm's fp32 input is in
  costs/norm.py;
- Phi-3's concatenated rotary makes SDPA's output head-major (one more copy), and its fused qkv_proj and
  gate_up_proj cast one input each under autocast;
- Gemma (1, 2, 3) and gpt-oss RMSNorms multiply the fp32 normalized value by the weight before casting back,
  saving it in fp32; Gemma's also saves its fp32 1 + weight (costs/norm.py `fp32_normed`). Gemma 2 and 3 norm
  before and after each block (model.block sandwich): four such norms per layer, Gemma 3's q and k norms too;
- Gemma 3 computes a pair of rotary tables per layer type (the sliding layers' local base); gpt-oss's are
  head_dim / 2 wide;
- Gemma 2's eager attention soft-caps its scores and the class its logits: each tanh saves its output (Gemma 2
  has no sdpa attention); gpt-oss's eager attention takes a softmax over a sink column in the scores' dtype
  (gpt-oss has no sdpa attention);
- gpt-oss's router takes a softmax over the top-k logits only, its experts add biases and a clamped SwiGLU;
- the parallel-layer classes (Falcon, GPT-J, GPT-NeoX, Phi): under autocast a parallel layer's norms read one
  fp32 input, and each projection reading a shared normed input casts its own copy.
- Llama 4's block runs every expert on every token (every_expert_extra; its bmm experts cast as any matmul
  under autocast, routed_autocast), its rotary table is complex (complex_rotary), its rotated layers L2-norm q
  and k in fp32 (l2_qk_norm), its NoPE layers scale q per position (temperature_scales), and its eager
  softmax runs in the scores' dtype.

Only FLOP-free tensors differ: FLOPs stay those of the component formulas (`check --against transformers`
compares eager FLOPs separately).
"""
from __future__ import annotations

from dataclasses import dataclass

from costplan.costs import INDEX_BYTES, STAT_BYTES, ZERO, Cost, Shape
from costplan.costs.attention import COST as ATTENTION_COST
from costplan.costs.attention.softmax import around_core
from costplan.costs.mlp import SAVED_INNER, feed_forward
from costplan.costs.moe import moe_block, routed_rows
from costplan.costs.norm import norm, normalizes_in_fp32
from costplan.spec import ModelSpec, MoESpec
from costplan.spec_attention import AttentionSpec, LatentAttention

IMPLEMENTATIONS = ("fused", "sdpa", "eager")
MASKED = ("sliding_window", "sparse", "chunked")   # attention types transformers runs with an explicit mask
COMPLEX_BYTES = 8                                   # a complex64 element: two fp32



# ------------------------------------------------------------------------ what each transformers class does
@dataclass(frozen=True)
class ClassModules:
    """What a transformers class's modules do differently from the Llama family's (the defaults) where that
    changes what they save; keyed on training.modules (the config's model_type)."""

    fused_qkv: bool = False          # one q/k/v projection: autocast casts its input once, not three times
    fused_gate_up: bool = False      # one gate/up projection: autocast casts its input once, not twice
    qkv_output_kept: bool = False    # q passed on as a view of the fused output, which stays allocated whole
    explicit_mask: bool = False      # SDPA always gets a materialised s × s mask in the activation dtype
    repeats_kv: bool = False         # K and V are expanded to n_heads before attention, SDPA included
    fp32_softmax: bool = True        # eager softmax in fp32 (dtype=torch.float32), not in the scores' dtype
    keeps_scores: bool = False       # eager raw scores held beside the masked ones until attention returns
    fp32_qk: bool = False            # eager scores from fp32 copies of q and k
    head_major_query: bool = False   # q reaches SDPA head-major (b, h, s, d) in memory
    rotary_per_call: bool = False    # cos and sin expanded again in every call of the rotary function
    rotary_per_layer_type: bool = False  # one (cos, sin) pair per attention type (local layers' own base)
    fp32_rotary: bool = False        # cos and sin left in fp32 rather than cast to the activation dtype
    half_rotary: bool = False        # tables head_dim / 2 wide (the two halves rotated by one table)
    python_gelu: bool = False        # the MLP's GELU is NewGELUActivation (gelu_new), in Python
    softcapped_scores: bool = False  # eager scores soft-capped, c·tanh(x / c)
    softcapped_logits: bool = False  # logits soft-capped, c·tanh(x / c)
    topk_first: bool = False         # the router takes the top-k logits, then a softmax over those k
    cast_routing_weights: bool = False   # the top-k weights in the router logits' dtype, not fp32
    clamped_swiglu: bool = False     # experts' clamped gate and up, gate·sigmoid(α·gate)·(up + 1)
    every_expert: bool = False       # every expert runs on every token, scaled by its (zero or sigmoid) score
    complex_rotary: bool = False     # one complex64 table of rotations (torch.polar) instead of cos and sin
    l2_qk_norm: bool = False         # q and k L2-normed in fp32, without a weight, on the rotated layers
    temperature_tuning: bool = False  # q scaled by an fp32 factor per position on the NoPE layers


CLASS_MODULES = {
    # BloomAttention: one query_key_value, q a view of it; baddbmm's raw scores kept beside the masked ones.
    "bloom": ClassModules(fused_qkv=True, qkv_output_kept=True, keeps_scores=True),
    # FalconAttention (new_decoder_architecture): query_key_value is one FalconLinear; _split_heads broadcasts
    # each K/V group to its query heads and the reshape copies them; FalconModel builds its causal mask with
    # allow_is_causal_skip=False, and the eager branch takes softmax(..., dtype=hidden_states.dtype).
    "falcon": ClassModules(fused_qkv=True, explicit_mask=True, repeats_kv=True, fp32_softmax=False),
    # Gemma2Config's attn_logit_softcapping (50) and final_logit_softcapping (30); Gemma 3 has neither.
    "gemma2": ClassModules(softcapped_scores=True, softcapped_logits=True),
    # Gemma3TextModel: sliding layers rotate with their own base (rope_local_base_freq).
    "gemma3_text": ClassModules(rotary_per_layer_type=True),
    # GPT-2's Conv1D c_attn, q a view of it; eager_attention_forward without dtype=float32; gelu_new. Its
    # Python GELU, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): pow saves x, tanh its output, and the last
    # product both factors, 0.5·x and 1 + tanh: three d_ff-wide tensors more than a fused GELU's input.
    "gpt2": ClassModules(fused_qkv=True, qkv_output_kept=True, fp32_softmax=False, python_gelu=True),
    # GPTNeoXAttention: query_key_value, chunked after .transpose(1, 2), q rebuilt by torch.cat (head-major).
    "gpt_neox": ClassModules(fused_qkv=True, head_major_query=True),
    # GptOssRotaryEmbedding (halves rotated), GptOssTopKRouter, GptOssExperts._apply_gate.
    "gpt_oss": ClassModules(half_rotary=True, topk_first=True, cast_routing_weights=True, clamped_swiglu=True),
    # GPTJAttention: q_proj, k_proj, v_proj; eager_attention_forward multiplies query.to(float32) by
    # key.to(float32); apply_rotary_pos_emb repeat_interleaves sin and cos for q and for k in every layer.
    "gptj": ClassModules(fp32_qk=True, rotary_per_call=True, python_gelu=True),
    # Llama4TextMoe, Llama4TextRotaryEmbedding (freqs_cis), Llama4TextL2Norm (use_qk_norm), the NoPE layers'
    # attn_temperature_tuning; its eager_attention_forward takes the softmax without dtype=float32. The qk norm
    # and the temperature are counted as Scout's config turns them on: a spec states neither.
    "llama4_text": ClassModules(fp32_softmax=False, every_expert=True, complex_rotary=True, l2_qk_norm=True,
                                temperature_tuning=True),
    # OlmoRotaryEmbedding returns cos and sin in fp32: q · cos promotes, `.to(q_type)` casts back.
    "olmo": ClassModules(fp32_rotary=True),
    # OlmoeTopKRouter, Qwen2MoeTopKRouter, Qwen3MoeTopKRouter: router_top_value.to(router_logits.dtype).
    "olmoe": ClassModules(cast_routing_weights=True),
    # PhiAttention: q, k transposed to heads first, then (qk_layernorm) normed and rebuilt by torch.cat.
    "phi": ClassModules(head_major_query=True, python_gelu=True),
    # Phi3Attention's qkv_proj and Phi3MLP's gate_up_proj; apply_rotary_pos_emb concatenates q (head-major).
    "phi3": ClassModules(fused_qkv=True, fused_gate_up=True, head_major_query=True),
    "qwen2_moe": ClassModules(cast_routing_weights=True),
    "qwen3_moe": ClassModules(cast_routing_weights=True),
}


def class_modules(shape: Shape) -> ClassModules:
    """The modules of training.modules (modules_of)."""
    return modules_of(shape.modules)


def modules_of(model_type: str | None) -> ClassModules:
    """The modules of a model_type; the Llama family's for every class not listed."""
    return CLASS_MODULES.get(model_type, ClassModules())


def modules(shape: Shape) -> bool:
    """Whether activations are those of transformers' PyTorch modules rather than fused kernels."""
    return shape.implementation != "fused"


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


def softmax_bytes(shape: Shape) -> int:
    """Bytes eager attention saves per query-key pair and head: the softmax's output and the 16-bit copy that
    multiplies V. The Llama family's softmax runs in fp32 (4 + 2 bytes in 16-bit training, 4 in fp32); GPT-2's
    and Falcon's run in the scores' dtype (2: GPT-2's .type(value.dtype) copies nothing), except under autocast,
    which keeps the scores in fp32 (4 + 2)."""
    e = shape.act_bytes
    if not class_modules(shape).fp32_softmax and not shape.autocast:
        return e
    return STAT_BYTES + (e if e != STAT_BYTES else 0)


def scores_transient(model: ModelSpec, shape: Shape) -> int:
    """Bytes the last eager attention layer holds beyond what the step has saved, at the busier of two moments.

    Forward, at its softmax: the masked scores (fp32 under autocast, where the fp32 causal mask promotes the
    sum), the fp32 copy of the softmax's input when dtype=float32 meets 16-bit scores, BLOOM's raw scores too
    (keeps_scores, held until the attention returns, when they are the busier moment), less the 16-bit copy of
    the probabilities, saved only after it; and once per sequence the s × s additive causal mask the model
    builds in its weights' dtype. Backward, at the softmax's backward: the gradients of its output and of its
    input, in the softmax's dtype, less the probabilities' 16-bit copy, which the matmul with V released just
    before. Measured on the classes at 1,024 and 2,048 tokens: BLOOM peaks at the forward moment, the Llama
    family, GPT-2 and OPT at the backward one (at 128 tokens all of them at the loss)."""
    if shape.implementation != "eager":
        return 0
    e, pairs = shape.act_bytes, model.n_heads * shape.seq_len ** 2
    masked = STAT_BYTES if shape.autocast else e
    softmax_out = e if not class_modules(shape).fp32_softmax and not shape.autocast else STAT_BYTES
    input_copy = softmax_out if masked != softmax_out else 0
    probs_copy = softmax_bytes(shape) - softmax_out
    kept = e if class_modules(shape).keeps_scores else 0
    forward = max(kept + masked + input_copy - probs_copy, kept + masked if kept else 0)
    backward = 2 * softmax_out - probs_copy
    return max(pairs * forward + shape.seq_len ** 2 * masked, pairs * backward)


def eager_peak(model: ModelSpec, shape: Shape, after: int, workspace: int) -> int:
    """Workspace beyond `workspace` (the loss's, live when backward starts, where short steps peak) when the
    stage's last eager softmax is the higher moment: its transient bytes less `after`, what the stage saves
    after that softmax in forward and has freed before it in backward (the last layer's feed-forward block,
    the final norm and the head)."""
    return max(0, scores_transient(model, shape) - after - workspace)


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


def mlp_extra(d_ff: int, shape: Shape) -> int:
    """Bytes a dense MLP's modules save beyond the fused estimate: a Python tanh GELU's three more d_ff-wide
    tensors (ClassModules.python_gelu)."""
    if not modules(shape) or not class_modules(shape).python_gelu:
        return 0
    return 3 * shape.seq_len * d_ff * shape.act_bytes


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


def capped_logits(model: ModelSpec, shape: Shape) -> int:
    """Gemma2ForCausalLM soft-caps its logits, c·tanh(x / c): tanh saves its output, s × vocab in the activation
    dtype (the head's 16-bit output under autocast), beside the loss's fp32 copy."""
    if not modules(shape) or not class_modules(shape).softcapped_logits:
        return 0
    return shape.seq_len * model.vocab_size * shape.act_bytes


def moe_extra(moe: MoESpec, model: ModelSpec, shape: Shape) -> int:
    """Bytes transformers' MoE block saves beyond the fused estimate: its router's and its grouped experts'."""
    if not modules(shape):
        return 0
    if class_modules(shape).every_expert:
        return router_extra(moe, shape) + every_expert_extra(moe, model, shape)
    return router_extra(moe, shape) + experts_extra(moe, model, shape)


def every_expert_extra(moe: MoESpec, model: ModelSpec, shape: Shape) -> int:
    """What Llama4TextMoe and Llama4TextExperts save beyond the fused estimate's top_k rows per token. The block
    repeats the tokens once per expert (`hidden_states.repeat(n_experts, 1)`) and multiplies each copy by its
    expert's score, zero where the router did not choose it: the mul saves the repeated input and the score
    column (the router's sigmoid cast back to the logits' dtype, `.to(router_scores.dtype)`), and the experts'
    torch.bmm saves the product, so every one of n_experts × seq_len rows saves the two d_model-wide tensors, the
    SwiGLU's inner tensors (the whole gate_up output that gate and up are chunks of, the activation, its product
    with up) and a 16-bit weight, and no sort index: the fused block at top_k = n_experts, each row's fp32
    weight and two int64 indices replaced by the activation dtype's weight."""
    every = moe.model_copy(update={"top_k": moe.n_experts})
    rows = routed_rows(every, shape.seq_len)
    return (moe_block(every, model, shape).activations - moe_block(moe, model, shape).activations
            + rows * (shape.act_bytes - STAT_BYTES - 2 * INDEX_BYTES))


def router_extra(moe: MoESpec, shape: Shape) -> int:
    """Mixtral's router (fp32 softmax over every expert, as fused, then top-k) also saves its int64 top-k
    indices and, renormalising the top-k weights to sum to 1 (moe.renormalize; in place, `/=`), their fp32
    copy and sum. gpt-oss's takes the top-k of the logits (saving their int64 indices) and a softmax over those
    k in the activation dtype (saving its output), and keeps no fp32 softmax over every expert."""
    s, k = shape.seq_len, moe.top_k
    if class_modules(shape).topk_first:
        return s * k * (INDEX_BYTES + routing_weight_bytes(shape)) - s * moe.n_experts * STAT_BYTES
    return s * k * INDEX_BYTES + (s * k * STAT_BYTES + s * STAT_BYTES if moe.renormalize else 0)


def experts_extra(moe: MoESpec, model: ModelSpec, shape: Shape) -> int:
    """What grouped_mm_experts_forward saves beyond the fused estimate: one more int64 index per routed row (the
    sort that groups rows by expert) and the int32 offsets of the grouped matmul; with expert biases, the sorted
    expert ids that gather them (one more int64 per row). The routed rows' weights are in the activation dtype
    where the class casts them (cast_routing_weights; the fused estimate's are fp32), and gpt-oss's clamped
    SwiGLU saves 7 d_ff_expert-wide tensors per row where a SwiGLU saves 4: the gate-up output (the clamps'
    input), the clamped gate, sigmoid(α·gate), their product, up + 1 and the down projection's input."""
    rows = shape.seq_len * moe.top_k
    extra = rows * INDEX_BYTES * (2 if model.bias else 1) + moe.n_experts * 4
    extra += rows * (routing_weight_bytes(shape) - STAT_BYTES)
    if class_modules(shape).clamped_swiglu:   # in fp32 under autocast, as the grouped matmuls (moe_autocast)
        extra += rows * 3 * moe.d_ff_expert * (STAT_BYTES if shape.autocast else shape.act_bytes)
    return extra


def routing_weight_bytes(shape: Shape) -> int:
    """Bytes of each routed row's weight: fp32 as Mixtral's softmax gives them, or the router logits' dtype
    (the activation dtype, autocast's 16 bits included) where the class casts them (Qwen-MoE, OLMoE) or takes
    its softmax over the top-k logits in their own dtype (gpt-oss)."""
    return shape.act_bytes if class_modules(shape).cast_routing_weights else STAT_BYTES


def rotary_bytes(shape: Shape) -> int:
    """Bytes per element of the rotary tables the modules save: the activation dtype, as the Llama family's
    rotary embedding casts them to, or fp32 under autocast (the residual stream is fp32) and where the
    module keeps them fp32 (OLMo's: q · cos then promotes to fp32 and `.to(q_type)` casts back)."""
    return STAT_BYTES if shape.autocast or class_modules(shape).fp32_rotary else shape.act_bytes


def model_extra(model: ModelSpec, shape: Shape) -> int:
    """Bytes saved once per model by the modules: the rotary tables cos and sin, one pair per attention type
    where the class rotates each with its own base, unless the class builds its own in every layer
    (rotary_per_layer)."""
    if not modules(shape) or model.position != "rope" or class_modules(shape).rotary_per_call:
        return 0
    if "mla" in model.attention_types:
        return mla_rope_tables(model.layer_attention(0), shape)
    pairs = len(model.attention_types) if class_modules(shape).rotary_per_layer_type else 1
    return pairs * rotary_tables(model, shape)


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


def position_ids(model: ModelSpec, shape: Shape) -> int:
    """Bytes of the int64 position ids a learned position embedding saves: the modules compute them in every
    forward (GPT-2's arange, OPT's cumsum of the attention mask) where the fused estimate reads a constant."""
    return shape.seq_len * INDEX_BYTES if modules(shape) and model.position == "learned" else 0


def fp32_residual(norms: int, model: ModelSpec, shape: Shape) -> int:
    """What `norms` d_model-wide norms save beyond 16-bit training when autocast keeps the residual in fp32: the
    normalized value in fp32, which a norm normalizing in fp32 anyway (norm.fp32_normed) already saves. Gemma's
    post-norms read a 16-bit block output instead of the residual, and save as much: an fp32 copy of it."""
    if not shape.autocast or normalizes_in_fp32(model.norm, shape):
        return 0
    return norms * shape.seq_len * model.d_model * (STAT_BYTES - shape.act_bytes)


def input_copies(copies: int, model: ModelSpec, shape: Shape) -> int:
    """Bytes of `copies` more 16-bit casts of a d_model-wide block input, one per projection reading it."""
    return copies * shape.seq_len * model.d_model * shape.act_bytes if shape.autocast else 0


def weight_copies(matrix_params: int, shape: Shape) -> int:
    """The 16-bit copies of weight matrices autocast casts and the matmuls save, once per micro-batch."""
    return matrix_params * shape.act_bytes if shape.autocast else 0


def d_model_wide(activations: int, shared: int = 0) -> Cost:
    """Saved bytes held in d_model-wide tensors (which tensor parallelism leaves whole), and shared ones."""
    return Cost(activations=activations, act_d_model=activations, shared_activations=shared)


def autocast_extra(parts: dict[str, Cost], ffn: str, norm_inputs: int, shared_input: bool, model: ModelSpec,
                   shape: Shape) -> dict[str, Cost]:
    """One layer's costs by component with what its modules save under autocast: the fp32 residual in the
    `norm_inputs` tensors its norms read, every projection casting the normed input it reads and saving its own
    copy (attention_casts; gate and up one more, a fused gate/up or a plain MLP's single up none; and the MLP
    one more where it reads attention's normed input, which in 16-bit training attention alone saves), and
    every weight matrix's copy."""
    if not shape.autocast:
        return parts
    gated = model.gated and not class_modules(shape).fused_gate_up
    ffn_copies = (1 if gated else 0) + (1 if shared_input else 0)
    return {**parts,
            "norms": parts["norms"] + d_model_wide(fp32_residual(norm_inputs, model, shape)),
            "attention": parts["attention"] + d_model_wide(input_copies(attention_casts(model, shape), model, shape),
                                                           weight_copies(parts["attention"].matrix_params, shape)),
            ffn: parts[ffn] + (moe_autocast(model.moe, model, shape) if ffn == "moe" else
                               d_model_wide(input_copies(ffn_copies, model, shape),
                                            weight_copies(parts[ffn].matrix_params, shape)))}


def moe_autocast(moe: MoESpec, model: ModelSpec, shape: Shape) -> Cost:
    """What transformers' MoE block saves under CPU autocast beyond 16-bit training (measured on Mixtral,
    Qwen2-MoE, OLMoE, Qwen3-MoE; integrations/moe.py grouped_mm_experts_forward). The routed experts run
    torch._grouped_mm, which is on no autocast list: it casts its input to the fp32 weights' dtype, so every
    routed row's gathered input, output and inner tensors stay fp32 and no expert weight is copied. The router,
    the shared expert's projections and its gate are nn.Linear / F.linear, autocast: each casts its weight
    and its input to 16 bits; the router's input copy is the block input the fused estimate already saves."""
    d, e = model.d_model, shape.act_bytes
    routed, matrices = routed_autocast(moe, model, shape)
    casts, matrices = 0, matrices + moe.n_experts * d                       # the router's weight
    if moe.n_shared_experts:
        casts += 2 if model.gated else 1                                    # [gate,] up: their own input casts
        matrices += feed_forward(model, moe.d_ff_shared, 0, e).matrix_params
        if moe.shared_expert_gate:
            casts, matrices = casts + 1, matrices + d
    return (Cost(activations=routed)
            + d_model_wide(input_copies(casts, model, shape), weight_copies(matrices, shape)))


def routed_autocast(moe: MoESpec, model: ModelSpec, shape: Shape) -> tuple[int, int]:
    """The routed experts' bytes under autocast beyond 16-bit training, and the expert weight elements autocast
    copies to 16 bits. Grouped experts (torch._grouped_mm) keep every routed row's input, output and inner
    tensors in fp32 and copy no weight. Llama4TextExperts' torch.bmm is on autocast's list: it casts its input
    and each expert's gate_up_proj and down_proj to 16 bits and saves the copies, so only the repeated block
    input that Llama4TextMoe's mul by the scores saves stays fp32 (the residual's dtype), n_experts × s rows."""
    s, d, e = shape.seq_len, model.d_model, shape.act_bytes
    if class_modules(shape).every_expert:
        experts = feed_forward(model, moe.d_ff_expert, 0, e).matrix_params * moe.n_experts
        return moe.n_experts * s * d * (STAT_BYTES - e), experts
    rows = routed_rows(moe, s) * (2 * d + SAVED_INNER[model.mlp] * moe.d_ff_expert)
    return rows * (STAT_BYTES - e), 0


# ------------------------------------------------------------------------------ DeepSeek-V2 / V3 (MLA, their MoE)
# Derived from DeepseekV2Attention / DeepseekV3Attention, DeepseekV2TopkRouter / DeepseekV3TopkRouter and
# sdpa_attention_forward / eager_attention_forward (transformers 5.24.0): 16-bit or fp32 weights, or autocast.

def attention_casts(model: ModelSpec, shape: Shape) -> int:
    """Casts of a layer's normed input under autocast beyond the one the fused estimate saves: q, k and v each
    cast it (2 more; none for a fused q/k/v projection); MLA's q (or q_a) and kv_a_proj_with_mqa (1 more)."""
    if "mla" in model.attention_types:
        return 1
    return 0 if class_modules(shape).fused_qkv else 2


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
    DeepSeek-V2's are complex64 frequencies (s × r/2, 8 bytes each, whatever the dtype); V3's cos and sin are
    in the activation dtype, fp32 under autocast (they take the fp32 residual's dtype)."""
    s, r = shape.seq_len, attention.qk_rope_head_dim
    if shape.modules == "deepseek_v2":
        return s * r // 2 * 8
    return 2 * s * r * (STAT_BYTES if shape.autocast else shape.act_bytes)


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
