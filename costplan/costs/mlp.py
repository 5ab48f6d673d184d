"""Position-wise feed-forward blocks: GELU/ReLU (two matrices) and the gated GLU variants SwiGLU and GeGLU
(three: gate, up, down; Shazeer 2020, "GLU Variants Improve Transformer")."""
from __future__ import annotations

from costplan.costs import Cost, Shape, linear
from costplan.spec import ModelSpec

# Tensors of width d_ff saved for backward, per token, as eager PyTorch computes the activation. GELU: its input
# and its output (the down projection's input). ReLU: only its output, which its own backward and the down
# projection share. Gated: the gate, its activation, the up projection and their product (the down projection's
# input).
SAVED_INNER = {"gelu": 2, "relu": 1, "swiglu": 4, "geglu": 4}


def fused_gated(model: ModelSpec, shape: Shape) -> bool:
    """Whether a gated activation runs as one fused kernel, which keeps the gate and up projections and recomputes
    the activation in its backward (Megatron-Core's bias_swiglu and bias_geglu save their input, Transformer
    Engine's and Liger's kernels the same; torch.compile's min-cut partitioner keeps gate, up and their product
    too): not in transformers' modules, nor in an eager step's activation (training.fusion eager, unless
    fused_kernels names it)."""
    return model.gated and shape.implementation == "fused" and not shape.eager("activation")


def saved_inner(model: ModelSpec, shape: Shape) -> int:
    """d_ff-wide tensors an MLP saves per row: a fused gated activation one fewer than eager PyTorch."""
    return SAVED_INNER[model.mlp] - (1 if fused_gated(model, shape) else 0)


def feed_forward(model: ModelSpec, d_ff: int, tokens: int, act_bytes: int, saved: int = 0) -> Cost:
    """One MLP of inner width d_ff applied to `tokens` rows, and the `saved` d_ff-wide tensors per row it keeps
    for backward (saved_inner; not its input)."""
    d = model.d_model
    up = linear(tokens, d, d_ff, model.bias) * (2 if model.gated else 1)  # [gate,] up: (t × d)·(d × d_ff)
    down = linear(tokens, d_ff, d, model.bias, row_parallel=True)           # down: (t × d_ff)·(d_ff × d)
    return up + down + Cost(activations=tokens * saved * d_ff * act_bytes)


def mlp(model: ModelSpec, d_ff: int, shape: Shape) -> Cost:
    """The dense block: one MLP over the sequence; its input is saved once for all up matrices."""
    s = shape.seq_len
    return (feed_forward(model, d_ff, s, shape.act_bytes, saved_inner(model, shape))
            + Cost(activations=s * model.d_model * shape.act_bytes))
