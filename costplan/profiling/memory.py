"""Memory of the reference model: bytes autograd saves for backward, and the peak of a training step.

Saved bytes: every tensor autograd packs during the forward (torch.autograd.graph.saved_tensors_hooks) and
still holds when the forward ends, counted once per storage (several ops saving the same tensor, or views of
it, hold one allocation), excluding parameters and module buffers (constants that exist whether or not a step
runs).

Peak: the most memory live at any moment of a full training step (weights, gradients, optimizer states
and the fp32 master copy, activations, transient buffers), on the second of two steps so that the optimizer
states exist. The step accumulates gradients over two micro-batches, as any run whose global batch is
larger than micro-batch × GPUs does: the second micro-batch's activations then coexist with a full set of
gradients, the state the estimate's total describes. Without accumulation no moment holds all of both, and
the true peak is lower by up to the smaller of the two.

On CUDA the peak is torch.cuda.max_memory_allocated. Elsewhere a storage tracker under FakeTensorMode
follows every allocation without making any. torch's own MemTracker does the same job and agrees byte for
byte (tests/test_profiling_memory.py), but updates per-module snapshots on every op, so its cost grows with
layers × ops: 36 s for 32 layers of Llama 2 70B on one CPU core, minutes for all 80. This tracker is linear.

A reference kernel that stands for one fused GPU kernel leaves its temporaries out of the peak, on CPU and
CUDA alike (on_chip.py); where none of them is the peak, the tracker agrees with MemTracker.
"""
from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from costplan.profiling.on_chip import TRACKERS, running_on_chip
from costplan.profiling.private import TorchDispatchMode, fake_tensor_mode, storage_key, tree_leaves
from costplan.profiling.scope import OUTSIDE, ComponentScope


def _storage_key(t: torch.Tensor) -> int:
    return storage_key(t.untyped_storage())


def saved_bytes(model: nn.Module, run_forward: Callable[[ComponentScope], torch.Tensor]) -> dict[str, int]:
    """Bytes saved for backward by `run_forward(scope)` (which returns the loss), per component: the storages
    still alive when the forward ends. A tensor saved in a branch of the graph that leads nowhere (top-k indices
    computed only to pick other indices, as grouped MoE routers do) is freed with it, and its storage's address
    may then be reused by a tensor saved later: a weak reference tells the two apart."""
    constants = {_storage_key(t) for t in (*model.parameters(), *model.buffers())}
    owner: dict[int, tuple[str, int, weakref.ref]] = {}

    with ComponentScope(model) as scope:
        def pack(t: torch.Tensor) -> torch.Tensor:
            key = _storage_key(t)
            known = owner.get(key)
            if key not in constants and (known is None or known[2]() is None):
                storage = t.untyped_storage()
                owner[key] = (scope.current(), storage.nbytes(), weakref.ref(storage))
            return t

        kept = getattr(model, "kept", None)     # selective_op: what its checkpoints keep outside autograd's packing
        if kept is not None:
            model.component = scope.current
        try:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = run_forward(scope)
        finally:
            if kept is not None:
                model.component = None
        for ref, component in kept or ():
            storage = ref()
            key = None if storage is None else storage_key(storage)
            if key is not None and key not in constants and key not in owner:
                owner[key] = (component or OUTSIDE, storage.nbytes(), ref)
    result: Counter[str] = Counter()
    for component, nbytes, alive in owner.values():
        if alive() is not None:
            result[component] += nbytes
    del loss                    # the graph (and the saved tensors) could be kept alive until here
    return dict(result)


@dataclass(frozen=True)
class Peak:
    bytes: int
    method: str                  # how it was measured, for the report


class LiveBytes(TorchDispatchMode):
    """Bytes of every storage an op creates, from its creation until it is freed, and their peak sum.
    torch keeps one Python object per storage for the storage's lifetime, so a weak reference to it
    reports the free. Inside `on_chip()` storages are followed but the peak waits for the kernel's end."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.sizes: dict[int, int] = {}

    def __enter__(self):  # noqa: ANN204
        entered = super().__enter__()
        TRACKERS.append(self)
        return entered

    def __exit__(self, *exc):  # noqa: ANN001, ANN204
        TRACKERS.remove(self)
        return super().__exit__(*exc)

    def enter_chip(self) -> None:
        pass

    def leave_chip(self) -> None:
        self.peak = max(self.peak, self.live)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t.untyped_storage())
        return out

    def _track(self, storage: torch.UntypedStorage) -> None:
        key = storage_key(storage)
        if key in self.sizes:
            return
        self.sizes[key] = storage.nbytes()
        self.live += self.sizes[key]
        if not running_on_chip():
            self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.live -= self.sizes.pop(key, 0)


Phases = list  # the parts of one step, e.g. [micro-batch 1, micro-batch 2, optimizer update]


def peak_fake(build: Callable[[], Phases]) -> Peak:
    """Peak of two steps whose phases `build()` prepares (model, optimizer, batch), all on fake tensors:
    nothing is allocated, shapes and dtypes are followed exactly."""
    with fake_tensor_mode():
        return Peak(_tracked(build), "storages tracked under FakeTensorMode, two steps")


def peak_tracked(build: Callable[[], Phases]) -> Peak:
    """The same on real CPU tensors, for modules whose steps depend on values (a MoE routing loop)."""
    return Peak(_tracked(build), "storages tracked on CPU tensors, two steps")


def _tracked(build: Callable[[], Phases]) -> int:
    tracker = LiveBytes()
    with tracker:
        phases = build()
        tracker.peak = tracker.live     # building's temporaries (an ALiBi bias's fp32 terms) are not a step's
        for _ in range(2):
            for phase in phases:
                phase()
    return tracker.peak


class CudaPeak:
    """torch.cuda.max_memory_allocated, but for what on_chip() kernels allocate and free inside: the allocator's
    peak is taken before such a kernel and reset, and after it only what stays allocated counts."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def __enter__(self) -> CudaPeak:
        for tracker in TRACKERS:        # an enclosing tracker keeps its peak before the reset
            tracker.enter_chip()
        torch.cuda.reset_peak_memory_stats(self.device)
        TRACKERS.append(self)
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN001
        TRACKERS.remove(self)
        self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device))

    def enter_chip(self) -> None:
        self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device))

    def leave_chip(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)     # from what the kernel left allocated


def peak_cuda(build: Callable[[], Phases], device: torch.device) -> Peak:
    """Peak allocated CUDA memory over two real steps, above what was allocated before building."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    phases = build()
    with CudaPeak(device) as tracker:       # from what the model holds, not building's temporaries
        for _ in range(2):
            for phase in phases:
                phase()
        torch.cuda.synchronize(device)
    return Peak(tracker.peak - base, "torch.cuda.max_memory_allocated, two steps")
