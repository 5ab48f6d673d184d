"""Building blocks of the reference model: norms, feed-forward blocks and rotary position embeddings.

Each block is written so that autograd saves exactly what a GPU training run saves (the tensors the analytic
activation model counts), and no more:

- LayerNorm is torch's native kernel: its input and per-row mean and 1/std, with or without its weight and
  bias (OLMo 1's non-parametric LayerNorm is the same kernel without them).
- RMSNorm is a fused kernel: its input and an fp32 1/rms per row. torch's CUDA `_fused_rms_norm` (and apex,
  Transformer Engine) save exactly that; on other devices torch 2.13 decomposes `F.rms_norm` into elementwise
  ops that save the input upcast to fp32 twice over plus the normalised fp32 result (measured: 12 bytes per
  16-bit element instead of 2), which no GPU run does. So the reference RMSNorm is an autograd Function that
  saves (x, rstd) and uses torch's fused op pair where it has kernels.
- Rotary embeddings multiply by cos/sin *buffers*: the multiplications save only those buffers (constants),
  never a copy of q or k.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from costplan.profiling.on_chip import on_chip

RMS_EPS = 1e-6
LAYERNORM_EPS = 1e-5


class _FusedRMSNorm(torch.autograd.Function):
    """y = x / rms(x) · w in fp32, saving only x, the fp32 1/rms per row and the weight. On the CPU its kernels
    are written out, one fused kernel each way on a GPU: their temporaries stay on chip (on_chip.py)."""

    @staticmethod
    def forward(ctx, x, weight, eps):  # noqa: ANN001, ANN205 - autograd.Function signature
        if x.device.type == "cuda":
            y, rstd = torch.ops.aten._fused_rms_norm(x, [x.shape[-1]], weight, eps)
        else:
            with on_chip():
                y, rstd = _rms_norm(x, weight, eps)
        ctx.save_for_backward(x, rstd, weight)
        return y

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, rstd, weight = ctx.saved_tensors
        if x.device.type == "cuda":
            dx, dw = torch.ops.aten._fused_rms_norm_backward(grad, x, [x.shape[-1]], rstd, weight, [True, True])
        else:
            with on_chip():
                dx, dw = _rms_norm_backward(grad, x, rstd, weight)
        return dx, dw, None


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float):  # noqa: ANN202
    wide = torch.promote_types(x.dtype, torch.float32)      # fp32 for 16-bit input, as the kernel
    xf = x.to(wide)
    rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * rstd * weight.to(wide)).to(x.dtype), rstd


def _rms_norm_backward(grad: torch.Tensor, x: torch.Tensor, rstd: torch.Tensor, weight: torch.Tensor):  # noqa: ANN202
    """y = w·x̂ with x̂ = x·r, r = (mean(x²) + eps)^-½:  dx = r·(g·w − x̂·mean(g·w·x̂)),  dw = Σ g·x̂. Fourteen
    kernels (nine in fp32), the last three in place on fresh tensors: the CPU step model counts them."""
    g, xhat = grad.to(rstd.dtype), x.to(rstd.dtype) * rstd
    dw = (g * xhat).reshape(-1, x.shape[-1]).sum(0)
    gw = g * weight.to(rstd.dtype)
    del g
    dot = (gw * xhat).mean(-1, keepdim=True)
    dx = gw.sub_(xhat.mul_(dot)).mul_(rstd)
    return dx.to(x.dtype), dw.to(weight.dtype)


class RMSNorm(nn.Module):
    """Root-mean-square norm with a weight (Zhang & Sennrich 2019)."""

    def __init__(self, width: int, eps: float = RMS_EPS, **factory):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width, **factory))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _FusedRMSNorm.apply(x, self.weight, self.eps)


def norm(kind: str, width: int, **factory) -> nn.Module:
    """LayerNorm (weight + bias, or neither) or RMSNorm (weight) over the last dimension."""
    if kind == "layernorm":
        return nn.LayerNorm(width, eps=LAYERNORM_EPS, **factory)
    if kind == "nonparametric_layernorm":
        return nn.LayerNorm(width, eps=LAYERNORM_EPS, elementwise_affine=False, **factory)
    return RMSNorm(width, **factory)


_ACTIVATION = {"gelu": F.gelu, "relu": F.relu, "swiglu": F.silu, "geglu": F.gelu}


class _FusedGLU(torch.autograd.Function):
    """act(gate) · up as a fused gated-activation kernel runs it (Megatron-Core's bias_swiglu / bias_geglu,
    Transformer Engine's, Liger's): it saves gate and up only and recomputes the activation in backward. One
    kernel each way on a GPU, so what it makes besides its outputs stays on chip (on_chip.py)."""

    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor, kind: str) -> torch.Tensor:  # noqa: ANN001
        ctx.kind = kind
        ctx.save_for_backward(gate, up)
        with on_chip():
            out = _ACTIVATION[kind](gate) * up
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # noqa: ANN001, ANN205
        gate, up = ctx.saved_tensors
        with on_chip():
            d_gate, d_up = _glu_backward(gate, up, grad, ctx.kind)
        return d_gate, d_up, None


def _glu_backward(gate: torch.Tensor, up: torch.Tensor, grad: torch.Tensor, kind: str):  # noqa: ANN202
    """(d_gate, d_up), with one gate-sized temporary (σ(gate), or the exact GELU's Φ(gate))."""
    if kind == "swiglu":
        # silu(x) = x·σ(x); silu'(x) = σ(x) + x·σ(x)·(1 − σ(x))
        sigmoid = torch.sigmoid(gate)
        d_up = torch.mul(gate, sigmoid).mul_(grad)
        d_gate = torch.rsub(sigmoid, 1).mul_(gate).mul_(sigmoid).add_(sigmoid)
    else:
        # gelu(x) = x·Φ(x); gelu'(x) = Φ(x) + x·φ(x), φ(x) = exp(−x²/2) / √(2π)
        cdf = torch.mul(gate, math.sqrt(0.5)).erf_().add_(1).mul_(0.5)
        d_up = torch.mul(gate, cdf).mul_(grad)
        d_gate = torch.mul(gate, gate).mul_(-0.5).exp_().mul_(gate).mul_(1 / math.sqrt(2 * math.pi)).add_(cdf)
    return d_gate.mul_(grad).mul_(up), d_up


class MLP(nn.Module):
    """Position-wise feed-forward: down(act(up(x))), or down(act(gate(x)) · up(x)) for SwiGLU/GeGLU, the gated
    product one fused kernel where `fused` (costs/mlp.py saved_inner)."""

    def __init__(self, kind: str, d_model: int, d_ff: int, bias: bool, fused: bool = False, **factory):
        super().__init__()
        self.kind, self.fused = kind, fused
        self.act = _ACTIVATION[kind]
        self.gate = nn.Linear(d_model, d_ff, bias=bias, **factory) if kind in ("swiglu", "geglu") else None
        self.up = nn.Linear(d_model, d_ff, bias=bias, **factory)
        self.down = nn.Linear(d_ff, d_model, bias=bias, **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return self.down(self.act(self.up(x)))
        if self.fused:
            return self.down(_FusedGLU.apply(self.gate(x), self.up(x), self.kind))
        return self.down(self.act(self.gate(x)) * self.up(x))


def rotary_tables(max_seq_len: int, head_dim: int, base: float = 10000.0, **factory) -> tuple[torch.Tensor, ...]:
    """cos and sin (max_seq_len × head_dim) of rotary position embeddings (Su et al. 2021), half-split layout."""
    device = factory.get("device")
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float32, device=device), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(factory.get("dtype")), angles.sin().to(factory.get("dtype"))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE on x (batch, seq, heads, head_dim); cos/sin are (seq, head_dim) views of buffers. The products
    save only cos and sin, and the result is a fresh (batch, seq, heads, head_dim) tensor."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


def alibi_slopes(heads: int) -> list[float]:
    """Per-head ALiBi slopes (Press et al. 2022, §3): a geometric sequence from 2^(-8/n), n a power of two;
    other head counts interleave the next power of two's slopes, as the paper's reference code does."""
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(heads).is_integer():
        return power_of_two(heads)
    lower = 2 ** math.floor(math.log2(heads))
    return power_of_two(lower) + power_of_two(2 * lower)[0::2][: heads - lower]
