"""Wall time of a training step (forward + backward + optimizer) on real tensors.

The median of at least 10 timed steps after warm-up steps, with the spread (min, max, interquartile range),
synchronising the device after each step so that queued GPU work is inside the step that issued it. Given a
wall-time budget, a slow step is timed fewer times (at least MIN_RUNS) so that the whole stays within it.

A calibration's kernels are timed by their best (or median) call. On a GPU a call returns before its kernel ends,
and synchronising costs microseconds a kernel of a few does not: such a call is timed as many calls back to back,
as a step queues its kernels, over at least AMORTISED_SECONDS (back_to_back).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

WARMUP = 3
RUNS = 10
MIN_TIMED_SECONDS = 0.5     # short steps are repeated up to this much wall time, for a stabler median
MAX_RUNS = 200
MIN_RUNS = 3                # a median of fewer says little
BEST_OF = 5                 # runs of a kernel whose best time a calibration takes
# A dropless expert's GEMM shapes follow the routing, and a CPU's GEMM library builds a kernel for each shape it
# has not met: ci-moe met a new row count in 25-100% of its experts a step over steps 1-13, and in 0-25% after
# step 40 (bench/moe_routing.py). A long run is past that; such a step is timed after it settles.
SETTLE_STEPS = 50
SETTLE_SECONDS = 10.0       # at most, whatever the steps
AMORTISED_SECONDS = 2e-3    # a GPU timing of a kernel spans at least this much work queued back to back
MAX_CALLS = 1024


@dataclass(frozen=True)
class Timing:
    median: float                 # seconds per step
    minimum: float
    maximum: float
    iqr: float                    # interquartile range, seconds
    runs: int
    settled: int = 0              # steps run before the warm-up for the shapes to settle (SETTLE_STEPS)

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return self.iqr / self.median if self.median else 0.0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device: torch.device, runs: int = RUNS, warmup: int = WARMUP,
               budget: float | None = None, between: Callable[[], None] | None = None,
               settle: bool = False) -> Timing:
    """Run `step` warmup times untimed, then at least `runs` (≥ 10) times timed, and more (up to MAX_RUNS)
    while the timed steps add up to less than MIN_TIMED_SECONDS. With a `budget` (seconds, warm-up
    included), stop before a step that would overrun it, after one warm-up and MIN_RUNS timed steps. `between`,
    if given, runs untimed before each timed step (a measurement paired with the steps). With `settle`, first
    SETTLE_STEPS untimed steps (at most SETTLE_SECONDS, outside the budget), for shapes that follow the data."""
    runs = max(runs, RUNS)
    settled, settling = 0, time.perf_counter()
    while settle and settled < SETTLE_STEPS and time.perf_counter() - settling < SETTLE_SECONDS:
        step()
        synchronize(device)
        settled += 1
    started = time.perf_counter()
    last = 0.0                          # the latest step's seconds: what the next one is expected to take

    def run_one() -> float:
        nonlocal last
        start = time.perf_counter()
        step()
        synchronize(device)
        last = time.perf_counter() - start
        return last

    def over() -> bool:
        return budget is not None and time.perf_counter() - started + last > budget

    for i in range(warmup):
        if i and over():
            break
        run_one()
    times: list[float] = []
    while len(times) < runs or (sum(times) < MIN_TIMED_SECONDS and len(times) < MAX_RUNS):
        if len(times) >= MIN_RUNS and over():
            break
        if between is not None:
            between()
        times.append(run_one())
    quartiles = statistics.quantiles(times, n=4)
    return Timing(median=statistics.median(times), minimum=min(times), maximum=max(times),
                  iqr=quartiles[2] - quartiles[0], runs=len(times), settled=settled)


def back_to_back(fn: Callable[[], object], device: torch.device) -> tuple[Callable[[], None], int]:
    """fn repeated back to back as many times as fill AMORTISED_SECONDS on a GPU (at most MAX_CALLS), and that
    number; fn itself on a CPU, which runs a call to its end before it returns."""
    if device.type != "cuda":
        return fn, 1
    calls = 1

    def run() -> None:
        for _ in range(calls):
            fn()

    while calls < MAX_CALLS:
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        if time.perf_counter() - start >= AMORTISED_SECONDS:
            break
        calls = min(MAX_CALLS, 4 * calls)
    return run, calls


def queued_note(device_type: str) -> str:
    """What a calibration's source says of its GPU timings (back_to_back); nothing on a CPU."""
    return (f" (each timing {AMORTISED_SECONDS * 1e3:g} ms or more of calls back to back)" if device_type == "cuda"
            else "")


def best_seconds(fn: Callable[[], object], device: torch.device, repeat: int = BEST_OF) -> float:
    """The best wall time of one call of fn over `repeat` timings after one call to warm up, the device
    synchronised around each timing (of several calls on a GPU: back_to_back)."""
    fn()
    synchronize(device)
    run, calls = back_to_back(fn, device)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best / calls


def median_seconds(run: Callable[[], None], prepare: Callable[[], None], device: torch.device,
                    runs: int) -> float:
    """Median seconds of `run` over `runs` calls (after two to warm up), each after an untimed `prepare`."""
    times = []
    for i in range(runs + 2):
        prepare()
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        if i >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def median_call_seconds(fn: Callable[[], object], device: torch.device, runs: int) -> float:
    """Median seconds of one call of fn over `runs` timings (of several calls on a GPU: back_to_back)."""
    run, calls = back_to_back(fn, device)
    return median_seconds(run, lambda: None, device, runs) / calls
