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

GPT-2's, OPT's and BLOOM's modules (training.modules, measured the same way) differ where the constants below
say: a fused q/k/v projection kept whole, GPT-2's softmax in the scores' dtype and its Python GELU, learned
position ids; and a long eager step peaks at its last softmax rather than at the loss (scores_transient).

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
MASKED = ("sliding_window", "sparse")       # attention types transformers runs with an explicit mask

# Families (training.modules) whose attention projects q, k and v in one matmul (GPT-2's Conv1D c_attn, BLOOM's
# query_key_value) and passes q on as a view of its output, so the core's saved q keeps the whole output alive.
FUSED_QKV = frozenset({"gpt2", "bloom"})
# Families whose eager attention runs its softmax in the scores' dtype (GPT-2's eager_attention_forward: no
# dtype=float32), where the Llama family's upcasts to fp32.
SOFTMAX_IN_SCORES_DTYPE = frozenset({"gpt2"})
# Families whose eager attention keeps its raw scores in a variable until it returns (BLOOM's baddbmm output,
# `attention_scores`, beside the masked `attn_weights`), where the others rebind one name and free them.
KEEPS_SCORES = frozenset({"bloom"})
# Families whose MLP activation is the tanh-approximated GELU written in Python (NewGELUActivation, GPT-2's
# gelu_new), where the fused estimate keeps only the GELU's input: of its ops
# 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), pow saves x, tanh saves its output, and the last product saves
# both factors, 0.5·x and 1 + tanh: three d_ff-wide tensors more. BLOOM's GELU is an autograd Function that
# saves its input only.
PYTHON_TANH_GELU = frozenset({"gpt2"})


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
    own = fused_qkv_output(model, shape) - fused_core
    if shape.implementation == "eager":
        return repeated + heads * s * s * softmax_bytes(shape) + own
    flash = heads * s * STAT_BYTES                                # SDPA's flash kernel: a log-sum-exp per row
    if attention.type in MASKED:                                  # its own s × s mask, and K and V repeated
        return repeated + s * s * e + flash + own
    return flash + own


def softmax_bytes(shape: Shape) -> int:
    """Bytes eager attention saves per query-key pair and head: the softmax's output and the 16-bit copy that
    multiplies V. The Llama family's softmax runs in fp32 (4 + 2 bytes in 16-bit training, 4 in fp32); GPT-2's
    runs in the scores' dtype (2: its .type(value.dtype) copies nothing), except under autocast, which runs
    softmax in fp32 (4 + 2)."""
    e = shape.act_bytes
    if shape.modules in SOFTMAX_IN_SCORES_DTYPE and not shape.autocast:
        return e
    return STAT_BYTES + (e if e != STAT_BYTES else 0)


def scores_transient(model: ModelSpec, shape: Shape) -> int:
    """Bytes the last eager attention layer holds beyond what the step has saved, at the busier of two moments.

    Forward, at its softmax: the masked scores (fp32 under autocast, where the fp32 causal mask promotes the
    sum), the fp32 copy of the softmax's input when dtype=float32 meets 16-bit scores, BLOOM's raw scores too
    (KEEPS_SCORES, held until the attention returns, when they are the busier moment), less the 16-bit copy of
    the probabilities, saved only after it; and once per sequence the s × s additive causal mask the model
    builds in its weights' dtype. Backward, at the softmax's backward: the gradients of its output and of its
    input, in the softmax's dtype, less the probabilities' 16-bit copy, which the matmul with V released just
    before. Measured on the classes at 1,024 and 2,048 tokens: BLOOM peaks at the forward moment, the Llama
    family, GPT-2 and OPT at the backward one (at 128 tokens all of them at the loss)."""
    if shape.implementation != "eager":
        return 0
    e, pairs = shape.act_bytes, model.n_heads * shape.seq_len ** 2
    masked = STAT_BYTES if shape.autocast else e
    softmax_out = e if shape.modules in SOFTMAX_IN_SCORES_DTYPE and not shape.autocast else STAT_BYTES
    input_copy = softmax_out if masked != softmax_out else 0
    probs_copy = softmax_bytes(shape) - softmax_out
    kept = e if shape.modules in KEEPS_SCORES else 0
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
    if shape.modules not in FUSED_QKV:
        return 0
    return 2 * shape.seq_len * model.n_kv_heads * model.head_dim * shape.act_bytes


def mlp_extra(d_ff: int, shape: Shape) -> int:
    """Bytes a dense MLP's modules save beyond the fused estimate: a Python tanh GELU's three more d_ff-wide
    tensors (PYTHON_TANH_GELU)."""
    if not modules(shape) or shape.modules not in PYTHON_TANH_GELU:
        return 0
    return 3 * shape.seq_len * d_ff * shape.act_bytes


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


def position_ids(model: ModelSpec, shape: Shape) -> int:
    """Bytes of the int64 position ids a learned position embedding saves: the modules compute them in every
    forward (GPT-2's arange, OPT's cumsum of the attention mask) where the fused estimate reads a constant."""
    return shape.seq_len * INDEX_BYTES if modules(shape) and model.position == "learned" else 0


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
    in its `norms` norms, q, k and v each casting the normed input (two copies more than one shared input; a
    fused q/k/v projection casts it once), gate and up each casting theirs (one more; a plain MLP's single up
    none), and every weight matrix's copy."""
    if not shape.autocast:
        return parts
    qkv_copies = 0 if shape.modules in FUSED_QKV else 2
    return {**parts,
            "norms": parts["norms"] + d_model_wide(fp32_residual(norms, model, shape)),
            "attention": parts["attention"] + d_model_wide(input_copies(qkv_copies, model, shape),
                                                           weight_copies(parts["attention"].matrix_params, shape)),
            ffn: parts[ffn] + d_model_wide(input_copies(1 if model.gated else 0, model, shape),
                                           weight_copies(parts[ffn].matrix_params, shape))}
