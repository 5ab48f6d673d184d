"""What a layer's MLP or mixture-of-experts modules save beyond the fused estimate: a Python GELU's tensors,
the router's and the grouped experts'."""
from __future__ import annotations

from costplan.costs import INDEX_BYTES, STAT_BYTES, Shape
from costplan.costs.class_modules import activation_saves, class_modules
from costplan.costs.implementation.common import modules
from costplan.costs.moe import moe_block, routed_rows
from costplan.spec import ModelSpec, MoESpec


def mlp_extra(d_ff: int, shape: Shape) -> int:
    """Bytes a dense MLP's modules save beyond the fused estimate: a Python GELU's more d_ff-wide tensors
    (class_modules.activation_saves)."""
    if not modules(shape):
        return 0
    return activation_saves(shape) * shape.seq_len * d_ff * shape.act_bytes


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
    rows = routed_rows(moe, shape.seq_len)
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
