"""(query, key) pairs per head that an attention pattern covers, in closed form.

Model FLOPs count the keys a query may see under its pattern, written as if the sequence were not causal (the
convention dense attention follows: all s keys). Hardware FLOPs count the tiles a kernel really computes. A
tiled kernel handles `block` queries at a time; a query tile computes whole key tiles, from the first tile that
holds a key any of its queries can see up to the tile on the diagonal, and skips the rest.
"""
from __future__ import annotations

# Query-tile height of the FlashAttention-2 kernels for head_dim ≤ 128 on A100/H100 (Dao 2023, §3).
QUERY_BLOCK = 128


def tile_for(window: int) -> int:
    """Tile height for a window: a window shorter than a tile is tiled by itself."""
    return min(QUERY_BLOCK, window)


def tiled_pairs(seq_len: int, window: int, block: int) -> int:
    """Pairs a causal tiled kernel computes when each query sees its `window` most recent keys (window ≥ seq_len:
    plain causal). Query tile b computes key tiles b − ⌈(window − 1)/block⌉ … b, the diagonal one whole;
    the last, partial tile has only the rows and keys that exist."""
    back = -(-(window - 1) // block)            # key tiles before the diagonal one
    full, rest = divmod(seq_len, block)
    ramp = min(full, back + 1)                  # tiles that still start at key 0: 1, 2, … ramp key tiles
    tiles = ramp * (ramp + 1) // 2 + max(0, full - back - 1) * (back + 1)
    pairs = block * block * tiles
    if rest:
        pairs += rest * (seq_len - max(0, full - back) * block)
    return pairs


def causal_pairs(seq_len: int, block: int = QUERY_BLOCK) -> int:
    """Pairs a causal tiled kernel (FlashAttention) computes: about (n + 1)/(2n) of the square, n tiles."""
    return tiled_pairs(seq_len, seq_len, block)


def window_pairs(seq_len: int, window: int) -> int:
    """Model pairs of a sliding window: every query may see min(window, seq_len) keys."""
    return seq_len * min(window, seq_len)


def chunk_pairs(seq_len: int, chunk: int) -> int:
    """Model pairs of chunked attention: every query may see the min(chunk, seq_len) keys of its chunk (the last,
    partial chunk only its own)."""
    return block_pairs(seq_len, chunk)


def chunk_tiled_pairs(seq_len: int, chunk: int) -> int:
    """Pairs a causal tiled kernel computes inside each chunk, tiles of min(128, chunk) rows starting at each
    chunk's first token: a plain causal kernel per chunk."""
    full, rest = divmod(seq_len, chunk)
    block = tile_for(chunk)
    return full * tiled_pairs(chunk, chunk, block) + (tiled_pairs(rest, rest, block) if rest else 0)


def column_pairs(seq_len: int, stride: int) -> int:
    """Pairs of the strided part of Child et al.'s strided pattern: each position sees the positions j with
    j ≡ i (mod stride), i.e. attention within each of the `stride` columns of the sequence."""
    per_column, longer = divmod(seq_len, stride)
    return longer * (per_column + 1) ** 2 + (stride - longer) * per_column**2


def block_pairs(seq_len: int, block: int) -> int:
    """Pairs of attention within consecutive blocks (the fixed pattern's first part)."""
    full, rest = divmod(seq_len, block)
    return full * block * block + rest * rest


def summary_keys(seq_len: int, block: int, summary: int) -> int:
    """Positions j with j mod block ≥ block − summary: the fixed pattern's summary cells, seen by every query."""
    full, rest = divmod(seq_len, block)
    return full * summary + max(0, rest - (block - summary))
