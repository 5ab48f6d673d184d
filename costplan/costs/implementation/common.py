"""Shared by the modules' rules: whether the modules are costed at all, and the byte rules more than one block
uses. Which class does what is costs/class_modules.py."""
from __future__ import annotations

from costplan.costs import STAT_BYTES, Cost, Shape
from costplan.costs.class_modules import class_modules
from costplan.spec import ModelSpec

MASKED = ("sliding_window", "sparse", "chunked")   # attention types transformers runs with an explicit mask
COMPLEX_BYTES = 8                                   # a complex64 element: two fp32


def modules(shape: Shape) -> bool:
    """Whether activations are those of transformers' PyTorch modules rather than fused kernels."""
    return shape.implementation != "fused"


def softmax_bytes(shape: Shape) -> int:
    """Bytes eager attention saves per query-key pair and head: the softmax's output and the 16-bit copy that
    multiplies V. The Llama family's softmax runs in fp32 (4 + 2 bytes in 16-bit training, 4 in fp32); GPT-2's
    and Falcon's run in the scores' dtype (2: GPT-2's .type(value.dtype) copies nothing), except under autocast,
    which keeps the scores in fp32 (4 + 2)."""
    e = shape.act_bytes
    if not class_modules(shape).fp32_softmax and not shape.autocast:
        return e
    return STAT_BYTES + (e if e != STAT_BYTES else 0)


def rotary_bytes(shape: Shape) -> int:
    """Bytes per element of the rotary tables the modules save: the activation dtype, as the Llama family's
    rotary embedding casts them to, or fp32 under autocast (the residual stream is fp32) and where the
    module keeps them fp32 (OLMo's: q · cos then promotes to fp32 and `.to(q_type)` casts back)."""
    return STAT_BYTES if shape.autocast or class_modules(shape).fp32_rotary else shape.act_bytes


def input_copies(copies: int, model: ModelSpec, shape: Shape) -> int:
    """Bytes of `copies` more 16-bit casts of a d_model-wide block input, one per projection reading it."""
    return copies * shape.seq_len * model.d_model * shape.act_bytes if shape.autocast else 0


def weight_copies(matrix_params: int, shape: Shape) -> int:
    """The 16-bit copies of weight matrices autocast casts and the matmuls save, once per micro-batch."""
    return matrix_params * shape.act_bytes if shape.autocast else 0


def d_model_wide(activations: int, shared: int = 0) -> Cost:
    """Saved bytes held in d_model-wide tensors (which tensor parallelism leaves whole), and shared ones."""
    return Cost(activations=activations, act_d_model=activations, shared_activations=shared)
