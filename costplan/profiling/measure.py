"""Measure a spec's reference model: parameters, FLOPs, saved activations, peak memory and step time.

Parameters, FLOPs and memory are measured at the spec's true size without allocating: parameters on the
`meta` device; FLOPs, activations and the peak on fake CPU tensors (FakeTensorMode), which dispatch to
exactly the kernels real CPU tensors do (a test compares the two), so a 70B spec takes seconds. On CUDA
they are measured on real tensors when the step fits the free memory. Only time needs real work: it is
measured at true size when that fits the memory and time budgets, otherwise on a copy shrunk by `--set`
overrides that the result names.
"""
from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from costplan.costs.estimate import peak_stage, whole_model
from costplan.costs.moe import routes_dropless
from costplan.errors import CostplanError, SpecError
from costplan import report
from costplan.profiling import counters
from costplan.profiling.fixed_costs import FixedStep, paired
from costplan.profiling.memory import Peak, peak_cuda, peak_fake, saved_bytes
from costplan.profiling.model import build_model, component_of, training_dtype
from costplan.profiling.precision import FALLBACK, PrecisionChoice, runs_as, timing_precision
from costplan.profiling.private import fake_tensor_mode, storage_key
from costplan.profiling.stages import Stages
from costplan.profiling.step import Trainer, batch, loss_memory, loss_of, unfused
from costplan.profiling.timing import Timing, back_to_back, time_steps
from costplan.loading import on_one_gpu, with_overrides
from costplan.spec import Spec

DEFAULT_TIME_BUDGET = 2.0       # seconds per timed step before the spec is shrunk for timing
MEMORY_FRACTION = 0.5           # of the available memory a timed step may use
MEMORY_MARGIN = 1.3             # on the analytic estimate of a real step's bytes, before it is built


@dataclass
class Measurement:
    spec: Spec                                  # as measured (overrides applied)
    device: str                                 # "cpu" or "cuda"
    device_name: str                            # describes the machine, as calibrate records it
    batch: int
    params: dict[str, int]
    active_params: int
    flops: counters.FlopCount
    fvcore: counters.FvcoreCount | None
    fvcore_note: str
    activations: dict[str, int]
    peak: Peak
    timing: Timing | None = None
    timed_spec: Spec | None = None
    time_overrides: list[str] = field(default_factory=list)
    time_note: str = ""
    time_precision: PrecisionChoice | None = None
    time_probe: float | None = None          # matmul FLOP/s at PROBE_SIZE in the timed precision, after timing
    time_fixed: tuple[float, ...] | None = None   # the tiny step's seconds, its update's, the tiny block loop's and,
                                                  # for per-op checkpointing, the tiny step as it takes it, without
                                                  # and with it (medians), timed between the steps (fixed_costs.py)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CostplanError("--device cuda: this torch has no usable CUDA device")
    return torch.device(name)


def describe(device: torch.device) -> str:
    """The device as calibrate records it; a calibrated hardware file applies where this matches."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpuinfo = info.read()
    except OSError:
        cpuinfo = ""
    return cpu_description(cpuinfo, torch.get_num_threads())


def cpu_description(cpuinfo: str, threads: int) -> str:
    """The CPU's model name, its vector units and threads, from /proc/cpuinfo's text. CPUs that name themselves
    alike (a virtual machine's "AMD EPYC") differ tenfold in 16-bit matmuls with and without native bf16: a
    calibration applies only where these match too."""
    lines = cpuinfo.splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    isa = ("AVX-512, native bf16" if flags & {"avx512_bf16", "amx_bf16"} else "AVX-512" if "avx512f" in flags
           else "AVX2" if "avx2" in flags else "")
    return f"cpu: {cpu}{f' ({isa})' if isa else ''}, {threads} threads"


def fits_on(spec: Spec, size: int, device: torch.device) -> bool:
    """Whether a real step of `spec` fits the device with room to spare (analytic estimate, 30% margin)."""
    return _step_cost(spec, size)[1] * MEMORY_MARGIN <= available_bytes(device) * MEMORY_FRACTION


# ---------------------------------------------------------------------------------------------- pieces
def count_params(spec: Spec) -> dict[str, int]:
    """Parameters per component, on the meta device (nothing allocated)."""
    model = build_model(spec, device="meta")
    result: Counter[str] = Counter()
    for name, p in model.named_parameters():
        result[component_of(name) or counters.OUTSIDE] += p.numel()
    return dict(result)


def count_active(spec: Spec) -> int:
    """Parameters one token touches: those that get a gradient from a one-token step (fake tensors). An
    embedding table counts whole (convention 5), an expert the token is not routed to not at all. Expert
    buffers of a capacity factor are computed whole, empty or not, so the count runs without one."""
    one = with_overrides(spec, ["training.seq_len=1"] + (["model.moe.capacity_factor=null"] if spec.model.moe else []))
    with fake_tensor_mode():
        model = build_model(one)
        ids, targets = batch(one, 1, "cpu")
        loss_of(model(ids), targets).backward()
        return sum(p.numel() for p in model.parameters() if p.grad is not None)


def _without_recompute(spec: Spec) -> Spec:
    return spec.model_copy(update={"training": spec.training.model_copy(update={"recompute": "none",
                                                                                "recompute_layers": None})})


def count_flops(spec: Spec, size: int, device: torch.device, real: bool = False) -> counters.FlopCount:
    def run(model, ids, targets):  # noqa: ANN001, ANN202
        return counters.count_flops(model, lambda: loss_of(model(ids), targets, loss_memory(spec)))
    return _on_device(spec, size, device, run, real)


def count_saved(spec: Spec, size: int, device: torch.device, real: bool = False) -> dict[str, int]:
    def run(model, ids, targets):  # noqa: ANN001, ANN202
        def forward(scope):  # noqa: ANN001, ANN202
            logits = model(ids)
            with scope.within("head"):      # the loss belongs to the head component
                return loss_of(logits, targets, loss_memory(spec))
        return saved_bytes(model, forward)
    return _on_device(spec, size, device, run, real)


def _on_device(spec: Spec, size: int, device: torch.device, run, real: bool):  # noqa: ANN001, ANN202
    """run(model, ids, targets) on real tensors (`real`, or CUDA when the step fits there), else on fake CPU
    tensors."""
    if real or (device.type == "cuda" and fits_on(spec, size, device)):
        model = build_model(spec, device=device)
        ids, targets = batch(spec, size, device)
        return run(model, ids, targets)
    with fake_tensor_mode():
        model = build_model(spec)
        ids, targets = batch(spec, size, "cpu")
        return run(model, ids, targets)


FVCORE_REAL_BYTES = 2**30     # a spec whose step fits this is traced on real tensors when meta tracing fails


def count_fvcore(spec: Spec, size: int) -> tuple[counters.FvcoreCount | None, str]:
    """fvcore's forward count, traced on the meta device (recomputation does not change a forward). Some ops
    cannot be traced on meta (a convolution's shape check); small specs are then traced on real CPU tensors."""
    if not counters.fvcore_available():
        return None, "fvcore is not installed"
    plain = _without_recompute(spec)
    try:
        model = build_model(plain, device="meta")
        ids = torch.zeros(size, plain.seq_len, dtype=torch.long, device="meta")
        return counters.count_fvcore(model, ids), ""
    except (RuntimeError, TypeError) as exc:
        reason = str(exc).splitlines()[0]
    if _step_cost(plain, size)[1] > FVCORE_REAL_BYTES:
        return None, f"fvcore could not trace this model on the meta device ({reason})"
    model = build_model(plain)
    ids = torch.zeros(size, plain.seq_len, dtype=torch.long)
    with torch.no_grad():
        return counters.count_fvcore(model, ids), "traced on real CPU tensors (meta tracing failed)"


def measure_peak(spec: Spec, size: int, device: torch.device) -> Peak:
    """Peak of a training step: real on CUDA when it fits there, else followed on fake CPU tensors. The
    reference model's constant buffers (the causal mask and ALiBi bias at max_seq_len, rotary tables) are left
    out, as from the saved activations: they stand in for what fused kernels take as a flag or slopes or compute
    in place, and live through the whole step, so the peak less them is exact."""
    real = device.type == "cuda" and fits_on(spec, size, device)
    where = device if real else torch.device("cpu")
    constants = []

    def build():  # noqa: ANN202
        model = build_model(spec, device=where)
        storages = {storage_key(b.untyped_storage()): b.untyped_storage().nbytes() for b in model.buffers()}
        constants.append(sum(storages.values()))
        trainer = Trainer(model, spec, loss_memory(spec))
        first, second = batch(spec, size, where), batch(spec, size, where)
        # Two micro-batches, gradients accumulating, then the update: see memory.py.
        return [lambda: trainer.accumulate(*first), lambda: trainer.accumulate(*second), trainer.update]

    peak = peak_cuda(build, device) if real else peak_fake(build)
    return Peak(peak.bytes - sum(constants), f"{peak.method}, the model's constant buffers left out")


# ---------------------------------------------------------------------------------------------- time
def meminfo_bytes(field: str) -> int | None:
    """A `/proc/meminfo` figure (MemTotal, MemAvailable) in bytes, or None where there is no such file."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    available = meminfo_bytes("MemAvailable")
    return available if available is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


PROBE_SIZE = 512               # the probe's square matmul, one of calibrate's sizes


def probe_rate(device: torch.device, dtype: torch.dtype) -> float:
    """A quick achieved matmul FLOP/s (for sizing the timed step and for telling a machine that has changed
    since its calibration: compare.machine_drift)."""
    n = PROBE_SIZE
    a = torch.randn(n, n, device=device, dtype=dtype)
    run, calls = back_to_back(lambda: a @ a, device)     # as calibrate times its matmuls
    timing = time_steps(run, device, runs=10, warmup=2)
    return 2 * n**3 * calls / timing.minimum


def _step_cost(spec: Spec, size: int) -> tuple[float, int]:
    """(hardware FLOPs, estimated bytes) of one step at micro-batch `size`, from the analytic model: counts and
    memory only, which a device without kernel tables has too (the step time model needs them)."""
    sized = spec.model_copy(update={"training": spec.training.model_copy(update={"micro_batch_size": size})})
    return whole_model(sized).hw_flops * size, peak_stage(sized).total


def valid_copy(spec: Spec, overrides: list[str]) -> Spec | None:
    """`spec` with `overrides`, or None when the spec's own rules reject the result (a smaller copy must stay
    a valid spec: dense first layers before an MoE layer, pipeline stages of whole layers, and so on)."""
    try:
        return with_overrides(spec, overrides)
    except SpecError:
        return None


def merged(overrides: list[str], change: str) -> list[str]:
    """The --set overrides with `change` last, in place of an earlier one of its key."""
    key = change.split("=")[0]
    return [o for o in overrides if o.split("=")[0] != key] + [change]


def _smaller(current: Spec, target_layers: int) -> list[str]:
    """Candidate changes, most preferred first: the layer count nearest below `target_layers` (every layer
    costs the same), any count above it that is still smaller, then a smaller vocabulary, shorter sequences."""
    n = current.model.n_layers
    target = max(1, min(n - 1, target_layers))
    changes = [f"model.n_layers={k}" for k in [*range(target, 0, -1), *range(target + 1, n)] if k < n]
    if current.model.vocab_size > 1024:
        changes.append(f"model.vocab_size={max(1024, current.model.vocab_size // 4)}")
    if current.seq_len > 16:
        changes.append(f"training.seq_len={current.seq_len // 2}")
    return changes


def shrink_for_time(spec: Spec, size: int, rate: float, memory: int, budget: float) -> list[str] | None:
    """--set overrides that bring one step under the time and memory budgets: fewer layers first, then a
    smaller vocabulary, then shorter sequences, each copy valid by the spec's own rules. Empty when the spec
    fits as it is; None when nothing tried fits."""
    overrides, fits = shrunk(spec, size, rate, memory, budget)
    return overrides if fits else None


def shrunk(spec: Spec, size: int, rate: float, memory: int, budget: float) -> tuple[list[str], bool]:
    """shrink_for_time's overrides, or where nothing tried fits those of the smallest copy tried; and whether
    the copy fits."""
    overrides: list[str] = []
    current = spec

    def fits(candidate: Spec) -> bool:
        flops, nbytes = _step_cost(candidate, size)
        return flops / rate <= budget and nbytes * MEMORY_MARGIN <= memory

    while not fits(current):
        flops, nbytes = _step_cost(current, size)
        ratio = min(budget * rate / flops, memory / (MEMORY_MARGIN * nbytes))
        for change in _smaller(current, int(current.model.n_layers * ratio)):
            smaller = valid_copy(spec, merged(overrides, change))
            if smaller is not None:
                overrides, current = merged(overrides, change), smaller
                break
        else:
            return overrides, False
    return overrides, True


def _in_precision(spec: Spec, precision: str) -> list[str]:
    """The overrides that time `spec` in `precision` (none for its own): fp8 inputs go with fp8 training
    (spec_rules)."""
    if precision == spec.training.precision:
        return []
    return [f"training.precision={precision}"] + (["training.fp8_saved_inputs=false"]
                                                  if spec.training.fp8_saved_inputs else [])


def measure_time(spec: Spec, size: int, device: torch.device, budget: float,
                 overrides: list[str] | None) -> tuple[Timing | None, Spec, list[str], PrecisionChoice, float | None,
                                                       tuple[float, float] | None]:
    """Median step time, on `spec` or on the copy that `overrides` (or the automatic shrink) describe, in the
    precision timing_precision() chooses; None when even the smallest copy tried would not fit. The steps
    are timed for about `budget` seconds, or as long as a warm-up and timing.MIN_RUNS steps take, after
    timing.SETTLE_STEPS more for a model with dropless experts (their GEMM shapes follow the routing). Last, the
    matmul rate at PROBE_SIZE right after the steps: what the machine ran at then, to hold against a
    calibration (compare.machine_drift). Where the hardware pairs (fixed_costs.paired), the tiny step of
    fixed_costs.py runs once before each timed step, untimed by it: the medians of its times and of its
    update's, which the check derives its fixed costs from (else None)."""
    choice = timing_precision(spec.training.precision, device)
    other = runs_as(choice.requested) if choice.used == FALLBACK else FALLBACK
    peak = spec.gpu.peak_flops
    if peak(choice.used) is None and peak(other) is not None:   # time a step the hardware can estimate
        choice = replace(choice, used=other, why_not=f"hardware.gpu {spec.gpu.key} has {spec.gpu.lacks(choice.used)}")
    forced = _in_precision(spec, choice.used)       # where neither has a peak, the comparison says so
    base = valid_copy(spec, forced) if forced else spec
    if base is None:        # a spec rule refuses that precision (autocast casts to 16 bits): the spec's own
        choice = replace(choice, used=choice.requested, why_not=f"the spec's rules refuse {choice.used}")
        forced, base = [], spec
    if overrides is None:
        rate = probe_rate(device, training_dtype(base))
        smaller = shrink_for_time(base, size, rate, int(available_bytes(device) * MEMORY_FRACTION), budget)
        if smaller is None:
            return None, spec, [], choice, None, None
        overrides = smaller
    overrides = forced + overrides
    timed = with_overrides(spec, overrides) if overrides else spec
    if not fits_on(timed, size, device):      # --time-set's copy: the guard the shrink's copies pass
        return None, timed, overrides, choice, None, None
    model = build_model(unfused(timed), device=device)
    trainer = Trainer(model, timed)
    ids, targets = batch(timed, size, device)
    checkpointed = timed.training.recompute == "selective_op" and timed.gpu.kernels is not None \
        and timed.gpu.kernels.checkpoint_op_seconds is not None
    tiny = FixedStep(device, timed.training.precision, checkpointed) if paired(timed.gpu, describe(device)) else None
    fixed: list[tuple[float, ...]] = []
    timing = time_steps(lambda: trainer.step((ids, targets)), device, budget=budget,
                        between=(lambda: fixed.append(tiny.seconds())) if tiny else None,
                        settle=routes_dropless(timed.model))
    medians = tuple(statistics.median(times) for times in zip(*fixed)) if fixed else None
    return timing, timed, overrides, choice, probe_rate(device, training_dtype(timed)), medians


# ---------------------------------------------------------------------------------------------- all
def measure(spec: Spec, device: torch.device, *, time: bool = True, time_budget: float = DEFAULT_TIME_BUDGET,
            time_overrides: list[str] | None = None, progress: Callable[[str], None] | None = None) -> Measurement:
    """Every measurement of `spec` at its micro-batch size on `device`, as one device holding the whole model
    (loading.on_one_gpu). `progress` is told each stage as it starts (a full-size model's can take minutes)."""
    spec = on_one_gpu(spec)
    size = spec.training.micro_batch_size
    stage = Stages(spec.name, progress)
    stage("FLOPs, counted by fvcore")
    fvcore, fvcore_note = count_fvcore(spec, size)
    stage("FLOPs, counted by torch's FlopCounterMode")
    flops = count_flops(spec, size, device)
    stage("activations saved for backward")
    activations = count_saved(spec, size, device)
    stage("peak memory of a training step")
    peak = measure_peak(spec, size, device)
    result = Measurement(
        spec=spec, device=device.type, device_name=describe(device), batch=size,
        params=count_params(spec), active_params=count_active(spec),
        flops=flops, fvcore=fvcore, fvcore_note=fvcore_note, activations=activations, peak=peak,
    )
    if time:
        stage("step time")
        (result.timing, result.timed_spec, result.time_overrides, result.time_precision,
         result.time_probe, result.time_fixed) = measure_time(spec, size, device, time_budget, time_overrides)
        if result.timing is None and time_overrides:
            needed = report.size(_step_cost(result.timed_spec, size)[1] * MEMORY_MARGIN)
            result.time_note = (f"not measured: the --time-set copy needs about {needed}, more than half of what this "
                                "machine has free; shrink it further")
        elif result.timing is None:
            result.time_note = ("not measured: no shrunk copy fits the time budget (--time-budget) and half of this "
                                "machine's free memory; choose one with --time-set")
        elif time_overrides:
            result.time_note = "chosen with --time-set"
        elif len(result.time_overrides) > len(_in_precision(spec, result.time_precision.used)):   # a shrink too
            result.time_note = "full size exceeds the time or memory budget"
    else:
        result.time_note = "not measured (--no-time)"
    stage.done()
    return result
