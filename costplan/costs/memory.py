"""Bytes per parameter for weights, gradients and optimizer states, by precision and optimizer.

16-bit training (fp16, bf16, and fp8, whose GEMM inputs are cast from 16-bit weights) keeps 2-byte weights
and gradients and an fp32 master copy with the optimizer: mixed-precision Adam = 2 + 2 + (4 + 4 + 4) = 16
bytes per parameter (Rajbhandari et al. 2019, ZeRO §3.1). fp32 and tf32 training keep everything in fp32 and
need no master copy: Adam = 4 + 4 + 8 = 16 as well, and so does 16-bit autocast over fp32 weights (weights,
gradients and moments in fp32, no master copy). Megatron's 18 (fp32 gradients) is not the default here.

Optimizer states per parameter, in fp32: Adam/AdamW two moments; SGD none; SGD with momentum and Lion one;
Adafactor (Shazeer & Stern 2018, default β1 = None) no first moment and a factored second moment: rows + cols
per matrix, the full size for vectors.
"""
from __future__ import annotations

MOMENTS = {"adamw": 2, "adam": 2, "sgd": 0, "sgd_momentum": 1, "lion": 1, "adafactor": 0}
FP32 = 4


def is_mixed(precision: str) -> bool:
    return precision not in ("fp32", "tf32")


def element_bytes(precision: str) -> int:
    """Bytes per weight, gradient and saved activation element. fp8 training keeps 16-bit weights and
    activations (Transformer Engine casts to fp8 per GEMM and saves higher-precision copies for backward)."""
    return 2 if is_mixed(precision) else 4


def weight_bytes(precision: str, autocast: bool = False) -> int:
    """Bytes per weight and per gradient: 16-bit training keeps 16-bit weights, unless autocast keeps them in
    fp32 and casts a 16-bit copy for each matmul (the copies are activations: costs/implementation.py)."""
    return FP32 if autocast else element_bytes(precision)


def optimizer_bytes(precision: str, optimizer: str, autocast: bool = False) -> int:
    """Bytes per parameter of optimizer state, the fp32 master copy of mixed precision included (autocast's
    weights are their own master); Adafactor's factored moment is extra and counted per matrix
    (Cost.factored)."""
    master = FP32 if is_mixed(precision) and not autocast else 0
    return master + MOMENTS[optimizer] * FP32

