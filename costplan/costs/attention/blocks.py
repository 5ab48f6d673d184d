"""The blocks the reference model's block-sparse attention kernel (profiling/blocks.py) loops over in Python, and
the tiles of AFT-local's band (profiling/aft.py), counted without torch: the step model prices what each block
launches as eager PyTorch runs it (costs/eager.py loop_kernels, aft_local_kernels). The layouts are
profiling/blocks.py's, whose tile heights are defined here and in pairs.py, so that the two cannot drift.
"""
from __future__ import annotations

from typing import NamedTuple

from costplan.costs.attention.pairs import QUERY_BLOCK, summary_keys, tile_for
from costplan.spec import ModelSpec

# CausalTiles' query tile: 16 rows. It changes neither FLOPs, saved tensors nor the measured peak (its tiles are on
# chip: profiling/on_chip.py), only how many kernels the reference's loop launches, which the CPU step model counts.
CAUSAL_TILE = 16


class Part(NamedTuple):
    """One group of heads of a block pattern: its blocks by how the kernel masks them."""

    windowed: int = 0       # causal with a window inside the block (a sliding window's tiles)
    causal: int = 0         # causal only, the keys a range of positions
    indexed: int = 0        # causal only, the keys an index of positions (the fixed pattern's summary cells)

    @property
    def blocks(self) -> int:
        return self.windowed + self.causal + self.indexed


def _tiles(length: int, tile: int) -> int:
    return -(-length // tile)


def _chunked(seq_len: int, chunk: int) -> int:
    """chunk_blocks: each chunk tiled on its own from its first position."""
    full, rest = divmod(seq_len, chunk)
    return full * _tiles(chunk, tile_for(chunk)) + (_tiles(rest, tile_for(chunk)) if rest else 0)


def block_parts(attention, model: ModelSpec, seq_len: int) -> list[Part] | None:  # noqa: ANN001 - an attention spec
    """The parts of a layer's block loop as profiling/attention.py's make_core and profiling/mla.py lay them out,
    or None where the layer's core is not such a loop (torch's fused or explicit cores, AFT)."""
    kind, s = attention.type, seq_len
    if kind == "sliding_window":
        return [Part(windowed=_tiles(s, tile_for(attention.window)))]
    if kind == "chunked":
        return [Part(causal=_chunked(s, attention.chunk))]
    if kind == "mla":                       # query tiles of QUERY_BLOCK rows against every key
        return [Part(causal=_tiles(s, QUERY_BLOCK))]
    if kind == "flash" and model.attention_sinks:       # CausalTiles: torch's fused kernel takes no sinks
        return [Part(causal=_tiles(s, CAUSAL_TILE))]
    if kind != "sparse":
        return None
    stride = attention.block
    if attention.pattern == "strided":      # a window of `stride`, then attention within each column
        parts = [Part(windowed=_tiles(s, tile_for(stride))), Part(causal=min(stride, s))]
    else:                                   # the diagonal blocks, then every query against the summary cells
        summary = _tiles(s, QUERY_BLOCK) if summary_keys(s, stride, attention.summary) else 0
        parts = [Part(causal=_tiles(s, stride)), Part(indexed=summary)]
    return parts[:2 if model.n_heads // 2 else 1]       # a single head has no second part


def block_rows(parts: list[Part], seq_len: int) -> float:
    """Query rows of the loop's average block: every part that has blocks covers the sequence's queries once."""
    covering = [p.blocks for p in parts if p.blocks]
    return seq_len * len(covering) / sum(covering) if covering else 0.0


def aft_local_tiles(seq_len: int, window: int, max_seq_len: int) -> tuple[int, int]:
    """AFT-local's band tiles (window_blocks), and how many of their slices of the (max_seq_len)² position bias
    span a whole dimension of it (a slice that is the whole tensor is a view autograd passes through)."""
    tile = tile_for(window)
    tiles = _tiles(seq_len, tile)
    if seq_len != max_seq_len:
        return tiles, 0
    back = -(-(window - 1) // tile)          # key tiles before the diagonal one
    whole_keys = 1 if tiles - 1 <= back else 0  # the last tile's keys start at 0
    return tiles, whole_keys + (1 if tiles == 1 else 0)
