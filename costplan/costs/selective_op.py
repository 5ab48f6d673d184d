"""torchtitan's per-op selective activation checkpointing (training.recompute: selective_op; its
`activation_checkpoint.mode = "selective"` with `selective_ac_option = "op"`): each layer is checkpointed with a
policy that keeps the output of every second matmul (aten.mm) of the layer's forward, the first, third, …, and
the attention kernel's outputs, and recomputes every other op in backward. torch's checkpoint stops recomputing
once every tensor backward needs is back (its default early stop), so a trailing op nothing reads is not rerun.

For the layers the rules allow (FlashAttention, a dense MLP, no biases: spec_rules.recompute_rules), the
products run q, k, v, o, then gate, up, down (SwiGLU/GeGLU) or up, down:
- kept: the layer's input (the checkpoint's), q and v, the attention output with its fp32 log-sum-exp, and the
  gate and down outputs of a gated MLP or the up output of a plain one;
- recomputed: k and o (the next norm, or a parallel layer's MLP, reads past o), and a gated MLP's up (the
  product's backward needs it); a plain MLP's down only where a post-norm reads its output (sandwich), since
  otherwise only the residual add reads it, and that saves nothing;
- the norms, rotary embeddings, activations and residual adds run again in backward (the step model times
  them all again: an upper bound by the last residual add).
"""
from __future__ import annotations

from costplan.costs import STAT_BYTES, Shape
from costplan.spec import ModelSpec


def kept_bytes(model: ModelSpec, d_ff: int, shape: Shape) -> dict[str, int]:
    """Bytes one sequence's layer keeps for backward, by component (the input under norms, as for full
    recomputation)."""
    s, e = shape.seq_len, shape.act_bytes
    attention = s * (2 * model.q_width + model.kv_width) * e + s * model.n_heads * STAT_BYTES
    mlp = s * (d_ff + model.d_model) * e if model.gated else s * d_ff * e
    return {"attention": attention, "mlp": mlp, "norms": s * model.d_model * e}


def recomputed_products(model: ModelSpec, d_ff: int) -> dict[str, list[tuple[int, int]]]:
    """The (d_in, d_out) of each weight matmul the backward runs again, by component."""
    d = model.d_model
    mlp = [(d, d_ff)] if model.gated else [(d_ff, d)] if model.block == "sandwich" else []
    return {"attention": [(d, model.kv_width), (model.q_width, d)], "mlp": mlp}
