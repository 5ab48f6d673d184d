"""Sliding-window attention (Beltagy et al. 2020, Longformer; Jiang et al. 2023, Mistral 7B): each query sees
its `window` most recent keys, itself included.

Model FLOPs: min(window, s) keys per query, O(s·w) per layer instead of O(s²) (convention 3: the keys a query
may see; window ≥ seq_len is dense attention). Hardware FLOPs: the key tiles a banded causal kernel computes,
tiles of min(128, window) queries. Memory depends on the kernel: FlashAttention-2's windowed kernel (how
Mistral trains) stores O(s); a materialising one stores the probabilities of its tiles, O(s·w) (Longformer
§3.1). The K/V cache is a rolling buffer of `window` tokens (Mistral 7B §2).
"""
from __future__ import annotations

from costplan.costs import Cost, Shape
from costplan.costs.attention.pairs import tile_for, tiled_pairs, window_pairs
from costplan.costs.attention.softmax import CORES, around_core
from costplan.spec import ModelSpec
from costplan.spec_attention import SlidingWindowAttention


def cost(attention: SlidingWindowAttention, model: ModelSpec, shape: Shape) -> Cost:
    s, w = shape.seq_len, attention.window
    executed = tiled_pairs(s, w, tile_for(w))
    core = CORES[attention.kernel](model.n_heads, model.head_dim, model.head_dim, window_pairs(s, w), executed,
                                   shape)
    return around_core(model, shape, cached_tokens=min(s, w)) + core
