"""Sparse Transformer factorized attention (Child et al. 2019, §4.2–4.3), as multi-head attention in which
each head attends to one of the two parts of the pattern (the paper's third integration, §4.3): the first
⌈H/2⌉ heads the first part, the others the second. Stride l = `block`, c = `summary`.

- strided: part 1, the l most recent positions (a sliding window of l; the paper's {i−l, …, i} has l + 1);
  part 2, every l-th position, j ≡ i (mod l): attention within the l columns of the sequence.
- fixed: part 1, the query's own block of l; part 2, the last c positions of every block ("summary" cells).

Keys per query: strided ≈ l + s/l, fixed ≈ l + c·s/l, so O(s·√s) at l ≈ √s (§4.2). Model FLOPs count those
keys (non-causal, as for dense attention); hardware FLOPs count the tiles of part 1 a banded causal kernel
computes; parts 2 and the fixed blocks are computed whole. With the default flash kernel each part stores an
fp32 log-sum-exp per query and head (the paper's kernels recompute attention in backward, §5); a
materialising kernel stores the probabilities of every computed pair.
Keys reach back to the start, so the K/V cache holds every token.
"""
from __future__ import annotations

from costplan.costs import Cost, Shape
from costplan.costs.attention.pairs import (
    block_pairs, column_pairs, summary_keys, tile_for, tiled_pairs, window_pairs,
)
from costplan.costs.attention.softmax import CORES, around_core
from costplan.spec import ModelSpec
from costplan.spec_attention import SparseAttention


def head_split(n_heads: int) -> tuple[int, int]:
    """Heads on part 1 and on part 2 of the pattern."""
    return n_heads - n_heads // 2, n_heads // 2


def parts(attention: SparseAttention, seq_len: int) -> list[tuple[int, int]]:
    """(model pairs, executed pairs) per head for part 1 and part 2."""
    s, l = seq_len, attention.block
    if attention.pattern == "strided":
        return [(window_pairs(s, l), tiled_pairs(s, l, tile_for(l))), (column_pairs(s, l),) * 2]
    summary = s * summary_keys(s, l, attention.summary)
    return [(block_pairs(s, l),) * 2, (summary, summary)]


def cost(attention: SparseAttention, model: ModelSpec, shape: Shape) -> Cost:
    d = model.head_dim
    cost = around_core(model, shape, cached_tokens=shape.seq_len)
    for heads, (pairs, executed) in zip(head_split(model.n_heads), parts(attention, shape.seq_len)):
        cost = cost + CORES[attention.kernel](heads, d, d, pairs, executed, shape)
    return cost
