"""Attention-Free Transformer (Zhai et al. 2021, arXiv 2105.14103, Eq. 2), causal, for the reference model.

    Y_t = σ(Q_t) ⊙ Σ_t' exp(K_t' + w_t,t') ⊙ V_t' / Σ_t' exp(K_t' + w_t,t')

Written as the paper's efficient forms (§3.1-3.3): exp(w)·(exp(K)⊙V) and exp(w)·exp(K) as matmuls (aft_full);
running sums plus the band (exp(w) − 1) as tile matmuls (aft_local, tiles as a banded kernel computes them);
running sums alone (aft_simple); running sums plus a causal depthwise convolution per head with kernel
exp(w) − 1 (aft_conv). The sequence is put
first, (s, b, width), so that the mixing is one matmul over all of the batch and nothing is copied twice.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from costplan.profiling.blocks import window_blocks
from costplan.spec import ModelSpec


class CausalDepthwiseConv(torch.autograd.Function):
    """y = conv1d(left-pad(x), w, groups=C) for x (N, C, s), w (C, 1, taps), as a fused causal-conv kernel
    does it: the padding is internal, only x and w are saved (a padded copy would be saved otherwise)."""

    @staticmethod
    def forward(ctx, x, weight):  # noqa: ANN001, ANN205
        taps = weight.shape[-1]
        ctx.save_for_backward(x, weight)
        return F.conv1d(F.pad(x, (taps - 1, 0)), weight, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        taps = weight.shape[-1]
        padded = F.pad(x, (taps - 1, 0))
        grad_input, grad_weight, _ = torch.ops.aten.convolution_backward(
            grad, padded, weight, None, [1], [0], [1], False, [0], x.shape[1], [True, True, False])
        return grad_input[..., taps - 1:], grad_weight


def causal_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The fused causal convolution; plain ops under JIT tracing, so fvcore sees the convolution."""
    if torch.jit.is_tracing():
        return F.conv1d(F.pad(x, (weight.shape[-1] - 1, 0)), weight, groups=x.shape[1])
    return CausalDepthwiseConv.apply(x, weight)


class AFT(nn.Module):
    """One AFT block; `kind` is the attention type (aft_full, aft_local, aft_simple, aft_conv)."""

    def __init__(self, attention, model: ModelSpec, seq_len: int, **factory):  # noqa: ANN001
        super().__init__()
        d, width = model.d_model, model.q_width
        self.kind, self.heads, self.width = attention.type, model.n_heads, width
        self.q = nn.Linear(d, width, bias=model.qkv_bias, **factory)
        self.k = nn.Linear(d, width, bias=model.qkv_bias, **factory)
        self.v = nn.Linear(d, width, bias=model.qkv_bias, **factory)
        self.o = nn.Linear(width, d, bias=model.o_bias, **factory)
        if self.kind in ("aft_full", "aft_local"):
            self.w = nn.Parameter(torch.zeros(model.max_seq_len, model.max_seq_len, **factory))
        if self.kind == "aft_local":
            self.window = attention.window
            self.tiles = window_blocks(seq_len, attention.window)
        if self.kind == "aft_conv":
            self.kernel = nn.Parameter(torch.zeros(model.n_heads, attention.window, **factory))

    def forward(self, x: torch.Tensor, pos, cache=None) -> torch.Tensor:  # noqa: ANN001
        """`cache` (generate.AFTCache): a prompt's K/V are stored (the ones its bias still reaches; the rest
        summed into the running state) and the mixing runs as in training; a later single token is mixed
        from the state and the cached band (`_step`)."""
        b, s, _ = x.shape
        # (s, b, d), saved once by all three. clone, not contiguous(): at batch or length 1 the transpose is
        # already contiguous, and a shared norm's output would then be saved by the MLP as the same storage.
        xt = x.transpose(0, 1).clone(memory_format=torch.contiguous_format)
        q, k, v = self.q(xt), self.k(xt), self.v(xt)             # (s, b, W)
        gate = torch.sigmoid(q)
        if cache is not None and cache.count:
            return self.o(gate * self._step(k, v, cache)).transpose(0, 1)
        if cache is not None:
            cache.append(k.transpose(0, 1), v.transpose(0, 1))
        if self.kind == "aft_conv":
            ratio = self._conv(k, v, b, s)
        else:
            ek = torch.exp(k).view(s, b * self.width)
            ekv = ek * v.view(s, b * self.width)
            num, den = MIXING[self.kind](self, ek, ekv, pos, s)
            ratio = (num / den).view(s, b, self.width)
        return self.o(gate * ratio).transpose(0, 1)             # (b, s, d), a view

    def _full(self, ek, ekv, pos, s):  # noqa: ANN001, ANN202
        weights = torch.exp(self.w[:s, :s].masked_fill(pos.future, float("-inf")))   # causal exp(w)
        return weights @ ekv, weights @ ek

    def _local(self, ek, ekv, pos, s):  # noqa: ANN001, ANN202
        """Past keys with weight exp(0) = 1 as running sums, plus (exp(w) − 1) inside the band, tile by tile."""
        num, den = ekv.cumsum(0), ek.cumsum(0)
        band_num, band_den = [], []
        for tile in self.tiles:
            weights = torch.expm1(self.w[tile.queries, tile.keys].masked_fill(
                pos.outside[tile.queries, tile.keys], 0.0))
            band_num.append(weights @ ekv[tile.keys])
            band_den.append(weights @ ek[tile.keys])
        return num + torch.cat(band_num), den + torch.cat(band_den)

    def _simple(self, ek, ekv, pos, s):  # noqa: ANN001, ANN202
        return ekv.cumsum(0), ek.cumsum(0)

    def _conv(self, k, v, b, s):  # noqa: ANN001, ANN202
        """AFT-conv (§3.3): per head, a causal kernel w of min(window, s) taps shared by the head's channels,
        applied as exp(w) − 1 on top of the running sums (w = 0 is AFT-simple): a grouped convolution over
        (b·head_dim, heads, s)."""
        hd = self.width // self.heads

        def channels(t: torch.Tensor) -> torch.Tensor:
            return t.view(s, b, self.heads, hd).permute(1, 3, 2, 0).reshape(b * hd, self.heads, s)

        taps = min(self.kernel.shape[-1], s)
        weight = torch.expm1(self.kernel[:, -taps:]).unsqueeze(1)       # (H, 1, taps), the last tap on t' = t
        ek = torch.exp(channels(k))
        ekv = ek * channels(v)
        num = causal_conv(ekv, weight) + ekv.cumsum(-1)
        den = causal_conv(ek, weight) + ek.cumsum(-1)
        ratio = num / den
        return ratio.view(b, hd, self.heads, s).permute(3, 0, 2, 1).reshape(s, b, self.width)

    def _step(self, k, v, cache):  # noqa: ANN001, ANN202
        """One new token (k, v: (1, b, W)) at position p: the state holds Σ exp(K)⊙V and Σ exp(K) over the
        tokens the bias no longer reaches (weight exp(0) = 1); the band's keys get their weight exp(w) (w the
        bias, or the conv kernel's tap for their distance), one matmul per sum, as in training."""
        b = k.shape[1]
        p = cache.count
        band_k, band_v = (t.to(k.dtype) for t in cache.append(k.transpose(0, 1), v.transpose(0, 1)))  # (b, n, W)
        num, den = (t.to(k.dtype) for t in cache.state(b, self.width))
        n = band_k.shape[1]
        if n:
            ek = torch.exp(band_k)
            ekv = ek * band_v
            keys = cache.positions()
            if self.kind == "aft_conv":
                hd = self.width // self.heads
                weights = torch.exp(self.kernel[:, self.kernel.shape[-1] - 1 - (p - keys)]).unsqueeze(1)  # (H, 1, n)

                def heads(t: torch.Tensor) -> torch.Tensor:         # (b, n, W) → (H, n, b·hd)
                    return t.view(b, n, self.heads, hd).permute(2, 1, 0, 3).reshape(self.heads, n, b * hd)

                def back(t: torch.Tensor) -> torch.Tensor:          # (H, 1, b·hd) → (b, W)
                    return t.view(self.heads, b, hd).transpose(0, 1).reshape(b, self.width)

                num, den = num + back(weights @ heads(ekv)), den + back(weights @ heads(ek))
            else:
                weights = torch.exp(self.w[p, keys]).unsqueeze(0)            # (1, n)

                def flat(t: torch.Tensor) -> torch.Tensor:          # (b, n, W) → (n, b·W)
                    return t.transpose(0, 1).reshape(n, b * self.width)

                num = num + (weights @ flat(ekv)).view(b, self.width)
                den = den + (weights @ flat(ek)).view(b, self.width)
        return (num / den).unsqueeze(0)                                      # (1, b, W)


MIXING = {"aft_full": AFT._full, "aft_local": AFT._local, "aft_simple": AFT._simple}
