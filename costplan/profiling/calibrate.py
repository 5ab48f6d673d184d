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
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass

import torch

from costplan.costs.estimate import estimate
from costplan.profiling.measure import available_bytes, describe, meminfo_bytes, respec
from costplan.profiling.model import build_model
from costplan.profiling.step import Trainer, batch
from costplan.profiling.timing import synchronize, time_steps
from costplan.loading import load_spec

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
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


def reference_mfu(device: torch.device, peaks: dict[str, float]) -> tuple[float, str]:
    """Model FLOPs per second of the reference step over the calibrated rate at its precision."""
    name, overrides = REFERENCE[device.type]
    spec = load_spec(name, overrides)
    precision = "bf16" if "bf16" in peaks else "fp32"
    spec = respec(spec, [f"training.precision={precision}"])
    size = spec.training.micro_batch_size
    trainer = Trainer(build_model(spec, device=device), spec)
    data = batch(spec, size, device)
    timing = time_steps(lambda: trainer.step(data), device)
    model_flops = estimate(spec).flops.training_per_token * spec.seq_len * size
    mfu = min(1.0, model_flops / timing.median / peaks[precision])
    source = (f"measured: {name} with --set {' '.join(overrides)} ({precision}), median step "
              f"{timing.median:.4g} s for {model_flops} model FLOPs")
    return mfu, source


def calibrate(device: torch.device) -> Calibration:
    rates = {p: {n: matmul_rate(n, p, device) for n in SIZES[device.type]} for p in PRECISIONS[device.type]}
    peaks = {p: max(r.values()) for p, r in rates.items()}
    mfu, source = reference_mfu(device, peaks)
    memory = (torch.cuda.get_device_properties(device).total_memory if device.type == "cuda"
              else _total_ram())
    return Calibration(device=describe(device), rates=rates, bandwidth=copy_bandwidth(device),
                       interconnect=host_to_device(device), memory_bytes=memory, mfu=mfu, mfu_source=source)


def _total_ram() -> int:
    total = meminfo_bytes("MemTotal")
    return total if total is not None else available_bytes(torch.device("cpu"))


def hardware_entry(c: Calibration) -> dict:
    """The calibration as a hardware file mapping (the catalogue's fields, plus calibrated_on)."""
    sizes = ", ".join(str(n) for n in next(iter(c.rates.values())))
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
        "source": (f"costplan calibrate with torch {torch.__version__}: best of {BEST_OF} square matmuls of "
                   f"n = {sizes}; a {COPY_BYTES[c.device.split(':')[0]] // 2**20} MiB copy"
                   + ("; pinned host-to-device copy" if c.interconnect else "")),
        "calibrated_on": c.device,
    }
