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
MASKED = ("sliding_window", "sparse", "chunked")   # attention types transformers runs with an explicit mask


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


def model_extra(model: ModelSpec, shape: Shape) -> int:
    """Bytes saved once per model by the modules: the rotary tables (fp32 under autocast)."""
    if not modules(shape) or model.position != "rope":
        return 0
    return 2 * shape.seq_len * model.head_dim * (STAT_BYTES if shape.autocast else shape.act_bytes)


def fp32_residual(norms: int, model: ModelSpec, shape: Shape) -> int:
    """What `norms` d_model-wide norms save beyond 16-bit training when autocast keeps the residual in fp32."""
    return norms * shape.seq_len * model.d_model * (STAT_BYTES - shape.act_bytes) if shape.autocast else 0


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
            "attention": parts["attention"] + d_model_wide(input_copies(2, model, shape),
                                                           weight_copies(parts["attention"].matrix_params, shape)),
            ffn: parts[ffn] + d_model_wide(input_copies(1 if model.gated else 0, model, shape),
                                           weight_copies(parts[ffn].matrix_params, shape))}
