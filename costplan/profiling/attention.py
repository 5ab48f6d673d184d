"""Softmax attention for the reference model: projections, QK norms, rotary embeddings and the core.

Shapes for a batch of b sequences of s tokens: x (b, s, d_model) → q (b, s, H, d_head), k and v (b, s, G, d_head)
with G KV heads → core → o (b, s, H·d_head) → out (b, s, d_model). Every tensor stays in (b, s, heads, d) layout
so that the core's output reshapes into the output projection's input without a copy, and grouped K/V heads
are broadcast, never repeated: what autograd saves is what a GPU run saves.

Cores:
- explicit: QKᵀ and AV as batched matmuls with the probabilities materialised (dense attention as written in
  Vaswani et al. 2017); the causal mask is a buffer. Selective recomputation checkpoints this core.
- sdpa: torch's scaled_dot_product_attention, which on CPU and CUDA runs a flash kernel (no s × s matrix).

Attention sinks (gpt-oss; transformers' GptOssAttention): one learned logit per query head joins each query's
softmax as an extra column without a value row. The explicit core appends that column to its scores (so it
stores s + 1 probabilities per query and head; the AV matmul reads the first s through a strided view, no
copy and no extra FLOPs). torch's fused kernel takes no sink, so a flash core with sinks is the tiled flash
kernel of blocks.py over the whole causal square (CausalTiles): the same FLOPs and saved tensors as torch's.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from costplan.profiling.blocks import (
    BlockCore, CausalTiles, Part, chunk_blocks, column_blocks, diagonal_blocks, summary_block, window_blocks,
)
from costplan.profiling.modules import norm, rotate
from costplan.spec import ModelSpec


class Positions(NamedTuple):
    """Per-forward views of the model's constant buffers for the current sequence length."""

    cos: torch.Tensor | None       # (s, d_head) rotary tables, or None
    sin: torch.Tensor | None
    bias: torch.Tensor | None      # (1, H, s, s) ALiBi bias with -inf above the diagonal, or None
    future: torch.Tensor | None    # (s, s) True above the diagonal: the keys a causal query may not see
    outside: torch.Tensor | None = None   # (s, s) True outside AFT-local's band (future keys included)
    causal: bool = True            # False for a decode step: its one query may see every (earlier) key


def explicit_core(q, k, v, pos: Positions, scale: float, heads: int, groups: int, sinks=None) -> torch.Tensor:  # noqa: ANN001
    """softmax(QKᵀ·scale + mask)·V with the probabilities materialised. Grouped heads: the H query heads are
    folded into G groups of H/G·s rows, so K and V keep their G heads (two bmm of (H/G·s × d)·(d × n)).
    Training has n = s keys; a decode step has one query and the n keys of its cache (no future mask).
    `sinks` (H,): a logit per head joins every row's softmax and is dropped before AV."""
    b, s, d = q.shape[0], q.shape[1], q.shape[3]
    n = k.shape[1]
    per_group = heads // groups
    qg = q.reshape(b, s, groups, per_group, d).permute(0, 2, 3, 1, 4).reshape(b, groups, per_group * s, d)
    scores = torch.matmul(qg, k.permute(0, 2, 3, 1)) * scale          # (b, G, H/G·s, n)
    scores = scores.view(b, heads, s, n)
    if pos.bias is not None:
        scores = scores + pos.bias
    elif pos.future is not None:
        scores = scores.masked_fill(pos.future, float("-inf"))
    if sinks is not None:
        column = sinks.to(scores.dtype).view(1, heads, 1, 1).expand(b, heads, s, 1)
        probs = torch.softmax(torch.cat([scores, column], dim=-1), dim=-1)[..., :n]
    else:
        probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs.view(b, groups, per_group * s, n), v.transpose(1, 2))  # (b, G, H/G·s, d_v)
    return out.view(b, groups, per_group, s, -1).permute(0, 3, 1, 2, 4)     # (b, s, G, H/G, d_v)


def sdpa_core(q, k, v, pos: Positions, scale: float, heads: int, groups: int, sinks=None) -> torch.Tensor:  # noqa: ANN001
    """torch's fused attention; K/V heads are broadcast (enable_gqa), the output comes back in q's layout.
    It has no sinks: make_core gives a spec with sinks CausalTiles instead."""
    if sinks is not None:
        raise ValueError("torch's fused attention takes no attention sinks; use CausalTiles")
    out = F.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
        attn_mask=pos.bias, is_causal=pos.bias is None and pos.causal, scale=scale, enable_gqa=groups != heads)
    return out.transpose(1, 2)


CORES = {"explicit": explicit_core, "sdpa": sdpa_core}


def _sliding(attention, model: ModelSpec, s: int, slopes, device) -> BlockCore:  # noqa: ANN001
    parts = [Part(slice(0, model.n_heads), window_blocks(s, attention.window))]
    return BlockCore(parts, attention.materializes, slopes)


def _chunked(attention, model: ModelSpec, s: int, slopes, device) -> BlockCore:  # noqa: ANN001
    parts = [Part(slice(0, model.n_heads), chunk_blocks(s, attention.chunk))]
    return BlockCore(parts, attention.materializes, slopes)


def _sparse(attention, model: ModelSpec, s: int, slopes, device) -> BlockCore:  # noqa: ANN001
    """Child et al. §4.3: the first ⌈H/2⌉ heads on part 1 of the pattern, the others on part 2."""
    first = model.n_heads - model.n_heads // 2
    stride = attention.block
    if attention.pattern == "strided":
        blocks = (window_blocks(s, stride), column_blocks(s, stride))
    else:
        blocks = (diagonal_blocks(s, stride), summary_block(s, stride, attention.summary, device))
    parts = [Part(slice(0, first), blocks[0]), Part(slice(first, model.n_heads), blocks[1])]
    return BlockCore([p for p in parts if p.heads.stop > p.heads.start], attention.materializes,
                     slopes)


# Block-pattern cores, built for the training sequence length (their tiles depend on it).
PATTERNS = {"sliding_window": _sliding, "sparse": _sparse, "chunked": _chunked}
# The core each attention type runs by default; True where the core stores its probabilities.
DEFAULT_CORE = {"dense": "explicit", "flash": "sdpa"}


def make_core(attention, model: ModelSpec, seq_len: int, override: str | None, slopes, device):  # noqa: ANN001, ANN201
    """(core callable, whether it materialises its probabilities) for one layer's attention spec."""
    if attention.type in PATTERNS:
        core = PATTERNS[attention.type](attention, model, seq_len, slopes, device)
        return core, core.materialize
    name = override or DEFAULT_CORE[attention.type]
    if name == "sdpa" and model.attention_sinks:
        return CausalTiles(slopes), False
    return CORES[name], name == "explicit"


class Attention(nn.Module):
    """Multi-head (grouped-query) softmax attention with optional QK norms and rotary embeddings (`rope`: False
    for a NoPE layer, which leaves q and k unrotated whatever the model's position embedding)."""

    def __init__(self, model: ModelSpec, core, recompute_core: bool, rope: bool = True, **factory):  # noqa: ANN001
        super().__init__()
        d, heads, kv_heads, d_head = model.d_model, model.n_heads, model.n_kv_heads, model.head_dim
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, d_head
        self.q = nn.Linear(d, heads * d_head, bias=model.qkv_bias, **factory)
        self.k = nn.Linear(d, kv_heads * d_head, bias=model.qkv_bias, **factory)
        self.v = nn.Linear(d, kv_heads * d_head, bias=model.qkv_bias, **factory)
        self.o = nn.Linear(heads * d_head, d, bias=model.o_bias, **factory)
        self.qk_norm = model.qk_norm
        if model.qk_norm == "head":
            self.q_norm, self.k_norm = norm(model.norm, d_head, **factory), norm(model.norm, d_head, **factory)
        elif model.qk_norm == "full":
            self.q_norm = norm(model.norm, heads * d_head, **factory)
            self.k_norm = norm(model.norm, kv_heads * d_head, **factory)
        # gpt-oss's sinks: one logit per query head (initialised like the other vectors, values do not matter)
        self.sinks = nn.Parameter(torch.ones(heads, **factory)) if model.attention_sinks else None
        self.core = core
        # A decode step's core: one query against every cached key. A block pattern decodes as its kernel
        # kind (its window is the cache's rolling buffer); sparse patterns have no such cache (generate.py).
        # With sinks, the explicit core: the only one that takes them for a query at any position.
        kind = getattr(core, "materialize", None)
        self.decode_core = (explicit_core if model.attention_sinks else
                            core if kind is None else CORES["explicit" if kind else "sdpa"])
        self.recompute_core, self.rope = recompute_core, rope
        self.scale = 1.0 / math.sqrt(d_head)

    def forward(self, x: torch.Tensor, pos: Positions, cache=None) -> torch.Tensor:  # noqa: ANN001
        """`cache` (generate.TokenCache): a prompt's K/V are stored and its core runs as in training; a later
        single token is appended and attends to the cached keys (`decode_core`)."""
        b, s, _ = x.shape
        q, k, v = self.q(x), self.k(x), self.v(x)
        if self.qk_norm == "full":
            q, k = self.q_norm(q), self.k_norm(k)
        q = q.view(b, s, self.heads, self.head_dim)
        k = k.view(b, s, self.kv_heads, self.head_dim)
        v = v.view(b, s, self.kv_heads, self.head_dim)
        if self.qk_norm == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        if pos.cos is not None and self.rope:
            q, k = rotate(q, pos.cos, pos.sin), rotate(k, pos.cos, pos.sin)
        if cache is not None and cache.count:
            keys, values = (t.to(q.dtype) for t in cache.append(k, v))
            bias = None if pos.bias is None else pos.bias[..., cache.positions()]   # ALiBi: by key position
            o = self.decode_core(q, keys, values, pos._replace(bias=bias), self.scale, self.heads, self.kv_heads,
                                 self.sinks)
            return self.o(o.reshape(b, s, -1))
        if cache is not None:
            cache.append(k, v)
        if self.recompute_core:
            # Selective recomputation (Korthikanti et al. 2022 §5): keep q, k, v, rerun the core in backward.
            # The whole core, as Megatron does: torch's default early stop would skip the PV matmul, whose
            # output backward does not need.
            o = checkpoint(self.core, q, k, v, pos, self.scale, self.heads, self.kv_heads, self.sinks,
                           use_reentrant=False, early_stop=False)
        else:
            o = self.core(q, k, v, pos, self.scale, self.heads, self.kv_heads, self.sinks)
        return self.o(o.reshape(b, s, -1))
