"""LayerNorm (weight + bias; Ba et al. 2016) and RMSNorm (weight only; Zhang & Sennrich 2019)."""
from __future__ import annotations

from costplan.costs import STAT_BYTES, Cost, Shape, vector

# Statistics saved per normalised row: LayerNorm keeps mean and 1/std, RMSNorm keeps 1/rms.
_STATS = {"layernorm": 2, "rmsnorm": 1}
_VECTORS = {"layernorm": 2, "rmsnorm": 1}


def norm(kind: str, width: int, shape: Shape, rows_per_token: int = 1) -> Cost:
    """One norm over `width` features, applied to `rows_per_token` rows per token (heads, for a per-head norm).

    Parameters: a weight (and a bias for LayerNorm) of `width`. Saved for backward: its input and its
    per-row statistics. No matmul FLOPs.
    """
    rows = shape.seq_len * rows_per_token
    return vector(width) * _VECTORS[kind] + Cost(
        activations=rows * width * shape.act_bytes + rows * _STATS[kind] * STAT_BYTES)
