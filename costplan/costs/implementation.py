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
  16-bit copy that multiplies V: (4 + 2) bytes per pair and head in 16-bit training, 4 in fp32.

Under 16-bit autocast over fp32 weights (`training.autocast`), measured the same way:

- every matmul casts its weight to 16 bits once per forward and saves the copy: 2 bytes per matrix element,
  once per micro-batch, the LM head's (or the tied embedding's) included;
- every projection casts its input itself and saves its own copy: q, k and v each one of the normed input (two
  more than one shared input), gate and up each one (one more);
- the residual stream stays fp32, so each d_model-wide norm saves its input (LayerNorm) or its normalized
  output (RMSNorm) in fp32: 4 − 2 bytes more per element than in 16-bit training; the rotary tables are fp32.

Other families' modules differ from these where their code does, keyed on training.modules (Shape.modules) or
on the spec field that decides it, each measured the same way: OLMo's rotary tables stay fp32 and its clip_qkv
clamps save q, k and v; Phi-3's concatenated rotary makes SDPA's output head-major (one more copy), and its fused
qkv_proj and gate_up_proj cast one input each under autocast; the norms' own differences (OLMo's fp32 LayerNorm
input, Gemma's fp32 output) are in costs/norm.py.

Only FLOP-free tensors differ: FLOPs stay those of the component formulas (`check --against transformers`
compares eager FLOPs separately).
"""
from __future__ import annotations

from costplan.costs import INDEX_BYTES, STAT_BYTES, Cost, Shape
from costplan.costs.attention import COST as ATTENTION_COST
from costplan.costs.attention.softmax import around_core
from costplan.spec import ModelSpec, MoESpec
from costplan.spec_attention import AttentionSpec

IMPLEMENTATIONS = ("fused", "sdpa", "eager")
MASKED = ("sliding_window", "sparse")       # attention types transformers runs with an explicit mask


def modules(shape: Shape) -> bool:
    """Whether activations are those of transformers' PyTorch modules rather than fused kernels."""
    return shape.implementation != "fused"


def attention_extra(attention: AttentionSpec, model: ModelSpec, shape: Shape) -> int:
    """Bytes one softmax-attention layer's modules save beyond its fused estimate: K and V repeated to n_heads
    where the modules repeat them, and the core's own tensors instead of the fused core's."""
    if not modules(shape):
        return 0
    s, e, heads = shape.seq_len, shape.act_bytes, model.n_heads
    fused_core = (ATTENTION_COST[attention.type](attention, model, shape).activations
                  - around_core(model, shape, cached_tokens=0).activations)
    repeated = 2 * s * (heads - model.n_kv_heads) * model.head_dim * e
    if shape.implementation == "eager":
        per_pair = STAT_BYTES + (e if e != STAT_BYTES else 0)   # fp32 softmax, and its copy in 16-bit training
        return repeated + heads * s * s * per_pair - fused_core
    flash = heads * s * STAT_BYTES                                # SDPA's flash kernel: a log-sum-exp per row
    if attention.type in MASKED:                                  # its own s × s mask, and K and V repeated
        return repeated + s * s * e + flash - fused_core
    return flash - fused_core


def moe_extra(moe: MoESpec, shape: Shape) -> int:
    """Bytes transformers' MoE block saves beyond the fused estimate (Mixtral's, measured): the router's top-k
    weights renormalised to sum to 1 (their fp32 copy and sum) and their int64 expert indices, one more int64
    index per routed row (the sort that groups rows by expert), and the int32 offsets of the grouped matmul."""
    if not modules(shape):
        return 0
    s, k = shape.seq_len, moe.top_k
    return s * k * (STAT_BYTES + INDEX_BYTES) + s * STAT_BYTES + s * k * INDEX_BYTES + moe.n_experts * 4


FP32_ROTARY = ("olmo",)     # OlmoRotaryEmbedding returns cos and sin in fp32, without casting them to x's dtype


def rotary_bytes(shape: Shape) -> int:
    """Bytes per element of the rotary tables the modules save: the activation dtype, as the Llama family's
    rotary embedding casts them to, or fp32 under autocast (the residual stream is fp32) and where the
    module keeps them fp32 (OLMo's: q · cos then promotes to fp32 and `.to(q_type)` casts back)."""
    return STAT_BYTES if shape.autocast or shape.modules in FP32_ROTARY else shape.act_bytes


def model_extra(model: ModelSpec, shape: Shape) -> int:
    """Bytes saved once per model by the modules: the rotary tables cos and sin."""
    if not modules(shape) or model.position != "rope":
        return 0
    return 2 * shape.seq_len * model.head_dim * rotary_bytes(shape)


def clamp_copies(model: ModelSpec, shape: Shape) -> int:
    """Bytes of q, k and v as their projections return them, where the attention clamps them in place
    (`clip_qkv`: OlmoAttention, OlmoeAttention `query_states.clamp_(...)`): clamp's backward needs its input,
    which the in-place op overwrites, so autograd saves a copy of each in the activation dtype (16 bits under
    autocast too: the projections' outputs)."""
    if not modules(shape) or model.clip_qkv is None:
        return 0
    return shape.seq_len * (model.q_width + 2 * model.kv_width) * shape.act_bytes


# Attention modules whose rotary embedding rebuilds q and k with torch.cat (Phi-3's apply_rotary_pos_emb
# concatenates the rotated part with the pass-through one), making them contiguous head by head.
CONCATENATED_ROTARY = ("phi3",)


def output_copy(model: ModelSpec, shape: Shape) -> int:
    """Bytes of the attention output copied before the output projection, which saves the copy: SDPA's kernel
    lays its output out as the query is laid out, so a head-major query (CONCATENATED_ROTARY) gives a
    head-major output that `transpose(1, 2).contiguous()` in sdpa_attention_forward copies to token-major.
    The Llama family's rotary products keep q token-major and the transpose is a view. Eager attention copies
    for every family (its matmul's output is head-major), as the estimate already counts."""
    if shape.implementation != "sdpa" or shape.modules not in CONCATENATED_ROTARY:
        return 0
    return shape.seq_len * model.q_width * shape.act_bytes


def family_attention_extra(model: ModelSpec, shape: Shape) -> int:
    """Bytes one attention layer's modules save beyond the Llama family's, where the family's module differs."""
    return clamp_copies(model, shape) + output_copy(model, shape)


def fp32_residual(norms: int, model: ModelSpec, shape: Shape) -> int:
    """What `norms` d_model-wide norms save beyond 16-bit training when autocast keeps the residual in fp32."""
    return norms * shape.seq_len * model.d_model * (STAT_BYTES - shape.act_bytes) if shape.autocast else 0


# Classes with one fused projection per block input: qkv_proj and gate_up_proj (Phi3Attention, Phi3MLP).
FUSED_PROJECTIONS = ("phi3",)


def casts_beyond_one(projections: int, shape: Shape) -> int:
    """How many more autocast casts of a block input than one: one per projection reading it, less the first;
    none where one fused projection reads it (FUSED_PROJECTIONS)."""
    return 0 if shape.modules in FUSED_PROJECTIONS else projections - 1


def input_copies(copies: int, model: ModelSpec, shape: Shape) -> int:
    """Bytes of `copies` more 16-bit casts of a d_model-wide block input, one per projection reading it."""
    return copies * shape.seq_len * model.d_model * shape.act_bytes if shape.autocast else 0


def weight_copies(matrix_params: int, shape: Shape) -> int:
    """The 16-bit copies of weight matrices autocast casts and the matmuls save, once per micro-batch."""
    return matrix_params * shape.act_bytes if shape.autocast else 0


def d_model_wide(activations: int, shared: int = 0) -> Cost:
    """Saved bytes held in d_model-wide tensors (which tensor parallelism leaves whole), and shared ones."""
    return Cost(activations=activations, act_d_model=activations, shared_activations=shared)


def autocast_extra(parts: dict[str, Cost], ffn: str, norms: int, model: ModelSpec,
                   shape: Shape) -> dict[str, Cost]:
    """One sequential layer's costs by component with what its modules save under autocast: the fp32 residual
    in its `norms` norms, q, k and v each casting the normed input (two copies more than one shared input),
    gate and up each casting theirs (one more; a plain MLP's single up none), and every weight matrix's copy."""
    if not shape.autocast:
        return parts
    return {**parts,
            "norms": parts["norms"] + d_model_wide(fp32_residual(norms, model, shape)),
            "attention": parts["attention"] + d_model_wide(input_copies(casts_beyond_one(3, shape), model, shape),
                                                           weight_copies(parts["attention"].matrix_params, shape)),
            ffn: parts[ffn] + d_model_wide(input_copies(casts_beyond_one(2, shape) if model.gated else 0, model,
                                                        shape),
                                           weight_copies(parts[ffn].matrix_params, shape))}
