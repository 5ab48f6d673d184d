"""Transformer Engine's cache of its fp8 weights (training.fp8_weight_cache): memory only.

Under Megatron-Core, which passes is_first_microbatch to TE's linears, each fp8 linear keeps the quantized copy of
its weight between micro-batches and steps (transformer_engine/pytorch/module/linear.py: the workspace cached as
`_fp8_workspaces["weight"]` unless is_first_microbatch is None or the module runs under FSDP2), refreshing it on
the first micro-batch of a step; Megatron-Core's TransformerConfig.disable_parameter_transpose_cache (default off)
turns it off. The copy is 1 byte an element, with its transposed copy beside it where the device's fp8 GEMMs take
only the TN layout (Hopper, Ada), the same device fact that has the step model's fp8 casts write a transposed copy
(kernels.fp8_cast_bytes above 3). Its per-tensor scales are left out (4 bytes a tensor). The weights it copies are those
of the layers' fp8 GEMMs (costs/ops.py Gemm.fp8: not the router, the shared-expert gate or the head), split as
tensor and expert parallelism split them; under ZeRO-3 nothing is cached.
"""
from __future__ import annotations

from costplan.costs import Shape, memo
from costplan.costs.layers import Layer, distinct_layers, pipeline_stages
from costplan.costs.ops import Gemm, layer_ops
from costplan.kernels import Curves
from costplan.spec import ModelSpec, Spec

CAST_BYTES = 3              # an fp8 cast of a 16-bit element: read 2 bytes, write 1 (kernels.fp8_cast_bytes)
_WEIGHTS_ONLY = Shape(seq_len=1, act_bytes=2)      # a layer's GEMMs' weights do not depend on the shape


def cast_bytes(curves: Curves | None) -> float:
    """Bytes an fp8 cast of a 16-bit element moves on a device: 4 where it writes the transposed copy too."""
    figure = None if curves is None else curves.fp8_cast_bytes
    return CAST_BYTES if figure is None else figure.value


def layer_weights(layer: Layer, model: ModelSpec) -> tuple[int, int, int]:
    """Elements of a layer's fp8 GEMM weights: those tensor parallelism splits, those every tensor rank keeps whole
    (MLA's down-projections), and the routed experts' (split over their expert and expert tensor ranks)."""
    def count() -> tuple[int, int, int]:
        split = whole = routed = 0
        for ops in layer_ops(layer, model, _WEIGHTS_ONLY).values():
            for op in ops:
                if isinstance(op, Gemm) and op.fp8:
                    elements = op.d_in * op.d_out * op.count
                    if op.expert:
                        routed += elements
                    elif op.split and not op.replicated:
                        split += elements
                    else:
                        whole += elements
        return split, whole, routed
    return memo.cached(("fp8 weights", memo.token(layer), memo.token(model)), count)


def copies(spec: Spec) -> int:
    """Bytes the cache holds per weight element: the fp8 copy, and its transposed copy where the device's fp8 GEMMs
    take only TN (its casts write one too: kernels.fp8_cast_bytes above 3); nothing unless
    training.fp8_weight_cache, and nothing under ZeRO-3. A hardware file without kernel tables says nothing of the
    layout: one copy."""
    if not spec.training.fp8_weight_cache or spec.parallel.zero == 3:
        return 0
    return 2 if cast_bytes(spec.gpu.curves()) > CAST_BYTES else 1


def cached_bytes(spec: Spec, stage: int) -> float:
    """Bytes of the cache on one GPU of pipeline stage `stage`."""
    per_element = copies(spec)
    if not per_element:
        return 0.0
    par, elements = spec.parallel, 0.0
    for layer, repeats in distinct_layers(spec.model, stage, pipeline_stages(spec)):
        split, whole, routed = layer_weights(layer, spec.model)
        elements += repeats * (split / par.tensor + whole + routed / par.expert_group)
    return elements * per_element
