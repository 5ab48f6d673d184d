"""Tables of `costplan serve`, `compare --serving` and `sweep --serving`: the rows of one serving estimate and
the assumptions listed under them, and the serving metrics added to compare's and sweep's tables."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from costplan.costs.serving_result import NO_DECODE, request_usd
from costplan.report import (Block, LazyRows, Row, Table, capacity, flatten, flops_rate, human, number, percent,
                             plural, sectioned, seconds, size, usd)
from costplan.spec import ServingSpec
from costplan.validation import MAX_COUNT
from costplan.tables.estimate import SWEEP_UNITS, compared, cell, side_by_side, varied_cells

if TYPE_CHECKING:
    from costplan.costs.serving_result import ServingEstimate
    from costplan.costs.result import Estimate
    from costplan.sweep import Point


def serve_title(est: ServingEstimate) -> str:
    a = est.assumptions
    replicas = f"{a.replicas} replica{'s' if a.replicas != 1 else ''} of {a.tensor}"
    # 16-bit formats as the device runs them (fp16 on a V100)
    sixteen = a.sixteen_bit if a.sixteen_bit == "fp16" else "bf16"
    weights, kv_cache = (sixteen if f == "bf16" else f for f in (a.weights, a.kv_cache))
    return (f"{est.name}: {weights} weights, {kv_cache} KV cache, prompt {a.prompt_tokens} + output "
            f"{a.output_tokens} tokens on {a.gpus} × {a.gpu} ({replicas})")


def serve_rows(est: ServingEstimate) -> list[Row]:
    m, lat, thr, c, a = est.memory, est.latency, est.throughput, est.cost, est.assumptions
    decoding = lat.decode_bound != NO_DECODE      # one output token, the prefill's, runs no decode step
    copies = a.tensor // a.kv_cache_split
    cache_split = "whole on every GPU" if a.kv_cache_split == 1 and a.tensor > 1 else (
        f"split over {a.kv_cache_split} GPUs" if a.kv_cache_split > 1 else "")
    if a.kv_cache_split > 1 and copies > 1:
        cache_split += f", each part on {copies} (KV heads copied)"
    if m.kv_cache_per_sequence < m.kv_cache_per_token * m.kv_cache_tokens:
        cache_split = ", ".join(filter(None, ["less than per token × tokens: windows and recurrent states cap it",
                                              cache_split]))
    rows = [
        Row("memory", "weights", m.weights_per_gpu, "bytes", m.weights_per_gpu / m.gpu_memory,
            note=f"{size(m.weights)} in all over {a.tensor} GPUs" if a.tensor > 1 else ""),
        Row("memory", "KV cache per token", m.kv_cache_per_token, "bytes", note="whole model"),
        Row("memory", f"KV cache per sequence ({m.kv_cache_tokens} tokens)",
            m.kv_cache_per_sequence, "bytes", note=cache_split),
        Row("memory", f"KV cache, batch {thr.batch}", thr.batch * m.kv_cache_per_sequence_per_gpu, "bytes",
            thr.batch * m.kv_cache_per_sequence_per_gpu / m.gpu_memory, note="per GPU"),
        Row("memory", "reserve", m.reserve, "bytes", m.reserve / m.gpu_memory,
            note="activations, CUDA graphs, allocator"),
        Row("memory", "total per GPU", m.total_per_gpu, "bytes", m.total_per_gpu / m.gpu_memory,
            note=f"of {capacity(m.gpu_memory, m.gpu_memory_stated)}"),
        Row("memory", "max batch", m.max_batch, "whole", note="sequences that fit" + (
            f", at most serving.batch's limit ({MAX_COUNT:,})" if m.max_batch == MAX_COUNT else "")),
        Row("latency", "time to first token", lat.ttft_seconds, "seconds", note=f"{lat.prefill_bound}-bound prefill"),
        Row("latency", "time per output token", lat.tpot_seconds, "seconds",
            note=f"{lat.decode_bound}-bound decode at batch {thr.batch}, context {a.decode_context}" if decoding
            else "no decode step: the one output token is the prefill's"),
        Row("latency", "  under load", lat.tpot_under_load_seconds, "seconds",
            note="with the prefill passes a busy replica runs between steps" + (
                " (what --tpot-ms is held to)" if "tpot_ms" in a.latency_targets else "") if decoding else ""),
        Row("throughput", "batch", thr.batch, "whole", note=a.batch_rule),
        Row("throughput", "output tokens/s per GPU", thr.tokens_per_second_per_gpu, "count"),
        Row("throughput", "requests/s", thr.requests_per_second, "count",
            note=f"on {plural(str(a.gpus), 'GPU')} (serving.gpus, --gpus)"),
        # dollars as plain digits: a fraction of a cent per million tokens still matters at scale
        Row("cost", "$ per million input tokens", c.usd_per_million_input_tokens, "dollars",
            note="prefill GPU-time / prompt tokens"),
        Row("cost", "$ per million output tokens", c.usd_per_million_output_tokens, "dollars",
            note="decode GPU-time / output tokens" if decoding
            else "no decode step: the output token is the prefill's, priced with the input"),
    ]
    if c.gpus_for_rate is not None:
        rows.append(Row("cost", "GPUs for the target rate", c.gpus_for_rate, "whole",
                        note=f"whole replicas of {a.tensor}"))
    return rows


def assumption_lines(est: ServingEstimate) -> list[str]:
    """What the numbers rest on, one line each, for people (the JSON has the same as typed fields)."""
    a = est.assumptions
    e = a.efficiencies
    chunked = "; chunked layers' cache reads and attention averaged over the steps"
    decode = (f"decode step timed at context {a.decode_context}, the decode steps' mean cached tokens (prompt + "
              f"(output − 2)/2{chunked if a.decode_chunks_averaged else ''})"
              if est.latency.decode_bound != NO_DECODE
              else "no decode step (one output token, the prefill's)")
    lines = [
        f"{a.gpu_name}: {flops_rate(a.peak_flops_per_gpu)} dense {a.compute_precision}, "
        f"{human(a.memory_bandwidth_bytes_per_s / 1e9, 'number')} GB/s HBM"
        + (f", {human(a.link_bytes_per_s / 1e9, 'number')} GB/s per direction between the {a.tensor} GPUs"
           if a.link_bytes_per_s else ""),
        f"kernel efficiencies ({a.efficiency_device} in data/kernels.yaml): HBM {percent(e['memory'].value)}, "
        + (f"GEMM by size ({a.gpu}'s {a.compute_precision} curve)" if a.gemm_curve
           else f"GEMM {percent(e['matmul'].value)}")
        + f", attention {percent(e['attention'].value)}"
        + (f", {a.weights} weights HBM {percent(e['weight_memory'].value)}"
           if e["weight_memory"] != e["memory"] else "")
        + (f", all-reduce bus {percent(e['allreduce_bus'].value)} + "
           f"{seconds(e['allreduce_latency'].value * 1e-6)} each"
           + (f" ({a.latency_device}'s)" if a.latency_device != a.efficiency_device else "") if a.tensor > 1 else ""),
        f"quantized: {a.quantized}",
        f"memory: {percent(a.reserve_fraction)} of each GPU reserved; the cache of each sequence held at its end, "
        f"prompt + output − 1 tokens (the last output token is never fed back)",
        decode + "; TTFT is one prompt's prefill "
        f"alone; a busy replica prefills {a.prefill_prompts_per_pass} prompt"
        f"{'s' if a.prefill_prompts_per_pass != 1 else ''} a pass (serving.prefill_tokens); a request costs its "
        "share of a pass plus (output − 1) × step / batch of its replica's time (the prefill gives the first "
        "output token)",
    ]
    if a.moe_experts_read_per_step is not None:
        lines.append(f"MoE: {human(a.moe_experts_read_per_step, 'number')} routed experts per layer read per "
                     "decode step (uniform routing)")
    lines += [f"price: {usd(est.cost.usd_per_gpu_hour)} per GPU-hour: {a.price_source}",
              f"not modelled: {a.not_modelled}"]
    return lines


def cheaper_note(est: ServingEstimate, other: ServingEstimate) -> str:
    """A warning that a larger tensor degree than the automatic one serves a request for less."""
    a, b = est.assumptions, other.assumptions
    return (f"{est.name}: --tensor {b.tensor} serves a request for {percent(request_usd(other) / request_usd(est))} "
            f"of its cost on {plural(str(a.tensor), 'GPU')} per replica, the fewest that hold "
            f"{'the batch asked for' if a.batch_rule == 'serving.batch' else 'the model and one sequence'}: batch "
            f"{other.throughput.batch:,} against {est.throughput.batch:,}, "
            f"{human(other.throughput.tokens_per_second_per_gpu, 'tokens/s')} output tokens/s per GPU against "
            f"{human(est.throughput.tokens_per_second_per_gpu, 'tokens/s')}, "
            f"${number(other.cost.usd_per_million_output_tokens)} per million output tokens against "
            f"${number(est.cost.usd_per_million_output_tokens)}")


def problem(est: ServingEstimate, label: str) -> str | None:
    """Why the estimate cannot be served as asked, for an Error line naming `label` (the spec's file,
    Spec.label); None when it can."""
    m, a, thr = est.memory, est.assumptions, est.throughput
    if m.max_batch < 1:
        split = f", with a --gpus it divides; {a.gpus} GPUs split into replicas of {a.tensor}" if a.replicas > 1 else ""
        # a reserve raised above the default, which would have let a sequence in, is the first thing to undo
        default = ServingSpec.model_fields["reserve"].default
        raised = a.reserve_fraction > default and (m.weights_per_gpu + m.kv_cache_per_sequence_per_gpu
                                                   + default * m.gpu_memory <= m.gpu_memory)
        smaller = f"a smaller serving.reserve ({percent(a.reserve_fraction)}), " if raised else ""
        more = (f"a smaller --group-size, or null (each GPU's share of a matrix would cut an int4 group of "
                f"{a.group_size} at --tensor {', '.join(map(str, a.tensor_skipped))})" if a.tensor_skipped else
                f"more GPUs per replica (--tensor{split})")
        return (f"{label}: {size(m.weights_per_gpu)} of weights per GPU, {size(m.reserve)} reserve and one "
                f"{size(m.kv_cache_per_sequence_per_gpu)} sequence do not fit in {a.gpu}'s "
                f"{capacity(m.gpu_memory, m.gpu_memory_stated)} "
                f"with {plural(str(a.tensor), 'GPU')} per replica; use {smaller}{more}, a larger --gpu "
                "or smaller --weights")
    if not est.fits:
        fp8 = " or an fp8 --kv-cache" if a.kv_cache != "fp8" else ""
        return (f"{label}: serving.batch: {thr.batch} sequences need {size(m.total_per_gpu)} per GPU; at most "
                f"{m.max_batch} fit in {capacity(m.gpu_memory, m.gpu_memory_stated)} with "
                f"{plural(str(a.tensor), 'GPU')} per "
                f"replica; give a smaller --batch, or use more GPUs per replica (--tensor), a larger --gpu, smaller "
                f"--weights{fp8}")
    if not est.meets_targets:
        targets, lat = a.latency_targets, est.latency
        missed = []
        if "tpot_ms" in targets and (lat.tpot_under_load_seconds or 0.0) > targets["tpot_ms"] / 1000:
            missed.append(f"time per output token under load {seconds(lat.tpot_under_load_seconds)} at batch "
                          f"{thr.batch} (target {seconds(targets['tpot_ms'] / 1000)})")
        if "ttft_ms" in targets and lat.ttft_seconds > targets["ttft_ms"] / 1000:
            missed.append(f"time to first token {seconds(lat.ttft_seconds)}, one prompt alone (target "
                          f"{seconds(targets['ttft_ms'] / 1000)})")
        return (f"{label}: {'; '.join(missed)}; more GPUs per replica (--tensor), a faster --gpu or smaller "
                f"--weights would shorten it")
    return None


def _without_efficiencies(data: dict) -> dict:
    """A serve estimate's JSON without its assumptions' efficiency sources (a CSV row's columns)."""
    return {**data, "assumptions": {k: v for k, v in data["assumptions"].items() if k != "efficiencies"}}


def serving(estimates: Sequence[ServingEstimate]) -> Table:
    """`costplan serve`: a sectioned block per spec with its assumptions under it; JSON the estimates, CSV
    without the efficiency sources."""
    blocks = [sectioned(serve_rows(e), serve_title(e)).model_copy(update={
                  "footer": "Assumptions:\n" + "\n".join("- " + line for line in assumption_lines(e))})
              for e in estimates]
    return Table(blocks, [e.model_dump() for e in estimates],
                 flat=[flatten(_without_efficiencies(e.model_dump())) for e in estimates])


# (label, unit, value of a ServingEstimate) added to the rows of `costplan compare --serving`
SERVING_COMPARED = [
    ("GPUs per replica (serving)", "whole", lambda s: s.assumptions.tensor),
    ("KV cache per sequence (serving)", "bytes", lambda s: s.memory.kv_cache_per_sequence),
    ("max batch (serving)", "whole", lambda s: s.memory.max_batch),
    # what `serve` refuses with an error is a row here: a batch that does not fit leaves every figure below "—"
    ("batch fits (serving)", "flag", lambda s: s.fits),
    ("meets serving targets", "flag", lambda s: s.meets_targets),
    ("time to first token", "seconds", lambda s: s.latency.ttft_seconds),
    ("time per output token", "seconds", lambda s: s.latency.tpot_seconds),
    ("time per output token under load", "seconds", lambda s: s.latency.tpot_under_load_seconds),
    ("output tokens/s per GPU", "tokens/s", lambda s: s.throughput.tokens_per_second_per_gpu),
    ("$ per million input tokens", "dollars", lambda s: s.cost.usd_per_million_input_tokens),
    ("$ per million output tokens", "dollars", lambda s: s.cost.usd_per_million_output_tokens),
]
SERVING_UNITS = {"serving_gpus_per_replica": "whole", "kv_cache_per_sequence": "bytes", "max_batch": "whole",
                 "serving_fits": "flag",
                 "meets_targets": "flag", "ttft_seconds": "seconds",
                 "tpot_seconds": "seconds", "tpot_under_load_seconds": "seconds",
                 "output_tokens_per_second_per_gpu": "tokens/s",
                 "usd_per_million_input_tokens": "dollars", "usd_per_million_output_tokens": "dollars"}


def compare(estimates: Sequence[Estimate], servings: Sequence[ServingEstimate], baseline: int,
            columns: Sequence[str] | None = None) -> Table:
    """compare's rows and then the serving metrics, one table: specs as columns (named `columns`, else by the
    specs' names), each value with its ratio to the baseline column; JSON each estimate with its `serving`
    object."""
    pairs = list(zip(estimates, servings))
    metrics = [(label, unit, lambda p, get=get: get(p[0])) for label, unit, get in compared(estimates)]
    metrics += [(label, unit, lambda p, get=get: get(p[1])) for label, unit, get in SERVING_COMPARED]
    return side_by_side(columns or [e.name for e in estimates], pairs, metrics, baseline,
                        [{**e.model_dump(), "serving": s.model_dump()} for e, s in pairs])


def sweep(points: Sequence[Point], keys: Sequence[str], texts: Sequence[Sequence[str]]) -> Table:
    """sweep's table with the serving columns."""
    units = {**SWEEP_UNITS, **SERVING_UNITS}
    headers = [*keys, *units]
    body = LazyRows(lambda: [varied_cells(p, texts)
                             + [cell(v, units[name]) for name, v in p.values.items()] for p in points])
    return Table([Block(headers, body)], [{**p.varied, **p.values} for p in points], columns=headers)
