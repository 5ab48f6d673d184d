"""Chunked local attention (Meta 2025, Llama 4; transformers' `chunked_attention` layers of Llama4TextModel,
`attention_chunk_size`): positions are cut into consecutive chunks of c tokens, and each query sees the keys of
its own chunk up to itself, none of an earlier chunk. Unlike a sliding window, the first query of a chunk sees
one key whatever came before.

Model FLOPs: the keys a query may see, written as if the chunk were not causal (convention 3, as for dense
attention): c per query in a whole chunk, so s·c pairs per layer instead of s² (c ≥ seq_len is dense
attention). Hardware FLOPs: a causal tiled kernel run on each chunk, tiles of min(128, c) queries starting at
the chunk's first token. Memory as for a window: the flash kernel stores O(s); a materialising one the
probabilities of its tiles. The K/V cache holds at most one chunk of c tokens per layer: when a chunk is full,
the next token starts a new one and no earlier key is read again.
"""
from __future__ import annotations

from costplan.costs import Cost, Shape
from costplan.costs.attention.pairs import chunk_pairs, chunk_tiled_pairs
from costplan.costs.attention.softmax import CORES, around_core
from costplan.spec import ModelSpec
from costplan.spec_attention import ChunkedAttention


def cost(attention: ChunkedAttention, model: ModelSpec, shape: Shape) -> Cost:
    s, c = shape.seq_len, attention.chunk
    core = CORES[attention.kernel](model.n_heads, model.head_dim, model.head_dim, chunk_pairs(s, c),
                                   chunk_tiled_pairs(s, c), shape)
    return around_core(model, shape, cached_tokens=min(s, c)) + core
