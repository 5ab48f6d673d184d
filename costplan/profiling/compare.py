"""Estimate next to measurement: one `Check` per metric (and per component with detail), each with its
relative error, tolerance and status. Raw numbers only, and in a note as `figures` in the row's unit, which
report.py formats; the few notes whose numbers are in another unit (a matmul rate, a bandwidth) use report.py's
formatters here.

Which analytic number each measurement is compared with:
- parameters: total and active (convention 5), exactly;
- forward FLOPs: the matmul FLOPs the reference model executes, exactly, by FlopCounterMode and by fvcore,
  against the analytic forward as executed in the counter's convention (costs convention 8: `hw_fwd` with
  Shape.skip_masked_tiles off). For dense and flash attention that is the model FLOPs; banded and sparse
  tiles and padded expert buffers make it differ, and the model FLOPs are then given in the note;
- training FLOPs: forward, backward and recomputation as executed, against `hw_flops` in the same convention;
- activations: bytes saved for backward for the micro-batch (convention 7);
- peak: weights + gradients + optimizer states + activations, against the measured peak of a step;
- time: the step's model FLOPs (3 × forward) / (peak FLOP/s × MFU) of the spec's hardware, the estimate's
  own time model (GPU-hours per step), compared only when that
  hardware was calibrated on the device at hand (`costplan calibrate`), since a datasheet peak says nothing
  about a CPU or another GPU.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Union

from costplan import report
from costplan.costs.estimate import COMPONENTS, components, estimate, peak_stage, shape_of, whole_model
from costplan.costs.norm import LAYER_NORMS
from costplan.costs.serving_ops import forward_kernels
from costplan.costs.step import host_and_device
from costplan.errors import CostplanError
from costplan.loading import with_overrides
from costplan.profiling.fixed_costs import checkpoint_cost_of, fixed_costs_of, paired, with_fixed_costs
from costplan.profiling.measure import PROBE_SIZE, Measurement
from costplan.profiling.precision import FALLBACK, PrecisionChoice, runs_as
from costplan.profiling.scope import OUTSIDE
from costplan.profiling.step import unfused
from costplan.spec import Spec

Number = Union[int, float]

# Relative tolerances by metric: parameters and FLOPs are integers, so any difference is a bug on one side.
DEFAULT_TOLERANCES: dict[str, float] = {"params": 0.0, "flops": 0.0, "activations": 0.05, "peak": 0.10,
                                        "time": 0.30, "kv_cache": 0.0, "weights": 0.0}


@dataclass(frozen=True)
class Check:
    metric: str                  # a DEFAULT_TOLERANCES key
    item: str                    # what is compared, for people
    estimate: Number | None
    measured: Number | None
    unit: str                    # count | flop | bytes | seconds
    tolerance: float | None
    component: str = ""          # "" for a whole-model row
    note: str = ""
    figures: tuple[tuple[str, Number], ...] = ()   # (label, raw number) the note goes on with, in `unit`;
                                                   # report.py formats them, so the note holds no raw number
    required: bool = False       # `check --strict`: a comparison that could not be made fails instead of skipping
    # both numbers there, the comparison withheld (a step time on hardware not calibrated on this device): skipped
    # as one that could not be made, unlike a row shown for information (no tolerance), which --strict leaves be
    withheld: bool = False

    @property
    def relative_error(self) -> float | None:
        if self.estimate is None or self.measured is None:
            return None
        if self.estimate == 0:
            return 0.0 if self.measured == 0 else float("inf")
        return (self.measured - self.estimate) / self.estimate

    @property
    def status(self) -> str:
        if self.relative_error is None or self.withheld:     # a number missing, or the comparison withheld
            return "FAIL" if self.required else "skip"
        if self.tolerance is None:          # both shown, for information: nothing to hold them to
            return "skip"
        if self.tolerance == 0:
            return "ok" if self.measured == self.estimate else "FAIL"
        return "ok" if abs(self.relative_error) <= self.tolerance else "FAIL"

    @property
    def name(self) -> str:
        return f"{self.item} [{self.component}]" if self.component else self.item


def parse_tolerances(texts: tuple[str, ...] | list[str]) -> dict[str, float]:
    """`--tolerance peak=0.2` or `peak=20%` → {'peak': 0.2}, over the defaults."""
    result = dict(DEFAULT_TOLERANCES)
    for i, text in enumerate(texts):
        key, sep, raw = text.partition("=")
        key, raw = key.strip(), raw.strip()
        if not sep or key not in DEFAULT_TOLERANCES:
            raise CostplanError(f"--tolerance {text}: expected METRIC=X with METRIC one of "
                                f"{', '.join(DEFAULT_TOLERANCES)}, e.g. peak=0.2 or peak=20%")
        try:
            value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
        except ValueError:
            raise CostplanError(f"--tolerance {text}: {raw!r} is not a number") from None
        if not 0 <= value < 100:
            raise CostplanError(f"--tolerance {text}: expected a fraction from 0 to under 100 (0.05 or 5%), "
                                f"got {raw}")
        if value > 1 and not raw.endswith("%"):     # 5 is read as 500%, rarely what was meant: ask for the sign
            raise CostplanError(f"--tolerance {text}: {raw} is {value:.0%}; a fraction: {value / 100:g} or {raw}% "
                                f"for {raw}%, or {value * 100:g}% if {value:.0%} is meant")
        if any(other.partition("=")[0].strip() == key for other in texts[:i]):
            raise CostplanError(f"--tolerance {text}: {key} is given twice; give it once")
        result[key] = value
    return result


def _total(parts: Mapping[str, Number]) -> Number:
    return sum(parts.values())


def _component_checks(metric: str, item: str, unit: str, estimated: Mapping[str, Number],
                      measured: Mapping[str, Number], tolerance: float) -> list[Check]:
    keys = [k for k in COMPONENTS if estimated.get(k) or measured.get(k)]
    keys += [k for k in measured if k not in COMPONENTS and measured[k]]
    return [Check(metric, item, estimated.get(k, 0), measured.get(k, 0), unit, tolerance, component=k)
            for k in keys]


def checks(m: Measurement, tolerances: Mapping[str, float] = DEFAULT_TOLERANCES,
           detail: bool = False) -> list[Check]:
    """Every comparison for one measured spec; per-component rows follow each total when `detail`."""
    spec, size = m.spec, m.batch
    # Counts and memory, which no device's speed bears on: `--gpu` may name a calibration with no rate at the
    # spec's precision (fp8, which the reference computes, and is timed, in bf16: precision.runs_as).
    whole, stage = whole_model(spec), peak_stage(spec)
    shape = replace(shape_of(spec), skip_masked_tiles=False)     # the FLOP counter's convention
    parts = components(spec, shape)
    tol = tolerances.get
    rows: list[Check] = []

    def add(total: Check, per_component: list[Check]) -> None:
        rows.append(total)
        if detail:
            rows.extend(per_component)

    add(Check("params", "parameters (total)", whole.params, _total(m.params), "count", tol("params")),
        _component_checks("params", "parameters", "count", {k: c.params for k, c in parts.items()}, m.params,
                          tol("params")))
    rows.append(Check("params", "parameters (active per token)", whole.active_params, m.active_params, "count",
                      tol("params"), note="what one token touches, embeddings whole"))

    forward = {k: c.hw_fwd * size for k, c in parts.items()}
    model_flops = sum(c.flops for c in parts.values()) * size
    model_note = (() if model_flops == _total(forward) else
                  (("model FLOPs (keys a query may see, top_k experts)", model_flops),))
    add(Check("flops", "forward FLOPs (FlopCounterMode)", _total(forward), _total(m.flops.forward), "flop",
              tol("flops"), note=f"one step: batch {size} × {spec.seq_len} tokens", figures=model_note),
        _component_checks("flops", "forward FLOPs", "flop", forward, m.flops.forward, tol("flops")))
    if m.fvcore is not None:
        add(Check("flops", "forward FLOPs (fvcore)", _total(forward), _total(m.fvcore.forward), "flop",
                  tol("flops"), note="; ".join(filter(None, ["2 per multiply-add", m.fvcore_note]))),
            _component_checks("flops", "forward FLOPs (fvcore)", "flop", forward, m.fvcore.forward,
                              tol("flops")))
    else:
        rows.append(Check("flops", "forward FLOPs (fvcore)", _total(forward), None, "flop", tol("flops"),
                          note=m.fvcore_note))
    executed = {k: c.hw_flops * size for k, c in parts.items()}
    add(Check("flops", "training FLOPs (executed)", _total(executed), _total(m.flops.training), "flop",
              tol("flops"), note="forward + backward + recompute",
              figures=(("model FLOPs 3 × forward =", 3 * model_flops),)),
        _component_checks("flops", "training FLOPs", "flop", executed, m.flops.training, tol("flops")))
    missed = m.flops.ops.uncounted_contractions
    rows.append(Check("flops", "matmul-like ops without a FLOP formula", 0, sum(missed.values()), "count",
                      tol("flops"), note=", ".join(f"{k} ×{n}" for k, n in missed.items())))

    saved = dict(m.activations)
    note = ""
    if spec.training.recompute in ("full", "selective_op") and saved.get(OUTSIDE):
        # A checkpointed layer keeps its input, which is its first norm's input: the analytic model books it
        # under norms.
        saved["norms"] = saved.get("norms", 0) + saved.pop(OUTSIDE)
        note = "checkpointed layer inputs counted under norms"
    if m.device == "cpu" and spec.model.norm in LAYER_NORMS and spec.training.precision not in ("fp32", "tf32"):
        note = "; ".join(filter(None, [note, "CPU LayerNorm keeps 16-bit mean/rstd, CUDA fp32 (as estimated)"]))
    add(Check("activations", "activations saved for backward", stage.activations, _total(saved), "bytes",
              tol("activations"), note=note or f"micro-batch {size}"),
        _component_checks("activations", "activations", "bytes",
                          {k: c.activations * size + c.shared_activations for k, c in parts.items()}, saved,
                          tol("activations")))
    rows.append(Check("peak", "peak memory of a training step", stage.total, m.peak.bytes,
                      "bytes", tol("peak"), note=f"estimated at {stage.peak_at}; {m.peak.method}"))
    rows.append(time_check(m, tol("time")))
    return rows


def time_check(m: Measurement, tolerance: float | None) -> Check:
    """Estimated against measured step time; compared only on hardware calibrated for this device. Where that
    hardware has fixed costs, they are the ones the tiny step timed between the steps gives (fixed_costs.py)."""
    item = "step time (forward + backward + optimizer)"
    if m.timing is None:
        return Check("time", item, None, None, "seconds", tolerance, note=m.time_note)
    spec = m.timed_spec or m.spec
    gpu = spec.gpu
    notes = [f"median of {m.timing.runs}, IQR ±{100 * m.timing.spread / 2:.0f}%"]
    precision = spec.training.precision
    lacks = gpu.lacks(precision)
    if lacks:      # nor in fp32 or the precision the reference computes in
        notes.append(f"not compared: hardware.gpu {gpu.key} has {lacks} to estimate the step with")
        return Check("time", item, None, m.timing.median, "seconds", None, note="; ".join(notes))
    try:
        estimated = estimate(one_step(spec, m.batch)).time.step_seconds
    except CostplanError as exc:    # a device the step model cannot time (no kernel tables): this row alone
        notes.append(f"not estimated: {exc}")
        return Check("time", item, None, m.timing.median, "seconds", None, note="; ".join(notes))
    if m.timing.settled:
        notes.append(f"after {m.timing.settled} steps for the experts' GEMM shapes to settle")
    if m.time_overrides:
        reason = f" ({m.time_note})" if m.time_note else ""
        notes.append("timed with --set " + " ".join(m.time_overrides) + reason)
    if m.time_precision is not None and precision_note(m.time_precision):
        notes.append(precision_note(m.time_precision))
    if gpu.calibrated_on != m.device_name:
        notes.append(f"not compared: hardware.gpu {gpu.key} was not calibrated on this device "
                     "(costplan calibrate)")
        return Check("time", item, estimated, m.timing.median, "seconds", None, note="; ".join(notes), withheld=True)
    if m.timing.spread > DISTURBED:
        notes.append("not compared: the steps' times spread wider than their median (the machine's load changed "
                     "while they ran); check again")
        return Check("time", item, estimated, m.timing.median, "seconds", None, note="; ".join(notes), withheld=True)
    if m.time_fixed is not None and paired(gpu, m.device_name):
        filed = estimated
        paired_estimate, note, stalled = _paired_fixed_costs(spec, m, gpu)
        if stalled:     # the tiny step stalled, not the machine's kernels slowing tenfold: the file's stand
            notes.append(f"{note}: over {STALLED:g}x the file's, a stall while they were timed, so the file's are used")
        else:
            estimated = paired_estimate
            notes.append(f"{note}; at the file's: {report.seconds(filed)}")
    drift = machine_drift(gpu, spec.training.precision if m.time_precision is None else m.time_precision.used,
                          m.time_probe)
    if drift:
        notes.append(drift)
    return Check("time", item, estimated, m.timing.median, "seconds", tolerance, note="; ".join(notes))


# The steps' interquartile range over their median past which their median measures the machine's load, not the
# step (a quiet CPU's steps spread a few percent; a stalled check of specs/ci spread ±2141%)
DISTURBED = 1.0
# Fixed costs timed between the steps this many times the calibration's: a stall while the tiny step ran (5,352 µs
# a kernel against the file's 28.8 µs, where 27-70 µs is the range a shared machine moves them over)
STALLED = 10.0


def _paired_fixed_costs(spec: Spec, m: Measurement, gpu) -> tuple[float, str, bool]:  # noqa: ANN001 - hardware.GPU
    """The step estimated with the fixed costs that the tiny step, timed between the measured steps, gives on
    this hardware's rooflines; a note of them against the file's; and whether one is over STALLED times the
    file's."""
    step, update, loop, *checkpointed = m.time_fixed
    k = gpu.kernels
    how = f"median of {m.timing.runs} steps, timed between the checked steps,"
    fixed = fixed_costs_of(spec.training.precision, gpu.key, step, update, how,
                           loop if k.loop_kernel_seconds is not None else None)
    if checkpointed:
        fixed.checkpoint, fixed.checkpoint_source = checkpoint_cost_of(spec.training.precision, gpu.key,
                                                                       *checkpointed, fixed, how)
    with with_fixed_costs(gpu, fixed) as path:
        estimated = estimate(one_step(with_overrides(spec, [f"hardware.gpu={path}"]), m.batch)).time.step_seconds
    figures = [(fixed.kernel, k.kernel_seconds, "a kernel"), (fixed.update, k.update_seconds, "an update")]
    if k.loop_kernel_seconds is not None:
        figures.append((fixed.loop, k.loop_kernel_seconds, "a loop's kernel"))
    if checkpointed:
        figures.append((fixed.checkpoint, k.checkpoint_op_seconds, "an op under per-op checkpointing"))
    note = ("fixed costs timed between the steps: "
            + ", ".join(f"{report.number(value * 1e6)} µs {what}" for value, _, what in figures) + " (the file's "
            + ", ".join(report.number(f.value * 1e6) if f else "none" for _, f, _ in figures) + ")")
    stalled = any(f is not None and value > STALLED * f.value for value, f, _ in figures)
    return estimated, note, stalled


DRIFT = 0.2     # a probed matmul rate this far from the calibration's says the machine's load has changed


def machine_drift(gpu, precision: str, rate: float | None) -> str:  # noqa: ANN001 - hardware.GPU
    """A note when `precision` matmuls at PROBE_SIZE, probed at `rate` FLOP/s right after the timed steps, run
    more than DRIFT away from what the calibrated file measured at that size (best of several both times): on a
    shared machine another job's load moves the steps and the calibration alike; "" otherwise."""
    curves = gpu.curves()
    curve = curves.gemm.get(precision) if rate and curves is not None else None
    peak = gpu.peak_flops(precision) if curve is not None else None
    if not peak:
        return ""
    change = rate / (peak * curve.at(PROBE_SIZE)) - 1
    if abs(change) <= DRIFT:
        return ""
    return (f"{precision} matmuls (n = {PROBE_SIZE}) run {change:+.0%} against the calibration's rate: this "
            "machine's load has changed since; calibrate again under the same conditions")


def one_step(spec: Spec, batch: int) -> Spec:
    """The spec as profile times it: one micro-batch of `batch` sequences on one device, then the optimizer, its
    memory-bound work as eager PyTorch runs it (training.fusion eager, torch's cross-entropy, gradients added by
    separate kernels): the reference model is unfused."""
    spec = unfused(spec)
    training = spec.training.model_copy(update={"micro_batch_size": batch, "global_batch_size": None,
                                                "grad_accumulation": "add"})
    return spec.model_copy(update={"training": training, "parallelism": None,
                                   "hardware": spec.hardware.model_copy(update={"count": 1})})


def precision_note(choice: PrecisionChoice) -> str:
    """Why a step was timed in another precision than the spec's (or why not in fp32), with the probed rates;
    "" when the spec's precision ran."""
    if not choice.fell_back and not choice.why_not:
        return ""
    computed = runs_as(choice.requested)
    rates = (f"{computed} matmuls run at {report.flops_rate(choice.rates[computed])} on this device against "
             f"{report.flops_rate(choice.rates[FALLBACK])} in {FALLBACK}") if choice.rates else ""
    runs = f"the reference runs {choice.requested}'s matmuls in {computed}" if computed != choice.requested else ""
    if choice.why_not:
        return (f"timed in {choice.used}{f' ({runs})' if runs else ''}" + (f" although {rates}" if rates else "")
                + f": {choice.why_not}")
    return f"timed in {choice.used}: " + ", and ".join(filter(None, (runs, rates if choice.used == FALLBACK else "")))


# ---------------------------------------------------------------------------------------------- serving
def serve_checks(m, tolerances: Mapping[str, float] = DEFAULT_TOLERANCES) -> list[Check]:  # noqa: ANN001
    """Serving measurements (profiling/serve.py) against costs/serving.py and the decode roofline."""
    from costplan.costs import serving as sizes
    from costplan.profiling.serve import decode_bytes_read

    spec, tol = m.spec, tolerances.get
    skip = m.unsupported
    end = sizes.cached_tokens(m.prompt, m.output)
    rows = [Check("kv_cache", f"KV cache, one sequence of {end} tokens ({m.kv_format})",
                  sizes.kv_cache_bytes(spec, end, m.kv_format), m.kv_bytes, "bytes",
                  tol("kv_cache"), note=skip)]
    # The counter sees what the kernels execute: whole tiles of windowed patterns (convention 8).
    parts = components(spec, replace(shape_of(spec), skip_masked_tiles=False))
    tiles = sum(c.hw_fwd - c.flops for c in parts.values())
    model_flops = sizes.prefill_flops(spec, m.prompt)
    rows.append(Check("flops", f"prefill FLOPs, {m.prompt}-token prompt (FlopCounterMode)", model_flops + tiles,
                      m.prefill_flops, "flop", tol("flops"), note=skip or "logits of the last token only",
                      figures=(("model FLOPs (keys a query may see)", model_flops),) if tiles and not skip else ()))
    note = skip or "the new token attends to the cache and itself; logits included"
    if not skip and "mla" in spec.model.attention_types:
        note += ("; MLA decodes in latent space (W_UK, W_UV absorbed, DeepSeek-V2 §2.1.3): 2·H·(2·d_c + r) "
                 "FLOPs per key and layer")
    rows.append(Check("flops", f"decode FLOPs, one token at context {m.context}", sizes.decode_flops(spec, m.context),
                      m.decode_flops, "flop", tol("flops"), note=note))
    for fmt in sizes.WEIGHT_FORMATS:
        scales = {"fp8": "an fp32 scale per matrix", "int8": "a 16-bit scale per output row",
                  "int4": f"a 16-bit scale per {m.group_size} inputs"}.get(fmt, "every tensor")
        rows.append(Check("weights", f"weights stored as {fmt}", sizes.weight_bytes(spec, fmt, m.group_size),
                          m.weight_bytes[fmt], "bytes", tol("weights"),
                          note=f"{scales}" + ("; embeddings, head, norms, biases, routers in bf16"
                                              if fmt != "bf16" else "")))
    rows.append(_decode_time_check(m, tol("time"), decode_bytes_read))
    return rows


def _decode_time_check(m, tolerance: float | None, bytes_read) -> Check:  # noqa: ANN001
    """Measured decode step against the bytes it reads at the rate calibrate's matrix-vector products read them
    (timed between the steps, so that a shared machine's load falls on both alike), plus the fixed cost of each
    kernel the step launches where the hardware, calibrated on this device, measures one (kernel_seconds)."""
    item = f"decode step time at context {m.context}, batch 1"
    if m.timing is None:
        return Check("time", item, None, None, "seconds", tolerance, note=m.time_note)
    spec = m.timed_spec
    gpu = spec.gpu
    element = 4 if m.timed_dtype == "float32" else 2
    read = bytes_read(spec, m.context, element)
    curves = gpu.curves()
    share = curves.weight_read.value if curves is not None and curves.weight_read is not None else 1.0
    fixed = curves.kernel_seconds if curves is not None else None
    launched = forward_kernels(spec.model, 1, 1)
    estimate = host_and_device(gpu, read / m.read_rate, launched * fixed.value if fixed is not None else 0.0)
    kernels = f"{report.number(launched)} kernels × {report.number(fixed.value * 1e6)} µs" if fixed is not None else ""
    notes = [f"median of {m.timing.runs}, IQR ±{100 * m.timing.spread / 2:.0f}%, {m.timed_dtype}",
             f"{report.size(read)} read at {report.number(m.read_rate / 1e9)} GB/s (calibrate's matrix-vector "
             f"products, timed between the steps; the hardware file's "
             f"{report.number(gpu.memory_bandwidth_gbs * share)} GB/s)"
             + ((f", or {kernels} if longer" if gpu.queues_kernels else f" + {kernels}") if kernels else "")]
    if m.time_overrides:
        notes.append("timed with --set " + " ".join(m.time_overrides))
    if gpu.calibrated_on != m.device_name:
        notes.append(f"not compared: hardware.gpu {gpu.key} was not calibrated on this device "
                     "(costplan calibrate)")
        tolerance = None
    return Check("time", item, estimate, m.timing.median, "seconds", tolerance, note="; ".join(notes))
