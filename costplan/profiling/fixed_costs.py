"""A step's fixed costs beyond its operations' rooflines: per kernel (the framework's dispatch and autograd work
around each operation) and per parameter tensor's optimizer update, measured on a tiny step whose operations do
no work to speak of (FIXED_STEP). `costplan calibrate` times it for the hardware file; the step check times it
once between each of its own steps, so that a shared machine's load falls on the measured step and on these
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
from costplan.costs.components import shape_of
from costplan.costs.run import step_of
from costplan.costs.step import stage_counts
from costplan.hardware import GPU
from costplan.loading import load_spec
from costplan.profiling.model import build_model
from costplan.profiling.step import Trainer, batch
from costplan.profiling.timing import synchronize
from costplan.spec import Spec

REFERENCE = "gpt2-small"
# The reference layer at widths where its operations do no work to speak of (GEMMs of 32 × 48 × 192), so that
# the step's time is its fixed costs; counted as check counts the reference model's steps, eager
# (compare.one_step).
FIXED_STEP = ["model.n_layers=2", "model.d_model=48", "model.d_ff=192", "model.vocab_size=64",
              "training.seq_len=32", "training.micro_batch_size=1", "training.global_batch_size=1",
              "training.fusion=eager"]


@dataclass
class Fixed:
    """The fixed cost of one kernel and of one parameter tensor's optimizer update, with how they were found."""

    kernel: float
    update: float
    source: str


def paired(gpu: GPU, device_name: str) -> bool:
    """Whether a check on `device_name` times the tiny step between its steps: where the hardware was calibrated
    on that device and has a fixed cost per kernel."""
    return gpu.calibrated_on == device_name and gpu.kernels is not None and gpu.kernels.kernel_seconds is not None


def tiny_overrides(precision: str) -> list[str]:
    return [*FIXED_STEP, f"training.precision={precision}"]


def tiny_step(precision: str, hardware: str | None = None) -> Spec:
    """The tiny step's spec in `precision`, on `hardware` (a catalogue name or hardware file) if given."""
    return load_spec(REFERENCE, tiny_overrides(precision) + ([f"hardware.gpu={hardware}"] if hardware else []))


class FixedStep:
    """The tiny step in `precision`, built once on `device`, timed one step at a time."""

    def __init__(self, device: torch.device, precision: str):
        self.device = device
        self.spec = tiny_step(precision)
        self.trainer = Trainer(build_model(self.spec, device=device), self.spec)
        self.data = batch(self.spec, self.spec.training.micro_batch_size, device)

    def seconds(self) -> tuple[float, float]:
        """One whole step's seconds, and of those its optimizer update's."""
        synchronize(self.device)
        start = time.perf_counter()
        self.trainer.accumulate(*self.data)
        synchronize(self.device)
        backward = time.perf_counter()
        self.trainer.update()
        synchronize(self.device)
        end = time.perf_counter()
        return end - start, end - backward


def fixed_costs_of(precision: str, hardware: str, step: float, update: float, how: str) -> Fixed:
    """The fixed costs that `step` seconds of the tiny step in `precision`, `update` of them its optimizer
    update, mean on `hardware`: the update less its roofline over the parameter tensors it updates, the rest of
    the step less the rooflines of its operations over the kernels the step model counts in it. The rooflines
    are the step model's parts without fixed costs, so the hardware's own fixed costs do not enter. `how` says
    how the two times were taken."""
    spec = tiny_step(precision, hardware)
    parts = step_of(spec, shape_of(spec)).breakdown
    launched, held, _ = stage_counts(spec, shape_of(spec))
    kernel = max(0.0, step - update - parts["matmul"] - parts["attention"] - parts["memory_bound"]) / launched
    per_update = max(0.0, update - parts["optimizer"]) / held
    source = (f"{REFERENCE} with --set {' '.join(tiny_overrides(precision))}, {how} {step:.4g} s, of which the "
              f"optimizer update {update:.4g} s; less the rooflines of its operations, over the {launched:g} kernels "
              f"and {held:g} parameter tensors the step model counts in it")
    return Fixed(kernel=kernel, update=per_update, source=source)


@contextmanager
def with_fixed_costs(gpu: GPU, fixed: Fixed) -> Iterator[str]:
    """A copy of the hardware file `gpu` whose fixed costs per kernel and per update are `fixed`'s (a cost lost
    in the timing noise left out, as calibrate leaves it out), as a path for hardware.gpu while in use."""
    data = gpu.model_dump(mode="json", exclude_none=True)
    for name, value in (("kernel_seconds", fixed.kernel), ("update_seconds", fixed.update)):
        data["kernels"].pop(name, None)
        if value > 0:
            data["kernels"][name] = {"value": value, "source": fixed.source}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "paired.yaml"
        path.write_text(yamlio.dumps(data), encoding="utf-8")
        yield str(path)
