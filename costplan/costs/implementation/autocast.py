"""What a layer's modules save under 16-bit autocast over fp32 weights (training.autocast) beyond 16-bit
training: the fp32 residual in the norms, a cast of each block input per projection, every weight's copy,
and the mixture-of-experts block's fp32 grouped matmuls."""
from __future__ import annotations

from costplan.costs import STAT_BYTES, Cost, Shape
from costplan.costs.class_modules import class_modules
from costplan.costs.implementation.common import d_model_wide, input_copies, weight_copies
from costplan.costs.mlp import SAVED_INNER, feed_forward
from costplan.costs.moe import routed_rows
from costplan.costs.norm import normalizes_in_fp32
from costplan.spec import ModelSpec, MoESpec


def fp32_residual(norms: int, model: ModelSpec, shape: Shape) -> int:
    """What `norms` d_model-wide norms save beyond 16-bit training when autocast keeps the residual in fp32: the
    normalized value in fp32, which a norm normalizing in fp32 anyway (norm.fp32_normed) already saves. Gemma's
    post-norms read a 16-bit block output instead of the residual, and save as much: an fp32 copy of it."""
    if not shape.autocast or normalizes_in_fp32(model.norm, shape):
        return 0
    return norms * shape.seq_len * model.d_model * (STAT_BYTES - shape.act_bytes)


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


def attention_casts(model: ModelSpec, shape: Shape) -> int:
    """Casts of a layer's normed input under autocast beyond the one the fused estimate saves: q, k and v each
    cast it (2 more; none for a fused q/k/v projection); MLA's q (or q_a) and kv_a_proj_with_mqa (1 more)."""
    if "mla" in model.attention_types:
        return 1
    return 0 if class_modules(shape).fused_qkv else 2
