"""Kernel-level efficiencies of a device (data/kernels.yaml): the fraction of its catalogue peaks that
memory-bound kernels, GEMMs, attention kernels and collectives reach, and how long a small all-reduce takes
inside a node and across nodes, each with a source.

Two kinds of figure: single numbers for the serving time model (`Efficiencies`), and curves by shape for the
training step model (`Curves`): GEMM efficiency by size, attention forward and backward efficiency by sequence
length and head dimension, collective bus bandwidth by message size."""
from __future__ import annotations

import functools
import math
from typing import Literal

from costplan import bundled, yamlio
from costplan.kinds import REAL, FieldProblems, Invalid, Kind, ListOf, Nullable, Place, Then, TupleOf, real_number
from costplan.records import set_private
from costplan.sections import Section, field, kind
from costplan.validation import Width, bounded

# The compute precisions a device's peaks and GEMM curves are given at (hardware.GPU.peak_tflops, Curves.gemm).
Precision = Literal["fp32", "tf32", "fp16", "bf16", "fp8"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "fp8")

FIELDS = ("memory", "matmul", "attention", "allreduce_bus", "allreduce_latency_us",
          "allreduce_latency_internode_us")
# Optional: the HBM efficiency of decode kernels that read fp8, int8 or int4 weights; where a device has no
# kernel-level figure for a format, its weights stream at `memory`, as 16-bit ones do.
WEIGHT_FIELDS = {"fp8": "memory_fp8", "int8": "memory_int8", "int4": "memory_int4"}
LATENCIES = ("allreduce_latency_us", "allreduce_latency_internode_us")     # microseconds, not fractions


HeadDim = Width      # an attention table's key: a head dimension, a whole number above 0
# bounded above so that a figure times a count stays a finite float (1e300 seconds a kernel had printed ∞ hours)
FigureValue = bounded("FigureValue", real_number, gt=0, le=1e30)


class Figure(Section):
    """One number and where it comes from."""

    value: FigureValue
    source: str


class Efficiencies(Section):
    """What fraction of its peaks a device's kernels reach (the LATENCIES are times, not fractions)."""

    device: str                # the catalogue key the fractions come from, or "default"
    latency_device: str = "default"    # the entry the all-reduce latencies come from (a PCIe board: its own)
    memory: Figure
    matmul: Figure
    attention: Figure
    allreduce_bus: Figure
    allreduce_latency_us: Figure             # a small all-reduce among the GPUs of one node
    allreduce_latency_internode_us: Figure   # a small all-reduce that crosses nodes (InfiniBand)
    memory_fp8: Figure | None = None
    memory_int8: Figure | None = None
    memory_int4: Figure | None = None

    def weight_memory(self, weights: str) -> Figure:
        """HBM efficiency of the kernels that read weights stored in `weights` (bf16, fp8, int8, int4)."""
        own = getattr(self, WEIGHT_FIELDS[weights]) if weights in WEIGHT_FIELDS else None
        return own or self.memory

    def allreduce_latency(self, span: int, node_size: int) -> Figure:
        """Microseconds of one small all-reduce among `span` GPUs: across nodes when they do not fit in one."""
        return self.allreduce_latency_internode_us if span > node_size else self.allreduce_latency_us


# A curve's largest value: a kernel may beat the peak it is divided by when that peak is itself measured
# (a calibrated file's best matmul), but not by much.
MAX_EFFICIENCY = 1.5


def _positive_ascending(points: list[tuple[float, float]], context: object) -> list[tuple[float, float]]:
    xs = [x for x, _ in points]
    if any(x <= 0 for x in xs) or any(b <= a for a, b in zip(xs, xs[1:])):
        raise Invalid("points need positive sizes in ascending order")
    if any(y <= 0 for _, y in points):
        raise Invalid("values are positive")
    return points


def _ascending(points: list[tuple[float, float]], context: object) -> list[tuple[float, float]]:
    if any(not 0 < y <= MAX_EFFICIENCY for _, y in _positive_ascending(points, context)):
        raise Invalid(f"efficiencies are fractions of a peak (0 < value <= {MAX_EFFICIENCY})")
    return points


Points = Then(ListOf(TupleOf((REAL, REAL)), min_length=1), _ascending, name="Points")
# A measured rate over a peak it need not stay under (AFT-conv's convolution over the matmul peak: a calibration
# at tiny matmul sizes can measure that peak low), positive only, as the single figures it replaces were.
RatePoints = Then(ListOf(TupleOf((REAL, REAL)), min_length=1), _positive_ascending, name="Points")


class Curve(Section):
    """A figure that depends on one size: (x, value) points with x ascending, read between points linearly in
    log2(x) and held flat beyond the ends (no extrapolation)."""

    points: Points
    source: str

    def at(self, x: float) -> float:
        points = self.points
        if x <= points[0][0]:
            return points[0][1]
        for i in range(1, len(points)):
            if x <= points[i][0]:
                # log2 of each point's size, taken once per curve: a step model reads its curves tens of times
                logs = self.__dict__.get("_logs") or self._log_sizes()
                w = (math.log2(x) - logs[i - 1]) / (logs[i] - logs[i - 1])
                return points[i - 1][1] + w * (points[i][1] - points[i - 1][1])
        return points[-1][1]

    def _log_sizes(self) -> tuple[float, ...]:
        logs = tuple(math.log2(x) for x, _ in self.points)
        set_private(self, "_logs", logs)
        return logs


class KernelCurve(Curve):
    """A GEMM or attention kernel's efficiency curve, with how its source timed the kernel: `sustained` (long
    runs, the device held at its power limit as a training step holds it) or `burst` (a few runs after an idle,
    at the boost clock: faster than the device sustains)."""

    timed: Literal["sustained", "burst"] = "sustained"
    # The catalogue device whose measurement this curve is (its values, or its shape scaled by datasheet ratios),
    # no kernel benchmark of this one having been read; its source says why. None: this device's own, or a
    # board of the same compute die.
    borrowed_from: str | None = None


class RateCurve(Curve):
    """A Curve of a measured rate over a peak (RatePoints)."""

    points: RatePoints


class _RateCurve(Kind):
    """A RateCurve; a single Figure, as hardware files wrote these rates before they became curves, reads as a
    flat one."""

    def __init__(self):
        super().__init__("Curve", None)
        self.inner = kind(RateCurve)

    def check(self, value: object, at: Place) -> object:
        if isinstance(value, dict) and "value" in value and "points" not in value:
            value = {"points": [[1, value["value"]]], "source": value.get("source", "")}
        return self.inner.check(value, at)

    def sections(self) -> list:
        return self.inner.sections()


RateCurveOrNone = Nullable(_RateCurve())


# Attention kernels a device may have curves for besides the one its attention curves measure: FlashAttention-2
# (on Hopper, where those are FlashAttention-3's), FlashAttention-1, and the Triton FlashAttention of flash-attn
# 1.x (flash_attn_triton.py), which 2023 stacks such as llm-foundry's MPT ran.
OTHER_ATTENTION = ("flash2", "flash1", "flash1_triton")


def _share(figure: Figure | None, context: object) -> Figure | None:
    if figure is not None and figure.value >= 1:
        raise Invalid("a share of the SMs is a fraction below 1")
    return figure


Share = Then(kind(Figure | None), _share, name="Share")


class FirstTouch(Section):
    """What a freshly allocated tensor's first write costs beyond the write, where the allocator takes each large
    allocation from the operating system and gives it back when freed (glibc's malloc maps every block of at
    least its mmap threshold, 32 MiB at most by default, and unmaps it on free): every page faults once and is
    zeroed by the kernel before the op's own write. `seconds_per_byte` of it, for allocations of `from_bytes` or
    more. A GPU's caching allocator hands freed blocks back to the next tensor: no figure."""

    seconds_per_byte: FigureValue
    from_bytes: FigureValue
    source: str


class Curves(Section):
    """What the training step model needs of a device's kernels, each curve with its source.

    gemm: per compute precision, achieved / dense peak FLOP/s against the GEMM's size (m·n·k)^(1/3);
    sustained_share (required when a gemm or attention curve was timed in bursts, KernelCurve.timed): what a
      tensor-core kernel keeps of its burst rate once the device sits at its power limit, as a training step
      holds it (measured with matmuls); the step model runs burst-timed curves at it, serving at the curves as
      measured;
    attention_forward, attention_backward: per head dimension, achieved / dense 16-bit peak of a causal
      FlashAttention kernel against the sequence length, its FLOPs counted as the kernel executes them
      (masked tiles skipped; the backward's 2.5 × forward with its recompute, Dao 2023 §4.1);
    collective, collective_internode: nccl-tests bus bandwidth / the catalogue's per-direction link bandwidth
      against the message size in bytes, inside a node and across nodes;
    alltoall (optional): the same for all-to-all inside a node; left out, all-to-all runs at `collective`;
    attention_kernel: which kernel the attention curves measure (flash2, or flash3 on Hopper);
    attention_forward_<kernel>, attention_backward_<kernel> (optional, for each of OTHER_ATTENTION): the same
      for another kernel than the one the attention curves measure, for specs that set
      training.attention_kernel to it (FlashAttention-2 on Hopper; FlashAttention-1 and its 2022 Triton
      version, which older stacks ran);
    overlap_sm_share (optional): the fraction of the device's SMs a collective's kernel holds while it runs
      (NCCL runs one CTA per channel), taken from the compute it overlaps; left out, overlapped compute runs
      at its full rate.
    memory_bound (optional): what the step's memory-bound kernels (adds, products, activations, softmax, norms)
      achieve over the device's bandwidth, where that differs from a copy's (a CPU's transcendental kernels are
      compute-bound); measured by `costplan calibrate`. Left out, they stream at the bandwidth.
    weight_read (optional): what a matrix-vector product (a decode step's weight streaming) reads per second
      over the device's bandwidth, where reading alone differs from a copy (one CPU core's read stream can run
      at half its copy's read + write); measured by `costplan calibrate`. Left out, weights stream at the
      bandwidth.
    new_shape_seconds (optional, read and not used): what a GEMM costs beyond its roofline at a shape its
      library has not met before (a CPU library builds a kernel per shape: oneDNN's primitives), as earlier
      calibrations measured it for dropless experts; a long run meets their row counts again, so the step
      model, which estimates that steady state, charges nothing for them, and `costplan check` times such a spec
      after its shapes have settled (profiling/timing.py settle).
    depthwise_conv_forward, depthwise_conv_backward (optional): what AFT-conv's causal depthwise convolution
      reaches forward and backward, over the same peak as the attention curves, against the FLOPs of one call
      (a CPU runs small calls far below large ones); measured by `costplan calibrate` (a single figure, as
      older files have it, is a flat curve). Left out (every catalogue device), the convolution runs at the GEMM
      curve's rate, as attention cores without a flash kernel do.
    block_gemm (optional): what the reference's block loop's batched matmuls (one a block and product: a block's
      scores, its output, their gradients) reach, over the same peak as the attention curves, against the FLOPs
      of one call; measured by `costplan calibrate` (profiling/calibrate_attention.py BLOCK_SHAPES: a CPU runs a
      block of 8 queries at a fraction of a percent of its matmul peak). Left out, a block's matmuls run at the
      GEMM curve at the block's size.
    kernel_seconds, update_seconds (optional): the fixed cost of launching one kernel forward or backward
      (framework dispatch included), and of one parameter tensor's optimizer update, beyond their rooflines;
      measured by `costplan calibrate` on the device at hand. Left out (every catalogue device: no kernel-level
      figure is published), the step model counts neither.
    loop_kernel_seconds (optional): the fixed cost of a kernel launched inside one of the reference model's
      autograd Functions, without autograd's recording (its Python loop over attention blocks, profiling/blocks.py;
      its RMSNorm's steps on a CPU): a fraction of kernel_seconds; measured by `costplan calibrate` on the block
      loop. Left out, those kernels are not counted (with training.fusion eager; a fused kernel is one).
    checkpoint_op_seconds (optional): what torch's selective checkpointing (training.recompute: selective_op)
      adds per op of a layer's forward, views included, which its dispatch mode handles in Python (and again
      when the layer reruns); measured by `costplan calibrate` on the tiny step with and without it. Left out,
      nothing is added.
    first_touch (optional): what the first write to a large fresh allocation costs (FirstTouch: a CPU's page
      faults); measured by `costplan calibrate` on a CPU. Left out (a GPU, every catalogue device), allocations
      cost nothing.
    ring_ceiling (optional): the most of the link a collective other than an all-reduce reaches inside a node,
      where the collective curve (nccl-tests all_reduce) runs above it with NVLink SHARP reducing in the switch;
      left out, every collective runs at the curve.
    fp8_cast_bytes (optional): bytes an fp8 training step's cast of a 16-bit operand moves per element: 4 where
      the device's fp8 GEMMs take only the TN layout (Hopper, Ada), so the cast also writes the transposed copy
      the backward GEMMs read; left out, 3 (read 16 bits, write 8).
    """

    gemm: dict[Precision, KernelCurve] = field(min_length=1)
    attention_forward: dict[HeadDim, KernelCurve] = field(min_length=1)
    attention_backward: dict[HeadDim, KernelCurve] = field(min_length=1)
    collective: Curve
    collective_internode: Curve
    alltoall: Curve | None = None
    attention_kernel: Literal["flash2", "flash3"] = "flash2"
    attention_forward_flash2: dict[HeadDim, KernelCurve] | None = None
    attention_backward_flash2: dict[HeadDim, KernelCurve] | None = None
    attention_forward_flash1: dict[HeadDim, KernelCurve] | None = None
    attention_backward_flash1: dict[HeadDim, KernelCurve] | None = None
    attention_forward_flash1_triton: dict[HeadDim, KernelCurve] | None = None
    attention_backward_flash1_triton: dict[HeadDim, KernelCurve] | None = None
    overlap_sm_share: Share = None
    memory_bound: Figure | None = None
    weight_read: Figure | None = None
    kernel_seconds: Figure | None = None
    loop_kernel_seconds: Figure | None = None
    checkpoint_op_seconds: Figure | None = None
    depthwise_conv_forward: RateCurveOrNone = None
    depthwise_conv_backward: RateCurveOrNone = None
    block_gemm: RateCurveOrNone = None
    new_shape_seconds: Figure | None = None
    update_seconds: Figure | None = None
    sustained_share: Figure | None = None
    first_touch: FirstTouch | None = None
    fp8_cast_bytes: Figure | None = None
    ring_ceiling: Share = None

    def _after(self) -> None:
        burst = [name for name, curve in self.kernel_curves() if curve.timed == "burst"]
        if burst and self.sustained_share is None:
            raise FieldProblems([("sustained_share", f"{', '.join(burst)} timed in bursts: give the share of "
                                  "its burst rate a kernel sustains at the device's power limit, with its source")])
        if self.sustained_share is not None and self.sustained_share.value > 1:
            raise FieldProblems([("sustained_share", "a sustained rate over a burst one is at most 1")])

    def kernel_curves(self):
        """(name, curve) of every GEMM and attention curve."""
        yield from ((f"gemm.{p}", c) for p, c in self.gemm.items())
        for name in ("attention_forward", "attention_backward",
                     *(f"attention_{d}_{k}" for k in OTHER_ATTENTION for d in ("forward", "backward"))):
            yield from ((f"{name}.{h}", c) for h, c in (getattr(self, name) or {}).items())

    def sustained(self, curve: KernelCurve | None) -> KernelCurve | None:
        """`curve` as a training step sustains it: a burst-timed one at sustained_share (made once a curve)."""
        if curve is None or curve.timed != "burst":
            return curve
        made = self.__dict__.get("_sustained")
        if made is None:
            made = {}
            set_private(self, "_sustained", made)
        if id(curve) not in made:
            share = self.sustained_share
            made[id(curve)] = KernelCurve(points=[(x, y * share.value) for x, y in curve.points],
                                          source=f"{curve.source}; x {share.value} sustained: {share.source}",
                                          borrowed_from=curve.borrowed_from)
        return made[id(curve)]

    def burst_share(self) -> float | None:
        """The share burst-timed curves run at in a training step; None when no curve was timed in bursts."""
        if self.sustained_share is None or not any(c.timed == "burst" for _, c in self.kernel_curves()):
            return None
        return self.sustained_share.value

    def lenders(self, precision: str, kernel: str = "fastest") -> dict[str, str]:
        """The devices whose curves a step at `precision` running attention `kernel` borrows
        (KernelCurve.borrowed_from), by part: "GEMM", "attention"; empty when it runs on curves of its own."""
        gemm = self.gemm.get(precision)
        attention = [curve for backward in (False, True)
                     for curve in (self._attention_table(backward, kernel) or {}).values()]
        found = {"GEMM": gemm.borrowed_from if gemm is not None else None,
                 "attention": next((c.borrowed_from for c in attention if c.borrowed_from), None)}
        return {part: lender for part, lender in found.items() if lender}

    def sustained_gemm(self, precision: str) -> KernelCurve | None:
        """The GEMM curve at `precision` as a training step sustains it; None where there is none."""
        return self.sustained(self.gemm.get(precision))

    def attention(self, backward: bool, head_dim: int, kernel: str = "fastest") -> Curve:
        """The curve of `kernel` (fastest: the one this device's curves measure) measured at the head dimension
        nearest `head_dim` (in ratio); None when the device has no curve for that kernel."""
        table = self._attention_table(backward, kernel)
        if table is None:
            return None
        return table[min(table, key=lambda h: abs(math.log2(h / head_dim)))]

    def lacks_attention(self, kernel: str) -> str | None:
        """What a message says when these curves have no table of attention `kernel`, else None: the one wording
        of that refusal for estimate and plan."""
        if self._attention_table(False, kernel) is not None and self._attention_table(True, kernel) is not None:
            return None
        return f"no {kernel} attention tables (its curves measure {self.attention_kernel})"

    def _attention_table(self, backward: bool, kernel: str) -> dict[HeadDim, KernelCurve] | None:
        if kernel in ("fastest", self.attention_kernel):
            return self.attention_backward if backward else self.attention_forward
        if kernel in OTHER_ATTENTION:
            return getattr(self, f"attention_{'backward' if backward else 'forward'}_{kernel}")
        return None


CURVE_FIELDS = tuple(Curves.model_fields)


@functools.cache
def _sections() -> dict[str, str]:
    """data/kernels.yaml cut into one YAML text per device: an estimate reads two of its entries (the device's
    and `default`), and parsing the whole 110 KB table took longer than the rest of an estimate."""
    return yamlio.sections(bundled.text("data", "kernels.yaml"))


@functools.cache
def _entry(key: str) -> dict:
    """One device's entry of data/kernels.yaml ({} for a device it does not list)."""
    text = _sections().get(key)
    return yamlio.loads(text, bundled=True)[key] if text is not None else {}


@functools.cache
def efficiencies(gpu_key: str) -> Efficiencies:
    """The device's own figures where the table has them, the defaults for the rest."""
    own, default = _entry(gpu_key), _entry("default")
    figures = {name: own.get(name, default[name]) for name in FIELDS}
    figures |= {name: own.get(name, default.get(name)) for name in WEIGHT_FIELDS.values()}
    # curves alone are not serving figures; a PCIe board may give its own latency and leave the fractions default
    fractions = any(name in own for name in (*FIELDS, *WEIGHT_FIELDS.values()) if name not in LATENCIES)
    latency = any(name in own for name in LATENCIES)
    return Efficiencies(device=gpu_key if fractions else "default",
                        latency_device=gpu_key if latency else "default", **figures)


@functools.cache
def curves(gpu_key: str) -> Curves | None:
    """The catalogue device's curves for the step model, or None when data/kernels.yaml has none for it."""
    own = _entry(gpu_key)
    found = {name: own[name] for name in CURVE_FIELDS if name in own}
    return Curves(**found) if found else None
