"""A whole spec → Estimate: sum the components over the concrete layers, resolve the run (device, layout,
price), then memory, step time and cost, in that order."""
from __future__ import annotations

import math

from costplan import scaling
from costplan.costs import ZERO, Cost, Shape, accuracy, memo, parallel
from costplan.costs.components import COMPONENTS, components, shape_of, shared_components  # noqa: F401 - API
from costplan.costs.layers import pipeline_stages, stage_count
from costplan.costs.memory import gradient_bytes, is_mixed, optimizer_bytes, weight_bytes
from costplan.costs.result import Assumptions, Estimate, Flops, Memory, Number, Parallelism, Params, Time
from costplan.costs.run import Run, fits, memories_of, resolve, step_time
from costplan.costs.step import StepTime
from costplan.costs.time import SECONDS_PER_HOUR, wall_clock_days
from costplan.costs.traffic import expert_overlapped
from costplan.records import Record
from costplan.scaling import Scaling
from costplan.hardware import GPU
from costplan.spec import Spec, TrainingSpec

# Tokens per parameter when a spec gives no training.tokens: the compute-optimal ratio of Hoffmann et al.
# 2022 (Table 3, "~20 tokens per parameter"), per parameter as the scaling law counts them (active ones for a
# mixture of experts, scaling.params_for_law), so the default and the scaling row agree.
DEFAULT_TOKENS_PER_PARAM = 20
# Where an estimate's batch comes from (assumptions.global_batch_source): the spec, or, without
# training.global_batch_size, the layout (spec.Spec.global_batch_size)
SPEC_BATCH = "training.global_batch_size"
OPEN_BATCH = "micro_batch_size × micro-batches × data ranks: no training.global_batch_size"
# The largest batch of a published training run we know of: DeepSeek-V3's 15,360 sequences of 4,096 tokens
# (DeepSeek-V3 Technical Report, 2024, §4.2). An open batch grows with the data ranks; past this, no one trains so.
LARGEST_PUBLISHED_BATCH = 15_360 * 4_096


def oversized_batch(a) -> int | None:  # noqa: ANN001 - Assumptions
    """The tokens a step of an open batch takes where they pass LARGEST_PUBLISHED_BATCH; None otherwise (a batch
    the spec fixes is its author's)."""
    tokens = a.global_batch_size * a.seq_len
    return tokens if a.global_batch_source == OPEN_BATCH and tokens > LARGEST_PUBLISHED_BATCH else None


def ratio(numerator: int, denominator: int) -> Number:
    """numerator / denominator, as an int when it divides exactly."""
    whole, rest = divmod(numerator, denominator)
    return whole if rest == 0 else numerator / denominator


def estimate(spec: Spec, law: str | scaling.ScalingLaw | None = None) -> Estimate:
    """Parameters, FLOPs, memory, time and cost of training the spec, and the loss `law` (a bundled name, a
    YAML file or constants; default epoch) predicts for it. One estimate computes each component cost and
    layer time once, whether for the layout search, the memory of the stages or the step."""
    if not isinstance(spec, Spec):
        raise TypeError(f"estimate() takes a Spec, not {type(spec).__name__}: costplan.load_spec(...) reads a "
                        "preset, a file, a Hugging Face config or a mapping into one")
    with shared_components():
        return _estimate(spec, law)


def estimate_sized(spec: Spec, memories: list[parallel.StageMemory],
                   law: str | scaling.ScalingLaw | None = None) -> Estimate:
    """estimate() of a spec with a parallelism section whose stages' memories (memories_of) the caller has sized
    already: a sweep sizes a point on its held layout before it estimates it there."""
    with shared_components():
        return _estimate(spec, law, memories)


def trained_tokens(spec: Spec, total: int, active: int) -> tuple[float, str]:
    """The tokens the spec trains on, and where that figure came from."""
    if spec.training.tokens is not None:
        return spec.training.tokens, "training.tokens"
    n, convention = scaling.params_for_law(total, active)
    return DEFAULT_TOKENS_PER_PARAM * n, (f"{DEFAULT_TOKENS_PER_PARAM} tokens per "
                                          f"{'active ' if convention == 'active' else ''}parameter "
                                          "(Hoffmann et al. 2022); set training.tokens")


class LawPoint(Record):
    """What a scaling law makes of a spec: its tokens (and their source) and the predicted loss. No layout,
    memory or time is resolved for it, so no GPU, GPU count or batch bears on it."""

    name: str
    tokens: float
    tokens_source: str
    config_defaults: list[str]
    config_left_out: list[str]
    scaling: Scaling


def whole_model(spec: Spec) -> Cost:
    """The model's cost for one sequence, its components summed."""
    return sum(components(spec, shape_of(spec)).values(), ZERO)


def _hardware_flops(spec: Spec, shape: Shape, whole: Cost) -> int:
    """One sequence's hardware FLOPs on a laid-out spec: the whole model's, or under training.recompute_layers
    with a pipeline the stages' own, each recomputing its first N layers (layers.recompute_groups), summed."""
    stages = pipeline_stages(spec)
    if shape.recompute_layers is None or stage_count(stages) == 1:
        return whole.hw_flops
    return sum(c.hw_flops for stage in range(stage_count(stages)) for c in components(spec, shape, stage,
                                                                                      stages).values())


def peak_stage(spec: Spec) -> parallel.StageMemory:
    """The memory of the stage that peaks highest, for a spec on one GPU or with its parallelism section: what
    estimate() reports, without the time model (which a spec on hardware with no peak at its precision, such as a
    calibration without an fp8 rate, cannot run)."""
    return parallel.fullest(memories_of(spec, shape_of(spec)))


def law_point(spec: Spec, law: str | scaling.ScalingLaw | None = None) -> LawPoint:
    whole = whole_model(spec)
    tokens, source = trained_tokens(spec, whole.params, whole.active_params)
    law = law if isinstance(law, scaling.ScalingLaw) else scaling.resolve(law)
    return LawPoint(name=spec.name, tokens=tokens, tokens_source=source, config_defaults=list(spec.config_defaults),
                    config_left_out=list(spec.config_left_out),
                    scaling=scaling.predict(law, whole.params, whole.active_params, tokens))


def _estimate(spec: Spec, law: str | scaling.ScalingLaw | None,
              sized: list[parallel.StageMemory] | None = None) -> Estimate:
    shape = shape_of(spec)
    parts = components(spec, shape)
    # the same for every point of a sweep with this model (shared_components())
    whole = memo.cached(("whole", memo.token(spec.model), memo.token(shape)), lambda: sum(parts.values(), ZERO))
    t, hw, gpu = spec.training, spec.hardware, spec.gpu
    s = shape.seq_len

    active = whole.active_params
    params = Params(
        total=whole.params,
        active=active,
        active_non_embedding=active - parts["embedding"].params,
        embedding=parts["embedding"].params,
        non_embedding=whole.params - parts["embedding"].params,
        by_component={key: c.params for key, c in parts.items()},
    )

    tokens, tokens_source = trained_tokens(spec, params.total, params.active)
    seq_len_source = "model.max_seq_len" if spec.seq_len_defaulted else "training.seq_len"
    config_defaults, left_out = spec.config_defaults, spec.config_left_out
    run = resolve(spec)
    spec = run.spec
    hw_flops = _hardware_flops(spec, shape, whole)
    flops = Flops(
        forward_per_token=ratio(whole.flops, s),
        training_per_token=ratio(3 * whole.flops, s),
        hardware_per_token=ratio(hw_flops, s),
        training_total=ratio(3 * whole.flops * tokens, s),
        by_component={key: ratio(c.flops, s) for key, c in parts.items()},
    )
    memories = run.memories or sized or memories_of(spec, shape)
    stage = parallel.fullest(memories)
    memory = Memory(
        weights=stage.weights, fp8_weights=stage.fp8_weights, gradients=stage.gradients, optimizer=stage.optimizer,
        activations=stage.activations, workspace=stage.workspace,
        tied_gradients=stage.tied_gradients, update=stage.update, gathered_root=stage.gathered_root,
        gathered_layers=stage.gathered_layers,
        total_per_gpu=stage.total, peak_at=stage.peak_at, fits=fits(memories, gpu.memory_bytes),
        gpu_memory=gpu.memory_bytes, gpu_memory_stated=gpu.stated_memory_bytes,
        kv_cache_per_token=whole.kv_cache, kv_cache_at_seq_len=whole.kv_cache_seq,
    )

    batch = spec.global_batch_size
    steps = tokens / (batch * s)
    stepped = step_time(run, shape, memories, 3 * whole.flops * batch)
    per_gpu_second = stepped.seconds * hw.count
    hours = steps * per_gpu_second / SECONDS_PER_HOUR     # the tokens' share: a last partial step costs its part
    time = Time(
        gpu_hours=hours, wall_clock_days=wall_clock_days(hours, hw.count), cost_usd=hours * run.price,
        step_seconds=stepped.seconds, tokens_per_second_per_gpu=batch * s / per_gpu_second,
        mfu=3 * whole.flops * batch / per_gpu_second / run.peak,
        hfu=hw_flops * batch / per_gpu_second / run.peak,
        breakdown=stepped.breakdown,
        caveats=accuracy.misses(spec.model.moe is not None, spec.parallel.context, s)
        if run.time_model == "step model" else [],
    )

    law = law if isinstance(law, scaling.ScalingLaw) else scaling.resolve(law)
    # the same for every point of a sweep that trains the same model on as many tokens
    predicted = memo.cached(("scaling", memo.token(law), params.total, params.active, tokens),
                            lambda: scaling.predict(law, params.total, params.active, tokens))
    w = weight_bytes(t.precision, t.autocast)
    assumptions = Assumptions(
        tokens=tokens,
        tokens_source=tokens_source,
        tokens_per_param=tokens / whole.params,
        seq_len=s, seq_len_source=seq_len_source, config_defaults=list(config_defaults),
        config_left_out=list(left_out), micro_batch_size=t.micro_batch_size,
        global_batch_size=batch,
        global_batch_source=SPEC_BATCH if t.global_batch_size is not None else OPEN_BATCH,
        steps=math.ceil(steps),
        precision=t.precision,
        optimizer=t.optimizer,
        recompute=t.recompute,
        recompute_layers=t.recompute_layers,
        fusion=t.fusion,
        fused_kernels=list(shape.fused_kernels),
        loss_kernel=shape.loss(),
        grad_accumulation=t.grad_accumulation,
        fp8_saved_inputs=t.fp8_saved_inputs,
        fp8_weight_cache=t.fp8_weight_cache,
        bytes_per_param={
            "weights": w, "gradients": gradient_bytes(t.precision, t.autocast, t.fp32_gradients),
            "optimizer": optimizer_bytes(t.precision, t.optimizer, t.autocast),
            "rule": bytes_rule(t.precision, t.optimizer, t.autocast, t.fp32_gradients),
        },
        activation_element_bytes=shape.act_bytes,
        attention_flops="every key a query may see; no causal halving (PaLM, torchtitan, nanoGPT)",
        gpu=gpu.key,
        gpu_name=gpu.name,
        gpu_count=hw.count,
        peak_flops_per_gpu=run.peak,
        time_model=run.time_model,
        mfu_override=run.mfu,
        kernel_tables=_tables_source(run) if run.mfu is None else None,
        sustained_share=_sustained_share(run),
        layout=run.layout_source,
        overlaps=stepped.overlaps,
        network=gpu.network_source,
        usd_per_gpu_hour=run.price,
        price_source=run.price_source,
    )
    return Estimate(name=spec.name, params=params, flops=flops, memory=memory, time=time,
                    assumptions=assumptions, scaling=predicted,
                    parallelism=_parallelism(spec, stage, stepped, run.layout_source))


# What each optimizer keeps beside the weights, in words (memory.MOMENTS counts them).
OPTIMIZER_STATES = {"adamw": "two moments", "adam": "two moments", "sgd": "no state", "sgd_momentum": "a momentum",
                    "lion": "a momentum", "adafactor": "factored moments"}


def bytes_rule(precision: str, optimizer: str, autocast: bool, fp32_gradients: bool) -> str:
    """The bytes-per-parameter rule in words, with the optimizer's own state."""
    states = OPTIMIZER_STATES[optimizer]
    if autocast:
        return f"fp32 weights and gradients, {states}; 16-bit copies cast per matmul (autocast)"
    if is_mixed(precision) and fp32_gradients:
        return f"16-bit weights, fp32 gradients and master copy, {states} (Megatron's main_grad)"
    if is_mixed(precision):
        return f"16-bit weights and gradients, fp32 master copy, {states} (ZeRO §3.1)"
    return f"fp32 weights and gradients, {states}"


def kernel_lenders(gpu: GPU, training: TrainingSpec) -> dict[str, str]:
    """The devices whose kernel curves a step at `training`'s precision and attention kernel runs on this GPU,
    by part (kernels.Curves.lenders); empty on its own curves or a hardware file's own tables."""
    curves = gpu.curves() if gpu.kernels is None else None
    return curves.lenders(training.precision, training.attention_kernel) if curves is not None else {}


def _tables_source(run: Run) -> str:
    gpu = run.gpu
    if gpu.kernels is not None:
        return f"the hardware file's kernels ({gpu.calibrated_on or gpu.key})"
    lenders = kernel_lenders(gpu, run.spec.training)
    # a device without kernel benchmarks of its own runs another's curves: say so where the time is printed
    if not lenders:
        return f"data/kernels.yaml, {gpu.key}"
    what = "kernel" if len(lenders) == 2 else next(iter(lenders))
    lead = (f"assumed from {lenders['GEMM']}'s" if len(lenders) == 2 and len(set(lenders.values())) == 1 else
            " and ".join(f"its {part} curves assumed from {lender}'s" for part, lender in lenders.items()))
    return f"data/kernels.yaml, {gpu.key}, {lead}: no {what} benchmark of this device was read"


def _sustained_share(run: Run) -> float | None:
    """The share of their burst rates at which the step model ran the device's burst-timed kernel curves."""
    curves = run.gpu.curves() if run.mfu is None else None
    return curves.burst_share() if curves is not None else None


def _parallelism(spec: Spec, stage: parallel.StageMemory, stepped: StepTime, source: str) -> Parallelism:
    par = spec.parallel
    bubble = stepped.breakdown.get("bubble", 0.0)
    return Parallelism(
        data=spec.data_parallel, tensor=par.tensor, pipeline=par.pipeline, context=par.context,
        virtual_stages=par.virtual_stages, expert=par.expert, expert_tensor=par.expert_tensor_degree, zero=par.zero,
        sequence_parallel=par.sequence_parallel, tensor_overlap=par.tensor_overlap,
        pipeline_overlap=par.pipeline_overlap, expert_overlap=expert_overlapped(spec),
        per_parameter_sharding=par.per_parameter_sharding,
        micro_batches=spec.micro_batches, memory_stage=stage.stage,
        communication_bytes=stepped.communication_bytes, communication_seconds=stepped.communication_seconds,
        bubble_fraction=bubble / stepped.seconds if stepped.seconds else 0.0,
        source=source, overlaps=stepped.overlaps,
    )
