"""Measure this machine's achieved matmul FLOP/s, memory bandwidth and training-step MFU, as a hardware file.

The file has the shape of a catalogue entry (costplan/data/hardware.yaml), so a spec can use it as
`hardware.gpu: FILE`, but its numbers are achieved, not datasheet ones:

- peak_tflops: per precision, the best rate of square matmuls over a range of sizes (2·n³ FLOPs each,
  best of several runs: the device's attainable matmul rate);
- memory_bandwidth_gbs: a large tensor copy, read + write bytes over the best time;
- mfu: model FLOPs (3 × forward) of a reference training step over its median time and the calibrated
  bf16 (or fp32) rate: how much of the matmul rate a whole step keeps on this device;
- calibrated_on: the device, as `costplan profile` describes it; profile compares step times only against a
  file calibrated on the device it runs on;
- kernels: the step model's efficiency curves (costplan/kernels.py `Curves`), measured here: `gemm` per
  precision, each size's matmul rate over that precision's peak_tflops (so at most 1), against n (a square
  matmul's (m·n·k)^(1/3)); `attention_forward` and `attention_backward` per head dimension, the FLOP/s of
  torch's scaled_dot_product_attention with is_causal=True over the file's 16-bit peak, against the sequence
  length; `collective` and `collective_internode` are not measured (one device): flat curves at 1.0, so
  collectives run at the file's interconnect_gbs; `memory_bound`, the median rate of add, multiply, GELU, SiLU,
  softmax and LayerNorm over the copy's; `depthwise_conv_forward` and `_backward`, AFT-conv's convolution, and
  `block_gemm`, the block loop's batched matmuls, each by the FLOPs of one call over the 16-bit peak;
  `kernel_seconds` and `update_seconds`, the fixed cost of a kernel and of one parameter tensor's optimizer
  update (below); on a GPU, `sustained_share`, what 8192³ bf16 matmuls issued back to back for 20 s hold in
  their last quarter over their best burst after an idle second (the `gemm` and attention curves, bursts too,
  then say `timed: burst`, and a training step runs them at that share: a step holds the GPU at its power limit);
  on a CPU, `first_touch`, what the first write to a large new tensor costs beyond the write (its pages faulted
  in and zeroed by the operating system: glibc maps each block from its mmap threshold up afresh), and from what
  size (calibrate_memory.py first_touch).

The fixed costs come from a tiny step, the reference model's layer shape at widths where no kernel has work to
speak of (fixed_costs.py FIXED_STEP): its optimizer update, timed alone, less the update's roofline, over the
parameter tensors it updates, is `update_seconds`; the rest of the step, less the roofline of its operations,
over the kernels the step model counts in it (costs/ops.py kernels), is `kernel_seconds`. On a CPU these are
the framework's work around each operation (dispatch, autograd, the optimizer's per-tensor loop), which
dominates small steps. `loop_kernel_seconds` is a tiny block loop's time, less its matmuls at `block_gemm`,
over its kernels; and
`checkpoint_op_seconds` what torch's per-op checkpointing adds per op its dispatch mode handles: the same tiny
step with flash attention and no biases, timed with `training.recompute: selective_op` and without, the
difference less the rerun's kernels over the ops of its layers' forward, views included (ops.dispatched).

Attention runs in the precision a bf16 spec's step is timed in (precision.choose on the measured rates): bf16,
or fp32 on a CPU whose bf16 matmuls run at under a quarter of the fp32 rate, and is then compared with the fp32
peak.
Its FLOPs are counted as a causal kernel executes them, as FlashAttention's own benchmark counts them
(github.com/Dao-AILab/flash-attention, benchmarks/benchmark_flash_attention.py, flops()): forward
2·2·(batch·heads)·s²·d / 2 (half the score matrix), backward 2.5 × that; the backward's time is the best
forward + backward less the best forward.

The whole stays within a time budget: a matmul size or attention sequence length whose predicted time would
overrun its phase's share is skipped (the smallest is always measured), attention calls are made shorter
(fewer sequences per call) when the share is small, the fixed costs are medians of fewer runs (a tenth of the
budget, MIN_FIXED_RUNS to FIXED_RUNS), and the reference step, measured last in what is left, is timed fewer times
(at least timing.MIN_RUNS), or on fewer layers when even that would overrun. Where bf16 matmuls run at under a
quarter of the fp32 rate (a CPU without native bf16), the reference step runs in fp32, as `profile` times steps there
(precision.choose).
"""
from __future__ import annotations

import datetime
import functools
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from costplan import report, yamlio
from costplan.costs.estimate import estimate
from costplan.errors import CostplanError
from costplan.kernels import MAX_EFFICIENCY as CAP
from costplan.kernels import Curves
from costplan.profiling.measure import (MEMORY_FRACTION, available_bytes, describe, meminfo_bytes, merged,
                                        shrunk)
from costplan.profiling.model import build_model
from costplan.profiling.precision import DTYPES, FALLBACK, SLOW_FRACTION
from costplan.profiling.step import Trainer, batch, unfused
from costplan.loading import load_spec, with_overrides
from costplan.profiling.calibrate_attention import (BACKWARD_FLOPS, Attention, attention_precision, attention_rates,
                                                    block_gemm_rates, depthwise_conv_rates)
from costplan.profiling.fixed_costs import (Fixed, FixedStep, checkpoint_cost_of, fixed_costs_of, tiny_checkpointed,
                                            trainer_of)
from costplan.profiling.calibrate_memory import (COPY_BYTES, copy_bandwidth, first_touch, memory_bound_rate,
                                                 weight_read_rate)
from costplan.profiling.timing import (BEST_OF, MIN_RUNS, best_seconds, median_seconds, queued_note, synchronize,
                                      time_steps)

DEFAULT_BUDGET = 180.0      # seconds for the whole calibration
MATMUL_SHARE = 0.4          # of the budget, for the matmul rates
ATTENTION_SHARE = 0.15      # of the budget, for the attention curves; the reference step gets what is left
SIZES = {"cpu": (64, 128, 256, 512, 1024), "cuda": (1024, 2048, 4096, 8192)}
PRECISIONS = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "bf16", "fp16")}
# The reference step for the MFU: GPT-2 small's layer shape, shortened where the device is slow.
REFERENCE = {"cpu": ("gpt2-small", ["model.n_layers=2", "training.seq_len=256", "training.micro_batch_size=2"]),
             "cuda": ("gpt2-small", ["training.micro_batch_size=8"])}
FIXED_RUNS = 100
MIN_FIXED_RUNS = 20         # the fewest a median of the tiny step's times is taken over
FIXED_SHARE = 0.1           # of the budget, for the fixed costs (before the reference step, which takes the rest)
# A GPU's GEMMs above are timed in bursts at its boost clock; a training step holds it at its power limit, which
# it reaches within seconds of steady matmuls. None: not measured (a CPU's rates are taken as sustained).
SOAK_SECONDS = {"cpu": None, "cuda": 20.0}
SOAK_SIZE = {"cpu": 256, "cuda": 8192}
SOAK_CALLS = 10             # matmuls timed together, between two synchronisations
NOT_MEASURED = ("not measured: calibrated on one device; collectives run at the hardware file's "
                "interconnect_gbs")


@dataclass
class Calibration:
    device: str
    rates: dict[str, dict[int, float]]      # precision → size → FLOP/s
    bandwidth: float                        # bytes/s
    interconnect: float | None              # host → device bytes/s (CUDA)
    memory_bytes: int
    mfu: float
    mfu_source: str
    attention: Attention
    date: str                               # when it was measured (ISO)
    fixed: Fixed | None = None              # seconds per kernel and per parameter tensor's update
    memory_bound: tuple[float, str] | None = None   # the memory-bound kernels' bytes/s, and what was timed
    weight_read: tuple[float, str] | None = None    # a matrix-vector product's bytes read/s, and what was timed
    depthwise_conv: tuple[dict, dict, str] | None = None   # AFT-conv's convolution: FLOP/s fwd, bwd by call; what
    block_gemm: tuple[dict, str] | None = None      # the block loop's batched matmuls: FLOP/s by call; what
    sustained: tuple[float, str] | None = None      # a matmul's sustained over its burst rate; how measured
    first_touch: tuple[float, int, str] | None = None       # a fresh allocation's seconds per byte, from what
    #                                                         size, and what was timed (calibrate_memory.py)

    measured_mfu: float = 0.0       # the reference step's, before it is capped at 1 (a timing disturbed)

    @property
    def peaks(self) -> dict[str, float]:
        return {p: max(by_size.values()) for p, by_size in self.rates.items()}

    @property
    def doubts(self) -> list[str]:
        """What in the file a disturbed timing may have made wrong, for a warning each."""
        out = []
        if self.measured_mfu > 1:
            out.append(f"the reference step ran at {self.measured_mfu:.3g}x the measured matmul peak, so that peak "
                       "(and every rate over it) is low: the matmuls were slowed while timed (another load on the "
                       "machine?); the file says mfu 1.0; calibrate again on a quiet machine")
        if self.fixed is not None and self.fixed.kernel <= 0:
            out.append("no fixed cost per kernel: the tiny step less its rooflines came out at zero or below "
                       "(timing noise); the file leaves kernel_seconds out, so small steps will be estimated fast")
        if self.fixed is not None and self.fixed.update <= 0:
            out.append("no fixed cost per parameter tensor's update: the tiny step's update less its roofline came "
                       "out at zero or below (timing noise); the file leaves update_seconds out, so small steps' "
                       "updates will be estimated fast")
        return out


def matmul_rate(n: int, precision: str, device: torch.device) -> float:
    """Achieved FLOP/s of an n×n by n×n matmul (TF32 tensor cores only for tf32)."""
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        return 2 * n**3 / best_seconds(lambda: a @ b, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def matmul_rates(precision: str, device: torch.device, seconds: float) -> dict[int, float]:
    """matmul_rate over SIZES, smallest first, leaving out a size whose predicted time (from the rate of the
    size before) would take the total past `seconds`; the smallest is always measured."""
    started = time.perf_counter()
    rates: dict[int, float] = {}
    for n in SIZES[device.type]:
        if rates:
            predicted = (BEST_OF + 1) * 2 * n**3 / max(rates.values())
            if time.perf_counter() - started + predicted > seconds:
                break
        rates[n] = matmul_rate(n, precision, device)
    return rates


def sustained_share(precision: str, device: torch.device, seconds: float) -> tuple[float, str]:
    """What square matmuls of SOAK_SIZE sustain when issued back to back for `seconds` (the last quarter of
    them), over their best of BEST_OF after a second's idle (a burst), capped at 1; and how it was measured."""
    n = SOAK_SIZE[device.type]
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    a @ b
    time.sleep(1.0)
    burst = best_seconds(lambda: a @ b, device)
    windows = []            # seconds of each SOAK_CALLS matmuls
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(windows) < 4:
        begun = time.perf_counter()
        for _ in range(SOAK_CALLS):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        windows.append(time.perf_counter() - begun)
    last = windows[-max(1, len(windows) // 4):]
    held = sum(last) / (len(last) * SOAK_CALLS)
    share = min(1.0, burst / held)
    how = (f"{precision} {n}x{n}x{n} matmuls issued back to back for {report.seconds(time.perf_counter() - started)}: "
           f"the last quarter's {report.flops_rate(2 * n**3 / held)} over the best of {BEST_OF} after an idle "
           f"second's {report.flops_rate(2 * n**3 / burst)}")
    return share, how


def host_to_device(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    src = torch.empty(COPY_BYTES["cuda"] // 4, dtype=torch.float32).pin_memory()
    return src.nbytes / best_seconds(lambda: src.to(device, non_blocking=True), device)


def reference_mfu(device: torch.device, peaks: dict[str, float], seconds: float,
                  progress: Callable[[str], None]) -> tuple[float, str]:
    """Model FLOPs per second of the reference step over the calibrated rate at its precision, timed for
    about `seconds` (above 1 where the rate was timed low)."""
    name, overrides = REFERENCE[device.type]
    precision = attention_precision(peaks)
    overrides = [*overrides, f"training.precision={precision}"]
    spec = load_spec(name, overrides)
    size = spec.training.micro_batch_size
    # A step takes at least its FLOPs at the peak rate; 1 warm-up + MIN_RUNS of them must fit, or the smallest
    # copy tried runs when what is left of the budget holds none
    smaller, _ = shrunk(spec, size, peaks[precision], int(available_bytes(device) * MEMORY_FRACTION),
                        seconds / (1 + MIN_RUNS))
    if smaller:
        overrides = functools.reduce(merged, smaller, overrides)
        spec = with_overrides(spec, smaller)
    why = ""
    if precision != "bf16" and "bf16" in peaks:
        why = (f" (bf16 matmuls run at {report.flops_rate(peaks['bf16'])} here against "
               f"{report.flops_rate(peaks[precision])} in {precision})")
    progress(f"reference step: {name} with --set {' '.join(overrides)}{why}, for up to "
             f"{report.seconds(seconds)}")
    trainer = Trainer(build_model(unfused(spec), device=device), spec)
    data = batch(spec, size, device)
    timing = time_steps(lambda: trainer.step(data), device, budget=seconds)
    model_flops = estimate(spec).flops.training_per_token * spec.seq_len * size
    mfu = model_flops / timing.median / peaks[precision]
    source = (f"measured: {name} with --set {' '.join(overrides)}{why}, median of {timing.runs} steps "
              f"{timing.median:.4g} s for {model_flops} model FLOPs, over the {precision} rate")
    return mfu, source


def calibrate(device: torch.device, budget: float = DEFAULT_BUDGET,
              progress: Callable[[str], None] = lambda line: None) -> Calibration:
    """Every measurement, within about `budget` seconds; `progress` gets a line as each phase starts or ends."""
    started = time.perf_counter()
    rates = {}
    precisions = PRECISIONS[device.type]
    for p in precisions:
        share = MATMUL_SHARE * budget / len(precisions)
        rates[p] = matmul_rates(p, device, share)
        sizes = ", ".join(str(n) for n in rates[p])
        progress(f"{p} matmuls (n = {sizes}): best {report.flops_rate(max(rates[p].values()))}")
    peaks = {p: max(r.values()) for p, r in rates.items()}
    bandwidth = copy_bandwidth(device)
    interconnect = host_to_device(device)
    precision = attention_precision(peaks)
    memory_bound = memory_bound_rate(device, precision)
    weight_read = weight_read_rate(device)
    progress(f"memory bandwidth: measured; memory-bound kernels at {memory_bound[0] / bandwidth:.2f} of a copy's, "
             f"matrix-vector reads at {weight_read[0] / bandwidth:.2f}")
    touched = first_touch(device)
    if touched is not None:
        progress(f"fresh memory: {touched[0] * 1e12:.3g} ps a byte on its first write, for allocations of "
                 f"{report.size(touched[1])} or more")
    attention = attention_rates(peaks[precision], precision, device, ATTENTION_SHARE * budget, progress)
    conv = depthwise_conv_rates(attention.precision, device)
    progress(f"{attention.precision} depthwise convolution (AFT-conv): forward "
             f"{report.flops_rate(min(conv[0].values()))}-{report.flops_rate(max(conv[0].values()))}, backward "
             f"{report.flops_rate(min(conv[1].values()))}-{report.flops_rate(max(conv[1].values()))} by call size")
    blocks = block_gemm_rates(attention.precision, device)
    progress(f"{attention.precision} block loop matmuls: {report.flops_rate(min(blocks[0].values()))}-"
             f"{report.flops_rate(max(blocks[0].values()))} by call size")
    progress("collectives: not measured (one device)")
    sustained = None
    if SOAK_SECONDS[device.type]:
        progress(f"sustained {precision} matmuls: {report.seconds(SOAK_SECONDS[device.type])} back to back")
        sustained = sustained_share(precision, device, SOAK_SECONDS[device.type])
        progress(f"sustained {precision} matmuls: {sustained[0]:.3f} of their burst rate")
    memory = (torch.cuda.get_device_properties(device).total_memory if device.type == "cuda"
              else _total_ram())
    # the reference step's MFU is measured last, in what is left of the budget; the fixed costs' rooflines do
    # not read it
    measured = Calibration(device=describe(device), rates=rates, bandwidth=bandwidth, interconnect=interconnect,
                           memory_bytes=memory, mfu=1.0, mfu_source="not yet measured", attention=attention,
                           date=datetime.date.today().isoformat(), memory_bound=memory_bound,
                           weight_read=weight_read, depthwise_conv=conv, block_gemm=blocks, sustained=sustained,
                           first_touch=touched)
    measured.fixed = fixed_costs(measured, device, precision, FIXED_SHARE * budget)
    checkpoint = measured.fixed.checkpoint_source
    if not checkpoint.startswith("not measured"):
        checkpoint = f"{measured.fixed.checkpoint * 1e6:.3g} µs"
    progress(f"fixed costs: {measured.fixed.kernel * 1e6:.3g} µs per kernel, {measured.fixed.update * 1e6:.3g} µs "
             f"per parameter tensor's update, {measured.fixed.loop * 1e6:.3g} µs per kernel of a block loop, "
             f"per op under per-op checkpointing: {checkpoint}")
    left = budget - (time.perf_counter() - started)
    measured.measured_mfu, measured.mfu_source = reference_mfu(device, peaks, max(left, 0.0), progress)
    measured.mfu = min(1.0, measured.measured_mfu)
    progress(f"done in {report.seconds(time.perf_counter() - started)} (budget {report.seconds(budget)})")
    return measured


def fixed_costs(c: Calibration, device: torch.device, precision: str, seconds: float | None = None) -> Fixed:
    """Seconds per kernel, per parameter tensor's update and per kernel of a block loop, from the tiny step and
    loop (profiling/fixed_costs.py), their times the medians of FIXED_RUNS, or of as many runs (at least
    MIN_FIXED_RUNS) as take about `seconds` at one tiny step's time, on this calibration's rooflines."""
    tiny = FixedStep(device, precision)
    runs = FIXED_RUNS
    if seconds is not None:     # five timings of about a tiny step each (the update, the loop: less)
        begun = time.perf_counter()
        tiny.trainer.step(tiny.data)
        synchronize(device)
        one = time.perf_counter() - begun
        runs = max(MIN_FIXED_RUNS, min(FIXED_RUNS, int(seconds / (5 * one))))

    def gradients() -> None:        # what the update reads (it clears them)
        tiny.trainer.accumulate(*tiny.data)

    update = median_seconds(tiny.trainer.update, gradients, device, runs)
    step = median_seconds(lambda: tiny.trainer.step(tiny.data), lambda: None, device, runs)
    loop = median_seconds(tiny.loop.seconds, lambda: None, device, runs)
    timed = []      # the tiny step as per-op checkpointing takes it, without it and with it
    unmeasured = ""
    try:
        for on in (False, True):
            trainer, data = trainer_of(tiny_checkpointed(precision, on), device)
            timed.append(median_seconds(lambda: trainer.step(data), lambda: None, device, runs))
    except CostplanError as exc:    # a torch too old for the checkpoint policy: the other costs stand
        unmeasured = f"not measured: {exc}"
    how = f"median of {runs} runs"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "calibrated.yaml"
        path.write_text(yamlio.dumps(hardware_entry(c)), encoding="utf-8")
        fixed = fixed_costs_of(precision, str(path), step, update, how, loop)
        if not unmeasured:
            plain, checkpointed = timed
            fixed.checkpoint, fixed.checkpoint_source = checkpoint_cost_of(precision, str(path), plain,
                                                                           checkpointed, fixed, how)
    on = f"measured by costplan calibrate on {c.device} on {c.date}"
    fixed.source, fixed.loop_source = f"{on}: {fixed.source}", f"{on}: {fixed.loop_source}"
    fixed.checkpoint_source = unmeasured or f"{on}: {fixed.checkpoint_source}"
    return fixed


def _total_ram() -> int:
    total = meminfo_bytes("MemTotal")
    return total if total is not None else available_bytes(torch.device("cpu"))


def _curve(by_size: dict[int, float], peak: float, source: str) -> dict:
    """A Curve's mapping: each rate over `peak`, capped at CAP (and the source then says how many were)."""
    points = [[x, min(CAP, rate / peak)] for x, rate in sorted(by_size.items())]
    capped = sum(rate / peak > CAP for rate in by_size.values())
    if capped:
        source += (f"; {capped} of {len(points)} points capped at {CAP} (faster than the best matmul measured, "
                   "whose sizes the time budget cut)")
    return {"points": points, "source": source}


def kernel_curves(c: Calibration) -> dict:
    """The calibration's efficiency curves as the `kernels:` mapping of a hardware file (kernels.Curves)."""
    on = f"measured by costplan calibrate on {c.device} on {c.date}"
    peaks = c.peaks
    queued = queued_note(c.device.split(":")[0])
    gemm = {}
    for p, by_size in c.rates.items():
        slow = ""
        if p != FALLBACK and FALLBACK in peaks and peaks[p] < SLOW_FRACTION * peaks[FALLBACK]:
            slow = (f" (at {report.flops_rate(peaks[p])} against {report.flops_rate(peaks[FALLBACK])} in fp32: "
                    f"no native {p} kernels here)")
        gemm[p] = _curve(by_size, peaks[p], f"{on}: best of {BEST_OF} square {p} matmuls{queued}, n = "
                         f"{', '.join(str(n) for n in by_size)}, over the best of them (peak_tflops.{p}){slow}")
    entry: dict = {"gemm": gemm}
    a = c.attention
    against = "the bf16 peak" if a.precision == "bf16" else (
        f"the {a.precision} peak (bf16 runs at under a quarter of the fp32 rate here, so 16-bit steps are timed in "
        f"{a.precision})")
    for name, table, what in (("attention_forward", a.forward, "forward"),
                              ("attention_backward", a.backward, "backward")):
        counted = ("2·2·bh·s²·d/2 FLOPs (causal: half the score matrix)" if what == "forward" else
                   f"{BACKWARD_FLOPS} × the forward's FLOPs, timed as forward + backward less forward")
        entry[name] = {d: _curve(by_len, peaks[a.precision], (
            f"{on}: {a.precision} torch scaled_dot_product_attention {what}, is_causal=True, head_dim {d}, "
            f"batch·heads {', '.join(str(a.heads[d][s]) for s in by_len)} at s = "
            f"{', '.join(str(s) for s in by_len)}, best of {BEST_OF}{queued}; {counted}, over {against}"))
            for d, by_len in table.items()}
    if c.sustained is not None:         # the curves are bursts: a step runs them at the share measured
        for curve in (*gemm.values(), *entry["attention_forward"].values(), *entry["attention_backward"].values()):
            curve["timed"] = "burst"
        share, how = c.sustained
        entry["sustained_share"] = {"value": share, "source": f"{on}: {how}"}
    entry["collective"] = {"points": [[1, 1.0]], "source": NOT_MEASURED}
    entry["collective_internode"] = {"points": [[1, 1.0]], "source": NOT_MEASURED}
    for name, measured in (("memory_bound", c.memory_bound), ("weight_read", c.weight_read)):
        if measured is not None:        # a rate over the copy's
            rate, what = measured
            entry[name] = {"value": rate / c.bandwidth, "source": (
                f"{on}: {what}, {rate / 1e9:.4g} GB/s, over the copy's {c.bandwidth / 1e9:.4g} GB/s")}
    if c.first_touch is not None:
        cost, threshold, what = c.first_touch
        entry["first_touch"] = {"seconds_per_byte": cost, "from_bytes": threshold, "source": f"{on}: {what}"}

    def by_call(rates: dict[float, float], what: str) -> dict:
        """A rate curve against one call's FLOPs, over the attention curves' peak."""
        return {"points": [[size, rate / peaks[a.precision]] for size, rate in sorted(rates.items())],
                "source": (f"{on}: {what}; {report.flops_rate(min(rates.values()))} to "
                           f"{report.flops_rate(max(rates.values()))} over {against}")}

    if c.depthwise_conv is not None:
        forward, backward, what = c.depthwise_conv
        entry["depthwise_conv_forward"] = by_call(forward, what)
        entry["depthwise_conv_backward"] = by_call(backward, what)
    if c.block_gemm is not None:
        entry["block_gemm"] = by_call(*c.block_gemm)
    if c.fixed is not None:     # a cost lost in the timing noise is left out (a Figure is positive)
        if c.fixed.kernel > 0:
            entry["kernel_seconds"] = {"value": c.fixed.kernel, "source": c.fixed.source}
        if c.fixed.update > 0:
            entry["update_seconds"] = {"value": c.fixed.update, "source": c.fixed.source}
        if c.fixed.loop > 0:
            entry["loop_kernel_seconds"] = {"value": c.fixed.loop, "source": c.fixed.loop_source}
        if c.fixed.checkpoint > 0:
            entry["checkpoint_op_seconds"] = {"value": c.fixed.checkpoint, "source": c.fixed.checkpoint_source}
    return entry


def hardware_entry(c: Calibration) -> dict:
    """The calibration as a hardware file mapping (the catalogue's fields, plus calibrated_on and kernels)."""
    sizes = "; ".join(f"{p} n = {', '.join(str(n) for n in by_size)}" for p, by_size in c.rates.items())
    entry = {
        "name": f"calibrated {c.device}",
        "peak_tflops": {p: rate / 1e12 for p, rate in c.peaks.items()},
        "memory_gib": c.memory_bytes / 2**30,
        "memory_bandwidth_gbs": c.bandwidth / 1e9,
        # No interconnect on a CPU; its memory bandwidth stands in (the field is required).
        "interconnect_gbs": (c.interconnect or c.bandwidth) / 1e9,
        "mfu": c.mfu,
        "mfu_source": c.mfu_source,
        "usd_per_gpu_hour": 0.0,
        "price_date": datetime.date.today().isoformat(),
        "price_source": "not measured; set hardware.usd_per_gpu_hour in the spec",
        "source": (f"costplan calibrate with torch {torch.__version__}: best of {BEST_OF} square matmuls ("
                   f"{sizes}); a {COPY_BYTES[c.device.split(':')[0]] // 2**20} MiB copy"
                   + ("; pinned host-to-device copy" if c.interconnect else "")),
        "calibrated_on": c.device,
    }
    kernels = kernel_curves(c)
    Curves.model_validate(kernels)          # a bad curve fails here, before the file is written
    entry["kernels"] = kernels
    return entry
