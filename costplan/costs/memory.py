"""Bytes per parameter for weights, gradients and optimizer states, by precision and optimizer.

16-bit training (fp16, bf16, and fp8, whose GEMM inputs are cast from 16-bit weights) keeps 2-byte weights
and gradients and an fp32 master copy with the optimizer: mixed-precision Adam = 2 + 2 + (4 + 4 + 4) = 16
bytes per parameter (Rajbhandari et al. 2019, ZeRO §3.1). fp32 and tf32 training keep everything in fp32 and
need no master copy: Adam = 4 + 4 + 8 = 16 as well, and so does 16-bit autocast over fp32 weights (weights,
gradients and moments in fp32, no master copy). Megatron's 18 holds 16-bit training's gradients in fp32
(training.fp32_gradients: 2 + 4 + 12, its main_grad buffer); it is not the default here.

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
    activations, casting to fp8 per GEMM. Transformer Engine's Linear saves the fp8 cast of its input for the
    weight gradient (unless the recipe keeps wgrad in higher precision), which this holds at 16 bits: fp8 runs'
    saved GEMM inputs are overestimated, about 7 of Korthikanti et al.'s 34 sbh a layer."""
    return 2 if is_mixed(precision) else 4


def weight_bytes(precision: str, autocast: bool = False) -> int:
    """Bytes per weight and per gradient: 16-bit training keeps 16-bit weights, unless autocast keeps them in
    fp32 and casts a 16-bit copy for each matmul (the copies are activations: costs/implementation/)."""
    return FP32 if autocast else element_bytes(precision)


def gradient_bytes(precision: str, autocast: bool = False, fp32_gradients: bool = False) -> int:
    """Bytes per gradient: the weights' own, unless 16-bit training holds its gradients in fp32
    (training.fp32_gradients)."""
    return FP32 if fp32_gradients else weight_bytes(precision, autocast)


def accumulation_adds(precision: str, autocast: bool, fp32_gradients: bool, micro_batches: int) -> tuple[int, int]:
    """A step's separate gradient adds (training.grad_accumulation add) and the bytes each moves per gradient
    element: under fp32_gradients every micro-batch's 16-bit gradient is read with the fp32 buffer, which is written
    back (e + 8); otherwise autograd adds into `.grad` from the second micro-batch on (the first one's gradient is
    kept as it comes), reading two and writing one in the gradients' own dtype."""
    if fp32_gradients and is_mixed(precision) and not autocast:
        return micro_batches, element_bytes(precision) + 2 * FP32
    return micro_batches - 1, 3 * gradient_bytes(precision, autocast)


def optimizer_bytes(precision: str, optimizer: str, autocast: bool = False) -> int:
    """Bytes per parameter of optimizer state, the fp32 master copy of mixed precision included (autocast's
    weights are their own master); Adafactor's factored moment is extra and counted per matrix
    (Cost.factored)."""
    master = FP32 if is_mixed(precision) and not autocast else 0
    return master + MOMENTS[optimizer] * FP32


# fp32 temporaries of one tensor's update, in copies of that tensor, as the reference Trainer steps it
# (profiling/step.py; torch 2.13). AdamW and Adam are fused (torch._fused_adamw_ updates in place); SGD's
# single-tensor step adds in place, its momentum buffer is a state. Lion computes m·β1, g·(1 − β1) and their sum
# before taking the sign; Adafactor keeps its squared gradient while the outer product of its factors, its rsqrt
# and the update exist, two at a time. torch's single-tensor AdamW (foreach=False) would add 2 (the moment's sqrt
# and its quotient) and the previous tensor's quotient, a local until replaced (measured: 3 for equal tensors);
# its multi-tensor one (foreach=True, torch's default on CUDA) a sqrt of every moment of the group at once: a
# whole model's worth, which this per-tensor count does not describe. The fused kernel is the
# transformers Trainer's default (adamw_torch_fused) with torch 2.8 or later.
UPDATE_TEMPORARIES = {"adamw": 0, "adam": 0, "sgd": 0, "sgd_momentum": 0, "lion": 3, "adafactor": 3}
# Bytes per parameter an unfused update moves beyond a fused one's single pass (each state and the weight read
# and written, the gradient read), its elements fp32, as the reference steps them (profiling/step.py): Lion's
# eight operations read and write 76 (its decay, m·β1, g·(1 − β1), their sum, the sign, the step, then m·β2 and
# + g·(1 − β2)) where one pass moves 20; Adafactor's on a matrix 56 (g², + eps, two means read it, the outer
# product of the factors, its rsqrt, g · that, the step) where one pass moves 12 (a vector's 56 against 20, its
# few parameters read as a matrix's); SGD with momentum 32 (m·μ, + g, the step) where one pass moves 20. Fused
# AdamW and Adam, and SGD's single add, are one pass.
UNFUSED_UPDATE_BYTES = {"adamw": 0, "adam": 0, "sgd": 0, "sgd_momentum": 12, "lion": 56, "adafactor": 44}


def update_bytes(precision: str, optimizer: str, autocast: bool, tensor: float, fp32_gradients: bool = False) -> float:
    """Bytes live at the optimizer step beyond weights, gradients and states, when a tensor of `tensor` elements
    is stepped. Mixed precision casts its 16-bit gradient to an fp32 one for the master copy (both live until the
    16-bit one is dropped, before the step); fp32 weights, autocast's included, are stepped on their own fp32
    gradients, and fp32 gradients of 16-bit weights step the master copy as they are."""
    temporaries = UPDATE_TEMPORARIES[optimizer] * FP32 * tensor
    if gradient_bytes(precision, autocast, fp32_gradients) == FP32:
        return temporaries
    return FP32 * tensor + max(0, temporaries - element_bytes(precision) * tensor)
