"""Quantized weight storage of the reference model, for measuring the bytes each serving format stores.

The formats are the analytic model's (costs/serving.py): the weight matrices of attention, MLP and expert
linears are quantized; embeddings, the LM head, norms, biases, MoE routers and gates and AFT position biases
stay 16-bit (bf16). Each quantized matrix W (out × in) is stored as:
- fp8: float8_e4m3fn values W/s and one fp32 scale s = max|W|/448 for the tensor;
- int8: int8 values round(W/s_row) and one fp16 scale s_row = max|W_row|/127 per output row (symmetric);
- int4: values round(W/s_g) in [−8, 7], two per byte (low nibble first), and one fp16 scale
  s_g = max|W_g|/7 per group of `group_size` weights along the input dimension (symmetric, no zero points).
Compute is not quantized: only the stored bytes are measured (and a round trip is checked in the tests).
"""
from __future__ import annotations

import torch
from torch import nn

from costplan.costs.serving import QUANTIZED_COMPONENTS
from costplan.errors import CostplanError
from costplan.profiling.model import component_of

FP8_MAX = 448.0                      # largest finite float8_e4m3fn
SCALE_DTYPE = torch.float16
# Matrices of the quantized components that checkpoints keep in 16 bits: the MoE router and shared-expert gate.
KEPT_16_BIT = ("router", "shared_gate")


def _scale(amax: torch.Tensor, top: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """max|W|/top as stored (rounded to `dtype`), so values are rounded against the scale that is kept."""
    return (amax / top).clamp_min(torch.finfo(dtype).tiny).to(dtype).float()


def _fp8(w: torch.Tensor, group_size: int | None) -> dict[str, torch.Tensor]:
    scale = _scale(w.abs().max().float(), FP8_MAX)
    return {"values": (w.float() / scale).to(torch.float8_e4m3fn), "scale": scale}


def _int8(w: torch.Tensor, group_size: int | None) -> dict[str, torch.Tensor]:
    scale = _scale(w.abs().amax(1, keepdim=True).float(), 127, SCALE_DTYPE)
    values = torch.round(w.float() / scale).clamp(-127, 127).to(torch.int8)
    return {"values": values, "scale": scale.to(SCALE_DTYPE)}


def _int4(w: torch.Tensor, group_size: int | None) -> dict[str, torch.Tensor]:
    rows, width = w.shape
    group = width if group_size is None else group_size
    if width % group or width % 2:
        raise CostplanError(f"int4 groups of {group} weights do not divide a matrix of {width} inputs")
    grouped = w.float().view(rows, width // group, group)
    scale = _scale(grouped.abs().amax(-1, keepdim=True), 7, SCALE_DTYPE)
    values = (torch.round(grouped / scale).clamp(-8, 7) + 8).to(torch.uint8).view(rows, width)
    return {"values": values[:, 0::2] | (values[:, 1::2] << 4), "scale": scale.squeeze(-1).to(SCALE_DTYPE)}


def _bf16(w: torch.Tensor, group_size: int | None) -> dict[str, torch.Tensor]:
    return {"values": w.to(torch.bfloat16)}


QUANTIZERS = {"bf16": _bf16, "fp8": _fp8, "int8": _int8, "int4": _int4}


def dequantize(stored: dict[str, torch.Tensor], fmt: str, group_size: int | None = None) -> torch.Tensor:
    """The fp32 matrix a stored one stands for."""
    values = stored["values"]
    if fmt in ("bf16", "fp8"):
        return values.float() * stored.get("scale", 1.0)
    if fmt == "int8":
        return values.float() * stored["scale"].float()
    rows = values.shape[0]
    q = torch.stack([values & 0xF, values >> 4], dim=-1).view(rows, -1).float() - 8
    scale = stored["scale"].float()
    return (q.view(rows, scale.shape[1], -1) * scale[..., None]).view(rows, -1)


def quantized_matrices(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weight matrices a serving format quantizes, by parameter name."""
    result = {}
    for name, module in model.named_modules():
        if (isinstance(module, nn.Linear) and component_of(name) in QUANTIZED_COMPONENTS
                and name.rsplit(".", 1)[-1] not in KEPT_16_BIT):
            result[f"{name}.weight"] = module.weight
    return result


def quantize(w: torch.Tensor, fmt: str, group_size: int | None = 128) -> dict[str, torch.Tensor]:
    """One matrix in a format: its stored tensors (values and scales)."""
    if fmt not in QUANTIZERS:
        raise CostplanError(f"weight format {fmt!r} is not one of {', '.join(QUANTIZERS)}")
    with torch.no_grad():
        return QUANTIZERS[fmt](w.detach(), group_size)


def stored_bytes(model: nn.Module, fmt: str, group_size: int | None = 128) -> int:
    """Bytes of every parameter as a serving engine stores it in `fmt`: the quantized matrices' values and
    scales, everything else in bf16."""
    matrices = quantized_matrices(model)
    total = 0
    for name, p in model.named_parameters():
        stored = quantize(p, fmt, group_size) if name in matrices else _bf16(p, None)
        total += sum(t.nbytes for t in stored.values())
    return total


def group_size_for(model: nn.Module, preferred: int = 128) -> int:
    """The largest power of two up to `preferred` that divides every quantized matrix's input width (GPTQ
    and AWQ kernels need whole groups)."""
    widths = [w.shape[1] for w in quantized_matrices(model).values()]
    group = preferred
    while group > 2 and any(width % group for width in widths):
        group //= 2
    return group
