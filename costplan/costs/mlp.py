"""Position-wise feed-forward blocks: GELU/ReLU (two matrices) and the gated GLU variants SwiGLU and GeGLU
(three: gate, up, down; Shazeer 2020, "GLU Variants Improve Transformer")."""
from __future__ import annotations

from costplan.costs import Cost, Shape, linear
from costplan.spec import ModelSpec

# Tensors of width d_ff saved for backward, per token. GELU: its input and its output (the down projection's
# input). ReLU: only its output, which its own backward and the down projection share. Gated: the gate, its
# activation, the up projection and their product (the down projection's input).
SAVED_INNER = {"gelu": 2, "relu": 1, "swiglu": 4, "geglu": 4}


def mlp(model: ModelSpec, d_ff: int, shape: Shape) -> Cost:
    """One feed-forward block of inner width d_ff; its input (d_model wide) is saved once for all up matrices."""
    s, d = shape.seq_len, model.d_model
    up = linear(s, d, d_ff, model.bias) * (2 if model.gated else 1)  # [gate,] up: (s × d)·(d × d_ff)
    down = linear(s, d_ff, d, model.bias)                              # down: (s × d_ff)·(d_ff × d)
    saved = s * (d + SAVED_INNER[model.mlp] * d_ff) * shape.act_bytes
    return up + down + Cost(activations=saved)
