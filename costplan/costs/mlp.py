"""Position-wise feed-forward blocks: GELU/ReLU (two matrices) and the gated GLU variants SwiGLU and GeGLU
(three: gate, up, down; Shazeer 2020, "GLU Variants Improve Transformer")."""
from __future__ import annotations

from costplan.costs import Cost, Shape, linear
from costplan.spec import ModelSpec

# Tensors of width d_ff saved for backward, per token. GELU: its input and its output (the down projection's
# input). ReLU: only its output, which its own backward and the down projection share. Gated: the gate, its
# activation, the up projection and their product (the down projection's input).
SAVED_INNER = {"gelu": 2, "relu": 1, "swiglu": 4, "geglu": 4}


def feed_forward(model: ModelSpec, d_ff: int, tokens: int, act_bytes: int) -> Cost:
    """One MLP of inner width d_ff applied to `tokens` rows, and the inner tensors it saves (not its input)."""
    d = model.d_model
    up = linear(tokens, d, d_ff, model.bias) * (2 if model.gated else 1)  # [gate,] up: (t × d)·(d × d_ff)
    down = linear(tokens, d_ff, d, model.bias)                              # down: (t × d_ff)·(d_ff × d)
    return up + down + Cost(activations=tokens * SAVED_INNER[model.mlp] * d_ff * act_bytes)


def mlp(model: ModelSpec, d_ff: int, shape: Shape) -> Cost:
    """The dense block: one MLP over the sequence; its input is saved once for all up matrices."""
    s = shape.seq_len
    return feed_forward(model, d_ff, s, shape.act_bytes) + Cost(activations=s * model.d_model * shape.act_bytes)
