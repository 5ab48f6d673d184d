"""Transformer Engine's fp8 linears as the reference model saves their inputs (training.fp8_saved_inputs,
costs/fp8_inputs.py): each linear of the layers saves an fp8 copy of its input, with an fp32 scale, for its
weight gradient, and linears reading the same tensor share one copy (TE's fused QKV and gate-up projections read
it once). The matmuls themselves run in the training dtype (the CPU has no fp8 GEMM), so FLOPs are unchanged. The
router and the shared-expert gate stay 16-bit, as Megatron-Core builds them."""
from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.nn import functional as F

from costplan.profiling.mla import LatentAttentionModule
from costplan.profiling.on_chip import on_chip

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0                             # the largest finite float8_e4m3fn
KEPT_16_BIT = ("router", "shared_gate")     # module names whose linears stay 16-bit


def _quantized(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x / s in fp8 and s = max|x| / 448 in fp32: one cast-and-amax kernel on a GPU (its temporaries on chip)."""
    with on_chip():
        scale = (x.detach().abs().amax().float() / FP8_MAX).clamp_min(torch.finfo(torch.float32).tiny)
        values = (x.detach().float() / scale).to(FP8)
    return values, scale


def fp8_copy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fp8 copy of `x` and its scale, made once per tensor whichever linear reads it first; `x` refers to it
    weakly, so that it lives as long as a linear saves it."""
    refs = getattr(x, "_fp8_input", None)
    copy = None if refs is None else tuple(ref() for ref in refs)
    if copy is None or any(t is None for t in copy):
        copy = _quantized(x)
        x._fp8_input = tuple(weakref.ref(t) for t in copy)
    return copy


class _Fp8SavedInput(torch.autograd.Function):
    """y = x·Wᵀ + b, saving the fp8 copy of x (not x) and W; backward dequantizes it for the weight gradient.
    The copy's fp32 scale, 4 bytes, is kept beside the saved tensors (as TE keeps its scale_inv beside the fp8
    data), not among them: the estimate counts the fp8 data."""

    @staticmethod
    def forward(ctx, x, weight, bias, values, scale):  # noqa: ANN001, ANN205
        ctx.save_for_backward(values, weight)
        ctx.scale, ctx.has_bias = scale, bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        (values, weight), scale = ctx.saved_tensors, ctx.scale
        needs_input, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        rows = grad.reshape(-1, grad.shape[-1])
        d_input = grad.matmul(weight) if needs_input else None
        d_weight = None
        if needs_weight:
            with on_chip():         # an fp8 GEMM reads the fp8 copy itself
                d_weight = _weight_gradient(rows, values, scale, weight.dtype)
        d_bias = rows.sum(0) if ctx.has_bias and needs_bias else None
        return d_input, d_weight, d_bias, None, None


def _weight_gradient(rows: torch.Tensor, values: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype):  # noqa: ANN202
    x = (values.float() * scale).to(dtype).reshape(-1, values.shape[-1])
    return rows.t().matmul(x)


class Fp8InputLinear(nn.Linear):
    """nn.Linear saving an fp8 copy of its input; plain where nothing is saved (no gradients: serving's decode)
    and under JIT tracing (a traced Function is opaque). `own_copy`: quantize the input itself rather than share
    the copy another linear made of it (a linear that is a module of its own, not part of a fused one).
    `weight_copies`: fp8 copies of the weight made at the first forward and kept (training.fp8_weight_cache): 1,
    or 2 with the transposed copy; the matmul still reads the 16-bit weight (the CPU has no fp8 GEMM)."""

    own_copy = False
    weight_copies = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or not torch.is_grad_enabled():
            return super().forward(x)
        if self.weight_copies and "_fp8_weight" not in self.__dict__:
            values, _ = _quantized(self.weight)
            self._fp8_weight = (values, values.t().contiguous()) if self.weight_copies == 2 else (values,)
        return _Fp8SavedInput.apply(x, self.weight, self.bias, *(_quantized(x) if self.own_copy else fp8_copy(x)))


def save_fp8_inputs(model: nn.Module, weight_copies: int = 0) -> None:
    """Every linear of the model's layers saves fp8 inputs, but the router's and the shared-expert gate's, and
    keeps `weight_copies` fp8 copies of its weight (costs/fp8_weights.py copies). MLA's projections of the block
    input are separate linears in Megatron-Core's MLASelfAttention: each makes its own copy."""
    for name, module in model.layers.named_modules():
        if type(module) is nn.Linear and name.rsplit(".", 1)[-1] not in KEPT_16_BIT:
            module.__class__ = Fp8InputLinear
            module.weight_copies = weight_copies
    for module in model.layers.modules():
        if isinstance(module, LatentAttentionModule):
            for linear in (getattr(module, key, None) for key in ("q_down", "q", "kv_down")):
                if linear is not None:
                    linear.own_copy = True
