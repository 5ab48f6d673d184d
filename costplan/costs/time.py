"""Training FLOPs → GPU-hours → wall-clock days → cost.

GPU-hours = training model FLOPs / (dense peak FLOP/s at the training precision × MFU) / 3600. MFU (model
FLOPs utilisation, PaLM §4.1) counts only the model FLOPs of convention 4, so recomputation and the other
hardware-only work are inside the utilisation figure, not added to the FLOPs.
"""
from __future__ import annotations

SECONDS_PER_HOUR = 3600
HOURS_PER_DAY = 24


def gpu_hours(training_flops: float, peak_flops: float, mfu: float) -> float:
    return training_flops / (peak_flops * mfu) / SECONDS_PER_HOUR


def flops_in(hours: float, peak_flops: float, mfu: float) -> float:
    """The training FLOPs `hours` GPU-hours deliver: the inverse of gpu_hours."""
    return hours * SECONDS_PER_HOUR * peak_flops * mfu


def wall_clock_days(hours: float, gpu_count: int) -> float:
    return hours / gpu_count / HOURS_PER_DAY
