"""Wall time of a training step (forward + backward + optimizer) on real tensors.

The median of at least 10 timed steps after warm-up steps, with the spread (min, max, interquartile range),
synchronising the device after each step so that queued GPU work is inside the step that issued it.
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


@dataclass(frozen=True)
class Timing:
    median: float                 # seconds per step
    minimum: float
    maximum: float
    iqr: float                    # interquartile range, seconds
    runs: int

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return self.iqr / self.median if self.median else 0.0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], None], device: torch.device, runs: int = RUNS, warmup: int = WARMUP) -> Timing:
    """Run `step` warmup times untimed, then at least `runs` (≥ 10) times timed, and more (up to MAX_RUNS)
    while the timed steps add up to less than MIN_TIMED_SECONDS."""
    runs = max(runs, RUNS)
    for _ in range(warmup):
        step()
    synchronize(device)
    times: list[float] = []
    while len(times) < runs or (sum(times) < MIN_TIMED_SECONDS and len(times) < MAX_RUNS):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    quartiles = statistics.quantiles(times, n=4)
    return Timing(median=statistics.median(times), minimum=min(times), maximum=max(times),
                  iqr=quartiles[2] - quartiles[0], runs=len(times))
