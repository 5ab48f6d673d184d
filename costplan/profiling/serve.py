"""Measure what serving a spec's reference model stores and computes, for `costplan profile --serve`.

At the spec's serving settings (serving.prompt_tokens P, output_tokens O, kv_cache, group_size), one sequence:
- the KV cache's bytes once it holds P + O − 1 tokens, its end (the last output token is never fed back;
  generate.py's cache, in the KV format's dtype);
- the prefill's matmul FLOPs (FlopCounterMode, with counters.py's formulas for the CPU flash kernel): the
  P-token prompt into an empty cache, logits for its last token only;
- one decode step's FLOPs at the context serve times a step at, P + (O − 2)/2 cached tokens (+ the new one);
- the bytes of every weight stored in each serving format (quantize.py).
These run on fake tensors (no memory, any size; MoE routing is balanced there, which does not change the
FLOPs of one token's top_k experts). Experts run dropless, as serving engines do (no capacity factor).

The decode step is also timed on real tensors at that context (median of DECODE_RUNS steps after warm-up;
each timed step appends a token and the cache is rewound after it), in fp32 on a CPU: without native bf16
matmuls a CPU runs bf16 decode compute-bound (measured ~3× slower than fp32 here), not at memory bandwidth.
Before each timed step, untimed by it, calibrate's matrix-vector products (calibrate_memory.WeightReads) are
timed once: the rate at which they read is the one the check divides the step's bytes by, so that the load of
a shared machine falls on the prediction and the measurement alike. The check (compare.py) adds the fixed cost
per kernel of hardware calibrated on this device, and compares only there.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from costplan.costs import Shape
from costplan.costs import serving as sizes
from costplan.costs.estimate import components
from costplan.costs.serving_ops import expected_experts
from costplan.loading import with_overrides
from costplan.profiling.calibrate_memory import WeightReads
from costplan.profiling.counters import EXTRA_FORMULAS
from costplan.profiling.generate import KV_DTYPES, Cache, decode_unsupported, new_cache
from costplan.profiling.measure import MEMORY_FRACTION, available_bytes, describe
from costplan.profiling.model import build_model
from costplan.profiling.private import fake_tensor_mode
from costplan.profiling.quantize import group_size_for, stored_bytes
from costplan.profiling.stages import Stages
from costplan.profiling.timing import Timing, time_steps
from costplan.spec import Spec

TIMED_DTYPES = {"cpu": torch.float32}        # elsewhere the training precision's dtype
# Decode steps timed: more than a training step's 10, for a median that a shared machine's load moves less (a
# step of the bench's copies takes 25-55 ms, so about 1.5 s of timing).
DECODE_RUNS = 30


@dataclass
class ServeMeasurement:
    spec: Spec                       # as served: training.seq_len = the prompt, dropless experts
    device: str
    device_name: str
    prompt: int
    output: int
    context: int                     # cached tokens when the decode step is counted and timed
    kv_format: str
    group_size: int                  # int4's, where serving.group_size does not divide every matrix
    weight_bytes: dict[str, int]
    unsupported: str = ""            # why the model cannot decode with a cache ('' when it can)
    kv_bytes: int | None = None      # one sequence's cache at its end, prompt + output − 1 tokens
    prefill_flops: int | None = None
    decode_flops: int | None = None
    timing: Timing | None = None
    read_rate: float | None = None   # bytes/s of calibrate's weight-read products, timed between the steps
    timed_spec: Spec | None = None
    time_overrides: list[str] = field(default_factory=list)
    timed_dtype: str = ""
    time_note: str = ""


def served(spec: Spec) -> Spec:
    """The spec as measured: one device, the prompt as training.seq_len (block patterns and tiles are laid out
    for it), experts dropless."""
    overrides = [f"training.seq_len={spec.serving.prompt_tokens}"]
    if spec.parallelism is not None:
        overrides.append("parallelism=null")
    if spec.model.moe is not None:
        overrides.append("model.moe.capacity_factor=null")
    return with_overrides(spec, overrides)


def _flops(run) -> int:  # noqa: ANN001
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    with counter:
        run()
    return counter.get_total_flops()


def fill(model: torch.nn.Module, cache: Cache, length: int, token: torch.Tensor) -> None:
    """Decode `token` until the cache holds `length` tokens."""
    while cache.length < length:
        model(token, cache)


def measure_serve(spec: Spec, device: torch.device, *, time: bool = True,
                  time_overrides: list[str] | None = None,
                  progress: Callable[[str], None] | None = None) -> ServeMeasurement:
    """Every serving measurement of `spec` (see the module docstring); `progress` is told each stage as it
    starts."""
    spec = served(spec)
    s = spec.serving
    prompt, output = s.prompt_tokens, s.output_tokens
    context = sizes.decode_cached(prompt, output)     # as serve times a step
    stage = Stages(spec.name, progress)
    stage("weight bytes by format, prefill and decode FLOPs, the KV cache (fake tensors)")
    with fake_tensor_mode(), torch.no_grad():
        model = build_model(spec)
        preferred = s.group_size or 128
        group = group_size_for(model, preferred)
        result = ServeMeasurement(
            spec=spec, device=device.type, device_name=describe(device), prompt=prompt, output=output,
            context=context, kv_format=s.kv_cache, group_size=group,
            weight_bytes={fmt: stored_bytes(model, fmt, group) for fmt in sizes.WEIGHT_FORMATS},
            unsupported=decode_unsupported(spec))
        if result.unsupported:
            result.time_note = result.unsupported
            stage.done()
            return result
        # room for the counted step's token at the context, which one or two output tokens never reach
        cache = new_cache(spec, prompt + output, dtype=KV_DTYPES[s.kv_cache])
        ids = torch.zeros(1, prompt, dtype=torch.long)
        result.prefill_flops = _flops(lambda: model(ids, cache))
        token = ids[:, :1]
        fill(model, cache, context, token)
        result.decode_flops = _flops(lambda: model(token, cache))
        end = sizes.cached_tokens(prompt, output)      # what a generation's cache holds after its last step
        cache = new_cache(spec, end, dtype=KV_DTYPES[s.kv_cache])
        model(ids, cache)
        fill(model, cache, end, token)
        result.kv_bytes = cache.nbytes
    if time:
        stage(f"decode step time at context {context}")
        _time(result, device, time_overrides or [])
    else:
        result.time_note = "not measured (--no-time)"
    stage.done()
    return result


def _time(result: ServeMeasurement, device: torch.device, overrides: list[str]) -> None:
    """Median decode step at result.context on real tensors (a copy changed by `overrides` if given)."""
    timed = with_overrides(result.spec, overrides) if overrides else result.spec
    dtype = TIMED_DTYPES.get(device.type)
    element = 4 if dtype == torch.float32 else None
    weights = sizes.weight_bytes(timed) * (element or 2) // sizes.SIXTEEN_BIT
    if weights * 1.5 > available_bytes(device) * MEMORY_FRACTION:
        result.time_note = "not measured: the weights do not fit this machine; choose a copy with --time-set"
        return
    model = build_model(timed, device=device, dtype=dtype)
    cache = new_cache(timed, result.context + 1, dtype=next(model.parameters()).dtype, device=device)
    ids = torch.zeros(1, timed.serving.prompt_tokens, dtype=torch.long, device=device)
    token = ids[:, :1]

    @torch.no_grad()
    def step() -> None:
        model(token, cache)
        cache.rewind(result.context)

    reads, read_seconds = WeightReads(device), []
    with torch.no_grad():
        model(ids, cache)
        fill(model, cache, result.context, token)
        result.timing = time_steps(step, device, DECODE_RUNS, between=lambda: read_seconds.append(reads.seconds()))
    result.read_rate = reads.bytes / statistics.median(read_seconds)
    result.timed_spec, result.time_overrides = timed, overrides
    result.timed_dtype = str(next(model.parameters()).dtype).removeprefix("torch.")


def decode_bytes_read(spec: Spec, context: int, element_bytes: int) -> int:
    """Bytes one decode step of one sequence reads, every tensor at `element_bytes` per element: the weights
    (costs/inference.py's roofline: the routed experts one token touches), less the input embedding table of
    which a step reads one row (a tied table is read whole, by the head), and the cache of `context` tokens and
    the new one (a chunked layer's chunk so far)."""
    m = spec.model
    parts = components(spec, Shape(1, sizes.SIXTEEN_BIT))
    params = sum(c.params for c in parts.values())
    if m.moe is not None:
        routed = sum(c.routed_params for c in parts.values())
        params -= round(routed * (1 - expected_experts(m.moe.n_experts, m.moe.top_k, 1) / m.moe.n_experts))
    table = parts["embedding"].params
    rows = (m.vocab_size * m.d_model if m.tie_embeddings else m.d_model) + (
        m.d_model if m.position == "learned" else 0)
    # a chunked layer reads its new token's chunk so far, not a whole chunk
    read = sizes.kv_cache_bytes(spec, context + 1) + sizes.chunk_decode(spec, range(context, context + 1), context)[0]
    cache = round(read) // sizes.KV_ELEMENT_BYTES["bf16"]
    return (params - table + rows + cache) * element_bytes


def serve_record(spec: Spec, device: torch.device, tolerances, *, time: bool,  # noqa: ANN001
                 time_overrides: list[str], progress: Callable[[str], None] | None = None) -> dict:
    """The spec's record for tables.checks."""
    from costplan.profiling.compare import serve_checks

    m = measure_serve(spec, device, time=time, time_overrides=time_overrides or None, progress=progress)
    timing = None if m.timing is None else {
        "median_s": m.timing.median, "min_s": m.timing.minimum, "max_s": m.timing.maximum,
        "iqr_s": m.timing.iqr, "runs": m.timing.runs, "timed_with": m.time_overrides}
    return {
        "name": m.spec.name, "device": m.device, "device_name": m.device_name, "batch": 1,
        "seq_len": m.prompt + m.output, "precision": m.timed_dtype or None, "recompute": None,
        "title": (f"{m.spec.name}: serving estimate vs {m.device} ({m.device_name}), one sequence: "
                  f"{m.prompt}-token prompt, {m.output} output tokens, KV cache {m.kv_format}"
                  + (f", decode timed in {m.timed_dtype}" if m.timed_dtype else "")),
        "timing": timing, "checks": serve_checks(m, tolerances),
        "arithmetic_not_counted": {}, "fvcore_unsupported": {},
    }
