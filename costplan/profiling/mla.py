"""Multi-head latent attention (DeepSeek-V2 §2.1, DeepSeek-V3 §2.1.1) for the reference model.

    c_q = norm(x·W_DQ), q = c_q·W_UQ            (or q = x·W_Q without q_lora_rank)
    [c_kv, k_rope] = x·W_DKV; [k_nope, v] = norm(c_kv)·W_UKV
    q = [q_nope, RoPE(q_rope)], k = [k_nope, RoPE(k_rope) shared by every head]; o = softmax(q·kᵀ)·v → W_O

Down projections take qkv_bias, up projections none, W_O takes o_bias (DeepSeek's reference code). The core is a
flash-style kernel over the whole causal square (blocks.BlockAttention, query tiles against all keys): torch's CPU flash
kernel needs equal q/k and v head sizes, which MLA does not have (192 vs 128 in V3), and would fall back to
the materialising math path.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from costplan.profiling.blocks import Part, block_attention, query_tiles
from costplan.profiling.modules import norm, rotate
from costplan.spec import ModelSpec
from costplan.spec_attention import LatentAttention


class LatentAttentionModule(nn.Module):
    def __init__(self, attention: LatentAttention, model: ModelSpec, seq_len: int, **factory):
        super().__init__()
        a, d, heads = attention, model.d_model, model.n_heads
        self.heads, self.nope, self.rope, self.v_dim = heads, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim
        self.latent = a.kv_lora_rank
        d_qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            self.q_down = nn.Linear(d, a.q_lora_rank, bias=model.qkv_bias, **factory)
            self.q_norm = norm(model.norm, a.q_lora_rank, **factory)
            self.q_up = nn.Linear(a.q_lora_rank, heads * d_qk, bias=False, **factory)
        else:
            self.q = nn.Linear(d, heads * d_qk, bias=model.qkv_bias, **factory)
        self.kv_down = nn.Linear(d, a.kv_lora_rank + a.qk_rope_head_dim, bias=model.qkv_bias, **factory)
        self.kv_norm = norm(model.norm, a.kv_lora_rank, **factory)
        self.kv_up = nn.Linear(a.kv_lora_rank, heads * (a.qk_nope_head_dim + a.v_head_dim), bias=False, **factory)
        self.o = nn.Linear(heads * a.v_head_dim, d, bias=model.o_bias, **factory)
        # Every (query, key) pair, as a FLOP counter counts a causal flash kernel, in query tiles.
        self.parts = [Part(slice(0, heads), query_tiles(seq_len, slice(0, seq_len)))]
        self.scale = 1.0 / math.sqrt(d_qk)

    def forward(self, x: torch.Tensor, pos, cache=None) -> torch.Tensor:  # noqa: ANN001
        """`cache` (generate.TokenCache of [c_kv, k_rope]): a prompt's latents are stored and its core runs as
        in training; a later single token attends in latent space (`_absorbed`)."""
        b, s, _ = x.shape
        if hasattr(self, "q_up"):
            q = self.q_up(self.q_norm(self.q_down(x)))
        else:
            q = self.q(x)
        q = q.view(b, s, self.heads, self.nope + self.rope)
        latent = self.kv_down(x)                                          # (b, s, d_c + r)
        c_kv, k_rope = self.kv_norm(latent[..., : self.latent]), latent[..., self.latent:]
        q_nope, q_rope = q[..., : self.nope], q[..., self.nope:]
        k_rope = k_rope.view(b, s, 1, self.rope)
        if pos.cos is not None:
            q_rope, k_rope = rotate(q_rope, pos.cos, pos.sin), rotate(k_rope, pos.cos, pos.sin)
        if cache is not None and cache.count:
            return self.o(self._absorbed(q_nope, q_rope, c_kv, k_rope, cache).reshape(b, s, -1))
        if cache is not None:
            cache.append(c_kv, k_rope.view(b, s, self.rope))
        kv = self.kv_up(c_kv).view(b, s, self.heads, self.nope + self.v_dim)
        k_nope, v = kv[..., : self.nope], kv[..., self.nope:]
        q = torch.cat([q_nope, q_rope], dim=-1)
        k = torch.cat([k_nope, k_rope.expand(b, s, self.heads, self.rope)], dim=-1)
        o = block_attention(q, k, v, self.parts, self.scale, False)
        return self.o(o.reshape(b, s, -1))

    def _absorbed(self, q_nope, q_rope, c_kv, k_rope, cache) -> torch.Tensor:  # noqa: ANN001
        """One new token against the cached latents, W_UK absorbed into the query and W_UV into the output
        (DeepSeek-V2 §2.1.3): keys and values are never expanded per head. Per layer and key that is
        2·H·(2·d_c + r) FLOPs instead of 2·H·(d_nope + r + d_v) for expanded K/V."""
        b = q_nope.shape[0]
        c_all, r_all = (t.to(q_nope.dtype) for t in cache.append(c_kv, k_rope.view(b, 1, self.rope)))
        w = self.kv_up.weight.view(self.heads, self.nope + self.v_dim, self.latent)
        w_uk, w_uv = w[:, : self.nope], w[:, self.nope:]                  # (H, n, d_c), (H, v, d_c)
        q_latent = torch.matmul(q_nope.reshape(b, self.heads, self.nope).transpose(0, 1), w_uk)   # (H, b, d_c)
        scores = (torch.matmul(q_latent.transpose(0, 1), c_all.transpose(1, 2))                   # (b, H, n)
                  + torch.matmul(q_rope.reshape(b, self.heads, self.rope), r_all.transpose(1, 2))) * self.scale
        probs = torch.softmax(scores.float(), dim=-1).to(c_all.dtype)
        o_latent = torch.matmul(probs, c_all)                                                     # (b, H, d_c)
        return torch.matmul(o_latent.transpose(0, 1), w_uv.transpose(1, 2)).transpose(0, 1)      # (b, H, v)
