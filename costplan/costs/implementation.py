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

Other classes' modules differ where ClassModules (below) says, keyed on training.modules: the parallel-layer
classes (Falcon, GPT-J, GPT-NeoX, Phi) are derived and measured the same way; under autocast a parallel
layer's norms read one fp32 input, and each projection reading a shared normed input casts its own copy.

Only FLOP-free tensors differ: FLOPs stay those of the component formulas (`check --against transformers`
compares eager FLOPs separately).
"""
from __future__ import annotations

from dataclasses import dataclass

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
    s, e, heads, own = shape.seq_len, shape.act_bytes, model.n_heads, class_modules(shape)
    fused_core = (ATTENTION_COST[attention.type](attention, model, shape).activations
                  - around_core(model, shape, cached_tokens=0).activations)
    masked = attention.type in MASKED or own.explicit_mask
    repeated = 2 * s * (heads - model.n_kv_heads) * model.head_dim * e
    if shape.implementation == "eager":
        return repeated + heads * s * s * eager_pair_bytes(shape) + fp32_qk(model, shape) - fused_core
    flash = heads * s * STAT_BYTES                                # SDPA's flash kernel: a log-sum-exp per row
    if masked:                                                    # its own s × s mask, and K and V repeated
        return repeated + s * s * e + flash - fused_core
    return (repeated if own.repeats_kv else 0) + flash - fused_core


def eager_pair_bytes(shape: Shape) -> int:
    """Bytes eager attention saves per query-key pair and head: the softmax's output (fp32 where the module
    asks for it, or where autocast keeps the scores in fp32) and, when that is not the activation dtype, the
    16-bit copy that multiplies V."""
    softmax = STAT_BYTES if class_modules(shape).fp32_softmax or shape.autocast else shape.act_bytes
    return softmax + (shape.act_bytes if softmax != shape.act_bytes else 0)


def moe_extra(moe: MoESpec, shape: Shape) -> int:
    """Bytes transformers' MoE block saves beyond the fused estimate (Mixtral's, measured): the router's top-k
    weights renormalised to sum to 1 (their fp32 copy and sum) and their int64 expert indices, one more int64
    index per routed row (the sort that groups rows by expert), and the int32 offsets of the grouped matmul."""
    if not modules(shape):
        return 0
    s, k = shape.seq_len, moe.top_k
    return s * k * (STAT_BYTES + INDEX_BYTES) + s * STAT_BYTES + s * k * INDEX_BYTES + moe.n_experts * 4


def model_extra(model: ModelSpec, shape: Shape) -> int:
    """Bytes saved once per model by the modules: the rotary tables (fp32 under autocast), unless the class
    builds its own in every layer (layer_extra)."""
    if not modules(shape) or model.position != "rope" or class_modules(shape).rotary_per_call:
        return 0
    return rotary_tables(model, shape)


def rotary_tables(model: ModelSpec, shape: Shape) -> int:
    """Bytes of one cos and one sin table, s × d_rope each (model.rope_dim: all of head_dim, or the rotated
    part of a partial rotary), in the residual stream's dtype (the modules cast them to their input's): what
    the multiplications by cos and sin save."""
    return 2 * shape.seq_len * model.rotary_dim * (STAT_BYTES if shape.autocast else shape.act_bytes)


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


def autocast_extra(parts: dict[str, Cost], ffn: str, norm_inputs: int, shared_input: bool, model: ModelSpec,
                   shape: Shape) -> dict[str, Cost]:
    """One layer's costs by component with what its modules save under autocast: the fp32 residual in the
    `norm_inputs` tensors its norms read, every projection casting the normed input it reads and saving its own
    copy (q, k and v two more than one shared input, none more for a fused query_key_value; gate and up one
    more, a plain MLP's single up none; and the MLP one more where it reads attention's normed input, which in
    16-bit training attention alone saves), and every weight matrix's copy."""
    if not shape.autocast:
        return parts
    qkv_copies = 0 if class_modules(shape).fused_qkv else 2
    ffn_copies = (1 if model.gated else 0) + (1 if shared_input else 0)
    return {**parts,
            "norms": parts["norms"] + d_model_wide(fp32_residual(norm_inputs, model, shape)),
            "attention": parts["attention"] + d_model_wide(input_copies(qkv_copies, model, shape),
                                                           weight_copies(parts["attention"].matrix_params, shape)),
            ffn: parts[ffn] + d_model_wide(input_copies(ffn_copies, model, shape),
                                           weight_copies(parts[ffn].matrix_params, shape))}


# ------------------------------------------------------------------------ what each transformers class does
@dataclass(frozen=True)
class ClassModules:
    """What a transformers class's attention and MLP modules do differently from the Llama family's (the
    defaults) where that changes what they save; keyed on training.modules (the config's model_type)."""

    fused_qkv: bool = False      # one query_key_value projection: autocast casts its input once, not three times
    explicit_mask: bool = False  # SDPA always gets a materialised s × s mask in the activation dtype
    repeats_kv: bool = False     # K and V are expanded to n_heads before attention, SDPA included
    fp32_softmax: bool = True    # eager softmax in fp32 (dtype=torch.float32), not in its input's dtype
    fp32_qk: bool = False        # eager scores from fp32 copies of q and k
    head_major_query: bool = False   # q reaches SDPA head-major (b, h, s, d) in memory
    rotary_per_call: bool = False    # cos and sin expanded again in every call of the rotary function
    python_gelu: bool = False        # the MLP's GELU is NewGELUActivation (gelu_new), in Python


CLASS_MODULES = {
    # FalconAttention (new_decoder_architecture): query_key_value is one FalconLinear; _split_heads broadcasts
    # each K/V group to its query heads and the reshape copies them; FalconModel builds its causal mask with
    # allow_is_causal_skip=False, and the eager branch takes softmax(..., dtype=hidden_states.dtype).
    "falcon": ClassModules(fused_qkv=True, explicit_mask=True, repeats_kv=True, fp32_softmax=False),
    # GPTJAttention: q_proj, k_proj, v_proj; eager_attention_forward multiplies query.to(float32) by
    # key.to(float32); apply_rotary_pos_emb repeat_interleaves sin and cos for q and for k in every layer.
    "gptj": ClassModules(fp32_qk=True, rotary_per_call=True, python_gelu=True),
    # GPTNeoXAttention: query_key_value, chunked after .transpose(1, 2), q rebuilt by torch.cat (head-major).
    "gpt_neox": ClassModules(fused_qkv=True, head_major_query=True),
    # PhiAttention: q, k transposed to heads first, then (qk_layernorm) normed and rebuilt by torch.cat.
    "phi": ClassModules(head_major_query=True, python_gelu=True),
}


def class_modules(shape: Shape) -> ClassModules:
    """The modules of training.modules; the Llama family's for every class not listed."""
    return CLASS_MODULES.get(shape.modules, ClassModules())


def fp32_qk(model: ModelSpec, shape: Shape) -> int:
    """GPT-J's eager_attention_forward: the score matmul saves fp32 copies of q and k (K at n_heads) instead
    of 16-bit ones. Under autocast the matmul casts them back to 16 bits, so they save nothing more."""
    if not class_modules(shape).fp32_qk or shape.autocast:
        return 0
    return 2 * shape.seq_len * model.n_heads * model.head_dim * (STAT_BYTES - shape.act_bytes)


def sdpa_output_copy(model: ModelSpec, shape: Shape) -> int:
    """SDPA's CPU flash kernel lays its output out as its query is laid out; a head-major query (GPT-NeoX,
    Phi: q rebuilt by torch.cat after .transpose(1, 2)) gives a head-major output, which
    `attn_output.transpose(1, 2).contiguous()` copies: the output projection saves that copy as well as SDPA
    its output. A token-major query (Llama's, Falcon's, GPT-J's) gives a token-major output, one tensor."""
    if shape.implementation != "sdpa" or not class_modules(shape).head_major_query:
        return 0
    return shape.seq_len * model.q_width * shape.act_bytes


def rotary_per_layer(model: ModelSpec, shape: Shape) -> int:
    """GPT-J's apply_rotary_pos_emb repeat_interleaves sin and cos in each call, once for q and once for k:
    two tables' worth per layer, saved by the multiplications, instead of one set per model."""
    return 2 * rotary_tables(model, shape) if class_modules(shape).rotary_per_call else 0


def python_gelu(model: ModelSpec, d_ff: int, shape: Shape) -> int:
    """NewGELUActivation (gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))) in Python saves x (for x³),
    0.5·x and 1 + tanh(·) (the product's two factors) and tanh's output: three s × d_ff tensors more than
    a fused GELU, which saves x alone. Keyed on the class whose MLP builds it."""
    return 3 * shape.seq_len * d_ff * shape.act_bytes if class_modules(shape).python_gelu else 0


def layer_extra(parts: dict[str, Cost], ffn: str, d_ff: int, model: ModelSpec, shape: Shape) -> dict[str, Cost]:
    """One layer's costs with what its class's modules save beyond the Llama family's: an SDPA output copy
    and per-layer rotary tables in attention, a Python GELU's tensors in the MLP."""
    if not modules(shape):
        return parts
    attention = sdpa_output_copy(model, shape) + rotary_per_layer(model, shape)
    return {**parts, "attention": parts["attention"] + Cost(activations=attention),
            ffn: parts[ffn] + Cost(activations=python_gelu(model, d_ff, shape) if ffn == "mlp" else 0)}
