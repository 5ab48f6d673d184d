"""`costplan sweep`: one spec over the cartesian product of --vary values, every point validated like a file.

Each point is the spec's raw mapping with the point's values applied as `--set` overrides, so defaults that
derive from other fields (d_ff from d_model, seq_len from max_seq_len) follow the swept value. The file is read
once; a point costs one validation and one estimate. The last --vary varies fastest. A spec on several GPUs
without a parallelism section runs every point on the layout its base resolves to (unless an axis varies the
layout or the GPUs, or the point does not split or fit on it: then the point searches its own).
"""
from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from costplan import scaling, yamlio
from costplan.costs import accuracy
from costplan.costs.components import shape_of
from costplan.costs.estimate import estimate, estimate_sized, shared_components
from costplan.costs.inference import serve
from costplan.costs.serving_result import ServingEstimate
from costplan.costs.layouts import fits_batch, takes
from costplan.costs.result import Estimate
from costplan.costs.run import fits, laid_out_once, memories_of
from costplan.errors import CostplanError, SpecError, did_you_mean, printable
from costplan.forked import available_cpus, can_fork, imap_forked
from costplan.loading import RawSpec, field_path, parse_override, sets_field
from costplan.spec import ParallelismSpec, Spec
from costplan.report import parallel_layout
from costplan.spec_rules import parallel_rules

MAX_POINTS = 100_000   # more needs --limit: a million points would take minutes
# A worker process (forked, so it starts with the file read and the held layout resolved) pays for itself from
# about this many points; fewer run in this process alone.
POINTS_PER_JOB = 1_000
# Points a worker takes at a time: small enough to balance workers whose points cost unequally (larger models
# search more layouts), large enough that neighbouring points still share their layers' costs.
CHUNK = 250

# The result columns of every point, after the varied keys: name → value of its Estimate.
COLUMNS: dict[str, Callable[[Estimate], Any]] = {
    "params": lambda e: e.params.total,
    "active_params": lambda e: e.params.active,
    "training_flops": lambda e: e.flops.training_total,
    "memory_per_gpu": lambda e: e.memory.total_per_gpu,
    "fits": lambda e: e.memory.fits,
    # tensor × pipeline × data and what else splits it (the ZeRO stage too: memory per GPU depends on it); the
    # base spec's where it holds
    "layout": lambda e: parallel_layout(e.parallelism),
    "gpu_hours": lambda e: e.time.gpu_hours,
    "wall_clock_days": lambda e: e.time.wall_clock_days,
    "cost_usd": lambda e: e.time.cost_usd,
    "loss": lambda e: e.scaling.loss,
}


RUN_COLUMNS = ("gpu_hours", "wall_clock_days", "cost_usd")    # what a run takes, where it fits


# With --serving, the serving estimate of every point at its `serving` settings (costs/inference.py) adds these;
# a point whose model does not fit has no times or prices (None). What `costplan serve` refuses (a batch that does
# not fit, latency targets missed) is a column here, so that one point does not stop the sweep.
SERVING_COLUMNS: dict[str, Callable[[ServingEstimate], Any]] = {
    # the replica's GPUs, an automatic serving.tensor's choice (it moves max_batch and every time)
    "serving_gpus_per_replica": lambda s: s.assumptions.tensor,
    "kv_cache_per_sequence": lambda s: s.memory.kv_cache_per_sequence,
    "max_batch": lambda s: s.memory.max_batch,
    "serving_fits": lambda s: s.fits,
    "meets_targets": lambda s: s.meets_targets,
    "ttft_seconds": lambda s: s.latency.ttft_seconds,
    "tpot_seconds": lambda s: s.latency.tpot_seconds,
    "tpot_under_load_seconds": lambda s: s.latency.tpot_under_load_seconds,
    "output_tokens_per_second_per_gpu": lambda s: s.throughput.tokens_per_second_per_gpu,
    "usd_per_million_input_tokens": lambda s: s.cost.usd_per_million_input_tokens,
    "usd_per_million_output_tokens": lambda s: s.cost.usd_per_million_output_tokens,
}


@dataclass(frozen=True)
class Axis:
    """One --vary: a field path and its values, with the text each value was written as."""

    key: str
    values: tuple[Any, ...]
    texts: tuple[str, ...]


def parse_vary(text: str) -> Axis:
    """`model.n_layers=12,24,48` → Axis; values are read as YAML like --set values."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CostplanError(f"--vary {printable(text)}: expected KEY=V1,V2,..., e.g. model.n_layers=12,24,48")
    try:
        path = ".".join(field_path(key))
    except CostplanError as exc:
        raise CostplanError(f"--vary {printable(text)}: {exc}") from None
    texts = tuple(part.strip() for part in _top_level(raw))
    if any(not part for part in texts):
        raise CostplanError(f"--vary {printable(text)}: an empty value; write values separated by commas")
    values = tuple(yamlio.value(part) for part in texts)
    first: dict[tuple, int] = {}
    for i, value in enumerate(values):
        if (j := first.setdefault(_identity(value), i)) != i:
            raise CostplanError(f"--vary {path}: {printable(texts[j])} and {printable(texts[i])} are the same value; "
                                "give each once (every point would be evaluated twice)")
    return Axis(path, values, texts)


def _as_held(spec: Spec, key: str, value: Any) -> Any:
    """A varied number as the point's spec holds it: 1e9 tokens, read as a float, is the whole number the spec
    keeps (and estimate prints), as 1_000_000_000 is; any other value as the --vary wrote it."""
    if not isinstance(value, float):
        return value
    held: Any = spec
    for name in key.split("."):
        held = getattr(held, name, None)
    return held if isinstance(held, int) and not isinstance(held, bool) and held == value else value


def _identity(value: Any) -> tuple:
    """What makes two --vary values the same point: 2 and 2.0 are (in a list too: [16, 16] and [16, 16.0]), true
    and 1 are not."""
    if isinstance(value, bool):
        return ("flag", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    return ("other", json.dumps(_whole(value), sort_keys=True, default=str))


def _whole(value: Any) -> Any:
    """A value with its whole floats as ints, at any depth (json writes 16.0 and 16 apart)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value


def _top_level(raw: str) -> list[str]:
    """The values of a --vary, split at commas outside brackets and braces: `[12, 12],[8, 16]` is two lists
    (pipeline stage_layers), as YAML's flow style writes them."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(raw):
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            parts.append(raw[start:i])
            start = i + 1
    return [*parts, raw[start:]]


def check_axes(axes: Sequence[Axis], overrides: Iterable[str] = ()) -> None:
    """Each field is varied once and not also set: a later value would silently replace the earlier ones
    (`--vary n_layers=1,2 --vary model.n_layers=3,4` would never evaluate 1 and 2)."""
    seen: dict[str, str] = {}
    for axis in axes:
        if axis.key in seen:
            raise CostplanError(f"--vary {axis.key}: varied twice ({seen[axis.key]} and "
                                f"{printable(', '.join(axis.texts))}); give all its values in one --vary")
        seen[axis.key] = printable(", ".join(axis.texts))
    for axis in axes:       # a section's value replaces the whole section, the field varied inside it too
        inner = next((key for key in seen if key.startswith(axis.key + ".")), None)
        if inner is not None:
            raise CostplanError(f"--vary {axis.key}: its values replace the whole section, and --vary {inner} "
                                "varies a field inside it; vary the fields, or the section alone")
    for text in overrides:
        path, value = parse_override(text)
        key = ".".join(path)
        if key in seen:
            raise CostplanError(f"--vary {key}: also set to {printable(text.partition('=')[2])} (by --set or its "
                                "shortcut option); vary it or set it, not both")
        for varied in seen:
            if key.startswith(varied + "."):
                raise CostplanError(f"--vary {varied}: its values replace the whole section, dropping {key} "
                                    f"(set to {printable(text.partition('=')[2])} by --set or its shortcut "
                                    "option); vary the section's fields instead")
            if varied.startswith(key + ".") and sets_field(path, value, varied.split(".")):
                raise CostplanError(f"--vary {varied}: also set by --set {printable(text)}; vary it or set it, "
                                    "not both")


def check_serving_axes(axes: Sequence[Axis], serving: bool) -> None:
    """A serving field moves only the serving columns: without them every row would be the same."""
    if serving:
        return
    varied = [axis.key for axis in axes if axis.key == "serving" or axis.key.startswith("serving.")]
    if varied:
        raise CostplanError(f"--vary {varied[0]}: moves only the serving columns; add --serving")


def size(axes: Sequence[Axis]) -> int:
    return math.prod(len(axis.values) for axis in axes)


def check_size(axes: Sequence[Axis], limit: int | None) -> None:
    points = size(axes)
    if points > MAX_POINTS and limit is None:
        raise CostplanError(f"--vary: {points:,} points; more than {MAX_POINTS:,} need --limit N (the first N "
                            "points are evaluated)")


@dataclass(frozen=True)
class Point:
    """One evaluated point: the varied values, their positions on each axis, and the result columns."""

    varied: dict[str, Any]
    positions: tuple[int, ...]
    values: dict[str, Any]
    held: bool = False      # it ran on the base spec's layout (held_layout), not one it searched
    misses: tuple[accuracy.Miss, ...] = ()      # kinds of run the step model that timed it underestimates


def run(raw: RawSpec, axes: Sequence[Axis], overrides: Iterable[str] = (), law: scaling.ScalingLaw | None = None,
        limit: int | None = None, serving: bool = False, jobs: int | None = 1,
        progress: Callable[[int, int], None] | None = None, search_layouts: bool = False) -> list[Point]:
    """Every point (or the first `limit`), validated and estimated (and its serving estimated, with
    `serving`); all invalid points are reported together as one CostplanError, each problem once with the
    first point that shows it. `jobs` processes share the points (None: one per CPU this process may use, each
    with at least POINTS_PER_JOB points, as `costplan sweep` does; the default keeps them in the caller's
    process, which a library should not fork unasked); the result does not depend on it.
    `progress(done, total)` is called as each chunk of points is in. Points hold the base spec's layout where it
    serves them (held_layout), unless `search_layouts`: then each searches its own, as `estimate` would."""
    check_size(axes, limit)
    law = law or scaling.resolve(None)
    overrides = list(overrides)
    combos = list(itertools.islice(itertools.product(*(range(len(axis.values)) for axis in axes)), limit))
    points, problems = [], {}
    with shared_components():
        base = None if search_layouts else held_layout(raw, axes, overrides)
        held = base.parallelism if base is not None else None
        held = (held, held.model_dump(), held.model_copy(update={"micro_batches": None})) if held else None
        work = _Work(raw, tuple(axes), overrides, law, serving, held)
        for chunk_points, chunk_problems, done in _evaluate(work, combos, _job_count(jobs, len(combos))):
            points += chunk_points
            for problem, where in chunk_problems.items():
                problems.setdefault(problem, where)
            if progress is not None:
                progress(done, len(combos))
    if problems:
        invalid = len(combos) - len(points)
        raise CostplanError("\n".join([*problems.values(), f"{invalid:,} of {len(combos):,} points are invalid; each "
                                       "problem above is named once, with the first point that shows it"]))
    return points


def _job_count(jobs: int | None, points: int) -> int:
    if not can_fork():
        return 1
    if jobs is None:
        return max(1, min(available_cpus(), points // POINTS_PER_JOB))
    return max(1, min(jobs, points))


@dataclass(frozen=True)
class _Work:
    """What every point of one sweep shares."""

    raw: RawSpec
    axes: tuple[Axis, ...]
    overrides: list[str]
    law: scaling.ScalingLaw
    serving: bool
    held: tuple[ParallelismSpec, dict[str, Any], ParallelismSpec] | None

    def __call__(self, combos: Sequence[tuple[int, ...]]) -> tuple[list[Point], dict[str, str]]:
        """The points of `combos` in order, and each problem with the first of them that shows it."""
        points, problems = [], {}
        for combo in combos:
            sets = [f"{axis.key}={axis.texts[i]}" for axis, i in zip(self.axes, combo)]
            try:    # a setting only training or only serving refuses is the point's problem too
                spec = self.raw.validate([*self.overrides, *sets])
                result, held = _estimate_on(spec, self.held, self.law)
                served = serve(spec) if self.serving else None
            except SpecError as exc:
                for problem in exc.problems:
                    problems.setdefault(problem, f"{self.raw.label} [{', '.join(map(printable, sets))}]: {problem}")
                continue
            values = {name: get(result) for name, get in COLUMNS.items()}
            if served is not None:
                values.update({name: get(served) for name, get in SERVING_COLUMNS.items()})
            points.append(Point({axis.key: _as_held(spec, axis.key, axis.values[i]) for axis, i in zip(self.axes,
                                                                                               combo)},
                                combo, values, held, tuple(result.time.caveats)))
        return points, problems


def _evaluate(work: _Work, combos: list[tuple[int, ...]], jobs: int):
    """(points, problems, points evaluated so far) of consecutive chunks of `combos`, in order, over `jobs`
    processes (forked: they inherit the work rather than receive it pickled)."""
    bounds = [(start, min(start + CHUNK, len(combos))) for start in range(0, len(combos), CHUNK)]
    chunks = imap_forked(lambda bound: work(combos[bound[0]:bound[1]]), bounds, jobs)
    for (_, stop), (points, problems) in zip(bounds, chunks):
        yield points, problems, stop


def held_layout(raw: RawSpec, axes: Sequence[Axis], overrides: list[str]) -> Spec | None:
    """The base spec laid out as it resolves, whose layout every point holds where it serves it, when the spec
    leaves the layout to costplan and no axis varies the layout or the GPUs: points then differ in what they vary,
    not in a layout search each."""
    if any(axis.key.split(".")[0] in ("parallelism", "hardware") for axis in axes):
        return None
    try:
        base = raw.validate(overrides)
    except SpecError:
        return None
    if base.parallelism is not None or base.hardware.count == 1:
        return None
    return laid_out_once(base)


def misses(points: Sequence[Point]) -> list[accuracy.Miss]:
    """Each kind of run the step model underestimates that any point is of, once, in the order first met."""
    return list(dict.fromkeys(miss for point in points for miss in point.misses))


def held_note(points: Sequence[Point]) -> str | None:
    """How many points ran on the base spec's layout (sweep's default), where any did: their figures are that
    layout's, where an estimate of the same point would search its own."""
    held = [point for point in points if point.held]
    if not held:
        return None
    which = "every point" if len(held) == len(points) else f"{len(held):,} of {len(points):,} points"
    return (f"{which} ran on the base spec's layout, {held[0].values['layout']}, as a point does where "
            "it splits the point's model and batch and fits; an estimate of a point searches its own "
            "(--search-layouts: so does every point)")


def _estimate_on(spec: Spec, held: tuple[ParallelismSpec, dict[str, Any], ParallelismSpec] | None,
                 law: scaling.ScalingLaw) -> tuple[Estimate, bool]:
    """The point's estimate, and whether it ran on the held layout (the section, its mapping and the section that
    leaves the micro-batches to the batch, made once per sweep): there where it splits the point's model and batch
    and fits, else on the point's own layout search. A point with a global batch takes its micro-batches from it;
    one without keeps the layout's, which with the data ranks make its batch (cleared, a point had trained a step
    of one micro-batch where the base spec's estimate runs 32)."""
    if held is None or spec.parallelism is not None:
        return estimate(spec, law), False
    section, layout, unset = held
    section = unset if spec.training.global_batch_size is not None else section
    if not fits_batch(spec, layout, spec.hardware.count) or not takes(spec, layout) or parallel_rules(
            section.__dict__.get, spec.model.__dict__.get, spec.training.__dict__.get, spec.hardware.__dict__.get):
        return estimate(spec, law), False   # the layout does not tile or split the point (a section's rules)
    laid = spec.model_copy(update={"parallelism": section})
    memories = memories_of(laid, shape_of(laid))
    if not fits(memories, laid.gpu.memory_bytes):  # sized before it is timed: a layout it outgrows costs no estimate
        return estimate(spec, law), False
    return estimate_sized(laid, memories, law), True


def sort_key(key: str | None, axes: Sequence[Axis], serving: bool = False) -> Callable[[Point], Any] | None:
    """How to order points by a result column or a varied key (numbers by value, other values in the order
    given), checked before any point is evaluated."""
    if key is None:
        return None
    if key in RUN_COLUMNS:      # a run that does not fit its GPUs takes no time and costs nothing: last
        return lambda point: (not point.values["fits"], point.values[key])
    if key in COLUMNS:
        return lambda point: point.values[key]
    served = list(SERVING_COLUMNS) if serving else []
    if key in served:
        # None where the model does not fit: those points go last
        return lambda point: (point.values[key] is None, point.values[key] or 0)
    try:
        path = ".".join(field_path(key))
    except CostplanError:
        path = key
    keys = [axis.key for axis in axes]
    if path not in keys:
        names = [*COLUMNS, *served, *keys]
        raise CostplanError(f"--sort-by: {key!r} is not a column{did_you_mean(key, names)}; one of "
                            f"{', '.join(names)}")
    index = keys.index(path)

    def by_value(point: Point) -> tuple:
        value = point.varied[path]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (0, value, 0) if numeric else (1, 0, point.positions[index])

    return by_value
