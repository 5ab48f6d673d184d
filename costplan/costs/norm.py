"""LayerNorm (weight + bias; Ba et al. 2016), RMSNorm (weight only; Zhang & Sennrich 2019) and LayerNorm
without weight or bias (OLMo 1, Groeneveld et al. 2024 §2.1: "non-parametric layer norm")."""
from __future__ import annotations

from costplan.costs import STAT_BYTES, Cost, Shape, vector

# Statistics saved per normalised row: LayerNorm keeps mean and 1/std (with or without its affine vectors),
# RMSNorm keeps 1/rms.
_STATS = {"layernorm": 2, "rmsnorm": 1, "nonparametric_layernorm": 2}
_VECTORS = {"layernorm": 2, "rmsnorm": 1, "nonparametric_layernorm": 0}
LAYER_NORMS = ("layernorm", "nonparametric_layernorm")   # the kinds torch's LayerNorm kernel runs


def norm_weights(kind: str, width: int) -> Cost:
    """A norm's parameters: a weight (and a bias for LayerNorm) of `width`; none for the non-parametric one."""
    return vector(width) * _VECTORS[kind]


def statistics(kind: str, rows: int) -> int:
    """Bytes of the per-row statistics a norm saves for its backward."""
    return rows * _STATS[kind] * STAT_BYTES


def python_copy(kind: str, rows: int, width: int, shape: Shape) -> int:
    """What transformers' Python RMSNorm (training.implementation sdpa or eager) saves beyond a fused norm: it
    upcasts its input to fp32 and saves that copy (for pow and the multiplication by 1/rms) and its normalized
    value in the activation dtype (for the weight's gradient), where a fused norm saves its input: s × width × 4
    bytes more in 16-bit and in fp32 training alike. LayerNorm runs torch's native kernel, as fused."""
    return rows * width * STAT_BYTES if shape.implementation != "fused" and kind == "rmsnorm" else 0


# Norm modules that keep an fp32 tensor where the Llama family's keep one in their input's dtype.
FP32_OUTPUT_NORMS = ("gemma",)      # GemmaRMSNorm: (normalized · (1 + weight)) in fp32, cast afterwards


def fp32_input_copy(kind: str, rows: int, width: int, shape: Shape) -> int:
    """What OLMo's OlmoLayerNorm (transformers' only non-parametric LayerNorm module) saves beyond torch's
    LayerNorm kernel: it runs F.layer_norm on `x.to(float32)`, so the kernel saves that fp32 copy instead of
    its 16-bit input, 4 − 2 bytes more per element. Under autocast the residual stream it reads is fp32
    already (counted by implementation.fp32_residual), and in fp32 training the cast is a no-op."""
    if shape.implementation == "fused" or kind != "nonparametric_layernorm" or shape.autocast:
        return 0
    return rows * width * (STAT_BYTES - shape.act_bytes)


def fp32_output(kind: str, rows: int, width: int, shape: Shape) -> int:
    """What Gemma's RMSNorm (GemmaRMSNorm) saves beyond Llama's: it multiplies the fp32 normalized value by
    `1.0 + weight.float()` before casting back, so the multiplication saves the normalized value in fp32
    (Llama's saves it in its input's dtype: 4 − 2 bytes more per element, none under autocast, whose fp32
    residual makes both fp32) and the fp32 vector (1 + weight), `width` × 4 bytes per norm."""
    if shape.implementation == "fused" or kind != "rmsnorm" or shape.modules not in FP32_OUTPUT_NORMS:
        return 0
    return (0 if shape.autocast else rows * width * (STAT_BYTES - shape.act_bytes)) + width * STAT_BYTES


def norm(kind: str, width: int, shape: Shape, rows_per_token: int = 1) -> Cost:
    """One norm over `width` features, applied to `rows_per_token` rows per token (heads, for a per-head norm).

    Parameters: a weight (and a bias for LayerNorm) of `width`, none without the affine. Saved for backward:
    its input and its per-row statistics (the same kernel runs with or without the affine). No matmul FLOPs.
    """
    rows = shape.seq_len * rows_per_token
    return norm_weights(kind, width) + Cost(
        activations=rows * width * shape.act_bytes + statistics(kind, rows) + python_copy(kind, rows, width, shape)
        + fp32_input_copy(kind, rows, width, shape) + fp32_output(kind, rows, width, shape))
