"""Kernel-level efficiencies of a device for the serving time model (data/kernels.yaml): the fraction of its
catalogue peaks that memory-bound kernels, GEMMs, attention kernels and all-reduces reach, each with a source."""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from costplan import yamlio

FIELDS = ("memory", "matmul", "attention", "allreduce_bus", "allreduce_latency_us")


class Figure(BaseModel):
    """One number and where it comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    value: float = Field(gt=0)
    source: str


class Efficiencies(BaseModel):
    """What fraction of its peaks a device's kernels reach (allreduce_latency_us is a time, not a fraction)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    device: str                # the catalogue key these apply to, or "default"
    memory: Figure
    matmul: Figure
    attention: Figure
    allreduce_bus: Figure
    allreduce_latency_us: Figure


@functools.cache
def _table() -> dict[str, dict]:
    ref = resources.files("costplan") / "data" / "kernels.yaml"
    with resources.as_file(ref) as path:
        return yamlio.read(Path(path))


@functools.cache
def efficiencies(gpu_key: str) -> Efficiencies:
    """The device's own figures where the table has them, the defaults for the rest."""
    table = _table()
    own = table.get(gpu_key, {})
    figures = {name: own.get(name, table["default"][name]) for name in FIELDS}
    return Efficiencies(device=gpu_key if own else "default", **figures)
