"""Which precision a step is timed in: the spec's own, unless the device runs that precision's matmuls far
slower than fp32. A CPU without native bf16 (AVX2 only) converts every element and multiplies at about
1 GFLOP/s against 13-85 in fp32: timing a bf16 step there takes minutes and says nothing about the devices a
bf16 spec is meant for, so the step is timed in fp32 instead and the result says so.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch

from costplan.profiling.timing import best_seconds

# The dtype the reference model runs each precision in (model.training_dtype): fp8 in bf16, a CPU having no fp8
# GEMM.
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16,
          "fp8": torch.bfloat16}
NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
FALLBACK = "fp32"
# A rate under a quarter of fp32's means the device has no native kernels for it: emulated bf16 runs at 0.01-0.08
# of fp32 (1 against 13-85 GFLOP/s), native bf16 on AVX-512 without AMX at 0.51-0.56 of it (an Intel Xeon's
# probe, three runs), where a threshold of one half flipped the timed precision from one run to the next.
SLOW_FRACTION = 0.25
PROBE_N = 256           # small enough that an emulated bf16 matmul takes ~25 ms on a 2-core CPU


@dataclass(frozen=True)
class PrecisionChoice:
    requested: str                      # the spec's training.precision
    used: str                           # what the step is timed in
    rates: Mapping[str, float]          # probed matmul FLOP/s by precision ({} when nothing was probed)
    why_not: str = ""                   # why a slow precision was kept

    @property
    def fell_back(self) -> bool:
        return self.used != self.requested


def choose(requested: str, rates: Mapping[str, float]) -> PrecisionChoice:
    """Time in `requested`, or in fp32 when the device's matmul rate at `requested` is under SLOW_FRACTION of
    its fp32 rate (rates by precision, FLOP/s)."""
    slow = (requested in rates and FALLBACK in rates and requested != FALLBACK
            and rates[requested] < SLOW_FRACTION * rates[FALLBACK])
    return PrecisionChoice(requested, FALLBACK if slow else requested, dict(rates))


@functools.cache
def probe(device: torch.device, precision: str) -> float:
    """Achieved FLOP/s of a PROBE_N square matmul, best of 3 (measured once per device and precision). On a
    CPU with one thread: the question is the kernel, and threads that wait for each other on a busy machine
    can make a small fp32 matmul as slow as an emulated bf16 one."""
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        a = torch.randn(PROBE_N, PROBE_N, device=device).to(DTYPES[precision])
        seconds = best_seconds(lambda: a @ a, device, repeat=3)
    finally:
        torch.set_num_threads(threads)
    return 2 * PROBE_N**3 / seconds


def runs_as(precision: str) -> str:
    """The precision the reference computes a step of `precision` in (DTYPES): fp8's matmuls in bf16, tf32's in
    fp32 (torch leaves TF32 matmuls off). Such a step is timed, and estimated, as that precision's: a calibration
    measures no fp8 rate, and a datasheet's fp8 or tf32 peak is not what the reference ran at."""
    return NAMES[DTYPES[precision]]


def timing_precision(requested: str, device: torch.device) -> PrecisionChoice:
    """choose() between the precision the reference runs `requested` in and fp32, on rates probed on `device`;
    fp32 steps are not probed."""
    computed = runs_as(requested)
    if computed == FALLBACK:
        return PrecisionChoice(requested, computed, {})
    return replace(choose(computed, {p: probe(device, p) for p in (computed, FALLBACK)}), requested=requested)
