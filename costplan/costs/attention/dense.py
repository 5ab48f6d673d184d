"""Standard softmax attention (Vaswani et al. 2017) that materialises the s × s probabilities.

Forward core per layer: QKᵀ and AV over all s keys for each of the s queries (convention 3: no causal
halving) = 4·H·d_head·s² FLOPs, PaLM's 12·L·H·Q·T per token once trained (×3). Backward: dV, dP, dQ, dK = 2×
forward. The probabilities (H × s × s) are saved for softmax's backward and for AV; selective recomputation
(Korthikanti et al. 2022 §5) drops them and recomputes the core, one more core forward.
"""
from __future__ import annotations

from costplan.costs import Cost, Shape
from costplan.costs.attention.softmax import kv_cache, projections, qk_norms, saved_around_core, score_flops
from costplan.spec import DenseAttention, ModelSpec


def cost(attention: DenseAttention, model: ModelSpec, shape: Shape) -> Cost:
    s, heads = shape.seq_len, model.n_heads
    core = score_flops(heads, s * s, model.head_dim, model.head_dim)
    selective = shape.recompute == "selective"
    probabilities = 0 if selective else heads * s * s * shape.act_bytes
    return projections(model, shape) + qk_norms(model, shape) + Cost(
        flops=core,
        hw_fwd=core,
        hw_flops=(4 if selective else 3) * core,
        activations=saved_around_core(model, shape) + probabilities,
        kv_cache=kv_cache(model, shape),
    )
