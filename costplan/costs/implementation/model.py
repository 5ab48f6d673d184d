"""What the modules save once per model, and the transient of a long eager step: the rotary tables, the
position ids, soft-capped logits, the last softmax's workspace."""
from __future__ import annotations

from costplan.costs import INDEX_BYTES, STAT_BYTES, Shape
from costplan.costs.implementation.attention import rotary_tables
from costplan.costs.class_modules import class_modules
from costplan.costs.implementation.common import modules, softmax_bytes
from costplan.costs.implementation.mla import mla_rope_tables
from costplan.spec import ModelSpec


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


def position_ids(model: ModelSpec, shape: Shape) -> int:
    """Bytes of the int64 position ids a learned position embedding saves: the modules compute them in every
    forward (GPT-2's arange, OPT's cumsum of the attention mask) where the fused estimate reads a constant."""
    return shape.seq_len * INDEX_BYTES if modules(shape) and model.position == "learned" else 0


def capped_logits(model: ModelSpec, shape: Shape) -> int:
    """Gemma2ForCausalLM soft-caps its logits, c·tanh(x / c): tanh saves its output, s × vocab in the activation
    dtype (the head's 16-bit output under autocast), beside the loss's fp32 copy."""
    if not modules(shape) or not class_modules(shape).softcapped_logits:
        return 0
    return shape.seq_len * model.vocab_size * shape.act_bytes


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
