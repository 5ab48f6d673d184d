"""A step's fixed costs beyond its operations' rooflines: per kernel (the framework's dispatch and autograd work
around each operation), per parameter tensor's optimizer update, and per kernel of the reference's Python loop
over attention blocks (no autograd recording there: 4.0 against 18.7 µs a module's kernel in one calibration,
bench/step_cpu_results.md run 19), measured on a tiny step and a tiny block loop whose operations do no work to
speak of (FIXED_STEP, FixedLoop). `costplan calibrate` times them for the hardware file; the step check times
them once between each of its own steps, so that a shared machine's load falls on the measured step and on these
costs alike (two calibrations half an hour apart have differed by 57% in their cost per kernel)."""
from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from costplan import yamlio
from costplan.costs import eager
from costplan.costs.attention.blocks import Part as Blocks
from costplan.costs.components import shape_of
from costplan.costs.device import device
from costplan.costs.run import step_of
from costplan.costs.step import stage_counts
from costplan.hardware import GPU
from costplan.loading import load_spec
from costplan.profiling.blocks import BlockAttention, Part, window_blocks
from costplan.profiling.model import build_model
from costplan.profiling.step import Trainer, batch, unfused
from costplan.profiling.timing import synchronize
from costplan.spec import Spec

REFERENCE = "gpt2-small"
# The reference layer at widths where its operations do no work to speak of (GEMMs of 32 × 48 × 192), so that
# the step's time is its fixed costs; counted as check counts the reference model's steps, eager
# (compare.one_step).
FIXED_STEP = ["model.n_layers=2", "model.d_model=48", "model.d_ff=192", "model.vocab_size=64",
              "training.seq_len=32", "training.micro_batch_size=1", "training.global_batch_size=1",
              "training.fusion=eager"]


# The tiny block loop: a sliding window of 8 over 64 positions (8 tiles of 8 queries and at most 16 keys), 2 heads
# of 8 dimensions, one sequence, run forward and backward by the flash and by the materialising kernel.
LOOP_LENGTH, LOOP_WINDOW, LOOP_HEADS, LOOP_HEAD_DIM = 64, 8, 2, 8


@dataclass
class Fixed:
    """The fixed cost of one kernel, of one parameter tensor's optimizer update and of one kernel of a block
    loop, with how they were found."""

    kernel: float
    update: float
    source: str
    loop: float = 0.0
    loop_source: str = ""
    checkpoint: float = 0.0
    checkpoint_source: str = ""


def paired(gpu: GPU, device_name: str) -> bool:
    """Whether a check on `device_name` times the tiny step between its steps: where the hardware was calibrated
    on that device and has a fixed cost per kernel."""
    return gpu.calibrated_on == device_name and gpu.kernels is not None and gpu.kernels.kernel_seconds is not None


# The tiny step as per-op checkpointing takes it (flash attention, matmuls without biases), run with and without
# it: the difference beyond the rerun's kernels is the dispatch mode's work (checkpoint_cost_of).
CHECKPOINTED = ["model.attention=flash", "model.bias=false"]
SELECTIVE_OP = "training.recompute=selective_op"


def tiny_overrides(precision: str) -> list[str]:
    return [*FIXED_STEP, f"training.precision={precision}"]


def tiny_checkpointed(precision: str, selective_op: bool, hardware: str | None = None) -> Spec:
    """The tiny step in `precision` as per-op checkpointing takes it, with it or without."""
    extra = [*CHECKPOINTED, *([SELECTIVE_OP] if selective_op else [])]
    return load_spec(REFERENCE, tiny_overrides(precision) + extra + ([f"hardware.gpu={hardware}"] if hardware else []))


def trainer_of(spec: Spec, device: torch.device) -> tuple[Trainer, tuple]:
    """A trainer of the reference model of `spec` on `device`, with one micro-batch for it."""
    return (Trainer(build_model(unfused(spec), device=device), spec),
            batch(spec, spec.training.micro_batch_size, device))


def tiny_step(precision: str, hardware: str | None = None) -> Spec:
    """The tiny step's spec in `precision`, on `hardware` (a catalogue name or hardware file) if given."""
    return load_spec(REFERENCE, tiny_overrides(precision) + ([f"hardware.gpu={hardware}"] if hardware else []))


class FixedStep:
    """The tiny step in `precision`, built once on `device`, timed one step at a time; with `checkpointed`, also
    the tiny step as per-op checkpointing takes it, without it and with it."""

    def __init__(self, device: torch.device, precision: str, checkpointed: bool = False):
        self.device = device
        self.spec = tiny_step(precision)
        self.trainer, self.data = trainer_of(self.spec, device)

        self.loop = FixedLoop(device, precision)
        self.checkpointed = [trainer_of(tiny_checkpointed(precision, on), device) for on in (False, True)] \
            if checkpointed else []

    def seconds(self) -> tuple[float, ...]:
        """One whole step's seconds, of those its optimizer update's, and the tiny block loop's; then, if
        checkpointed, the step as per-op checkpointing takes it without and with it."""
        synchronize(self.device)
        start = time.perf_counter()
        self.trainer.accumulate(*self.data)
        synchronize(self.device)
        backward = time.perf_counter()
        self.trainer.update()
        synchronize(self.device)
        end = time.perf_counter()
        return (end - start, end - backward, self.loop.seconds(),
                *(self._step(trainer, data) for trainer, data in self.checkpointed))

    def _step(self, trainer: Trainer, data: tuple) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        trainer.step(data)
        synchronize(self.device)
        return time.perf_counter() - start


class FixedLoop:
    """The reference's block-sparse attention kernel on blocks that do no work to speak of, flash and
    materialising, forward and backward: its time is the fixed costs of the kernels its loop launches."""

    def __init__(self, device: torch.device, precision: str):
        dtype = {"fp32": torch.float32, "fp16": torch.float16}.get(precision, torch.bfloat16)
        self.device = device
        shape = (1, LOOP_LENGTH, LOOP_HEADS, LOOP_HEAD_DIM)
        self.inputs = [torch.randn(shape, dtype=dtype, device=device, requires_grad=True) for _ in range(3)]
        self.parts = [Part(slice(0, LOOP_HEADS), window_blocks(LOOP_LENGTH, LOOP_WINDOW))]
        self.grad = torch.ones(shape, dtype=dtype, device=device)

    def seconds(self) -> float:
        synchronize(self.device)
        start = time.perf_counter()
        for materialize in (False, True):
            out = BlockAttention.apply(*self.inputs, self.parts, 0.3, materialize, None, None)
            torch.autograd.grad(out, self.inputs, self.grad)
        synchronize(self.device)
        return time.perf_counter() - start


def loop_kernels() -> float:
    """Kernels the tiny block loop launches (costs/eager.py loop_kernels, counted against torch's profiler)."""
    parts = [Blocks(windowed=-(-LOOP_LENGTH // LOOP_WINDOW))]
    return sum(sum(eager.loop_kernels(parts, materialize, False, False, False)) for materialize in (False, True))


def loop_matmul_seconds(gpu: GPU, precision: str) -> float:
    """Seconds the tiny block loop's batched matmuls take at `gpu`'s block_gemm curve (none without one): each
    block's products, 2·heads·rows·keys·d FLOPs a call, 2 forward and 5 backward for the flash kernel, 2 and 4 for
    the materialising one (eager.loop_gemms)."""
    curves = gpu.curves()
    if curves is None or curves.block_gemm is None:
        return 0.0
    peak = device(gpu, precision).attention_peak()[1]
    calls = sum(sum(eager.loop_gemms([Blocks(windowed=1)], materialize)) for materialize in (False, True))
    seconds = 0.0
    for block in window_blocks(LOOP_LENGTH, LOOP_WINDOW):
        flops = 2 * LOOP_HEADS * LOOP_HEAD_DIM * (block.queries.stop - block.queries.start) * (
            block.keys.stop - block.keys.start)
        seconds += calls * flops / (peak * curves.block_gemm.at(flops))
    return seconds


def _beside(gpu: GPU, roofline: float) -> float:
    """What of a tiny step's (or loop's) roofline its measured time holds beside the fixed costs: all of it on a
    CPU, which runs each op to its end; none on a GPU, whose tiny kernels end before its host has issued the next,
    so that the time is the host's alone (costs/step.py host_and_device)."""
    return 0.0 if gpu.queues_kernels else roofline


def _rooflines(spec: Spec, breakdown: dict[str, float]) -> dict[str, float]:
    return {part: _beside(spec.gpu, seconds) for part, seconds in breakdown.items()}


def _operations(parts: dict[str, float]) -> float:
    """The seconds of a step's operations: their rooflines, and the first touch of their new tensors."""
    return parts["matmul"] + parts["attention"] + parts["memory_bound"] + parts.get("first_touch", 0.0)


def fixed_costs_of(precision: str, hardware: str, step: float, update: float, how: str,
                   loop: float | None = None) -> Fixed:
    """The fixed costs that `step` seconds of the tiny step in `precision`, `update` of them its optimizer
    update, mean on `hardware`: the update less its roofline over the parameter tensors it updates, the rest of
    the step less the rooflines of its operations over the kernels the step model counts in it. The rooflines
    are the step model's parts without fixed costs, so the hardware's own fixed costs do not enter. `how` says
    how the two times were taken. `loop` seconds of the tiny block loop, if timed, less its batched matmuls at the
    hardware's block_gemm curve (loop_matmul_seconds), over its kernels give the cost of a loop's kernel."""
    spec = tiny_step(precision, hardware)
    parts = _rooflines(spec, step_of(spec, shape_of(spec)).breakdown)
    counts = stage_counts(spec, shape_of(spec))
    kernel = max(0.0, step - update - _operations(parts)) / counts.launched
    per_update = max(0.0, update - parts["optimizer"]) / counts.held
    source = (f"{REFERENCE} with --set {' '.join(tiny_overrides(precision))}, {how} {step:.4g} s, of which the "
              f"optimizer update {update:.4g} s; less the rooflines of its operations, over the {counts.launched:g} "
              f"kernels and {counts.held:g} parameter tensors the step model counts in it")
    fixed = Fixed(kernel=kernel, update=per_update, source=source)
    if loop is not None:
        matmuls = _beside(spec.gpu, loop_matmul_seconds(spec.gpu, precision))
        fixed.loop = max(0.0, loop - matmuls) / loop_kernels()
        fixed.loop_source = (f"the {precision} block-sparse attention kernel of the reference model, a window of "
                             f"{LOOP_WINDOW} over {LOOP_LENGTH} positions, {LOOP_HEADS} heads of {LOOP_HEAD_DIM}, "
                             f"flash and materialising, forward and backward, {how} {loop:.4g} s, less its batched "
                             f"matmuls at the block_gemm curve ({matmuls:.3g} s), over the {loop_kernels():g} "
                             f"kernels they launch")
    return fixed


def checkpoint_cost_of(precision: str, hardware: str, plain: float, checkpointed: float, fixed: Fixed,
                       how: str) -> tuple[float, str]:
    """What per-op checkpointing adds per op its dispatch mode handles, with its source: the tiny step timed
    `checkpointed` seconds with selective_op and `plain` without, less the rooflines' difference and the rerun's
    kernels at `fixed`'s figures, over the ops of the layers' forward, views included (stage_counts)."""
    specs = [tiny_checkpointed(precision, on, hardware) for on in (False, True)]
    parts = [_rooflines(spec, step_of(spec, shape_of(spec)).breakdown) for spec in specs]
    counts = [stage_counts(spec, shape_of(spec)) for spec in specs]
    rooflines = sum(sign * _operations(p) for sign, p in zip((-1, 1), parts))
    reruns = ((counts[1].launched - counts[0].launched) * fixed.kernel
              + (counts[1].looped - counts[0].looped) * fixed.loop)
    extra = max(0.0, checkpointed - plain - rooflines - reruns) / counts[1].dispatched
    source = (f"{REFERENCE} with --set {' '.join(tiny_overrides(precision) + CHECKPOINTED)}, {how} {plain:.4g} s "
              f"a step, and {checkpointed:.4g} s with {SELECTIVE_OP}; the difference less the rooflines' and the "
              f"rerun's kernels, over the {counts[1].dispatched:g} ops its dispatch mode handles")
    return extra, source


@contextmanager
def with_fixed_costs(gpu: GPU, fixed: Fixed) -> Iterator[str]:
    """A copy of the hardware file `gpu` whose fixed costs per kernel, per update, per loop kernel and per op under
    per-op checkpointing are `fixed`'s (a cost lost in the timing noise, or not timed, left out, as calibrate
    leaves it out), as a path for hardware.gpu while in use."""
    data = gpu.model_dump(mode="json", exclude_none=True)
    for name, value, source in (("kernel_seconds", fixed.kernel, fixed.source),
                                ("update_seconds", fixed.update, fixed.source),
                                ("loop_kernel_seconds", fixed.loop, fixed.loop_source),
                                ("checkpoint_op_seconds", fixed.checkpoint, fixed.checkpoint_source)):
        data["kernels"].pop(name, None)
        if value > 0:
            data["kernels"][name] = {"value": value, "source": source}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "paired.yaml"
        path.write_text(yamlio.dumps(data), encoding="utf-8")
        yield str(path)
