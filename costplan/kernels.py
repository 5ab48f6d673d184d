"""Kernel-level efficiencies of a device for the serving time model (data/kernels.yaml): the fraction of its
catalogue peaks that memory-bound kernels, GEMMs, attention kernels and all-reduces reach, and how long a small
all-reduce takes inside a node and across nodes, each with a source."""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from costplan import yamlio

FIELDS = ("memory", "matmul", "attention", "allreduce_bus", "allreduce_latency_us",
          "allreduce_latency_internode_us")
# Optional: the HBM efficiency of decode kernels that read int8 or int4 weights; where a device has no
# kernel-level figure for a format, its weights stream at `memory`, as 16-bit ones do.
WEIGHT_FIELDS = {"int8": "memory_int8", "int4": "memory_int4"}
LATENCIES = ("allreduce_latency_us", "allreduce_latency_internode_us")     # microseconds, not fractions


class Figure(BaseModel):
    """One number and where it comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    value: float = Field(gt=0)
    source: str


class Efficiencies(BaseModel):
    """What fraction of its peaks a device's kernels reach (the LATENCIES are times, not fractions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    device: str                # the catalogue key these apply to, or "default"
    memory: Figure
    matmul: Figure
    attention: Figure
    allreduce_bus: Figure
    allreduce_latency_us: Figure             # a small all-reduce among the GPUs of one node
    allreduce_latency_internode_us: Figure   # a small all-reduce that crosses nodes (InfiniBand)
    memory_int8: Figure | None = None
    memory_int4: Figure | None = None

    def weight_memory(self, weights: str) -> Figure:
        """HBM efficiency of the kernels that read weights stored in `weights` (bf16, fp8, int8, int4)."""
        own = getattr(self, WEIGHT_FIELDS[weights]) if weights in WEIGHT_FIELDS else None
        return own or self.memory

    def allreduce_latency(self, span: int, node_size: int) -> Figure:
        """Microseconds of one small all-reduce among `span` GPUs: across nodes when they do not fit in one."""
        return self.allreduce_latency_internode_us if span > node_size else self.allreduce_latency_us


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
    figures |= {name: own.get(name, table["default"].get(name)) for name in WEIGHT_FIELDS.values()}
    return Efficiencies(device=gpu_key if own else "default", **figures)
