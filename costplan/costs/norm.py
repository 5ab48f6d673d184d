"""LayerNorm (weight + bias; Ba et al. 2016), RMSNorm (weight only; Zhang & Sennrich 2019) and LayerNorm
without weight or bias (OLMo 1, Groeneveld et al. 2024 §2.1: "non-parametric layer norm")."""
from __future__ import annotations

from costplan.costs import STAT_BYTES, Cost, Shape, vector
from costplan.costs.class_modules import class_modules

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
    bytes more in 16-bit and in fp32 training alike (and what fp32_normed adds for Gemma and gpt-oss). LayerNorm
    runs torch's native kernel, as fused."""
    if shape.implementation == "fused" or kind != "rmsnorm":
        return 0
    return rows * width * STAT_BYTES + fp32_normed(kind, rows, width, shape)


def normalizes_in_fp32(kind: str, shape: Shape) -> bool:
    """Whether the modules' RMSNorm saves its normalized value in fp32 whatever its input's dtype (Gemma's and
    gpt-oss's multiply the fp32 normalized value by the weight before casting back, where Llama's casts first
    and multiplies in the input dtype: ClassModules.fp32_normed)."""
    return shape.implementation != "fused" and kind == "rmsnorm" and class_modules(shape).fp32_normed


def fp32_normed(kind: str, rows: int, width: int, shape: Shape) -> int:
    """What Gemma's and gpt-oss's RMSNorm save beyond Llama's: the weight's multiplication saves the normalized
    value in fp32, 4 − e bytes more per element than Llama's 16-bit one (nothing more in fp32 training), and
    Gemma's also saves the fp32 `1 + weight` it multiplies by (width × 4 bytes per norm)."""
    if not normalizes_in_fp32(kind, shape):
        return 0
    one_plus_weight = width * STAT_BYTES if class_modules(shape).one_plus_weight else 0
    return rows * width * (STAT_BYTES - shape.act_bytes) + one_plus_weight


def fp32_input_copy(kind: str, rows: int, width: int, shape: Shape) -> int:
    """What OLMo's OlmoLayerNorm (transformers' only non-parametric LayerNorm module) saves beyond torch's
    LayerNorm kernel: it runs F.layer_norm on `x.to(float32)`, so the kernel saves that fp32 copy instead of
    its 16-bit input, 4 − 2 bytes more per element. Under autocast the residual stream it reads is fp32
    already (counted by implementation.fp32_residual), and in fp32 training the cast is a no-op."""
    if shape.implementation == "fused" or kind != "nonparametric_layernorm" or shape.autocast:
        return 0
    return rows * width * (STAT_BYTES - shape.act_bytes)


def norm(kind: str, width: int, shape: Shape, rows_per_token: int = 1) -> Cost:
    """One norm over `width` features, applied to `rows_per_token` rows per token (heads, for a per-head norm).

    Parameters: a weight (and a bias for LayerNorm) of `width`, none without the affine. Saved for backward:
    its input and its per-row statistics (the same kernel runs with or without the affine). No matmul FLOPs.
    """
    rows = shape.seq_len * rows_per_token
    return norm_weights(kind, width) + Cost(
        activations=rows * width * shape.act_bytes + statistics(kind, rows) + python_copy(kind, rows, width, shape)
        + fp32_input_copy(kind, rows, width, shape))
