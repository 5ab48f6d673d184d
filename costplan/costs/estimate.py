"""A whole spec → Estimate: sum the components over the concrete layers, then memory, time and cost."""
from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

from costplan import scaling
from costplan.costs import ZERO, Cost, Shape, parallel
from costplan.costs.embedding import embedding, head
from costplan.costs.layers import layer_cost, stage_layers
from costplan.costs.memory import element_bytes, is_mixed, optimizer_bytes
from costplan.costs.norm import norm
from costplan.costs.result import Estimate, Flops, Memory, Number, Parallelism, Params, Time
from costplan.costs.time import SECONDS_PER_HOUR, gpu_hours, wall_clock_days
from costplan.spec import ModelSpec, Spec

# Tokens per parameter when a spec gives no training.tokens: the compute-optimal ratio of Hoffmann et al.
# 2022 (Table 3, "~20 tokens per parameter"), per parameter as the scaling law counts them (active ones for a
# mixture of experts, scaling.params_for_law), so the default and the scaling row agree.
DEFAULT_TOKENS_PER_PARAM = 20


def ratio(numerator: int, denominator: int) -> Number:
    """numerator / denominator, as an int when it divides exactly."""
    whole, rest = divmod(numerator, denominator)
    return whole if rest == 0 else numerator / denominator


def estimate(spec: Spec, law: str | scaling.ScalingLaw | None = None) -> Estimate:
    """Parameters, FLOPs, memory, time and cost of training the spec, and the loss `law` (a bundled name, a
    YAML file or constants; default epoch) predicts for it."""
    shape = shape_of(spec)
    parts = components(spec, shape)
    whole = sum(parts.values(), ZERO)
    t, hw, gpu = spec.training, spec.hardware, spec.gpu
    s = shape.seq_len

    active = whole.params - whole.inactive_params
    params = Params(
        total=whole.params,
        active=active,
        active_non_embedding=active - parts["embedding"].params,
        embedding=parts["embedding"].params,
        non_embedding=whole.params - parts["embedding"].params,
        by_component={key: c.params for key, c in parts.items()},
    )

    n, convention = scaling.params_for_law(params.total, params.active)
    tokens = t.tokens if t.tokens is not None else DEFAULT_TOKENS_PER_PARAM * n
    flops = Flops(
        forward_per_token=ratio(whole.flops, s),
        training_per_token=ratio(3 * whole.flops, s),
        hardware_per_token=ratio(whole.hw_flops, s),
        training_total=ratio(3 * whole.flops * tokens, s),
        by_component={key: ratio(c.flops, s) for key, c in parts.items()},
    )

    w = element_bytes(t.precision)
    stages = [parts] if spec.parallel.pipeline == 1 else [
        components(spec, shape, i, spec.parallel.pipeline) for i in range(spec.parallel.pipeline)]
    peak = gpu.peak_flops(t.precision)
    mfu = hw.mfu if hw.mfu is not None else gpu.mfu
    layout = parallel.split(spec, shape, stages, peak, mfu)
    stage = layout.memory
    memory = Memory(
        weights=stage.weights, gradients=stage.gradients, optimizer=stage.optimizer,
        activations=stage.activations, workspace=stage.workspace, total_per_gpu=stage.total,
        fits=stage.total <= gpu.memory_bytes,
        gpu_memory=gpu.memory_bytes, kv_cache_per_token=whole.kv_cache, kv_cache_at_seq_len=whole.kv_cache_seq,
    )

    price = hw.usd_per_gpu_hour if hw.usd_per_gpu_hour is not None else gpu.usd_per_gpu_hour
    steps = tokens / (spec.global_batch_size * s)
    if spec.parallelism is None:
        hours = gpu_hours(flops.training_total, peak, mfu)
    else:
        hours = steps * layout.step_seconds * hw.count / SECONDS_PER_HOUR
    time = Time(gpu_hours=hours, wall_clock_days=wall_clock_days(hours, hw.count), cost_usd=hours * price)

    law = law if isinstance(law, scaling.ScalingLaw) else scaling.resolve(law)
    predicted = scaling.predict(law, params.total, params.active, tokens)

    assumptions = {
        "tokens": tokens,
        "tokens_source": "training.tokens" if t.tokens is not None else
        f"{DEFAULT_TOKENS_PER_PARAM} tokens per {'active ' if convention == 'active' else ''}parameter "
        "(Hoffmann et al. 2022); set training.tokens",
        "tokens_per_param": tokens / whole.params,
        "seq_len": s,
        "micro_batch_size": t.micro_batch_size,
        "global_batch_size": spec.global_batch_size,
        "steps": steps,
        "precision": t.precision,
        "optimizer": t.optimizer,
        "recompute": t.recompute,
        "bytes_per_param": {
            "weights": w, "gradients": w, "optimizer": optimizer_bytes(t.precision, t.optimizer),
            "rule": ("16-bit weights and gradients, fp32 master copy and moments (ZeRO §3.1)"
                     if is_mixed(t.precision) else "fp32 weights, gradients and moments"),
        },
        "activation_element_bytes": shape.act_bytes,
        "attention_flops": "every key a query may see; no causal halving (PaLM, torchtitan, nanoGPT)",
        "gpu": gpu.key,
        "gpu_name": gpu.name,
        "gpu_count": hw.count,
        "peak_flops_per_gpu": peak,
        "mfu": mfu,
        "mfu_source": "hardware.mfu" if hw.mfu is not None else gpu.mfu_source,
        "usd_per_gpu_hour": price,
        "price_source": "hardware.usd_per_gpu_hour" if hw.usd_per_gpu_hour is not None else
        f"{gpu.price_source} ({gpu.price_date})",
    }
    if spec.parallelism is not None:
        assumptions["time_model"] = ("steps × (compute / MFU × (m + p − 1)/m + exposed communication); "
                                     + parallel.STEP_OVERLAPS)
        assumptions["network"] = gpu.network_source
    else:
        assumptions["time_model"] = "training FLOPs / (peak × MFU); communication inside the MFU"
    return Estimate(name=spec.name, params=params, flops=flops, memory=memory, time=time,
                    assumptions=assumptions, scaling=predicted, parallelism=_parallelism(spec, layout))


def _parallelism(spec: Spec, layout: parallel.Split) -> Parallelism | None:
    if spec.parallelism is None:
        return None
    par = spec.parallel
    return Parallelism(
        data=spec.data_parallel, tensor=par.tensor, pipeline=par.pipeline, expert=par.expert, zero=par.zero,
        sequence_parallel=par.sequence_parallel, micro_batches=spec.micro_batches,
        memory_stage=layout.memory.stage, communication_bytes=layout.communication,
        communication_seconds=layout.communication_seconds, bandwidth_bytes_per_s=layout.bandwidth,
        step_seconds={"compute": layout.compute_seconds, "bubble": layout.bubble_seconds,
                      "exposed_communication": layout.exposed_seconds, "total": layout.step_seconds},
        bubble_fraction=layout.bubble_seconds / layout.step_seconds,
        overlaps=parallel.STEP_OVERLAPS,
    )
