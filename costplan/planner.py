"""`costplan plan`: what to train with a budget, and how many GPUs finish a spec by a deadline.

Budget: a compute budget C (FLOPs, or GPU-hours or dollars turned into FLOPs at a GPU's dense peak and its
catalogue MFU, a first guess for sizing only) gives the law's compute-optimal N and D under C = 6·N·D
(costplan/scaling.py). The shape rule (costplan/sizing.py) turns N into a concrete architecture, and
costplan.estimate prices it: the proposal trains that architecture on the tokens the budget buys (its real
training FLOPs, attention included, for a budget in FLOPs), so its cost matches the budget, and reports the law's
loss for its real size and tokens. For a budget in GPU-hours or dollars timed by the step model, which runs each
size at its own rate, the proposal is the size around the first guess that the hours train to the lowest loss
(_best_bought), and the optimum the law's for the FLOPs it buys.

Deadline: for each GPU type, the fewest GPUs that train the spec within the deadline with every GPU's memory
within its capacity, under the spec's own parallelism section or, without one, the cheapest of the grid of
costplan/costs/layouts.py, each priced with the step model (costs/step.py). A count meets the deadline with the
spec's micro-batch size and recomputation, or else with any micro-batch size and recomputation that fits and
finishes in time (_meeting); each layout then takes the micro-batch size (1, 2, 4, 8) and recomputation that
cost least there and is searched again with them; the fewest GPUs win, then the cheapest, and the option names
the runner-up layout and its cost. GPU counts above one node are whole nodes. Each layout's fewest GPUs are
found by a galloping search over its data-parallel degrees from one replica up (_first), assuming that more GPUs
never take longer or need more memory.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from costplan import hardware, scaling, sizing
from costplan.costs.accuracy import Miss
from costplan.costs.estimate import estimate, kernel_lenders, oversized_batch, shared_components
from costplan.costs.layers import pipeline_stages, stage_count, stage_depth
from costplan.costs.layouts import grid, replica, timed_at, variant
from costplan.costs.run import needless_zero_one
from costplan.costs.time import HOURS_PER_DAY, flops_in
from costplan.errors import CostplanError, SpecError
from costplan.forked import available_cpus, imap_forked
from costplan.loading import load_spec
from costplan.records import Record
from costplan.spec import Spec
from costplan.spec_rules import (expert_data_step, interleaves, overlap_refuses, selective_op_rules,
                                 tensor_parallel_modelled)
from costplan.validation import MAX_COUNT, MAX_TOKENS



TRIAL_TOKENS = 10**9         # a budget in hours is priced at this many tokens first, then scaled


# ---------------------------------------------------------------------------------------------- budget
def budget_flops(amount: float, unit: str, gpu: hardware.GPU, precision: str = "bf16",
                 mfu: float | None = None) -> float:
    """A budget in FLOPs, GPU-hours or US dollars as training FLOPs: hours × 3600 × dense peak × MFU (`mfu`, or
    the GPU's catalogue figure), and dollars at the GPU's catalogue price per hour."""
    lacks = gpu.lacks(precision)
    if lacks:   # the proposal is priced on this GPU in any unit
        raise CostplanError(f"--gpu {gpu.key}: {gpu.name} has {lacks}, and the proposal trains in {precision}; "
                            f"choose a GPU with {precision}")
    peak = gpu.peak_flops(precision)
    if unit == "flops":
        return amount
    if unit == "usd" and not gpu.usd_per_gpu_hour:
        raise CostplanError(f"--gpu {gpu.key}: {gpu.name} has no price (usd_per_gpu_hour is 0), so a budget in "
                            "usd buys no GPU-hours on it; give the budget in gpu-hours or FLOPs")
    hours = amount if unit == "gpu-hours" else amount / gpu.usd_per_gpu_hour
    return flops_in(hours, peak, mfu or gpu.mfu)


def _in_unit(flops: float, unit: str, gpu: hardware.GPU, precision: str = "bf16", mfu: float | None = None
             ) -> float:
    """The inverse of budget_flops: FLOPs as an amount in the budget's unit."""
    if unit == "flops":
        return flops
    hours = flops / flops_in(1.0, gpu.peak_flops(precision), mfu or gpu.mfu)
    return hours if unit == "gpu-hours" else hours * gpu.usd_per_gpu_hour


class Optimum(Record):
    """The law's closed-form optimum for the budget."""

    params: float
    tokens: float
    loss: float
    tokens_per_param: float


class Proposal(Record):
    """The JSON of `costplan plan --budget`: the proposed architecture, priced by costplan.estimate."""

    params: int                 # exact parameter count of the proposed architecture
    tokens: int                 # the tokens its training FLOPs can buy within the budget
    flops: float                # its training model FLOPs (≤ the budget)
    loss: float                 # the law's loss for params and tokens
    gpu_hours: float
    wall_clock_days: float
    cost_usd: float
    memory_per_gpu: int         # at the layout the estimate chose for the GPUs
    gpu_memory: int             # what a step must fit in: what a framework can have of each GPU
    gpu_memory_stated: int      # each GPU's memory as its maker states it
    fits: bool
    budget: dict[str, Any]      # amount, unit, flops, gpu
    law: str
    optimum: Optimum
    spec: dict[str, Any]        # the spec it proposes, as written by --write
    oversized_batch: int | None = None      # its open batch's tokens a step, past any published run's
    layout: dict[str, Any] = {}             # the layout the estimate chose for the GPUs (layout_of)


def propose(amount: float, unit: str, law: scaling.ScalingLaw, gpu_key: str, gpus: int,
            seq_len: int = sizing.DEFAULT_SEQ_LEN, vocab_size: int = sizing.DEFAULT_VOCAB, mfu: float | None = None
            ) -> Proposal:
    """The compute-optimal model for a budget, as a concrete spec with its real cost: timed with the step model,
    or at `mfu` (plan --mfu) where given."""
    gpu = hardware.resolve(gpu_key)
    flops = budget_flops(amount, unit, gpu, mfu=mfu)
    if mfu is None and gpu.curves() is None:    # the step model cannot time the proposal
        raise CostplanError(f"--gpu {gpu_key}: no kernel efficiency tables to time the proposal with (kernels: in "
                            "the hardware file); run `costplan calibrate` on the device, or give --mfu")
    timed = unit != "flops" and mfu is None     # hours the step model times: the first guess only sizes
    n_opt, d_opt, spec = _sized(flops, amount, unit, law, gpu_key, gpus, seq_len, vocab_size, mfu, floor=not timed)
    if unit == "flops":
        tokens = math.floor(flops / _per_token(spec["model"]))
    else:
        hours = amount if unit == "gpu-hours" else amount / gpu.usd_per_gpu_hour
        if timed:
            # The first guess sized the model at the catalogue MFU; the step model runs each size at its own
            # rate, so the hours buy each size other FLOPs: the proposal is the size they train to the lowest
            # loss, and the optimum the law's for the FLOPs it spends.
            spec, tokens = _best_bought(hours, n_opt, spec, law, vocab_size, seq_len, amount, unit)
            spec["training"]["tokens"] = tokens
            flops = float(estimate(load_spec(spec), law).flops.training_total)
            n_opt, d_opt = law.compute_optimal(flops)
        else:
            tokens = _tokens_bought(hours, spec, law)[0]
    spec["training"]["tokens"] = tokens
    result = estimate(load_spec(spec), law)
    return Proposal(
        params=result.params.total, tokens=tokens, flops=float(result.flops.training_total),
        loss=law.loss(result.params.total, tokens), gpu_hours=result.time.gpu_hours,
        wall_clock_days=result.time.wall_clock_days, cost_usd=result.time.cost_usd,
        memory_per_gpu=result.memory.total_per_gpu, gpu_memory=result.memory.gpu_memory,
        gpu_memory_stated=result.memory.gpu_memory_stated, fits=result.memory.fits,
        budget={"amount": amount, "unit": unit, "flops": flops, "gpu": gpu_key},
        law=law.name,
        optimum=Optimum(params=n_opt, tokens=d_opt, loss=law.loss(n_opt, d_opt), tokens_per_param=d_opt / n_opt),
        spec=spec, oversized_batch=oversized_batch(result.assumptions), layout=layout_of(result),
    )


def layout_of(result) -> dict[str, Any]:  # noqa: ANN001 - an Estimate
    """The layout an estimate ran on, as the plans name one: its degrees, ZeRO stage and sequence parallelism;
    the experts' degrees only for a mixture of experts (a dense spec refuses them), so that it can be pasted into
    the spec's parallelism section."""
    par = result.parallelism
    experts = {"expert": par.expert, "expert_tensor": par.expert_tensor} if "moe" in result.params.by_component \
        else {}
    return {"tensor": par.tensor, "pipeline": par.pipeline, "zero": par.zero, "context": par.context, **experts,
            "sequence_parallel": par.sequence_parallel, "data": par.data}


def _sized(flops: float, amount: float, unit: str, law: scaling.ScalingLaw, gpu_key: str, gpus: int,
           seq_len: int, vocab_size: int, mfu: float | None, floor: bool = True) -> tuple[float, float, dict[str, Any]]:
    """The law's optimum for `flops` and the spec of the architecture the shape rule gives it (on a trial number
    of tokens), or an error where the budget is beyond the tokens costplan takes or (`floor`) below one token."""
    n_opt, d_opt = law.compute_optimal(flops)
    if not d_opt <= MAX_TOKENS:   # also catches inf and nan from a huge budget or an odd law file
        raise CostplanError(f"--budget {amount:.4g} {unit}: the {law.name} law's optimum for {flops:.4g} FLOPs "
                            f"trains on {d_opt:.4g} tokens, more than costplan accepts ({MAX_TOKENS:.0e})")
    model = sizing.architecture(n_opt, vocab_size, seq_len)
    if model["n_layers"] > MAX_COUNT:     # an odd law file's optimum: said as the budget's, not a spec's field
        raise CostplanError(f"--budget {amount:.4g} {unit}: the {law.name} law's optimum for {flops:.4g} FLOPs has "
                            f"{n_opt:.4g} parameters, more layers in the shape rule than costplan accepts "
                            f"({MAX_COUNT:,})")
    if floor and flops < _per_token(model):
        # Not one token of the smallest shape fits: the proposal would cost more than the budget.
        least = _per_token(sizing.architecture(1, vocab_size, seq_len))
        raise _below_floor(amount, unit, _in_unit(least, unit, hardware.resolve(gpu_key), mfu=mfu), "",
                           vocab_size, seq_len)
    return n_opt, d_opt, {
        "name": f"compute-optimal-{law.name}",
        "model": model,
        "training": {"tokens": TRIAL_TOKENS, "seq_len": seq_len, "precision": "bf16", "optimizer": "adamw"},
        "hardware": {"gpu": gpu_key, "count": gpus, **({"mfu": mfu} if mfu is not None else {})},
    }


def _tokens_bought(hours: float, spec: dict[str, Any], law: scaling.ScalingLaw) -> tuple[int, int]:
    """The tokens `hours` GPU-hours train the spec on (GPU-hours grow linearly with tokens under the step model),
    and its parameters."""
    trial_hours, params = _trial(spec, law)
    return math.floor(hours / trial_hours * TRIAL_TOKENS), params


def _trial(spec: dict[str, Any], law: scaling.ScalingLaw) -> tuple[float, int]:
    """The spec's GPU-hours for TRIAL_TOKENS tokens, and its parameters."""
    result = _trial_estimate(spec, law)
    return result.time.gpu_hours, result.params.total


def _trial_estimate(spec: dict[str, Any], law: scaling.ScalingLaw):  # noqa: ANN202 - an Estimate
    return estimate(load_spec({**spec, "training": {**spec["training"], "tokens": TRIAL_TOKENS}}), law)


# The sizes a budget in hours is tried at: from an eighth to eight times the first guess in quarter-octaves, then
# sixteenth-octaves a quarter-octave either side of the best
COARSE, FINE = [2 ** (k / 4) for k in range(-12, 13)], [2 ** (k / 16) for k in range(-3, 4)]
# Losses this close, half the last of the four digits the plan prints a loss of about 2 with, are taken as
# equal: of those sizes, the one nearest the law's optimum for the FLOPs it buys, rather than one a small
# difference in the step model's rates favours
SAME_LOSS = 5e-4


def _best_bought(hours: float, guess: float, spec: dict[str, Any], law: scaling.ScalingLaw, vocab_size: int,
                 seq_len: int, amount: float, unit: str) -> tuple[dict[str, Any], int]:
    """The shape rule's model that `hours` of the step model's GPU-hours train to the law's lowest loss, and the
    tokens they buy it: a larger model may run at another MFU and buy other FLOPs, so no closed form gives it (of
    sizes within SAME_LOSS, the nearest the law's optimum for its own FLOPs). Memory is not a criterion, as for a
    budget in FLOPs: a proposal the GPUs cannot hold is warned of. `spec` is the first guess's, whose settings each
    size keeps. An error where the hours buy no token of any size."""
    tried: dict[tuple[int, int], tuple[float, float, dict[str, Any], int]] = {}

    def loss_at(params: float) -> float:
        model = sizing.architecture(params, vocab_size, seq_len)
        key = (model["n_layers"], model["d_model"])     # the rule sets the rest from these
        if key not in tried:
            sized = {**spec, "model": model, "training": dict(spec["training"])}
            loss, off, tokens = math.inf, math.inf, 0
            try:
                result = _trial_estimate(sized, law)
            except CostplanError:   # a size past what a spec takes (a million layers): not a candidate
                result = None
            if result is not None:
                tokens = math.floor(hours / result.time.gpu_hours * TRIAL_TOKENS)
                if 0 < tokens <= MAX_TOKENS:
                    total = result.params.total
                    loss = law.loss(total, tokens)
                    off = abs(math.log(total / law.compute_optimal(tokens * result.flops.training_per_token)[0]))
            tried[key] = (loss, off, sized, tokens)
        return tried[key][0]

    best = min((guess * f for f in COARSE), key=loss_at)
    for f in FINE:
        loss_at(best * f)
    finite = [t for t in tried.values() if math.isfinite(t[0])]
    if not finite:      # not one token of any size tried: name what one of the smallest costs
        per_token = _trial({**spec, "model": sizing.architecture(1, vocab_size, seq_len)}, law)[0] / TRIAL_TOKENS
        raise _below_floor(amount, unit, per_token * (1 if unit == "gpu-hours" else amount / hours),
                           " as the step model times it", vocab_size, seq_len)
    lowest = min(t[0] for t in finite)
    _, _, chosen, tokens = min((t for t in finite if t[0] <= lowest + SAME_LOSS), key=lambda t: t[1])
    return chosen, tokens


def _below_floor(amount: float, unit: str, least: float, how: str, vocab_size: int, seq_len: int) -> CostplanError:
    """A budget below one token of the shape rule's smallest model: the error, naming what that token costs."""
    smallest = sizing.architecture(1, vocab_size, seq_len)
    return CostplanError(f"--budget {amount:.4g} {unit}: less than the smallest budget the shape rule can serve"
                         f"{how}, {least:.4g} {unit} (one token of its smallest model, {smallest['n_layers']} layer "
                         f"× d_model {smallest['d_model']}, vocabulary {vocab_size}, context {seq_len})")


def _per_token(model: dict[str, Any]) -> float:
    """Training FLOPs per token of a `model` section."""
    return estimate(load_spec({"model": model, "training": {"tokens": 1}})).flops.training_per_token


# ---------------------------------------------------------------------------------------------- deadline
class Option(Record):
    """The fewest GPUs of one type that meet the deadline, or why none do."""

    gpu: str
    gpus: int | None
    layout: dict[str, Any] | None           # the parallelism section used
    memory_per_gpu: int | None
    gpu_memory: int                         # what a step must fit in: what a framework can have of each GPU
    gpu_memory_stated: int                  # each GPU's memory as its maker states it
    wall_clock_days: float | None
    gpu_hours: float | None
    cost_usd: float | None
    micro_batch_size: int | None = None
    recompute: str | None = None
    recompute_layers: int | None = None     # under full recompute: the first N layers of each stage
    untuned_cost_usd: float | None = None   # with the spec's own micro-batch size and recomputation
    untuned_fits: bool | None = None        # whether those fit in memory on the chosen layout and GPUs
    bubble_fraction: float = 0.0            # the share of a step the chosen run's pipeline idles
    micro_batches: int | None = None        # the chosen run's micro-batches a step
    # the next layout by the same rule (fewest GPUs, then cost): tensor, pipeline, zero, context, expert,
    # expert_tensor, sequence_parallel, data, gpus, cost_usd, and the micro_batch_size, recompute and
    # recompute_layers it was settled at (what estimate needs to reproduce its cost)
    runner_up: dict[str, Any] | None = None
    # where no layout meets the deadline, the quickest that fits (planner._quickest): the runner-up's layout keys,
    # gpus, wall_clock_days, micro_batch_size, recompute, recompute_layers, data_cap (the most data ranks the
    # spec's global_batch_size allows at that micro-batch, and its section's micro_batches where fixed; None: an
    # open batch) and micro_batches_fixed
    fastest: dict[str, Any] | None = None
    mfu: float | None = None                # the MFU the runs were timed at; None: the step model
    mfu_source: str | None = None           # --mfu, or hardware.mfu (the spec's, on its own GPU type)
    not_taken: list[str] = []               # the spec's hardware settings, for its own GPU type, not taken here
    oversized_batch: int | None = None      # an open batch's tokens a step, past any published run's
    spec_gpu: str | None = None             # the spec's own GPU type
    # the devices whose kernel curves the step model ran this type on, by part (GEMM, attention), where none of
    # its own were read (kernels.Curves.lenders); empty: its own, or a fixed MFU
    lenders: dict[str, str] = {}
    # kinds of run the step model underestimates that the planned run (or the quickest) is of: its time.caveats
    caveats: list[Miss] = []
    note: str = ""

    @classmethod
    def none(cls, key: str, gpu: hardware.GPU, why: str) -> Option:
        """No option on this GPU type, and why."""
        return cls(gpu=key, gpus=None, layout=None, memory_per_gpu=None, gpu_memory=gpu.memory_bytes,
                   gpu_memory_stated=gpu.stated_memory_bytes,
                   wall_clock_days=None, gpu_hours=None, cost_usd=None, note=why)


def _data_degrees(spec: Spec, layout: dict[str, Any], node_size: int) -> Sequence[int]:
    """Data-parallel degrees to try, ascending: those that fill part of one node or whole nodes, multiples of a
    fixed expert layout's data step (spec_rules.expert_data_step), and divisors of the global batch (in
    micro-batches) when the spec fixes it."""
    t = spec.training
    model_parallel = replica(layout)
    step = expert_data_step(layout["tensor"], layout.get("context", 1), layout.get("expert", 1),
                            layout.get("expert_tensor"))
    whole_nodes = math.lcm(step, node_size // math.gcd(node_size, model_parallel))
    limit = MAX_COUNT // model_parallel
    small = list(range(step, min(limit + 1, -(-node_size // model_parallel)), step))   # d·t·p < node_size
    if t.global_batch_size is None:
        first = -(-max(step, node_size // model_parallel) // whole_nodes) * whole_nodes
        return _Chain(small, range(first, limit + 1, whole_nodes))
    sequences = t.global_batch_size // t.micro_batch_size
    micro_batches = layout.get("micro_batches")
    pipeline, virtual = layout["pipeline"], layout.get("virtual_stages") or 1
    return [d for d in range(step, min(sequences, limit) + 1, step)
            if sequences % d == 0 and (micro_batches is None or sequences == d * micro_batches)
            and interleaves(pipeline, virtual, sequences // d)
            and (d * model_parallel < node_size or d % whole_nodes == 0)]


class _Chain(Sequence):
    """A list followed by a range, indexable without building the range."""

    def __init__(self, head: list[int], tail: range):
        self.head, self.tail = head, tail

    def __len__(self) -> int:
        return len(self.head) + len(self.tail)

    def __getitem__(self, index):  # noqa: ANN001, ANN204 - Sequence's signature
        return self.head[index] if index < len(self.head) else self.tail[index - len(self.head)]


def _first(degrees: Sequence[int], start: int, meets) -> int | None:  # noqa: ANN001
    """The first index from `start` whose degree meets the test (monotone): gallop, then bisect."""
    step, lo = 1, start
    hi = lo
    while hi < len(degrees) and not meets(degrees[hi]):
        lo, hi, step = hi + 1, hi + step, step * 2
    if hi >= len(degrees):
        hi = len(degrees)
        if lo >= hi or not meets(degrees[hi - 1]):
            return None
        hi -= 1
    while lo < hi:   # degrees[hi] meets it; lo is the first not yet ruled out
        mid = (lo + hi) // 2
        if meets(degrees[mid]):
            hi = mid
        else:
            lo = mid + 1
    return hi


def precision_change(spec: Spec) -> str:
    """The --set a user gives to train the spec in another precision (fp8 saved inputs and the fp8 weight cache
    need fp8)."""
    change = "training.precision=..."
    unset = [key for key in ("fp8_saved_inputs", "fp8_weight_cache") if getattr(spec.training, key)]
    return " ".join([change, *(f"--set training.{key}=false" for key in unset)])


def fewest_gpus(spec: Spec, gpu_key: str, deadline_hours: float, mfu: float | None = None) -> Option:
    """The cheapest layout at the fewest GPUs of type gpu_key that meet the deadline and fit, with the
    micro-batch size and recomputation that make it cheapest there; the note names the runner-up. `mfu` (plan
    --mfu) times every run at that utilisation instead of the step model. The search's thousands of estimates
    of one model share their component costs and layer times (shared_components), as a sweep's points do."""
    with shared_components():
        try:
            return _fewest_gpus(spec, gpu_key, deadline_hours, mfu)
        except SpecError:
            missing = _lacks_kernel(spec, gpu_key, mfu)
            if missing is None:
                raise
            # the step model read attention curves of the spec's kernel, which this type has none of
            return Option.none(gpu_key, hardware.resolve(gpu_key),
                               f"{missing}: --set training.attention_kernel=fastest")


def _lacks_kernel(spec: Spec, gpu_key: str, mfu: float | None) -> str | None:
    """What the GPU type's curves lack of the spec's training.attention_kernel, where the step model times it."""
    curves = hardware.resolve(gpu_key).curves() if timed_at(spec, gpu_key, mfu) is None else None
    return curves.lacks_attention(spec.training.attention_kernel) if curves is not None else None


def _fewest_gpus(spec: Spec, gpu_key: str, deadline_hours: float, mfu: float | None) -> Option:
    gpu = hardware.resolve(gpu_key)
    lacks = gpu.lacks(spec.training.precision)
    if lacks:
        return Option.none(gpu_key, gpu, f"{lacks}: --set {precision_change(spec)}")
    # whose kernel curves time this type where it has none of its own (none at a fixed MFU)
    lenders = kernel_lenders(gpu, spec.training) if timed_at(spec, gpu_key, mfu) is None else {}
    found = []
    for layout in grid(spec):
        searched = _fewest(spec, gpu_key, layout, gpu.node_size, deadline_hours, mfu)
        if searched is not None:
            found.append(((searched.assumptions.gpu_count, searched.time.cost_usd), layout, searched))
    if not found:
        quickest = _quickest(spec, gpu_key, gpu.node_size, mfu)
        if quickest is None:
            return Option.none(gpu_key, gpu, "no layout tried fits in its GPUs' memory")
        return Option.none(gpu_key, gpu, "no layout tried fits and finishes in time").model_copy(
            update={"fastest": _fastest(spec, quickest), "lenders": lenders, "caveats": quickest.time.caveats})
    found.sort(key=lambda f: f[0])
    # Every layout with its own cheapest micro-batch and recomputation, at the fewest GPUs those meet the
    # deadline on: the fewest GPUs win, then the cheapest, then (_simplest) as estimate chooses among equals;
    # the runner-up is the next layout so settled (an untuned runner-up would flatter the choice).
    settled = sorted(((_settled(spec, gpu_key, lay, searched, gpu.node_size, deadline_hours, mfu), lay)
                      for _, lay, searched in found),
                     key=lambda t: (t[0].assumptions.gpu_count, t[0].time.cost_usd, *_simplest(t[0])))
    result, layout = settled[0]
    count = result.assumptions.gpu_count
    # what the spec's own micro-batch and recomputation cost on those GPUs, where they meet the deadline at all
    plain = estimate(variant(spec, gpu_key, count, layout, mfu))
    untuned = plain.time.cost_usd if _meets(plain, deadline_hours) else None
    runner_up = None
    for other, _ in settled[1:]:
        if _same_layout(other, result) or _same_layout(other, result, zero=False) and \
                other.time.cost_usd == result.time.cost_usd:    # another ZeRO stage at the same price says nothing
            continue
        a = other.assumptions
        runner_up = {**layout_of(other), "gpus": a.gpu_count, "cost_usd": other.time.cost_usd,
                     "micro_batch_size": a.micro_batch_size, "recompute": a.recompute,
                     "recompute_layers": a.recompute_layers}
        break
    return Option(
        gpu=gpu_key, gpus=result.assumptions.gpu_count, layout=layout_of(result),
        memory_per_gpu=result.memory.total_per_gpu, gpu_memory=result.memory.gpu_memory,
        gpu_memory_stated=result.memory.gpu_memory_stated, wall_clock_days=result.time.wall_clock_days,
        gpu_hours=result.time.gpu_hours,
        cost_usd=result.time.cost_usd, micro_batch_size=result.assumptions.micro_batch_size,
        recompute=result.assumptions.recompute, recompute_layers=result.assumptions.recompute_layers,
        untuned_cost_usd=untuned, untuned_fits=plain.memory.fits, runner_up=runner_up,
        bubble_fraction=result.parallelism.bubble_fraction, micro_batches=result.parallelism.micro_batches,
        mfu=result.assumptions.mfu_override,
        mfu_source=None if result.assumptions.mfu_override is None else "--mfu" if mfu is not None else "hardware.mfu",
        not_taken=_not_taken(spec, gpu_key, mfu), spec_gpu=spec.hardware.gpu,
        oversized_batch=oversized_batch(result.assumptions),
        lenders=lenders, caveats=result.time.caveats,
    )


def _simplest(result) -> tuple:  # noqa: ANN001 - an Estimate
    """Among layouts of equal GPUs and cost, estimate's order (costs/run.py): the fewest model-parallel GPUs, the
    fewest pipeline stages; then, at a fixed MFU, which times every layout alike, the lowest ZeRO stage but a ZeRO
    1 estimate would not take (needless_zero_one), and with the step model the one holding least (ZeRO 2 over a
    ZeRO 1 of one micro-batch, which moves as much)."""
    lay, par = layout_of(result), result.parallelism
    fixed = result.assumptions.mfu_override is not None
    zero = (needless_zero_one(par.zero, par.micro_batches, par.pipeline), par.zero) if fixed else (False, 0)
    return (replica(lay), lay["pipeline"], *zero, result.memory.total_per_gpu)


def _quickest(spec: Spec, gpu_key: str, node_size: int, mfu: float | None):  # noqa: ANN202 - an Estimate
    """Where no layout meets the deadline: the quickest run that fits of those the search tries, each layout at
    each micro-batch size on the most GPUs the search gives it (its largest data degree: a fixed batch's
    sequences at that micro-batch, else MAX_COUNT GPUs), with each recomputation; None where none fits."""
    best = None
    batch = spec.training.global_batch_size
    for layout in grid(spec):
        for micro in MICRO_BATCHES:
            if batch and batch % micro:
                continue
            sized = spec.model_copy(update={"training": spec.training.model_copy(update={"micro_batch_size": micro})})
            degrees = _data_degrees(sized, layout, node_size)
            if not len(degrees):
                continue
            laid = variant(sized, gpu_key, degrees[len(degrees) - 1] * replica(layout), layout, mfu)
            fitting = [e for e in (estimate(_trained(laid, micro, recompute, layers))
                                   for recompute, layers in _recompute_choices(laid)) if e.memory.fits]
            if not fitting:
                break       # a larger micro-batch holds more
            quickest = min(fitting, key=lambda e: e.time.wall_clock_days)
            if best is None or quickest.time.wall_clock_days < best.time.wall_clock_days:
                best = quickest
    return best


def _fastest(spec: Spec, best) -> dict[str, Any]:  # noqa: ANN001 - an Estimate
    """Option.fastest: the quickest run's layout, GPUs, days and settings, and what caps its data ranks."""
    batch = spec.training.global_batch_size
    a = best.assumptions
    fixed = spec.parallelism.micro_batches if spec.parallelism is not None else None
    return {**layout_of(best), "gpus": a.gpu_count, "wall_clock_days": best.time.wall_clock_days,
            "micro_batch_size": a.micro_batch_size, "recompute": a.recompute, "recompute_layers": a.recompute_layers,
            # the most data ranks a fixed batch allows at that micro-batch, and at the section's micro-batches a
            # step where it fixes them (None: an open batch)
            "data_cap": batch // (a.micro_batch_size * (fixed or 1)) if batch else None,
            "micro_batches_fixed": fixed is not None}


def _settled(spec: Spec, gpu_key: str, layout: dict[str, Any], searched, node_size: int,  # noqa: ANN001
             deadline_hours: float, mfu: float | None):  # noqa: ANN202 - an Estimate
    """A layout's cheapest micro-batch size and recomputation on the fewest GPUs it meets the deadline on
    (`searched`), then on the fewest GPUs those settings meet it on, which may be fewer."""
    count = searched.assumptions.gpu_count
    result = _tune(variant(spec, gpu_key, count, layout, mfu), searched, deadline_hours)
    a = result.assumptions
    tuned = spec.model_copy(update={"training": spec.training.model_copy(update={
        "micro_batch_size": a.micro_batch_size, "recompute": a.recompute, "recompute_layers": a.recompute_layers})})
    fewer = _fewest(tuned, gpu_key, layout, node_size, deadline_hours, mfu) if tuned != spec else None
    if fewer is not None and fewer.assumptions.gpu_count < count:
        result = _tune(variant(tuned, gpu_key, fewer.assumptions.gpu_count, layout, mfu), fewer, deadline_hours)
    return result


def _not_taken(spec: Spec, gpu_key: str, mfu: float | None) -> list[str]:
    """The spec's hardware settings another GPU type does not take (layouts.variant: another cluster)."""
    hw = spec.hardware
    if gpu_key == hw.gpu:
        return []
    return [name for name, value in (("hardware.mfu", None if mfu is not None else hw.mfu),
                                     ("usd_per_gpu_hour", hw.usd_per_gpu_hour), ("network_gbs", hw.network_gbs))
            if value is not None]


def _fewest(spec: Spec, gpu_key: str, layout: dict[str, Any], node_size: int, deadline_hours: float,
            mfu: float | None):  # noqa: ANN202 - an Estimate or None
    """The estimate at the fewest GPUs that run `layout` (its data-parallel degrees: _data_degrees) and meet the
    deadline; None where none does. Searched from one replica up: a smaller run can take more GPU-hours (its
    optimizer steps more often), so no count below the answer is ruled out by another's GPU-hours."""
    degrees = _data_degrees(spec, layout, node_size)
    model_parallel = replica(layout)

    def meets(d: int) -> bool:
        return _meeting(spec, gpu_key, d * model_parallel, layout, deadline_hours, mfu) is not None

    index = _first(degrees, 0, meets)
    if index is None:
        return None
    return _meeting(spec, gpu_key, degrees[index] * model_parallel, layout, deadline_hours, mfu)


def _meeting(spec: Spec, gpu_key: str, count: int, layout: dict[str, Any], deadline_hours: float,
             mfu: float | None):  # noqa: ANN202 - an Estimate or None
    """The layout on `count` GPUs meeting the deadline: with the spec's micro-batch size and recomputation, else
    with the first micro-batch size (1-8, ascending, as far as they fit) and recomputation (the least held first)
    that does: a layout may fit, or finish in time, only with another micro-batch or with recomputation. None
    where none does."""
    laid = variant(spec, gpu_key, count, layout, mfu)
    e = estimate(laid)
    if _meets(e, deadline_hours):
        return e
    t = spec.training
    own = (t.micro_batch_size, t.recompute, t.recompute_layers)
    plain: dict[int, Any] = {t.micro_batch_size: e} if t.recompute == "none" else {}

    def unrecomputed(micro: int):  # noqa: ANN202 - an Estimate
        if micro not in plain:
            plain[micro] = estimate(_trained(laid, micro, "none", None))
        return plain[micro]

    for recompute, layers in sorted(_recompute_choices(laid), key=_held):
        for micro in _micro_batches(laid):  # larger micro-batches hold more: stop at the first that does not fit
            if (micro, recompute, layers) == own:
                continue
            if recompute != "none" and not _in_time(unrecomputed(micro), deadline_hours):
                continue    # recomputation only adds work to a run already too slow without it
            other = unrecomputed(micro) if recompute == "none" else estimate(_trained(laid, micro, recompute, layers))
            if not other.memory.fits:
                break
            if _meets(other, deadline_hours):
                return other
    return None


def _micro_batches(spec: Spec) -> list[int]:
    """The micro-batch sizes tried on a laid-out spec: those dividing a fixed global batch's share per
    data-parallel rank into micro-batches its pipeline schedule can run (spec_rules.interleaves)."""
    batch, par = spec.training.global_batch_size, spec.parallel
    share = batch // spec.data_parallel if batch else 0
    return [m for m in MICRO_BATCHES
            if not batch or share % m == 0 and interleaves(par.pipeline, par.virtual_stages, share // m)]


def _held(choice: tuple[str, int | None]) -> int:
    """Recomputation choices from the most activation memory held to the least."""
    recompute, layers = choice
    return {"none": 0, "selective": 1, "selective_op": 2, "full": 3 if layers else 4}[recompute]


def _trained(spec: Spec, micro: int, recompute: str, layers: int | None) -> Spec:
    """The laid-out spec with this micro-batch size and recomputation; an open batch keeps the layout's
    micro-batches a step (a fixed one derives them again)."""
    training = spec.training.model_copy(update={"micro_batch_size": micro, "recompute": recompute,
                                                "recompute_layers": layers})
    if spec.training.global_batch_size is None:
        return spec.model_copy(update={"training": training})
    parallelism = spec.parallelism.model_copy(update={"micro_batches": None})
    return spec.model_copy(update={"training": training, "parallelism": parallelism})


def _same_layout(a, b, zero: bool = True) -> bool:  # noqa: ANN001 - Estimates
    """The same split of the GPUs: ZeRO stages differ only where there is more than one data-parallel rank (and
    are not compared with zero=False)."""
    pa, pb = a.parallelism, b.parallelism
    key = lambda p: (p.tensor, p.pipeline, p.data, p.expert_tensor, p.zero if zero and p.data > 1 else 0)  # noqa: E731
    return key(pa) == key(pb)


def _meets(e, deadline_hours: float) -> bool:  # noqa: ANN001 - an Estimate
    return e.memory.fits and _in_time(e, deadline_hours)


def _in_time(e, deadline_hours: float) -> bool:  # noqa: ANN001 - an Estimate
    return e.time.wall_clock_days * HOURS_PER_DAY <= deadline_hours


MICRO_BATCHES = (1, 2, 4, 8)
RECOMPUTE = ("none", "selective", "full")


def _recompute_choices(spec: Spec) -> list[tuple[str, int | None]]:
    """Recomputation tried: none, selective, full of every layer, full of the first half of each pipeline
    stage's layers (training.recompute_layers), which saves memory at half full recomputation's cost, and
    torchtitan's per-op checkpointing (selective_op) where it is modelled: without tensor parallelism, for the
    layers it was written for, with torchao's fp8 linears (not training.fp8_saved_inputs)."""
    stages = pipeline_stages(spec)
    depth = min(stage_depth(spec.model, stage, stages) for stage in range(stage_count(stages)))
    half = [("full", depth // 2)] if depth >= 2 else []
    modelled = spec.parallel.tensor == 1 or tensor_parallel_modelled("selective_op")
    per_op = ([("selective_op", None)] if modelled and not selective_op_rules(spec.model.__dict__.get)
              and not spec.training.fp8_saved_inputs else [])
    choices = [(recompute, None) for recompute in RECOMPUTE] + half + per_op
    return [c for c in choices if not overlap_refuses(spec.parallel.expert_overlap, c[0])]


def _tune(spec: Spec, result, deadline_hours: float):  # noqa: ANN001, ANN202 - Estimate in and out
    """The cheapest micro-batch size (_micro_batches) and recomputation for a laid-out spec on its GPUs."""
    a = result.assumptions
    best = result
    for micro in _micro_batches(spec):
        for recompute, layers in _recompute_choices(spec):     # none first
            same = (micro, recompute, layers) == (a.micro_batch_size, a.recompute, a.recompute_layers)
            e = result if same else estimate(_trained(spec, micro, recompute, layers))
            if _meets(e, deadline_hours) and e.time.cost_usd < best.time.cost_usd:
                best = e
            if recompute == "none" and e.memory.fits:
                break       # recomputation only adds work: it can be cheaper only where none does not fit
    return best


def deadline_options(spec: Spec, deadline_hours: float, gpu_keys: list[str] | None = None,
                     mfu: float | None = None, progress: Callable[[str, int, int], None] | None = None
                     ) -> list[Option]:
    """One option per GPU type (the catalogue, or the given ones), cheapest first, impossible ones last; each
    timed at `mfu` where given, else with the step model. `progress(gpu, done, total)` is called as each GPU
    type's search is in."""
    keys = gpu_keys or list(hardware.catalogue())
    for key in keys:
        hardware.resolve(key)  # an unknown name is the user's error, reported before any work
    # GPU types are searched independently: one process each while CPUs last
    options = []
    for option in imap_forked(lambda key: fewest_gpus(spec, key, deadline_hours, mfu), keys, available_cpus(),
                              ordered=False):
        options.append(option)
        if progress is not None:
            progress(option.gpu, len(options), len(keys))
    order = {key: index for index, key in enumerate(keys)}     # they come in as they finish: equals in order given
    return sorted(options, key=lambda o: (o.cost_usd is None, o.cost_usd or 0.0, order[o.gpu]))

