"""The layouts costplan tries when a spec does not say how its GPUs split a step: a small grid of ZeRO stages,
tensor and pipeline degrees (with sequence parallelism whenever tensor > 1), expert parallelism over the
largest divisor of n_experts up to 64 that the layout's ranks fold (spec_rules.expert_data_step). A mixture of
experts with tensor parallelism is tried both ways Megatron-Core runs it: each expert split by the tensor
degree (its default) and whole experts (expert_tensor 1, which its MoE guide prefers: "EP8TP1 is better than
EP4TP2 for 8x7B"). Shared by the planner and by estimates of specs without a `parallelism` section.

ZeRO 1 is never worse than ZeRO 0 (the same traffic, less memory), so that is not tried; ZeRO 2 holds less than
ZeRO 1 but reduce-scatters every micro-batch's gradients, not a step's once, and ZeRO 3 gathers the weights
too. When the spec
leaves global_batch_size open, a pipeline of p stages runs 4·p micro-batches per step (a bubble under 25%);
otherwise the batch fixes them.
"""
from __future__ import annotations

import functools
from typing import Any

from costplan.costs import memo
from costplan.spec import ModelSpec, ParallelismSpec, Spec
from costplan.spec_rules import (
    expert_data_step, fp8_cache_rules, model_parallel, split_rules, tensor_parallel_modelled, zero_under_pipeline,
)

TENSOR_DEGREES = (1, 2, 4, 8)
PIPELINE_DEGREES = (1, 2, 4, 8)
ZERO_STAGES = (1, 2, 3)
MAX_EXPERT_DEGREE = 64


def grid(spec: Spec) -> list[dict[str, Any]]:
    """The parallelism sections tried for a spec: its own, or the grid above."""
    if spec.parallelism is not None:
        return [{**spec.parallelism.model_dump(), "data": "auto"}]
    return [dict(layout) for layout in _grid(spec.model, spec.training.global_batch_size is None,
                                              tensor_degrees(spec)) if takes(spec, layout)]


def takes(spec: Spec, layout: dict[str, Any]) -> bool:
    """Whether the spec's training settings take a layout of the grid, as they would take it in a parallelism
    section: Transformer Engine's fp8 weight cache no ZeRO-3 (spec_rules.fp8_cache_rules)."""
    return not fp8_cache_rules(spec.training.__dict__.get, layout["zero"])


def tensor_degrees(spec: Spec) -> tuple[int, ...]:
    """Tensor degrees a search may try: only 1 where the spec's recomputation is modelled without tensor
    parallelism (spec_rules.tensor_parallel_modelled)."""
    return TENSOR_DEGREES if tensor_parallel_modelled(spec.training.recompute) else (1,)


@functools.lru_cache(maxsize=1024)
def _grid(model_spec: ModelSpec, open_batch: bool, degrees: tuple[int, ...] = TENSOR_DEGREES
          ) -> tuple[dict[str, Any], ...]:
    model = functools.partial(getattr, model_spec)
    found = []
    splits = {(t, p): not split_rules(model, t, p) for t in degrees for p in PIPELINE_DEGREES}
    for zero in ZERO_STAGES:
        for t in degrees:
            for p in PIPELINE_DEGREES:
                if not splits[t, p] or zero_under_pipeline(zero, p):
                    continue
                layout = {"zero": zero, "tensor": t, "pipeline": p, "sequence_parallel": t > 1,
                          "micro_batches": 4 * p if p > 1 and open_batch else None}
                found.append(layout)
                if model_spec.moe is not None and t > 1:
                    found.append({**layout, "expert_tensor": 1})
    return tuple(found)


@functools.lru_cache(maxsize=1024)
def search_order(model_spec: ModelSpec, open_batch: bool, degrees: tuple[int, ...] = TENSOR_DEGREES
                 ) -> tuple[dict[str, Any], ...]:
    """The grid in the order a layout search tries it: by family (the tensor degree, the experts' where it
    differs, the pipeline depth), then ZeRO stage. Read only: the mappings are the cached grid's own."""
    return tuple(sorted(_grid(model_spec, open_batch, degrees), key=lambda lay: (family(lay), lay["zero"])))


def family(layout: dict[str, Any]) -> tuple[int, int, int]:
    """Layouts that differ only in their ZeRO stage: ZeRO 3 adds traffic to ZeRO 2's compute and batch, so a
    search takes the lowest stage that fits, and ZeRO 2 beside a fitting ZeRO 1 (its reduce-scatter every
    micro-batch against ZeRO 1's once can cost less than the additions into whole gradients it saves, under
    training.grad_accumulation add). Pipeline depth is not such a difference: a deeper
    pipeline holds fewer layers per GPU, so less gradient traffic, and without a global batch runs more
    micro-batches a step (a larger batch over which the step's traffic and update are spread)."""
    return layout["tensor"], layout.get("expert_tensor") or layout["tensor"], layout["pipeline"]


def expert_degree(spec: Spec, layout: dict[str, Any], data: int) -> int:
    """The most expert ranks, up to MAX_EXPERT_DEGREE, that divide the experts and fold into the layout's."""
    moe = spec.model.moe
    if moe is None:
        return 1
    t, c, et = layout["tensor"], layout.get("context", 1), layout.get("expert_tensor")
    return max(e for e in range(1, min(moe.n_experts, MAX_EXPERT_DEGREE) + 1)
               if moe.n_experts % e == 0 and data % expert_data_step(t, c, e, et) == 0)


def replica(layout: dict[str, Any]) -> int:
    """GPUs of one data-parallel replica of a layout mapping."""
    return model_parallel(layout["tensor"], layout.get("context", 1), layout["pipeline"])


def variant(spec: Spec, gpu_key: str, count: int, layout: dict[str, Any], mfu: float | None = None,
            laid: ParallelismSpec | None = None) -> Spec:
    """The spec on `count` GPUs of a type with a layout (its section `laid`, where already made), timed at `mfu`
    where given (plan --mfu), else at the spec's hardware.mfu on its own GPU type. The layout divides the model
    by construction and the count is a multiple of the GPUs of one replica, so the copy skips validation."""
    hw = spec.hardware
    same = gpu_key == hw.gpu
    # one copy of the hardware section for every layout a search tries on it (inside memo.shared())
    hardware = memo.cached(("hardware", memo.token(hw), gpu_key, count, mfu), lambda: hw.model_copy(update={
        "gpu": gpu_key, "count": count, "mfu": timed_at(spec, gpu_key, mfu),
        "usd_per_gpu_hour": hw.usd_per_gpu_hour if same else None,
        "network_gbs": hw.network_gbs if same else None}))   # another GPU type is another cluster
    if laid is None:
        laid = section(spec, count, layout)
    return spec.model_copy(update={"hardware": hardware, "parallelism": laid})


def section(spec: Spec, count: int, layout: dict[str, Any]) -> ParallelismSpec:
    """The parallelism section of a layout mapping on `count` GPUs, its expert degree chosen (expert_degree)."""
    expert = layout["expert"] if "expert" in layout else expert_degree(spec, layout, count // replica(layout))
    return _section(tuple(layout.items()), tuple(map(type, layout.values())), expert)


def timed_at(spec: Spec, gpu_key: str, mfu: float | None = None) -> float | None:
    """The MFU a search's runs on a GPU type are timed at: `mfu` where given (plan --mfu), else the spec's
    hardware.mfu on its own GPU type (another type is another cluster); None: the step model."""
    return mfu if mfu is not None else spec.hardware.mfu if gpu_key == spec.hardware.gpu else None


def fits_batch(spec: Spec, layout: dict[str, Any], count: int) -> bool:
    """Whether a fixed global batch splits into whole micro-batches over the layout's data-parallel ranks."""
    t = spec.training
    gpus = replica(layout)
    if count % gpus:
        return False
    return t.global_batch_size is None or t.global_batch_size % (t.micro_batch_size * count // gpus) == 0


@functools.lru_cache(maxsize=1024)
def _section(fields: tuple[tuple[str, Any], ...], types: tuple[type, ...], expert: int) -> ParallelismSpec:
    """The validated section of a layout's (name, value) fields and its expert degree, over the data ranks left;
    a search builds the same few many times, and a frozen section can be shared. The values' types are in the
    key because True == 1 hashes alike."""
    return ParallelismSpec(**{**dict(fields), "data": "auto", "expert": expert})
