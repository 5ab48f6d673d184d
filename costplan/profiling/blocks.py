"""Block-sparse attention for the reference model: sliding-window (Longformer, Mistral), chunked (Llama 4) and
Sparse Transformer (Child et al. 2019) patterns, computed block by block so that a FLOP counter sees only the work
the pattern allows (a dense matrix with a mask would count as dense).

A pattern is a list of blocks per group of heads; a block is (queries, keys, window): a slice or an index
tensor of query positions, one of key positions, and the causal window inside the block (None: causal only).
Each block is computed whole, masked inside; its cost is 2·rows·keys·(d_qk + d_v) FLOPs per head.

The kernel is an autograd Function written with torch ops, in the two ways the analytic model knows:
- flash (FlashAttention-2, Dao 2023, Algorithm 1-2, block-sparse as in FlashAttention §3.3): saves q, k, v,
  the output and an fp32 log-sum-exp per query and head; backward recomputes each block's scores (5 matmuls
  per block: 3 over d_qk and 2 over d_v, 2.5 × the forward when they are equal);
- materialized: saves each block's probabilities; backward is 4 matmuls per block (2 × the forward).
K/V heads are shared by groups of query heads (GQA) and expanded only inside the kernel, never saved. The flash
kernel's temporaries (tiles, fp32 accumulators) stay out of the measured peak, as a fused kernel's on-chip
memory does (on_chip.py); FlashAttention-2's backward workspace in device memory (its fp32 dq accumulator and,
for grouped heads, dk and dv at every query head before their sum) is thus neither measured nor estimated.

Attention sinks (gpt-oss): a learned logit per head that joins every query's softmax denominator and has no
value row. It only changes each row's normaliser: the probabilities and the log-sum-exp the kernel keeps are
those of the row with the sink, so the backward is the same algorithm (the sink's dP is 0), and the sink's
gradient is −Σ p_sink · rowsum(dP ⊙ P) over the rows of its head. Nothing more is saved.

Tiling of a window: query tiles of min(128, window) rows (FlashAttention-2's tile for head_dim ≤ 128); a tile
computes whole key tiles, from the first that holds a key one of its queries may see to the diagonal one.
"""
from __future__ import annotations

import contextlib
import math
from typing import NamedTuple, Union

import torch

# Which tiles a kernel computes is part of what the spec means; it is defined once, with the cost model.
from costplan.costs.attention.blocks import CAUSAL_TILE
from costplan.costs.attention.pairs import QUERY_BLOCK as KERNEL_TILE, tile_for
from costplan.profiling.on_chip import on_chip

Select = Union[slice, torch.Tensor]


class Block(NamedTuple):
    queries: Select
    keys: Select
    window: int | None          # a key j is visible to query i when i - window < j <= i; None: j <= i


class Part(NamedTuple):
    heads: slice                # query heads this part of the pattern uses
    blocks: list[Block]


def window_blocks(seq_len: int, window: int) -> list[Block]:
    """Banded causal tiles of a sliding window."""
    tile = tile_for(window)
    back = math.ceil((window - 1) / tile)             # key tiles before the diagonal one
    blocks = []
    for start in range(0, seq_len, tile):
        index = start // tile
        first_key = max(0, index - back) * tile
        end = min(seq_len, start + tile)
        blocks.append(Block(slice(start, end), slice(first_key, end), window))
    return blocks


def chunk_blocks(seq_len: int, chunk: int) -> list[Block]:
    """Causal tiles inside each chunk of `chunk` positions (chunked attention): the tiles of a sliding window as
    long as the chunk, laid from each chunk's first position, so that no key of an earlier chunk is read."""
    blocks = []
    for start in range(0, seq_len, chunk):
        end = min(seq_len, start + chunk)
        blocks += [Block(slice(b.queries.start + start, b.queries.stop + start),
                         slice(b.keys.start + start, b.keys.stop + start), None)
                   for b in window_blocks(end - start, chunk)]
    return blocks


def column_blocks(seq_len: int, stride: int) -> list[Block]:
    """Attention within each of the `stride` columns j ≡ c (mod stride) (the strided pattern's part 2)."""
    return [Block(slice(c, seq_len, stride), slice(c, seq_len, stride), None) for c in range(min(stride, seq_len))]


def diagonal_blocks(seq_len: int, size: int) -> list[Block]:
    """Attention within consecutive blocks of `size` positions (the fixed pattern's part 1)."""
    spans = (slice(start, min(seq_len, start + size)) for start in range(0, seq_len, size))
    return [Block(span, span, None) for span in spans]


def summary_block(seq_len: int, size: int, summary: int, device: torch.device) -> list[Block]:
    """Every query against the last `summary` positions of every block (the fixed pattern's part 2), computed
    whole, in query tiles; a query with no such position at or before it attends to nothing (outputs zeros)."""
    keys = [j for j in range(seq_len) if j % size >= size - summary]
    if not keys:
        return []
    return query_tiles(seq_len, torch.tensor(keys, device=device))


def query_tiles(seq_len: int, keys: Select, tile: int = KERNEL_TILE) -> list[Block]:
    """All queries against the same keys, computed whole (every pair, masked inside), in tiles of `tile`
    queries, so that no s × keys matrix exists at once."""
    return [Block(slice(start, min(seq_len, start + tile)), keys, None) for start in range(0, seq_len, tile)]


def _positions(select: Select, device: torch.device) -> torch.Tensor:
    if isinstance(select, slice):
        return torch.arange(select.start, select.stop, select.step or 1, device=device)
    return select


def _visible(block: Block, device: torch.device) -> torch.Tensor:
    """(rows × keys) True where the query may see the key."""
    q = _positions(block.queries, device)[:, None]
    k = _positions(block.keys, device)[None, :]
    visible = k <= q
    if block.window is not None:
        visible = visible & (k > q - block.window)
    return visible


def _select(x: torch.Tensor, select: Select) -> torch.Tensor:
    """x[:, select] along the sequence dimension (a view for a slice, a gathered copy for an index)."""
    return x[:, select]


def _expand(x: torch.Tensor, heads: slice, per_group: int) -> torch.Tensor:
    """K or V (b, s, G, d) for query heads `heads`: each query head reads its group's K/V head (a copy only
    when heads share K/V heads)."""
    if per_group == 1:
        return x[:, :, heads]
    index = torch.arange(heads.start, heads.stop, device=x.device) // per_group
    return x.index_select(2, index)


def _wide(dtype: torch.dtype) -> torch.dtype:
    """Softmax statistics and gradient accumulators: fp32 for 16-bit and fp32 inputs (fp64 stays fp64)."""
    return torch.promote_types(dtype, torch.float32)


def _scores(qb, kb, block, scale, slopes, device):  # noqa: ANN001, ANN202
    """Scaled fp32 scores of one block (b, h, rows, keys), masked (and ALiBi-biased) outside the pattern."""
    scores = torch.matmul(qb, kb.transpose(-1, -2)).to(_wide(qb.dtype)) * scale
    if slopes is not None:
        q = _positions(block.queries, device)[:, None]
        k = _positions(block.keys, device)[None, :]
        scores = scores + slopes[:, None, None] * (k - q).float()
    return scores.masked_fill(~_visible(block, device), float("-inf"))


def _forward(q, k, v, parts, scale, slopes, materialize, sinks=None):  # noqa: ANN001, ANN202
    """(output, fp32 log-sum-exp, per-block probabilities if `materialize`) of the pattern; `sinks` (H,)
    join each row's denominator."""
    b, s, heads, _ = q.shape
    per_group = heads // k.shape[2]
    out = q.new_zeros(b, s, heads, v.shape[-1])
    lse = q.new_zeros(b, heads, s, dtype=_wide(q.dtype))
    probabilities = []
    for part in parts:
        h = part.heads
        kh, vh = _expand(k, h, per_group), _expand(v, h, per_group)
        part_slopes = None if slopes is None else slopes[h]
        for block in part.blocks:
            qb = _select(q, block.queries)[:, :, h].transpose(1, 2)        # (b, h, rows, d)
            kb = _select(kh, block.keys).transpose(1, 2)                  # (b, h, keys, d)
            vb = _select(vh, block.keys).transpose(1, 2)
            scores = _scores(qb, kb, block, scale, part_slopes, q.device)
            top = scores.amax(-1, keepdim=True)
            top = torch.where(torch.isinf(top), torch.zeros_like(top), top)   # rows that see nothing
            sink = None if sinks is None else sinks[h].to(top.dtype)[:, None, None]
            if sink is not None:
                top = torch.maximum(top, sink)
            p = torch.exp(scores - top)
            total = p.sum(-1, keepdim=True)
            if sink is not None:
                total = total + torch.exp(sink - top)
            p = p / total.clamp_min(torch.finfo(p.dtype).tiny)
            out[:, block.queries, h] = torch.matmul(p.to(v.dtype), vb).transpose(1, 2)
            row_lse = torch.where(total > 0, top + total.log(), torch.full_like(top, float("inf")))
            lse[:, h, block.queries] = row_lse.squeeze(-1)
            if materialize:
                probabilities.append(p.to(q.dtype))
    return out, lse, probabilities


def block_attention(q, k, v, parts, scale, materialize, slopes=None, sinks=None):  # noqa: ANN001, ANN201
    """The kernel; under JIT tracing (fvcore), its forward as plain ops, so that the tracer sees its matmuls
    (a traced autograd Function is one opaque node)."""
    if torch.jit.is_tracing():
        return _forward(q, k, v, parts, scale, slopes, False, sinks)[0]
    return BlockAttention.apply(q, k, v, parts, scale, materialize, slopes, sinks)


class BlockAttention(torch.autograd.Function):
    """softmax(QKᵀ·scale)·V over the blocks of a pattern; see the module docstring."""

    @staticmethod
    def forward(ctx, q, k, v, parts, scale, materialize, slopes, sinks=None):  # noqa: ANN001, ANN205
        with _kernel(materialize):
            out, lse, probabilities = _forward(q, k, v, parts, scale, slopes, materialize, sinks)
        ctx.parts, ctx.scale, ctx.materialize, ctx.slopes = parts, scale, materialize, slopes
        ctx.sinks = sinks                   # a parameter: kept by the module, not a saved activation
        if materialize:
            ctx.save_for_backward(q, k, v, *probabilities)
        else:
            ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        saved = ctx.saved_tensors       # unpacked outside: a checkpoint's rerun is not the kernel's
        with _kernel(ctx.materialize):
            grads = _backward(ctx, saved, grad_out)
        return grads


def _kernel(materialize: bool):  # noqa: ANN202
    """A flash kernel's tiles stay on chip (on_chip.py); a materialising kernel's probabilities and score
    gradients are ordinary tensors in device memory."""
    return contextlib.nullcontext() if materialize else on_chip()


def _backward(ctx, saved, grad_out):  # noqa: ANN001, ANN202
    """BlockAttention's gradients (dq, dk, dv, ..., dsinks): per block, recomputed (or saved) probabilities,
    fp32 accumulators of dq, dk and dv."""
    q, k, v, *rest = saved
    b, s, heads, _ = q.shape
    groups = k.shape[2]
    per_group = heads // groups
    grad_out = grad_out.to(q.dtype)
    wide = _wide(q.dtype)
    dq = torch.zeros_like(q, dtype=wide)
    dk = torch.zeros_like(k, dtype=wide)
    dv = torch.zeros_like(v, dtype=wide)
    dsinks = None if ctx.sinks is None else torch.zeros(heads, dtype=wide, device=q.device)
    if ctx.materialize:
        probabilities = iter(rest)
    else:
        out, lse = rest
        delta = (grad_out.to(wide) * out.to(wide)).sum(-1)                   # (b, s, H)
    for part in ctx.parts:
        h = part.heads
        kh, vh = _expand(k, h, per_group), _expand(v, h, per_group)
        # Gradients of the expanded K/V heads; with one query head per K/V head, those of K/V themselves.
        dkh = dk[:, :, h] if per_group == 1 else torch.zeros_like(kh, dtype=wide)
        dvh = dv[:, :, h] if per_group == 1 else torch.zeros_like(vh, dtype=wide)
        part_slopes = None if ctx.slopes is None else ctx.slopes[h]
        for block in part.blocks:
            qb = _select(q, block.queries)[:, :, h].transpose(1, 2)
            kb = _select(kh, block.keys).transpose(1, 2)
            vb = _select(vh, block.keys).transpose(1, 2)
            gb = _select(grad_out, block.queries)[:, :, h].transpose(1, 2)     # (b, h, rows, d_v)
            if ctx.materialize:
                p = next(probabilities).to(wide)
            else:                                                          # recompute the scores
                scores = _scores(qb, kb, block, ctx.scale, part_slopes, q.device)
                p = torch.exp(scores - lse[:, h, block.queries].unsqueeze(-1))
            dvh[:, block.keys] += torch.matmul(p.to(q.dtype).transpose(-1, -2), gb).transpose(1, 2).to(wide)
            dp = torch.matmul(gb, vb.transpose(-1, -2)).to(wide)
            if ctx.materialize:
                row = (dp * p).sum(-1, keepdim=True)
            else:
                row = delta[:, block.queries, h].transpose(1, 2).unsqueeze(-1)
            if dsinks is not None:       # the sink's probability is what the row's keys leave over
                dsinks[h] -= ((1 - p.sum(-1, keepdim=True)) * row).sum((0, 2, 3))
            ds = (p * (dp - row) * ctx.scale).to(q.dtype)
            dq[:, block.queries, h] += torch.matmul(ds, kb).transpose(1, 2).to(wide)
            dkh[:, block.keys] += torch.matmul(ds.transpose(-1, -2), qb).transpose(1, 2).to(wide)
        if per_group > 1:
            index = torch.arange(h.start, h.stop, device=q.device) // per_group
            dk.index_add_(2, index, dkh)
            dv.index_add_(2, index, dvh)
    dsinks = None if dsinks is None else dsinks.to(ctx.sinks.dtype)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None, None, None, dsinks


class BlockCore:
    """A pattern and a kernel, callable like the other attention cores."""

    def __init__(self, parts: list[Part], materialize: bool, slopes: torch.Tensor | None = None):
        self.parts, self.materialize, self.slopes = parts, materialize, slopes

    def __call__(self, q, k, v, pos, scale: float, heads: int, groups: int, sinks=None) -> torch.Tensor:  # noqa: ANN001
        return block_attention(q, k, v, self.parts, scale, self.materialize, self.slopes, sinks)


class CausalTiles:
    """Causal attention over the whole context as a flash kernel: every query tile against every key, masked
    inside, so that a FLOP counter sees the full square as it does for torch's fused kernel. The flash core of
    a spec with attention sinks, which torch's fused kernel cannot take; laid out per call, for any length."""

    materialize = False

    def __init__(self, slopes: torch.Tensor | None = None):
        self.slopes = slopes

    def __call__(self, q, k, v, pos, scale: float, heads: int, groups: int, sinks=None) -> torch.Tensor:  # noqa: ANN001
        parts = [Part(slice(0, heads), query_tiles(q.shape[1], slice(0, k.shape[1]), CAUSAL_TILE))]
        return block_attention(q, k, v, parts, scale, False, self.slopes, sinks)
