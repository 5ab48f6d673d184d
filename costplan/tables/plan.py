"""Tables of `costplan plan`: a budget's proposal, and the GPU options that meet a deadline."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from costplan.tables.estimate import IDLE_BUBBLE, PLANS_LOW, accuracy_warnings, idle_pipeline, oversized_note
from costplan.report import (Block, Row, Table, capacity, count, flop, gpu_hours, human, number, percent, plural,
                             recomputed, sectioned, size, usable_size, usd, layout_extras)

if TYPE_CHECKING:
    from costplan.planner import Option, Proposal


def proposal_rows(plan: Proposal) -> list[Row]:
    """`costplan plan --budget`: the law's optimum, then the concrete architecture and its real cost."""
    o, m = plan.optimum, plan.spec["model"]
    hw = plan.spec["hardware"]
    return [
        Row("optimum", "parameters", o.params, note=f"{plan.law} law, closed form under C = 6·N·D"),
        Row("optimum", "tokens", o.tokens, note=f"{number(o.tokens_per_param)} per parameter"),
        Row("optimum", "predicted loss", o.loss, "number", note="nats per token"),
        Row("proposal", "architecture", f"{plural(str(m['n_layers']), 'layer')} × d_model {m['d_model']}", "text",
            note=f"{plural(str(m['n_heads']), 'head')} of {m['head_dim']}, d_ff {m['d_ff']}, SwiGLU, vocabulary "
                 f"{m['vocab_size']}, context {m['max_seq_len']}"),
        Row("proposal", "parameters", plan.params, note=f"{percent(plan.params / o.params - 1)} from the optimum"
            + ("" if plan.budget["unit"] == "flops" or "mfu" in hw else
               "; the size the budget's GPU-hours train to the lowest loss at the step model's rates")),
        Row("proposal", "tokens", plan.tokens, note=f"{number(plan.tokens / plan.params)} per parameter; what "
            "the budget buys " + ("at the real FLOPs per token" if plan.budget["unit"] == "flops" else
                                  "in GPU-hours at the time below")),
        Row("proposal", "training FLOPs", plan.flops, "flop", note="attention included (6·N·D leaves it out)"),
        Row("proposal", "predicted loss", plan.loss, "number", note="nats per token"),
        Row("proposal", "GPU-hours", plan.gpu_hours, "hours", note=f"{hw['gpu']}, " + (
            f"at {percent(hw['mfu'])} MFU (--mfu)" if "mfu" in hw else "step model")),
        Row("proposal", "wall clock", plan.wall_clock_days, "days", note=f"on {plural(str(hw['count']), 'GPU')}" + (
            f": {', '.join(_grid(plan.layout))}" if hw["count"] > 1 else "")),
        Row("proposal", "memory per GPU", plan.memory_per_gpu, "bytes",
            note=f"{'fits' if plan.fits else 'does not fit'} in {hw['gpu']}'s "
                 f"{capacity(plan.gpu_memory, plan.gpu_memory_stated)}"),
        Row("proposal", "cost", plan.cost_usd, "usd", note="at the catalogue price"),
    ]


# A proposal's real FLOPs a token over 6·N past which the law's 6·N·D sizing is off by more than attention's
# usual share (at the default 2,048 tokens the proposals of 1e19 to 1e23 FLOPs spend 1.02-1.08x 6·N)
ATTENTION_HEAVY = 1.5


def proposal_warnings(plan: Proposal) -> list[str]:
    """What a user should notice on stderr: a proposal off the law's optimum, or one its GPUs cannot hold."""
    out, hw = [], plan.spec["hardware"]
    if plan.params > 2 * plan.optimum.params:   # the shape rule's smallest model is larger
        out.append(f"the law's optimum for this budget is {count(plan.optimum.params)} parameters; the smallest "
                   f"model the shape rule builds has {count(plan.params)}, which the budget trains on "
                   f"{plural(count(plan.tokens), 'token')}: not compute-optimal")
    per_token = plan.flops / (6 * plan.params * plan.tokens) if plan.tokens else 0.0
    if per_token > ATTENTION_HEAVY:
        out.append(f"at context {plan.spec['model']['max_seq_len']:,} attention makes the proposal's FLOPs "
                   f"{number(per_token)}x 6·N a token, where the law's optimum is sized under C = 6·N·D: a "
                   "smaller model trained on more tokens may reach a lower loss on the same budget")
    if not plan.fits:
        out.append(f"the proposal needs {size(plan.memory_per_gpu)} per GPU, more than {hw['gpu']}'s "
                   f"{capacity(plan.gpu_memory, plan.gpu_memory_stated)}: it cannot train on "
                   f"{plural(str(hw['count']), 'GPU')} as priced; give "
                   "more --gpus (or a larger --gpu), or estimate the spec it writes for what lowers it")
    if plan.oversized_batch:
        out.append(f"the proposed run has {oversized_note(plan.oversized_batch)}")
    return out


def deadline_warnings(name: str, options: Sequence[Option]) -> list[str]:
    """plan --deadline's: each kind of run the step model underestimates that a planned (or quickest) run is of,
    once."""
    return accuracy_warnings(name, list(dict.fromkeys(c for o in options for c in o.caveats)), PLANS_LOW)


def proposal_title(plan: Proposal) -> str:
    b = plan.budget
    amount = {"flops": flop(b["amount"]), "gpu-hours": gpu_hours(b["amount"]), "usd": usd(b["amount"])}[b["unit"]]
    extra = "" if b["unit"] == "flops" else f" = {flop(b['flops'])} on {b['gpu']}"
    return f"Budget {amount}{extra}"


def proposal(plan: Proposal) -> Table:
    """`costplan plan --budget`: one sectioned block; JSON the proposal as it is."""
    return Table([sectioned(proposal_rows(plan), proposal_title(plan))], plan.model_dump())


DEADLINE_HEADERS = ["GPU", "GPUs", "tensor × pipeline × data", "memory per GPU", "wall clock", "GPU-hours",
                    "cost", "note"]


def _grid(layout: dict) -> list[str]:
    """A layout's tensor × pipeline × data and its other splits, as the plans name them."""
    return [f"{layout['tensor']} × {layout['pipeline']} × {layout['data']}", *_extras(layout)]


def _extras(layout: dict) -> list[str]:
    """A chosen, runner-up or quickest layout's splits beyond its grid (report.layout_extras; sequence parallelism
    as SP, for the column's width)."""
    return layout_extras(layout["tensor"], layout["data"], layout["zero"], layout.get("context", 1),
                         layout.get("expert", 1), layout.get("expert_tensor"), layout.get("sequence_parallel", False),
                         "SP")


def missed(o: Option) -> str:
    """Why a GPU type has no row, and where no layout met the deadline, how near the quickest that fits came."""
    f = o.fastest
    if not f:
        return o.note
    settings = f"micro-batch {f['micro_batch_size']}, recompute {recomputed(f['recompute'], f['recompute_layers'])}"
    fields = ("training.global_batch_size and parallelism.micro_batches cap" if f.get("micro_batches_fixed") else
              "training.global_batch_size caps")
    capped = (f" ({fields} the data ranks at {f['data_cap']:,} at that micro-batch)"
              if f["data"] == f["data_cap"] else "")
    borrowed = f"; {_borrowed(o)}" if o.lenders else ""
    return (f"{o.note}; the quickest that fits, {', '.join(_grid(f))} at {settings} on {f['gpus']:,} GPUs, takes "
            f"{human(f['wall_clock_days'], 'days')}{capped}{borrowed}")


def _borrowed(o: Option) -> str:
    """Whose kernel curves a GPU type was timed on, where none of its own were read ('' where they were)."""
    lenders = o.lenders
    if len(lenders) == 2 and len(set(lenders.values())) == 1:
        return f"timed on {lenders['GEMM']}'s kernel curves (none of its own read)"
    return ", ".join(f"its {part} timed on {lender}'s curves (none of its own read)"
                     for part, lender in lenders.items())


def why(o: Option) -> str:
    """Why this choice: what the tuned micro-batch and recomputation saved, and what the runner-up costs."""
    said = [o.note, f"at {percent(o.mfu)} MFU ({o.mfu_source})" if o.mfu is not None else "", _borrowed(o),
            f"the spec's {', '.join(o.not_taken)} are its {o.spec_gpu}'s, not taken here" if o.not_taken else ""]
    tuned = f"micro-batch {o.micro_batch_size}, recompute {recomputed(o.recompute, o.recompute_layers)}"
    if o.untuned_cost_usd and o.cost_usd < o.untuned_cost_usd:
        said.append(f"{tuned}: {percent(o.cost_usd / o.untuned_cost_usd - 1)}")
    elif o.untuned_cost_usd is None:      # the spec's own settings do not fit, or not in time, on these GPUs
        said.append(f"{tuned} (the spec's own {'do not meet the deadline' if o.untuned_fits else 'do not fit'} "
                    "here)")
    r = o.runner_up
    if r:
        layout = ", ".join(_grid(r))
        # the fewest GPUs are chosen, not the cheapest run: say when more GPUs would cost less
        cheaper = " (cheaper, on more GPUs)" if r["cost_usd"] < o.cost_usd else ""
        settled = f"micro-batch {r['micro_batch_size']}, recompute {recomputed(r['recompute'], r['recompute_layers'])}"
        said.append(f"runner-up {layout} on {r['gpus']} at {settled}: {usd(r['cost_usd'])}{cheaper}")
    else:
        said.append("the only layout tried that fits in time")
    if o.bubble_fraction > IDLE_BUBBLE:     # as estimate warns of it: a layout given in the spec can be held to this
        said.append(idle_pipeline(o.bubble_fraction, o.micro_batches, o.layout["pipeline"]))
    if o.oversized_batch:
        said.append(oversized_note(o.oversized_batch))
    return "; ".join(s for s in said if s)


def deadline(options: Sequence[Option]) -> Table:
    """`costplan plan SPEC --deadline`: one row per GPU type, cheapest first."""
    body = []
    for o in options:
        if o.gpus is None:
            body.append([o.gpu, "—", "—", "—", "—", "—", "—", missed(o)])
            continue
        lay = o.layout
        body.append([o.gpu, str(o.gpus), ", ".join(_grid(lay)),
                     f"{size(o.memory_per_gpu)} of {usable_size(o.gpu_memory, o.gpu_memory_stated)}",
                     human(o.wall_clock_days, "days"),
                     count(o.gpu_hours), usd(o.cost_usd), why(o)])
    # JSON and CSV carry the table's note: why the row was chosen, not only why none was
    return Table([Block(DEADLINE_HEADERS, body)],
                 [{**o.model_dump(), "note": why(o) if o.gpus is not None else missed(o)} for o in options])
