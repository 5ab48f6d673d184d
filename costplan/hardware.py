"""The hardware catalogue (data/hardware.yaml) and users' own hardware files of the same shape."""
from __future__ import annotations

import datetime
import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from costplan import bundled, sources, yamlio
from costplan.errors import CostplanError, SpecError, did_you_mean, printable, shown
from costplan.kernels import PRECISIONS, Curves, Precision
from costplan.kernels import curves as catalogue_curves
from costplan.kinds import FieldProblems, Kind, text
from costplan.sections import InvalidInput, Section, field
from costplan.validation import Count, Fraction, Name, Positive, Price


def _text(value: Any) -> Any:
    # YAML reads `2026-05-01` as a date; a price date is kept as the text the user wrote.
    return text(value.isoformat() if isinstance(value, datetime.date) else value)


Text = Kind("Text", _text)


class GPU(Section):
    """One accelerator: dense peaks per precision, memory, bandwidths, budget MFU (plan --budget's FLOPs per
    GPU-hour) and price, with sources."""

    name: Name
    peak_tflops: dict[Precision, Positive] = field(min_length=1)
    peak_source: str = "not given"          # where the peaks come from, where `source` does not say
    memory_gib: Positive
    # What a framework can have of it (PyTorch's total: the driver keeps the rest); what steps must fit in
    usable_memory_gib: Positive | None = None
    usable_memory_source: str = "not given"
    memory_bandwidth_gbs: Positive
    interconnect_gbs: Positive                 # within a node (NVLink, ICI, PCIe): bidirectional total per device
    node_size: Count = 8                       # devices joined by that interconnect
    network_gbs: Positive | None = None        # between nodes, per device, bidirectional; None: interconnect_gbs
    network_source: str = "not given"
    mfu: Fraction
    mfu_source: str = "not given"
    usd_per_gpu_hour: Price
    price_date: Text = "not given"
    price_source: str = "not given"
    source: str = "not given"
    # Set by `costplan calibrate`: the device these numbers were measured on (peaks are then achieved rates).
    calibrated_on: str | None = None
    # Kernel efficiency curves for the step model; a catalogue device's come from data/kernels.yaml.
    kernels: Curves | None = None
    key: str = field("", exclude=True)  # the catalogue name or file path it was loaded from

    @property
    def price_said(self) -> str:
        """Where the price per GPU-hour comes from, and when, as a note says it (a file may say neither)."""
        said = (f"{self.key or self.name}'s usd_per_gpu_hour, no source given" if self.price_source == "not given"
                else self.price_source)
        return said if self.price_date == "not given" else f"{said} ({self.price_date})"

    def peak_flops(self, precision: str) -> float | None:
        """Dense peak FLOP/s at a training precision, or None when the device has no such mode."""
        tflops = self.peak_tflops.get(precision)  # type: ignore[call-overload]
        return None if tflops is None else tflops * 1e12

    def lacks(self, precision: str) -> str | None:
        """What a message says when this device has no peak at `precision` (and which it has), else None: the
        one wording of that refusal for estimate, plan and check."""
        if precision in self.peak_tflops:
            return None
        return f"no {precision} peak FLOP/s (it has {', '.join(self.precisions)})"

    @property
    def queues_kernels(self) -> bool:
        """Whether the host queues each kernel and goes on while the device runs it, so that the framework's
        fixed costs (kernels.kernel_seconds and the like) overlap the device's work: every accelerator, and not a
        CPU (a file `costplan calibrate` wrote on a "cpu: ..." device), which runs each op to its end."""
        return not (self.calibrated_on or "").startswith("cpu")

    @property
    def precisions(self) -> list[str]:
        return [p for p in PRECISIONS if p in self.peak_tflops]

    def link_bytes_per_s(self, span: int, stride: int = 1, pooled: bool = True) -> float:
        """Per-direction bandwidth in bytes/s for a group whose ranks are `stride` apart and span `span`
        consecutive ranks: the interconnect inside a node, the network across nodes. Catalogue figures are
        bidirectional totals, and a ring or all-to-all sends and receives at once, so each direction gets half.
        Across nodes NCCL runs one ring per NIC, so a ring collective (`pooled`) of a group with k ranks (k NICs)
        in each node moves k times one device's network bandwidth, up to its interconnect: nccl-tests bus
        bandwidth across 3 nodes of 8 A100s with 4 HDR NICs each reached 85-96 of the 100 GB/s that 4 × 200 Gb/s
        give (NVIDIA/nccl-tests issue #119); on NDR, 46-48 GB/s per 400 Gb/s NIC (NVIDIA/nccl-tests issue #290).
        An all-to-all or a point-to-point send cannot pool them: what leaves a GPU's node goes through its own NIC
        ("Alltoall cannot aggregate the bandwidth of multiple NICs, so the performance you should see is the
        performance of a single NIC", NCCL's maintainer in NVIDIA/nccl-tests issue #267)."""
        inside = self.interconnect_gbs * 1e9 / 2
        if span <= self.node_size or self.network_gbs is None:
            return inside
        per_node = max(1, self.node_size // stride) if pooled else 1
        return min(inside, per_node * self.network_gbs * 1e9 / 2)

    def ranks_per_node(self, span: int, stride: int = 1) -> int:
        """How many of a group's ranks (`stride` apart, spanning `span`) share a node."""
        return max(1, min(span // stride, self.node_size // stride))

    def curves(self) -> Curves | None:
        """The file's own kernel curves, else the catalogue's for this device key, else None."""
        return self.kernels or catalogue_curves(self.key)

    @property
    def memory_bytes(self) -> int:
        """The memory a training step or a serving replica must fit in: usable_memory_gib, else memory_gib."""
        return int((self.usable_memory_gib or self.memory_gib) * 2**30)

    @property
    def stated_memory_bytes(self) -> int:
        """The device's memory as its maker states it (memory_gib)."""
        return int(self.memory_gib * 2**30)

    def _after(self) -> None:
        if self.usable_memory_gib is not None and self.usable_memory_gib > self.memory_gib:
            raise FieldProblems([("usable_memory_gib", f"{self.usable_memory_gib:g} is more than memory_gib "
                                  f"({self.memory_gib:g}); it is what a framework can have of that memory")])


class Catalogue(Mapping[str, GPU]):
    """The bundled catalogue, keyed by name. An entry is read and validated when first looked up: an estimate
    needs one device of the file."""

    def __init__(self, text: str) -> None:
        self._texts = yamlio.sections(text)
        self._gpus: dict[str, GPU] = {}

    def __getitem__(self, key: str) -> GPU:
        if key not in self._gpus:
            entry = yamlio.loads(self._texts[key], bundled=True)[key]
            self._gpus[key] = _validate(entry, f"hardware catalogue entry {key}", key)
        return self._gpus[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)


@functools.cache
def catalogue() -> Catalogue:
    """The bundled catalogue (data/hardware.yaml), keyed by name."""
    return Catalogue(bundled.text("data", "hardware.yaml"))


def _validate(data: Any, label: str, key: str) -> GPU:
    if not isinstance(data, dict):
        raise SpecError(label, ["expected a mapping of hardware fields"])
    try:
        return GPU.model_validate({**data, "key": key})
    except InvalidInput as exc:
        raise SpecError(label, exc.messages) from None


SPEC_NETWORK = "hardware.network_gbs"     # how a network the spec gives is sourced (tables tell it apart)
# name → the catalogue key it names, for names of catalogue entries (resolve)
_bundled_names: dict[str, str] = {}
# (name, base_dir, current folder) → (the path found, its stamp): a file named again is checked with one stat of
# that path, links followed (a link pointed elsewhere is another stamp), not looked up again (an estimate reads
# spec.gpu several times); the devices themselves are _read_file's, the most recent few kept
_named_files: dict[tuple, tuple[Path, tuple[int, int, int]]] = {}


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    """What changes when a file does: its modification time, size and inode (a file replaced by another)."""
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _on_network(gpu: GPU, network_gbs: float | None) -> GPU:
    if network_gbs is None:
        return gpu
    return gpu.model_copy(update={"network_gbs": network_gbs,
                                  "network_source": f"{SPEC_NETWORK}: {network_gbs:g} GB/s per GPU"})


@functools.lru_cache(maxsize=64)
def _catalogued(key: str, network_gbs: float | None) -> GPU:
    return _on_network(catalogue()[key], network_gbs)


@functools.lru_cache(maxsize=64)
def _read_file(path: Path, stamp: tuple[int, int, int], network_gbs: float | None) -> GPU:
    """A hardware file's device, read once per state of the file (`stamp`) and network."""
    return _on_network(_validate(yamlio.read(path), printable(path, cut=False), str(path)), network_gbs)


def resolve(name: str, base_dir: str | None = None, network_gbs: float | None = None) -> GPU:
    """A catalogue entry by name, or a hardware YAML file by path (relative to the cwd, then base_dir), by the
    rule of costplan/sources.py; on the cluster network `network_gbs` (hardware.network_gbs) where given. One
    device is one object (the step model's memo keys name a device by its identity): a catalogue name's always
    (of the 64 networks last asked for), a file's until the file changes, when it is read again (a notebook
    editing its hardware file, or changing folder, sees the file as it is now)."""
    key = _bundled_names.get(name)
    if key is not None:
        return _catalogued(key, network_gbs)
    try:
        where = (name, base_dir, os.getcwd())
    except OSError:     # the current folder is gone: nothing relative to it can be kept
        where = None
    seen = _named_files.get(where)
    if seen is not None:
        found, stamp = seen
        try:
            # a file found beside the spec is the current folder's once one of that name is there (sources.find)
            if _stamp(os.stat(found)) == stamp and (found == Path(name) or not sources.is_file(Path(name))):
                return _read_file(found, stamp, network_gbs)
        except OSError:     # gone: looked up again below, which reports it
            pass
    gpus = catalogue()
    found = sources.find(name, gpus, [base_dir])
    if isinstance(found, str):    # text that names a catalogue entry names it from any folder (sources.find)
        _bundled_names[name] = found
        return _catalogued(found, network_gbs)
    if found is not None and sources.is_file(found):
        try:
            stamp = _stamp(found.stat())
        except OSError:     # gone since is_file: read as missing below
            stamp = None
        if stamp is not None:
            if where is not None:
                _named_files[where] = (found, stamp)
            return _read_file(found, stamp, network_gbs)
    if found is not None and found.is_dir():
        raise CostplanError(f"hardware file {shown(name)} is a folder; give a hardware YAML file")
    if found is not None:
        raise CostplanError(f"hardware file {shown(name)} not found")
    raise CostplanError(f"unknown GPU {shown(name)}{did_you_mean(name, gpus)}; `costplan hardware` lists the "
                        "catalogue, or give a path to a hardware YAML file")
