"""The private torch APIs costplan relies on, in one place, each behind a function with a clear error.

torch gives no stability promise for these. When an upgrade moves one, the error names the API and the
torch version, instead of an AttributeError deep in a measurement.
"""
from __future__ import annotations

import torch

from costplan.errors import CostplanError

try:
    # The base class of dispatch modes (FlopCounterMode is one) and pytree flattening: stable in practice,
    # private in name.
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves
except ImportError as _exc:  # pragma: no cover - only on a torch that moved them
    raise CostplanError(f"this torch ({torch.__version__}) has no torch.utils._python_dispatch.TorchDispatchMode "
                        f"or torch.utils._pytree.tree_leaves ({_exc}); costplan's profiler was written against "
                        "torch 2.13") from None

__all__ = ["TorchDispatchMode", "current_autograd_node", "fake_tensor_mode", "is_fake", "memory_tracker",
           "storage_key", "tracker_new_step", "tracker_peak", "tree_leaves"]


def _missing(what: str, exc: BaseException) -> CostplanError:
    return CostplanError(f"this torch ({torch.__version__}) has no {what} ({exc}); costplan's profiler was "
                         "written against torch 2.13")


def fake_tensor_mode():
    """torch._subclasses.FakeTensorMode: tensors with shapes, dtypes and devices but no data."""
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode
    except ImportError as exc:
        raise _missing("FakeTensorMode", exc) from None
    return FakeTensorMode(allow_non_fake_inputs=False)


def storage_key(storage: torch.UntypedStorage) -> int:
    """The address of the C++ StorageImpl: the same for every view of one allocation, real or fake."""
    try:
        return storage._cdata
    except AttributeError as exc:
        raise _missing("UntypedStorage._cdata", exc) from None


def is_fake(t: torch.Tensor) -> bool:
    """Whether t is a FakeTensor (shape and dtype only: its values cannot be read)."""
    try:
        from torch._subclasses.fake_tensor import FakeTensor
    except ImportError as exc:
        raise _missing("FakeTensor", exc) from None
    return isinstance(t, FakeTensor)


def memory_tracker():
    """torch.distributed._tools.mem_tracker.MemTracker: live tensor memory by category, with its peak."""
    try:
        from torch.distributed._tools.mem_tracker import MemTracker
    except ImportError as exc:
        raise _missing("MemTracker (torch.distributed._tools.mem_tracker)", exc) from None
    return MemTracker()


def tracker_peak(tracker) -> int:  # noqa: ANN001
    """Peak bytes over all devices that the MemTracker saw."""
    try:
        snapshot = tracker.get_tracker_snapshot("peak")
        return sum(per_device["Total"] for per_device in snapshot.values())
    except (AttributeError, KeyError, TypeError) as exc:
        raise _missing("MemTracker peak snapshot with a 'Total' entry", exc) from None


def tracker_new_step(tracker) -> None:  # noqa: ANN001
    """MemTracker refuses to see a module run twice unless its per-module statistics are cleared; the global
    peak is kept."""
    try:
        tracker.reset_mod_stats()
    except AttributeError as exc:
        raise _missing("MemTracker.reset_mod_stats", exc) from None


def current_autograd_node():
    """The autograd node the engine is executing now (None outside backward)."""
    try:
        return torch._C._current_autograd_node()
    except AttributeError as exc:
        raise _missing("torch._C._current_autograd_node", exc) from None
