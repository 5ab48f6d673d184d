"""A whole spec → Estimate: sum the components over the concrete layers, then memory, time and cost."""
from __future__ import annotations

from collections import Counter

from costplan.costs import ZERO, Cost, Shape
from costplan.costs.embedding import embedding, head
from costplan.costs.layers import layer_cost, layers
from costplan.costs.memory import FP32, element_bytes, is_mixed, optimizer_bytes
from costplan.costs.norm import norm
from costplan.costs.result import Estimate, Flops, Memory, Number, Params, Time
from costplan.costs.time import gpu_hours, wall_clock_days
from costplan.spec import Spec

COMPONENTS = ("embedding", "attention", "mlp", "moe", "norms", "head")
# Tokens per parameter when a spec gives no training.tokens: the compute-optimal ratio of Hoffmann et al.
# 2022 (Table 3, "~20 tokens per parameter").
DEFAULT_TOKENS_PER_PARAM = 20


def shape_of(spec: Spec) -> Shape:
    t = spec.training
    return Shape(seq_len=spec.seq_len, act_bytes=element_bytes(t.precision), recompute=t.recompute)


def components(spec: Spec, shape: Shape | None = None) -> dict[str, Cost]:
    """Cost of one sequence by component, summed over every layer."""
    shape = shape or shape_of(spec)
    model = spec.model
    parts = {key: ZERO for key in COMPONENTS if key != "moe" or model.moe is not None}
    parts["embedding"] = embedding(model, shape)
    parts["head"] = head(model, shape)
    parts["norms"] = norm(model.norm, model.d_model, shape)  # the final norm
    if model.embedding_norm:
        parts["norms"] = parts["norms"] + norm(model.norm, model.d_model, shape)
    for layer, count in Counter(layers(model)).items():
        for key, cost in layer_cost(layer, model, shape).items():
            parts[key] = parts[key] + cost * count
    return parts


def ratio(numerator: int, denominator: int) -> Number:
    """numerator / denominator, as an int when it divides exactly."""
    whole, rest = divmod(numerator, denominator)
    return whole if rest == 0 else numerator / denominator


def estimate(spec: Spec) -> Estimate:
    """Parameters, FLOPs, memory, time and cost of training the spec."""
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

    tokens = t.tokens if t.tokens is not None else DEFAULT_TOKENS_PER_PARAM * whole.params
    flops = Flops(
        forward_per_token=ratio(whole.flops, s),
        training_per_token=ratio(3 * whole.flops, s),
        hardware_per_token=ratio(whole.hw_flops, s),
        training_total=ratio(3 * whole.flops * tokens, s),
        by_component={key: ratio(c.flops, s) for key, c in parts.items()},
    )

    w = element_bytes(t.precision)
    weights, gradients = whole.params * w, whole.params * w
    optimizer = whole.params * optimizer_bytes(t.precision, t.optimizer)
    if t.optimizer == "adafactor":
        optimizer += whole.factored * FP32
    activations = whole.activations * t.micro_batch_size + whole.shared_activations
    total = weights + gradients + optimizer + activations
    memory = Memory(
        weights=weights, gradients=gradients, optimizer=optimizer, activations=activations,
        total_per_gpu=total, fits=total <= gpu.memory_bytes, gpu_memory=gpu.memory_bytes,
        kv_cache_per_token=whole.kv_cache,
        kv_cache_at_seq_len=whole.kv_cache_seq,
    )

    peak = gpu.peak_flops(t.precision)
    mfu = hw.mfu if hw.mfu is not None else gpu.mfu
    price = hw.usd_per_gpu_hour if hw.usd_per_gpu_hour is not None else gpu.usd_per_gpu_hour
    hours = gpu_hours(flops.training_total, peak, mfu)
    time = Time(gpu_hours=hours, wall_clock_days=wall_clock_days(hours, hw.count), cost_usd=hours * price)

    assumptions = {
        "tokens": tokens,
        "tokens_source": "training.tokens" if t.tokens is not None else
        f"{DEFAULT_TOKENS_PER_PARAM} tokens per parameter (Hoffmann et al. 2022); set training.tokens",
        "tokens_per_param": tokens / whole.params,
        "seq_len": s,
        "micro_batch_size": t.micro_batch_size,
        "global_batch_size": spec.global_batch_size,
        "steps": tokens / (spec.global_batch_size * s),
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
    return Estimate(name=spec.name, params=params, flops=flops, memory=memory, time=time,
                    assumptions=assumptions)
