"""Measure this machine's achieved matmul FLOP/s, memory bandwidth and training-step MFU, as a hardware file.

The file has the shape of a catalogue entry (costplan/data/hardware.yaml), so a spec can use it as
`hardware.gpu: FILE`, but its numbers are achieved, not datasheet ones:

- peak_tflops: per precision, the best rate of square matmuls over a range of sizes (2·n³ FLOPs each,
  best of several runs: the device's attainable matmul rate);
- memory_bandwidth_gbs: a large tensor copy, read + write bytes over the best time;
- mfu: model FLOPs (3 × forward) of a reference training step over its median time and the calibrated
  bf16 (or fp32) rate: how much of the matmul rate a whole step keeps on this device;
- calibrated_on: the device, as `costplan profile` describes it; profile compares step times only against a
  file calibrated on the device it runs on.

The whole stays within a time budget: a matmul size whose predicted time would overrun its phase's share is
skipped, and the reference step is timed fewer times (at least timing.MIN_RUNS), or on fewer layers when even
that would overrun. Where bf16 matmuls run at under half the fp32 rate (a CPU without native bf16), the
reference step runs in fp32, as `profile` times steps there (precision.choose).
"""
from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from costplan import report
from costplan.costs.estimate import estimate
from costplan.profiling.measure import (MEMORY_FRACTION, available_bytes, describe, meminfo_bytes, respec,
                                        shrink_for_time)
from costplan.profiling.model import build_model
from costplan.profiling.precision import DTYPES, FALLBACK, choose
from costplan.profiling.step import Trainer, batch
from costplan.loading import load_spec
from costplan.profiling.timing import MIN_RUNS, synchronize, time_steps

DEFAULT_BUDGET = 180.0      # seconds for the whole calibration
MATMUL_SHARE = 0.4          # of the budget, for the matmul rates; the reference step gets what is left
SIZES = {"cpu": (256, 512, 1024), "cuda": (1024, 2048, 4096, 8192)}
PRECISIONS = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "bf16", "fp16")}
COPY_BYTES = {"cpu": 256 * 2**20, "cuda": 2 * 2**30}
# The reference step for the MFU: GPT-2 small's layer shape, shortened where the device is slow.
REFERENCE = {"cpu": ("gpt2-small", ["model.n_layers=2", "training.seq_len=256", "training.micro_batch_size=2"]),
             "cuda": ("gpt2-small", ["training.micro_batch_size=8"])}
BEST_OF = 5


@dataclass
class Calibration:
    device: str
    rates: dict[str, dict[int, float]]      # precision → size → FLOP/s
    bandwidth: float                        # bytes/s
    interconnect: float | None              # host → device bytes/s (CUDA)
    memory_bytes: int
    mfu: float
    mfu_source: str

    @property
    def peaks(self) -> dict[str, float]:
        return {p: max(by_size.values()) for p, by_size in self.rates.items()}


def _best(fn, device: torch.device, repeat: int = BEST_OF) -> float:  # noqa: ANN001
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_rate(n: int, precision: str, device: torch.device) -> float:
    """Achieved FLOP/s of an n×n by n×n matmul (TF32 tensor cores only for tf32)."""
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    try:
        return 2 * n**3 / _best(lambda: a @ b, device)
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


def copy_bandwidth(device: torch.device) -> float:
    """Bytes read plus bytes written per second by a large device-to-device copy."""
    n = COPY_BYTES[device.type] // 4
    src = torch.empty(n, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    return 2 * src.nbytes / _best(lambda: dst.copy_(src), device)


def host_to_device(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    src = torch.empty(COPY_BYTES["cuda"] // 4, dtype=torch.float32).pin_memory()
    return src.nbytes / _best(lambda: src.to(device, non_blocking=True), device)


def reference_mfu(device: torch.device, peaks: dict[str, float], seconds: float,
                  progress: Callable[[str], None]) -> tuple[float, str]:
    """Model FLOPs per second of the reference step over the calibrated rate at its precision, timed for
    about `seconds`."""
    name, overrides = REFERENCE[device.type]
    precision = choose("bf16", peaks).used if "bf16" in peaks else FALLBACK
    overrides = [*overrides, f"training.precision={precision}"]
    spec = load_spec(name, overrides)
    size = spec.training.micro_batch_size
    # A step takes at least its FLOPs at the peak rate; 1 warm-up + MIN_RUNS of them must fit.
    smaller = shrink_for_time(spec, size, peaks[precision], int(available_bytes(device) * MEMORY_FRACTION),
                              seconds / (1 + MIN_RUNS))
    if smaller:
        overrides = [*overrides, *smaller]
        spec = respec(spec, smaller)
    why = ""
    if precision != "bf16" and "bf16" in peaks:
        why = (f" (bf16 matmuls run at {report.flops_rate(peaks['bf16'])} here against "
               f"{report.flops_rate(peaks[precision])} in {precision})")
    progress(f"reference step: {name} with --set {' '.join(overrides)}{why}, for up to "
             f"{report.seconds(seconds)}")
    trainer = Trainer(build_model(spec, device=device), spec)
    data = batch(spec, size, device)
    timing = time_steps(lambda: trainer.step(data), device, budget=seconds)
    model_flops = estimate(spec).flops.training_per_token * spec.seq_len * size
    mfu = min(1.0, model_flops / timing.median / peaks[precision])
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
    progress("memory bandwidth: measured")
    left = budget - (time.perf_counter() - started)
    mfu, source = reference_mfu(device, peaks, max(left, 0.0), progress)
    memory = (torch.cuda.get_device_properties(device).total_memory if device.type == "cuda"
              else _total_ram())
    progress(f"done in {report.seconds(time.perf_counter() - started)} (budget {report.seconds(budget)})")
    return Calibration(device=describe(device), rates=rates, bandwidth=bandwidth, interconnect=interconnect,
                       memory_bytes=memory, mfu=mfu, mfu_source=source)


def _total_ram() -> int:
    total = meminfo_bytes("MemTotal")
    return total if total is not None else available_bytes(torch.device("cpu"))


def hardware_entry(c: Calibration) -> dict:
    """The calibration as a hardware file mapping (the catalogue's fields, plus calibrated_on)."""
    sizes = "; ".join(f"{p} n = {', '.join(str(n) for n in by_size)}" for p, by_size in c.rates.items())
    return {
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
