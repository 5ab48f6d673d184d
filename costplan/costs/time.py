"""Time at one utilisation figure: seconds = model FLOPs / (dense peak × MFU), and its inverse.

MFU (model FLOPs utilisation, PaLM §4.1) counts only the model FLOPs of convention 4, so recomputation,
communication and everything else a step does sit inside the figure. An estimate times its steps with the step
model (costs/step.py) and uses this rule only when the user gives an MFU (hardware.mfu, --mfu); the planner
uses it to turn a budget in GPU-hours into the FLOPs that size its proposal.
"""
from __future__ import annotations

SECONDS_PER_HOUR = 3600
HOURS_PER_DAY = 24


def seconds_at(flops: float, peak_flops: float, mfu: float) -> float:
    """Seconds one GPU takes for `flops` model FLOPs at utilisation `mfu`."""
    return flops / (peak_flops * mfu)


def flops_in(hours: float, peak_flops: float, mfu: float) -> float:
    """The model FLOPs `hours` GPU-hours deliver at utilisation `mfu`: the inverse of seconds_at."""
    return hours * SECONDS_PER_HOUR * peak_flops * mfu


def wall_clock_days(hours: float, gpu_count: int) -> float:
    return hours / gpu_count / HOURS_PER_DAY
