"""What an estimate resolves once before it computes, and its one time path.

resolve(spec) → Run: the GPU and its kernel tables, the layout (the spec's `parallelism` section, or the
fastest layout of costs/layouts.py's grid that fits hardware.count GPUs), the peak and the price, each with
where it came from. step(run, ...) → StepTime: the step model of costs/step.py, or, when the user gives an
MFU (hardware.mfu / --mfu), model FLOPs / (peak × MFU) with everything else inside that figure.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from costplan.costs import Cost, Shape, layouts, parallel, step
from costplan.costs.components import shape_of, shared_components, stage_parts
from costplan.costs.layers import pipeline_stages
from costplan.costs.time import seconds_at
from costplan.errors import CostplanError, SpecError
from costplan.hardware import GPU
from costplan.loading import at_seq_len
from costplan.records import Record, set_private
from costplan.report import plural
from costplan.spec import NO_PARALLELISM, ParallelismSpec, Spec
from costplan.spec_rules import zero_under_pipeline

MFU_PART = "compute at hardware.mfu"
_HELD_SOURCE = "_layout_source"    # a copy's note of where the layout written into it came from (at_lengths)


class Run(Record):
    """The spec with its layout filled in, and what its time and cost rest on."""

    spec: Spec
    layout_source: str        # "parallelism", "one GPU", or the search that chose it
    gpu: GPU
    peak: float
    mfu: float | None         # the user's utilisation figure, overriding the step model
    price: float
    price_source: str
    # What the layout search already computed for the chosen layout: its stages' memory and (under the step
    # model) its step, so that the estimate does not compute them again. None when nothing was searched.
    memories: list[parallel.StageMemory] | None = None
    stepped: step.StepTime | None = None

    @property
    def time_model(self) -> str:
        return "hardware.mfu" if self.mfu is not None else "step model"


def resolve(spec: Spec) -> Run:
    hw, gpu = spec.hardware, spec.gpu
    price = hw.usd_per_gpu_hour if hw.usd_per_gpu_hour is not None else gpu.usd_per_gpu_hour
    price_source = "hardware.usd_per_gpu_hour" if hw.usd_per_gpu_hour is not None else gpu.price_said
    laid_out, source, memories, stepped = _search(spec)
    return Run(spec=laid_out, layout_source=source, gpu=gpu, peak=gpu.peak_flops(spec.training.precision),
               mfu=hw.mfu, price=price, price_source=price_source, memories=memories, stepped=stepped)


def laid_out_once(spec: Spec) -> Spec:
    """The spec with the layout it resolves to written in, so that variations of it (other sequence lengths)
    keep one layout instead of each choosing its own."""
    return spec if spec.parallelism is not None else _search(spec)[0]


def at_lengths(spec: Spec, lengths: Sequence[int]) -> list[Spec]:
    """The spec trained at each context length on one layout: its own section, or the one resolved at its own
    length, held for every length (so that they compare like for like) and said so in each copy's estimate."""
    if spec.parallelism is not None:
        return [at_seq_len(spec, n) for n in lengths]
    laid_out, source, _, _ = _search(spec)
    held = f"{source} at seq_len {spec.seq_len:,}, held for every length"
    copies = [at_seq_len(laid_out, n) for n in lengths]
    for copy in copies:
        set_private(copy, _HELD_SOURCE, held)
    return copies


def stages_of(spec: Spec, shape: Shape) -> list[dict[str, Cost]]:
    """Each pipeline stage's component costs, to read (shared, not copied, inside shared_components())."""
    p = spec.parallel.pipeline
    return [stage_parts(spec, shape)] if p == 1 else [stage_parts(spec, shape, i, pipeline_stages(spec))
                                                      for i in range(p)]


def _search(spec: Spec) -> tuple[Spec, str, list[parallel.StageMemory] | None, step.StepTime | None]:
    """The spec's own layout, or the fastest of the grid on hardware.count GPUs that fits in memory (or, when
    none fits, the one needing the least), with where it came from, and its stage memories and step time when
    the search computed them."""
    lacks = spec.gpu.lacks(spec.training.precision)
    if lacks:   # a training matter (serving the same spec computes in 16 bits), said before any layout is timed
        raise SpecError(spec.label, [f"training.precision: {spec.gpu.name} has {lacks}"])
    if spec.parallelism is not None:
        return spec, getattr(spec, _HELD_SOURCE, "parallelism"), None, None
    count = spec.hardware.count
    if count == 1:
        return spec.model_copy(update={"parallelism": NO_PARALLELISM}), "one GPU", None, None
    shape = shape_of(spec)
    order = layouts.search_order(spec.model, spec.training.global_batch_size is None, layouts.tensor_degrees(spec))
    capacity = spec.gpu.memory_bytes
    with shared_components():
        taken = [layout for layout in order if layouts.takes(spec, layout)]
        candidates = [_Candidate(spec, count, layout) for layout in taken if layouts.fits_batch(spec, layout, count)]
        if not candidates:
            raise _unsplit_batch(spec, count, order)
        # a batch that most layouts cannot split narrows the search: said, since a rounder batch may cost far less
        t = spec.training
        unsplit = (f"; {len(taken) - len(candidates)} more do not split training.global_batch_size "
                   f"({t.global_batch_size}) into whole micro-batches of {t.micro_batch_size}"
                   if 2 * len(candidates) < len(taken) else "")
        searched = f"{plural(str(len(candidates)), 'layout')} on {count} GPUs{unsplit}"
        if spec.hardware.mfu is None:
            found = _fastest(candidates, shape, capacity)
            source = f"the fastest that fits of {searched}"
        else:   # no step to compare: the fewest model-parallel GPUs, then the lowest ZeRO stage, that fit
            found = _first_fitting(candidates, shape, capacity)
            source = f"the fewest model-parallel GPUs that fit of {searched}"
        if found is not None:
            return found[0], source, found[1], found[2]
        # none fits: the layout needing the least memory (min keeps the first of equals)
        sized = [(c.spec, memories_of(c.spec, shape)) for c in candidates]
        chosen, memories = min(sized, key=lambda x: parallel.fullest(x[1]).total)
        return (chosen, f"none of {len(candidates)} layouts on {count} GPUs fits; the one needing least memory",
                memories, None)


def _unsplit_batch(spec: Spec, count: int, order: tuple[dict, ...]) -> SpecError:
    """No layout of the grid divides the global batch into whole micro-batches on `count` GPUs: the error, with
    the nearest counts on which one does (a layout's replica times a data degree dividing the micro-batches)."""
    t = spec.training
    ranks = t.global_batch_size // t.micro_batch_size
    degrees = {d for k in range(1, math.isqrt(ranks) + 1) if ranks % k == 0 for d in (k, ranks // k)}
    counts = {layouts.replica(layout) * d for layout in order for d in degrees}
    below, above = max((n for n in counts if n < count), default=None), min((n for n in counts if n > count),
                                                                             default=None)
    nearest = " or ".join(str(n) for n in (below, above) if n is not None)
    return SpecError(spec.label, [f"hardware.count: no layout of {count} GPUs splits training.global_batch_size "
                                 f"({t.global_batch_size}) into whole micro-batches of {t.micro_batch_size} over "
                                 f"its data-parallel ranks; {nearest} GPUs would, or give a parallelism section"])


class _Candidate:
    """A layout of the grid, its family (layouts.family) and, built when first needed, the spec laid out on it:
    a search sizes and times few of its layouts."""

    def __init__(self, spec: Spec, count: int, layout: dict):
        self.base, self.count, self.layout = spec, count, layout
        self.family = layouts.family(layout)
        self._section: ParallelismSpec | None = None
        self._spec: Spec | None = None

    @property
    def section(self) -> ParallelismSpec:
        if self._section is None:
            self._section = layouts.section(self.base, self.count, self.layout)
        return self._section

    @property
    def spec(self) -> Spec:
        if self._spec is None:
            self._spec = layouts.variant(self.base, self.base.hardware.gpu, self.count, self.layout,
                                         laid=self.section)
        return self._spec

    def bound(self, dev: step.Device, shape: Shape) -> float:
        """step.sequence_bound of the layout, its spec built only where its layers' timing is new to the search."""
        return step.layout_bound(self.base, self.section, self.count, dev, shape, lambda: self.spec)


def memories_of(spec: Spec, shape: Shape) -> list[parallel.StageMemory]:
    """Each pipeline stage's memory per GPU for a laid-out spec."""
    return parallel.stage_memories(spec, stages_of(spec, shape))


def _needless(spec: Spec) -> bool:
    return needless_zero_one(spec.parallel.zero, spec.micro_batches, spec.parallel.pipeline)


def needless_zero_one(zero: int, micro_batches: int, pipeline: int) -> bool:
    """ZeRO 1 on a step of one micro-batch, where ZeRO 2 may run: it moves the same bytes there and holds less.
    Under a pipeline ZeRO 1 is the only stage (spec_rules.zero_under_pipeline), never needless."""
    return zero == 1 and micro_batches == 1 and not zero_under_pipeline(2, pipeline)


def fits(memories: list[parallel.StageMemory], capacity: float) -> bool:
    """Whether the fullest stage fits `capacity` bytes (an estimate's memory.fits)."""
    return parallel.fullest(memories).total <= capacity


def _first_fitting(candidates: list[_Candidate], shape: Shape, capacity: float
                   ) -> tuple[Spec, list[parallel.StageMemory], None] | None:
    """The fitting layout of the fewest model-parallel GPUs, then the fewest pipeline stages (a bubble the one
    utilisation figure does not see), then the lowest ZeRO stage (the first listed)."""
    for c in sorted(candidates, key=lambda c: (layouts.replica(c.layout), c.layout["pipeline"], c.layout["zero"])):
        if _needless(c.spec):
            continue
        memories = memories_of(c.spec, shape)
        if fits(memories, capacity):
            return c.spec, memories, None
    return None


# A layout is skipped when its step's lower bound exceeds the fastest step found by more than rounding can
# explain (the bound and the step sum the same terms in different orders).
BOUND_MARGIN = 1e-9


def _fastest(candidates: list[_Candidate], shape: Shape, capacity: float
             ) -> tuple[Spec, list[parallel.StageMemory], step.StepTime] | None:
    """The fitting layout of the shortest step per sequence (then the fewest model-parallel GPUs, the lowest ZeRO
    stage, the first listed), with its memories and step; of a family (layouts.family), the lowest ZeRO stage that
    fits, and ZeRO 2 beside a fitting ZeRO 1. Per sequence, because without training.global_batch_size each layout's
    batch is its own (micro-batch × micro-batches × data ranks): a shorter step of a smaller batch trains slower.
    Layouts are taken in the order of lower bounds of their steps per sequence (step.sequence_bound, one a family:
    ZeRO does not change it), and once a bound is above the fastest step found no later layout is sized or timed:
    none can be faster. None when no layout fits."""
    def key(stepped: step.StepTime, c: Spec, index: int) -> tuple:
        return (stepped.seconds / c.global_batch_size, c.parallel.tensor * c.parallel.pipeline, c.parallel.zero,
                index)

    dev = _device(candidates[0].base)      # every layout runs on the spec's GPU, precision and kernels
    bounds: dict[tuple, float] = {}
    with _named(candidates[0].base):      # one spec laid out each way: its name for all
        for c in candidates:
            if c.family not in bounds:
                bounds[c.family] = c.bound(dev, shape)
    bounded = all(map(math.isfinite, bounds.values()))     # else every layout is timed, in the listed order
    order = sorted(range(len(candidates)), key=lambda i: (bounds[candidates[i].family], i)) if bounded else None
    best, done = None, set()
    for index in order if order is not None else range(len(candidates)):
        fam = candidates[index].family
        if order is not None and best is not None and bounds[fam] * (1 - BOUND_MARGIN) > best[0][0]:
            break       # this bound and every later one exceed the fastest step per sequence
        c = candidates[index].spec
        if fam in done or _needless(c):
            continue
        memories = memories_of(c, shape)
        if not fits(memories, capacity):
            continue
        if c.parallel.zero != 1:    # ZeRO 2 may still be faster than ZeRO 1 (layouts.family)
            done.add(fam)
        stepped = step_of(c, shape, memories)
        if best is None or key(stepped, c, index) < best[0]:
            best = key(stepped, c, index), c, memories, stepped
    return None if best is None else best[1:]


@contextmanager
def _named(spec: Spec) -> Iterator[None]:
    """A problem of the device the step model times on (no tables, or none for the attention kernel a spec asks
    for, found when an attention core is timed) as the spec's: its file named."""
    try:
        yield
    except SpecError:
        raise
    except CostplanError as exc:
        raise SpecError(spec.label, [str(exc)]) from None


def _device(spec: Spec) -> step.Device:
    t = spec.training
    with _named(spec):
        return step.device(spec.gpu, t.precision, t.attention_kernel)


def step_of(spec: Spec, shape: Shape,
            memories: list[parallel.StageMemory] | None = None) -> step.StepTime:
    """The step model's time for a laid-out spec (its stages' memory, when already known, gives their
    parameters)."""
    memories = memories or memories_of(spec, shape)
    params = [(m.params, m.routed_params) for m in memories]
    with _named(spec):
        return step.step_time(spec, _device(spec), shape, params)


def step_time(run: Run, shape: Shape, memories: list[parallel.StageMemory], model_flops_per_step: float
              ) -> step.StepTime:
    """Seconds of one optimizer step on every GPU, by the step model or the user's MFU."""
    spec = run.spec
    if run.stepped is not None:
        return run.stepped
    if run.mfu is not None:
        seconds = seconds_at(model_flops_per_step / spec.hardware.count, run.peak, run.mfu)
        return step.StepTime(seconds=seconds, breakdown={MFU_PART: seconds}, communication_bytes={},
                             communication_seconds={}, overlaps="communication and bubbles inside the MFU")
    return step_of(spec, shape, memories)
