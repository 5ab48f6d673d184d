"""Standard softmax attention (Vaswani et al. 2017) that materialises the s × s probabilities.

Forward core per layer: QKᵀ and AV over all s keys for each of the s queries (convention 3: no causal
halving) = 4·H·d_head·s² FLOPs, PaLM's 12·L·H·Q·T per token once trained (×3). The kernel computes the whole
square and masks it, so hardware FLOPs equal model FLOPs. With attention sinks the sink logit is one more
column of each head's scores: the stored probabilities are s × (s + 1) per head (the AV matmul reads the
first s columns in place, so its FLOPs do not change).
"""
from __future__ import annotations

from costplan.costs import Cost, Shape
from costplan.costs.attention.softmax import around_core, materialised_core
from costplan.spec import ModelSpec
from costplan.spec_attention import DenseAttention


def cost(attention: DenseAttention, model: ModelSpec, shape: Shape) -> Cost:
    s = shape.seq_len
    core = materialised_core(model.n_heads, model.head_dim, model.head_dim, s * s, s * s, shape)
    return around_core(model, shape, cached_tokens=s) + core + sink_column(model, shape)


def backward_transient(model: ModelSpec, shape: Shape) -> int:
    """Bytes the core holds beyond what the step saved while its softmax's backward runs: the gradient of the
    probabilities (the AV matmul's) and that of the scores (the softmax's), one element per stored probability in
    the activation dtype; the probabilities stay saved until that node has run. Under selective recomputation
    the core's forward has just run again, so its probabilities are held too."""
    stored = model.n_heads * shape.seq_len * (shape.seq_len + model.attention_sinks)
    return stored * shape.act_bytes * (3 if shape.recompute == "selective" else 2)


def sink_column(model: ModelSpec, shape: Shape) -> Cost:
    """The sinks' column of the stored probabilities: one more per query and head, unless selective
    recomputation stores no probabilities at all."""
    if not model.attention_sinks or shape.recompute == "selective":
        return Cost()
    return Cost(activations=model.n_heads * shape.seq_len * shape.act_bytes)
