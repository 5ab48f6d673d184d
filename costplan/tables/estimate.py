"""Tables of `costplan estimate`, `compare`, `estimate --seq-len` and `sweep`."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from costplan.costs import accuracy, fusion_loss
from costplan import series
from costplan.costs.estimate import LARGEST_PUBLISHED_BATCH, oversized_batch
from costplan.costs.parallel import micro_batches_in_flight
from costplan.hardware import SPEC_NETWORK
from costplan.spec_rules import zero_under_pipeline
from costplan.report import (UNIT_WORDS, Block, LazyRows, Row, Table, count, degrees, flop, flops_rate, human,
                             capacity, layout_words, parallel_layout, number, percent, plural, price, ratio, recomputed,
                             sectioned, seconds, size, layout_extras)

if TYPE_CHECKING:
    from costplan.costs.result import Estimate, Memory
    from costplan.sweep import Point

# a pipeline bubble above this share of the step is warned of: the GPUs wait more than they work
IDLE_BUBBLE = 0.5
# why HFU can be the lower: model FLOPs count causal attention whole (PaLM's convention), the kernel skips tiles
HFU_BELOW = "; below MFU where causal tiles are skipped (model FLOPs count every key, as PaLM does)"
# what the GPU-hours leave out: whole published runs also spend GPU-time on these
STEPS_ONLY = "training steps only: no failures, restarts, checkpoints or evaluation"
# Why an MFU can pass 100%: model FLOPs follow conventions that count work no kernel runs.
OVER_ONE = ("; above 100% because model FLOPs count every key a causal query may see (PaLM's convention) and "
            "top_k experts for every token, dropped or not, which the kernels skip: HFU counts what runs")


# Parts that have a row only where a spec has them (fp8 weight copies, ZeRO-3, a tied embedding); the rest always
# have one.
SHOWN_WHEN_HELD = ("fp8 weight copies", "embedding and head gathered by ZeRO-3 (transient)",
                   "layers gathered by ZeRO-3 (transient)", "tied embedding gradients (transient)")


def estimate_rows(est: Estimate) -> list[Row]:
    """The rows of `costplan estimate` for one spec: breakdowns with each part's share of the total."""
    p, f, m, a = est.params, est.flops, est.memory, est.assumptions
    rows = [Row("parameters", "total", p.total)]
    rows += [Row("parameters", f"  {key}", v, share=v / p.total) for key, v in p.by_component.items()]
    if p.active != p.total:
        rows.append(Row("parameters", "active per token", p.active, share=p.active / p.total,
                        note=f"{count(p.active_non_embedding)} without the input embedding"))
    rows.append(Row("FLOPs", "forward per token", f.forward_per_token, "flop"))
    rows += [Row("FLOPs", f"  {key}", v, "flop", share=v / f.forward_per_token)
             for key, v in f.by_component.items() if v]
    rows += [
        Row("FLOPs", "training per token (3 × forward)", f.training_per_token, "flop"),
        Row("FLOPs", "hardware per token", f.hardware_per_token, "flop",
            note="with recomputation and causal tile skipping"),
        Row("FLOPs", "training total", f.training_total, "flop",
            note=f"{plural(count(a.tokens), 'token')}, {number(est.scaling.tokens_per_param)} per "
                 f"{'active ' if est.scaling.params_convention == 'active' else ''}parameter"),
    ]
    fp32_gradients = a.bytes_per_param["gradients"] > a.bytes_per_param["weights"]
    notes = {
        "fp8 weight copies": "kept between steps by Transformer Engine (training.fp8_weight_cache)",
        "gradients": "fp32 for 16-bit weights (training.fp32_gradients)" if fp32_gradients else "",
        "activations": "linears' inputs as fp8 copies (training.fp8_saved_inputs)" if a.fp8_saved_inputs else "",
        "backward transients (loss, head, recomputation)":
            "as backward starts; the head's, a softmax's or a recomputed layer's if more",
        "embedding and head gathered by ZeRO-3 (transient)":
            "FSDP2's root module, until backward reaches the embedding",
        "layers gathered by ZeRO-3 (transient)": "in backward: the layer whose backward runs and the next, prefetched",
        "tied embedding gradients (transient)": "as backward ends: head's, lookup's, sum",
        "optimizer step transients":
            "the update's temporaries" if fp32_gradients else "a gradient's fp32 copy and the update's temporaries",
    }
    # a share of the peak for what the peak holds: the states, and its moment's transients (series.TRANSIENTS)
    rows += [Row("memory", _activations_label(est) if part == "activations" else part, value, "bytes",
                 share=value / m.total_per_gpu if series.held_at_peak(part, m) else None,
                 note=notes.get(part, "") if series.held_at_peak(part, m)
                 else f"{notes.get(part, '')}; not held at the peak")
             for part, value in series.memory_values(m).items() if value or part not in SHOWN_WHEN_HELD]
    rows += [
        Row("memory", "total per GPU", m.total_per_gpu, "bytes",
            note=f"peak at {m.peak_at}; {'fits' if m.fits else 'does not fit'} in "
                 f"{capacity(m.gpu_memory, m.gpu_memory_stated)}{_by(m)}"),
        Row("memory", "KV cache per token (inference)", m.kv_cache_per_token, "bytes"),
        Row("memory", f"KV cache at seq_len {a.seq_len}", m.kv_cache_at_seq_len, "bytes",
            note="one sequence; windows and recurrent states cap it"),
    ]
    rows += time_rows(est)
    rows += parallel_rows(est)
    return rows + scaling_rows(est)


PART_NAMES = {"matmul": "matmuls", "attention": "attention kernels", "memory_bound": "memory-bound ops",
              "optimizer": "optimizer step", "bubble": "pipeline bubble",
              "overhead": "fixed cost per kernel and update", "first_touch": "first touch of fresh memory"}
FUSION_NOTES = {"fused": "each op one fused kernel (training.fusion)",
                "eager": "eager PyTorch kernels (training.fusion)",
                "blocks": "each block one compiled graph, the head's loss eager (training.fusion)"}


def _activations_label(est: Estimate) -> str:
    """The activations row's name: one micro-batch's, or as many as the reported pipeline stage holds at once."""
    par, mbs = est.parallelism, est.assumptions.micro_batch_size
    held = micro_batches_in_flight(par.pipeline, par.virtual_stages, par.micro_batches, par.memory_stage)
    return (f"activations (micro-batch {mbs})" if held == 1 else
            f"activations ({held:.3g} micro-batches of {mbs} in flight)")


def _part_name(part: str) -> str:
    """A breakdown key in words: communication by kind, what it slowed, or a part of the step."""
    kind = part.partition(".")[2]
    if part.startswith("communication."):
        return f"exposed {kind} traffic"
    if part.startswith("overlap."):
        return f"compute slowed by {kind} traffic"
    return PART_NAMES.get(part, part)


LOSS_NOTES = {"fused": "the loss one fused kernel each way", "eager": "the loss as torch's fp32 cross-entropy",
              "vocab_parallel": "the loss as Megatron-Core's unfused vocab-parallel cross-entropy",
              "transformer_engine": "the loss as Transformer Engine's fused cross-entropy"}


def _fusion_note(a) -> str:  # noqa: ANN001 - Assumptions
    """How the memory-bound ops run, with the ops an eager step runs fused (training.fused_kernels), the loss
    where it runs otherwise than the rest (training.loss_kernel) and separate gradient adds
    (training.grad_accumulation)."""
    note = FUSION_NOTES[a.fusion]
    if a.fused_kernels:
        note += f"; {', '.join(a.fused_kernels)} one fused kernel each (training.fused_kernels)"
    if a.loss_kernel != fusion_loss(a.fusion, a.fused_kernels):
        note += f"; {LOSS_NOTES[a.loss_kernel]} (training.loss_kernel)"
    if a.grad_accumulation == "add":
        note += "; gradients added by separate kernels (training.grad_accumulation)"
    return note


def _batch_note(a) -> str:  # noqa: ANN001 - Assumptions
    """Where the batch comes from, when it is not the spec's own."""
    return "" if a.global_batch_source == "training.global_batch_size" else f" ({a.global_batch_source})"


def time_rows(est: Estimate) -> list[Row]:
    """Step time, throughput, utilisation and where the step goes, then GPU-hours and cost."""
    t, a = est.time, est.assumptions
    if a.time_model == "hardware.mfu":
        how = f"model FLOPs at {percent(a.mfu_override)} MFU (hardware.mfu), communication inside it"
    else:
        shared = (f"; burst-timed kernels at {number(a.sustained_share)} of their rate, as the device sustains them "
                  "(sustained_share)" if a.sustained_share is not None else "")
        how = f"step model ({a.kernel_tables}{shared})"
    rows = [
        Row("time", "step time", t.step_seconds, "seconds",
            note=f"{plural(str(a.global_batch_size), 'sequence')} of {a.seq_len}{_batch_note(a)}; {how}"),
    ]
    for part, value in t.breakdown.items():
        if value:
            rows.append(Row("time", f"  {_part_name(part)}", value, "seconds", share=value / t.step_seconds,
                            note=_fusion_note(a) if part == "memory_bound" else ""))
    rows += [
        Row("time", "tokens per second per GPU", t.tokens_per_second_per_gpu, "tokens/s"),
        Row("time", "MFU", t.mfu, "percent",
            note=f"model FLOPs / {a.gpu} {a.precision} peak {flops_rate(a.peak_flops_per_gpu)}" + (
                OVER_ONE if t.mfu > 1 else "")),
        Row("time", "HFU", t.hfu, "percent", note="hardware FLOPs: recomputation, flash backward, skipped tiles" + (
            HFU_BELOW if t.hfu < t.mfu else "")),
        Row("time", "GPU-hours", t.gpu_hours, "hours", note=f"{_steps_note(a)}; {STEPS_ONLY}"),
        Row("time", "wall clock", t.wall_clock_days, "days", note=f"on {plural(str(a.gpu_count), 'GPU')}"),
        Row("time", "cost", t.cost_usd, "usd", note=f"at ${price(a.usd_per_gpu_hour)} per GPU-hour: {a.price_source}"),
    ]
    return rows


def parallel_rows(est: Estimate) -> list[Row]:
    """How one step is split: the layout, where it came from, and traffic per GPU by kind."""
    par = est.parallelism
    if est.assumptions.gpu_count == 1 and par.source != "parallelism":
        return []
    extras = [*layout_extras(par.tensor, par.data, par.zero, par.context, par.expert, par.expert_tensor,
                             par.sequence_parallel),
              f"{par.virtual_stages} virtual stages" if par.virtual_stages > 1 else "",
              "tensor traffic overlapped" if par.tensor_overlap and par.tensor > 1 else "",
              "pipeline sends overlapped" if par.pipeline_overlap else "",
              "expert all-to-alls overlapped" if par.expert_overlap else "",
              "per-parameter sharding (FSDP2)" if par.per_parameter_sharding else "",
              f"{par.micro_batches} micro-batch{'' if par.micro_batches == 1 else 'es'} per step"]
    layout = degrees(par.tensor, par.pipeline, par.data)      # context and expert degrees are in the note
    rows = [Row("parallelism", "tensor × pipeline × data", layout, "text",
                note=", ".join(e for e in extras if e)),
            Row("parallelism", "layout", "spec" if par.source == "parallelism" else "chosen", "text",
                note="the parallelism section" if par.source == "parallelism" else par.source),
            Row("parallelism", "memory reported for", f"stage {par.memory_stage + 1} of {par.pipeline}", "text",
                note="the fullest pipeline stage")]
    for kind, volume in par.communication_bytes.items():
        if volume:
            slowed = est.time.breakdown.get("overlap." + kind, 0.0)
            rows.append(Row("parallelism", f"{kind}-parallel traffic per step", volume, "bytes",
                            note=f"{seconds(par.communication_seconds[kind])} on the wire, "
                                 f"{seconds(est.time.breakdown.get('communication.' + kind, 0.0))} exposed"
                                 + (f", {seconds(slowed)} slowing the compute beside it" if slowed else "")))
    rows.append(Row("parallelism", "overlaps", "assumed", "text", note=par.overlaps))
    given = est.assumptions.network.startswith(SPEC_NETWORK)      # the spec's own (hardware.resolve)
    rows.append(Row("parallelism", "network between nodes", "spec" if given else "assumed", "text",
                    note=est.assumptions.network))
    return rows


def scaling_rows(est: Estimate) -> list[Row]:
    """The scaling law's predicted loss and the tokens per parameter against the compute-optimal ratio."""
    s = est.scaling
    n = "active parameters (mixture of experts)" if s.params_convention == "active" else "parameters"
    return [
        Row("scaling", "predicted loss", s.loss, "number", note=f"{s.law} law, nats per token"),
        Row("scaling", f"tokens per {'active ' if s.params_convention == 'active' else ''}parameter",
            s.tokens_per_param, "number",
            note=f"compute-optimal for these {n}: {number(s.optimal_tokens / s.params)}"),
    ]


def estimate_title(est: Estimate) -> str:
    a = est.assumptions
    return (f"{est.name}: {plural(count(est.params.total), 'parameter')}, "
            f"{plural(count(a.tokens), 'token')}, "
            f"{a.gpu_count} × {a.gpu_name} ({a.precision}, {a.optimizer}, "
            f"recompute {recomputed(a.recompute, a.recompute_layers)})")


def estimates(results: Sequence[Estimate]) -> Table:
    """`costplan estimate`: one sectioned block per spec; JSON the estimates as they are."""
    return Table([sectioned(estimate_rows(e), estimate_title(e)) for e in results],
                 [e.model_dump() for e in results])


def warnings(est: Estimate, timed: bool = True) -> list[str]:
    """What a user should notice on stderr; where its time is `timed` (shown), a kind of run the step model
    underestimates (time.caveats)."""
    a, m = est.assumptions, est.memory
    out = assumed_inputs(est.name, a.tokens_source, a.config_defaults, a.config_left_out)
    if a.seq_len_source != "training.seq_len":
        out.append(defaulted_seq_len(est.name, f"{a.seq_len:,} tokens"))
    if not m.fits:
        out.append(f"{est.name}: {_not_fitting(est)}")
    par = est.parallelism
    if par.bubble_fraction > IDLE_BUBBLE:
        out.append(f"{est.name}: {idle_pipeline(par.bubble_fraction, par.micro_batches, par.pipeline)}; more "
                   "micro-batches (training.global_batch_size, parallelism.micro_batches) or fewer stages shrink it")
    if oversized_batch(a):
        out.append(f"{est.name}: {oversized_note(oversized_batch(a))}")
    if timed:
        out += accuracy_warnings(est.name, est.time.caveats)
    return out


# What follows from a step that is too short, for the commands that show times and costs, and for plan --deadline
TIMES_LOW = "the times, GPU-hours and costs from it are likely low"
PLANS_LOW = "the GPUs, days, GPU-hours and costs planned from it are likely too few and too low"


def accuracy_warnings(name: str, misses: Sequence[accuracy.Miss], consequence: str = TIMES_LOW) -> list[str]:
    """The caveat of each kind of run the step model underestimates that a step-model time is of."""
    return [f"{name}: the step model underestimates {m.kind} training: each of the {m.runs} published runs "
            f"compared ({m.compared}) took {m.least:g} to {m.most:g} times its predicted step "
            f"(bench/training_results.md); {consequence}" for m in misses]


def idle_pipeline(bubble: float, micro_batches: int, stages: int) -> str:
    """A step whose pipeline waits more than it works (bubble over IDLE_BUBBLE), in words."""
    return (f"the pipeline idles {percent(bubble)} of each step: {micro_batches} "
            f"micro-batch{'' if micro_batches == 1 else 'es'} a step through {stages} stages")


def defaulted_seq_len(name: str, length: str) -> str:
    """The warning of a spec without training.seq_len, trained at model.max_seq_len (`length`, said)."""
    return (f"{name}: no training.seq_len; training on sequences of model.max_seq_len, {length} (a Hugging Face "
            "config's max_position_embeddings is often the longest context it serves, not the one it was trained "
            "at): set training.seq_len")


def seq_len_warnings(group: Sequence[Estimate], max_seq_len: int) -> list[str]:
    """`estimate --seq-len`'s warnings for one spec: what its size rests on, once, the lengths past its
    `max_seq_len` (raised for them: a learned position table grows), and each length whose memory does not fit (the
    table shows the activations alone; no time or tokens are estimated there)."""
    a = group[0].assumptions
    past = [e.assumptions.seq_len for e in group if e.assumptions.seq_len > max_seq_len]
    raised = ([f"{group[0].name}: model.max_seq_len ({max_seq_len:,}) raised to each length past it "
               f"({', '.join(f'{n:,}' for n in past)} tokens)"] if past else [])
    return [*assumed_inputs(group[0].name, None, a.config_defaults, a.config_left_out), *raised,
            *(f"{e.name} at {e.assumptions.seq_len:,} tokens: {_not_fitting(e)}" for e in group if not e.memory.fits)]


def _not_fitting(est: Estimate) -> str:
    m = est.memory
    return (f"{size(m.total_per_gpu)} per GPU does not fit in {est.assumptions.gpu}'s "
            f"{capacity(m.gpu_memory, m.gpu_memory_stated)}{_by(m)} {_where(est)}; what would lower it: "
            f"{', '.join(_lower_memory(est))}")


def _by(m: Memory) -> str:
    """How far a peak that does not fit is over the GPU's memory, where both print alike ("14.76 GiB does not fit
    in 14.76 GiB")."""
    over = m.total_per_gpu - m.gpu_memory
    return f" (by {size(over)})" if over > 0 and size(m.total_per_gpu) == size(m.gpu_memory) else ""


def oversized_note(tokens: int) -> str:
    """What an open batch past any published run's is, and what fixes it."""
    return (f"an open batch of {count(tokens)} tokens a step, past the largest published run's "
            f"({count(LARGEST_PUBLISHED_BATCH)}, DeepSeek-V3's): set training.global_batch_size")


def left_out_warnings(name: str, left_out: Sequence[str]) -> list[str]:
    """What a Hugging Face config of the spec has that no estimate counts (Spec.config_left_out)."""
    return [f"{name}: {said}" for said in left_out]


def assumed_inputs(name: str, tokens_source: str | None, config_defaults: Sequence[str],
                   left_out: Sequence[str] = ()) -> list[str]:
    """The warnings of what a spec's size and tokens rest on that it does not say, and what of its config's cost
    is left out; tokens_source None where no time is estimated from the tokens."""
    out = left_out_warnings(name, left_out)
    if tokens_source not in (None, "training.tokens"):
        out.append(f"{name}: no training.tokens; assuming {tokens_source.split(';')[0]}")
    if config_defaults:
        out.append(f"{name}: not in the config, so its transformers class's defaults: "
                   f"{', '.join(config_defaults)} (`costplan import` shows the values)")
    return out


def _where(est: Estimate) -> str:
    """The layout the memory is for: the spec's own, or what the search said of its choice."""
    source = est.parallelism.source
    return "with the spec's parallelism section" if source == "parallelism" else f"({source})"


def _lower_memory(est: Estimate) -> list[str]:
    """Settings that would lower the peak per GPU, of those the spec does not already use to the full."""
    a, par = est.assumptions, est.parallelism
    hints = []
    if a.recompute != "full":
        hints.append("training.recompute: full")
    if a.micro_batch_size > 1:
        hints.append("a smaller training.micro_batch_size")
    if a.fp8_weight_cache:      # Transformer Engine caches no weights FSDP gathers: ZeRO-3 is refused with it
        hints.append("training.fp8_weight_cache: false (Megatron-Core's disable_parameter_transpose_cache)")
    elif par.source == "parallelism" and par.zero < 3 and par.data * par.context > 1:     # ZeRO shards over them
        hints.append("fewer pipeline stages with parallelism.zero: 3" if zero_under_pipeline(3, par.pipeline)
                     else "parallelism.zero: 3")
    if par.source == "parallelism" and par.zero >= 1 and par.data * par.context == 1:   # nothing to shard over
        hints.append("data-parallel ranks for ZeRO to shard over (more GPUs: hardware.count)")
    if par.source == "parallelism":
        hints.append("more tensor or pipeline ranks")
    hints.append("more GPUs (hardware.count)" if par.source != "parallelism" else "a GPU with more memory")
    return hints


FP8_COPIES = "fp8 weight copies per GPU"       # a row only where a compared spec keeps them (compared)
# (label, unit, value of an Estimate) for the rows of `costplan compare`
COMPARED = [
    ("training sequence length", "number", lambda e: e.assumptions.seq_len),
    ("training tokens", "count", lambda e: e.assumptions.tokens),
    ("GPUs", "number", lambda e: e.assumptions.gpu_count),
    ("GPU", "text", lambda e: e.assumptions.gpu),
    ("layout (tensor × pipeline × data)", "text", lambda e: parallel_layout(e.parallelism)),
    ("parameters, total", "count", lambda e: e.params.total),
    ("parameters, active", "count", lambda e: e.params.active),
    ("forward FLOPs per token", "flop", lambda e: e.flops.forward_per_token),
    ("attention FLOPs per token", "flop", lambda e: e.flops.by_component["attention"]),
    ("training FLOPs per token", "flop", lambda e: e.flops.training_per_token),
    ("hardware FLOPs per token", "flop", lambda e: e.flops.hardware_per_token),
    ("training FLOPs, total", "flop", lambda e: e.flops.training_total),
    ("weights per GPU", "bytes", lambda e: e.memory.weights),
    (FP8_COPIES, "bytes", lambda e: e.memory.fp8_weights),
    ("gradients per GPU", "bytes", lambda e: e.memory.gradients),
    ("optimizer states per GPU", "bytes", lambda e: e.memory.optimizer),
    ("activations per GPU (micro-batches in flight)", "bytes", lambda e: e.memory.activations),
    ("memory per GPU", "bytes", lambda e: e.memory.total_per_gpu),
    ("fits in GPU memory", "flag", lambda e: e.memory.fits),
    ("KV cache per token", "bytes", lambda e: e.memory.kv_cache_per_token),
    ("KV cache at seq_len", "bytes", lambda e: e.memory.kv_cache_at_seq_len),
    ("step time", "seconds", lambda e: e.time.step_seconds),
    ("training tokens/s per GPU", "tokens/s", lambda e: e.time.tokens_per_second_per_gpu),
    ("MFU", "percent", lambda e: e.time.mfu),
    ("wall clock", "days", lambda e: e.time.wall_clock_days),
    ("GPU-hours", "hours", lambda e: e.time.gpu_hours),
    ("cost", "usd", lambda e: e.time.cost_usd),
    ("predicted loss (scaling law)", "number", lambda e: e.scaling.loss),
]


def compared(results: Sequence[Estimate]) -> list[tuple[str, str, Any]]:
    """compare's rows for these estimates: the fp8 weight copies only where one of them keeps any."""
    return [m for m in COMPARED if m[0] != FP8_COPIES or any(e.memory.fp8_weights for e in results)]


def compare(results: Sequence[Estimate], baseline: int, columns: Sequence[str] | None = None) -> Table:
    """Specs as columns (named `columns`, else by the specs' names), metrics as rows, each value with its ratio to
    the baseline column; JSON the estimates, CSV one row per metric."""
    return side_by_side(columns or [e.name for e in results], results, compared(results), baseline,
                        [e.model_dump() for e in results])


def column_names(names: Sequence[str], given: Sequence[str]) -> list[str]:
    """compare's column names: each spec's name, and where two specs share one (a preset copied and edited), the
    name with the spec as it was given, so that no column stands for two; one spec given twice, #2 on its second."""
    labels = [f"{name} ({arg})" if names.count(name) > 1 else name for name, arg in zip(names, given)]
    return [label if labels[:i].count(label) == 0 else f"{label} #{labels[:i].count(label) + 1}"
            for i, label in enumerate(labels)]


def side_by_side(names: Sequence[str], items: Sequence[Any], metrics: Sequence[tuple[str, str, Any]],
                 baseline: int, records: Any) -> Table:
    """One column per item, one row per (label, unit, value of an item) metric, each value with its ratio to
    the baseline column; CSV one row per metric."""
    body = []
    for label, unit, get in metrics:
        base = get(items[baseline])
        cells = []
        for index, item in enumerate(items):
            value, cell = get(item), human(get(item), unit)
            if index != baseline and unit not in ("text", "flag"):      # a ratio of numbers only
                cell += f" ({ratio(value / base)})" if base and value is not None else " (—)"
            cells.append(cell)
        body.append([label, *cells])
    headers = ["", *(f"{n} (baseline)" if i == baseline else n for i, n in enumerate(names))]
    return Table([Block(headers, body, align=right_after_first(headers))], records,
                 flat=[{"metric": label, "unit": UNIT_WORDS.get(unit, ""), **{n: get(item) for n, item in
                                                                             zip(names, items)}}
                       for label, unit, get in metrics])


def right_after_first(headers: Sequence[str]) -> tuple[str, ...]:
    return ("left", *["right"] * (len(headers) - 1))


SEQ_LEN_HEADERS = ["seq_len", "forward FLOPs/token", "growth", "attention FLOPs/token", "activations", "growth",
                   "KV cache at seq_len", "parameters"]


def seq_len(groups: Sequence[Sequence[Estimate]]) -> Table:
    """How each spec's costs grow with context: a block per spec, a row per seq_len, growth against the first;
    JSON and CSV every estimate."""
    blocks = []
    for group in groups:
        first = group[0]
        body = [[str(e.assumptions.seq_len), flop(e.flops.forward_per_token),
                 ratio(e.flops.forward_per_token / first.flops.forward_per_token),
                 flop(e.flops.by_component["attention"]), size(e.memory.activations),
                 ratio(e.memory.activations / first.memory.activations), size(e.memory.kv_cache_at_seq_len),
                 count(e.params.total)] for e in group]
        par = first.parallelism
        on = layout_words(first.assumptions.gpu_count, par.tensor, par.pipeline, par.data, par.context, par.expert)
        per = "" if first.assumptions.gpu_count == 1 else " per GPU"
        title = f"{first.name}: {_activations_label(first)}{per} on {on}"
        blocks.append(Block(SEQ_LEN_HEADERS, body, title=title, align=right_after_first(SEQ_LEN_HEADERS)))
    return Table(blocks, [e.model_dump() for group in groups for e in group])


SWEEP_UNITS = {"params": "count", "active_params": "count", "training_flops": "flop", "memory_per_gpu": "bytes",
               "fits": "flag", "layout": "text", "gpu_hours": "hours", "wall_clock_days": "days", "cost_usd": "usd",
               "loss": "number"}


def cell(value: Any, unit: str) -> str:
    """A sweep cell: a flag as yes or no, a number in its unit."""
    return ("yes" if value else "no") if unit == "flag" else human(value, unit)


def varied_cells(point: Point, texts: Sequence[Sequence[str]]) -> list[str]:
    """A point's varied values as each --vary wrote them (`texts`: an axis's values as given, in its order)."""
    return [texts[axis][i] for axis, i in enumerate(point.positions)]


def sweep(points: Sequence[Point], keys: Sequence[str], texts: Sequence[Sequence[str]]) -> Table:
    """`costplan sweep`: one row per point, the varied keys first, their values as written; raw numbers in JSON
    and CSV."""
    headers = [*keys, *SWEEP_UNITS]
    body = LazyRows(lambda: [varied_cells(p, texts)
                             + [cell(v, SWEEP_UNITS[name])
                                for name, v in p.values.items()] for p in points])
    return Table([Block(headers, body)], [{**p.varied, **p.values} for p in points], columns=headers)


PARTIAL_STEP_NOTED = 0.01      # what whole steps would cost more, over the tokens' share, before the note says so


def _steps_note(a) -> str:  # noqa: ANN001 - Assumptions
    """The optimizer steps, and, where whole steps would cost 1% more, that a last partial batch is timed at the
    share of a step its tokens take."""
    note = f"{count(a.steps)} step{'s' if a.steps != 1 else ''}"
    last = a.tokens / (a.global_batch_size * a.seq_len) - (a.steps - 1)
    if (1 - last) / (a.steps - 1 + last) < PARTIAL_STEP_NOTED:     # whole steps' cost over the tokens' share, less 1
        return note
    return note + f", the last {number(last)} of a batch, timed at that share of a step"
