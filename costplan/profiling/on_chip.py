"""Reference kernels that stand for one fused GPU kernel (blocks.BlockAttention's flash tiles, the fused SwiGLU,
RMSNorm written out on the CPU, an fp8 linear's cast and its weight gradient's read of the fp8 copy, the MoE
combine's fp32 weighting) run under `on_chip()`: a GPU kernel keeps their temporaries in registers and
shared memory, so the peak-memory trackers (memory.LiveBytes on fake or CPU tensors, memory.CudaPeak on CUDA)
count what such a kernel leaves allocated (its outputs, what it saves), as they see torch's fused attention, one
op. Its own module, so that kernels and trackers both import it."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

TRACKERS: list = []             # the peak trackers now running, each with enter_chip() and leave_chip()
_DEPTH: list[None] = []         # one entry per fused-kernel stand-in now running


def running_on_chip() -> bool:
    return bool(_DEPTH)


@contextmanager
def on_chip() -> Iterator[None]:
    """The body is one fused GPU kernel: its temporaries do not reach the peak, what is still allocated when it
    ends does. Run the kernel's body as a function inside, so that its locals are freed before the end."""
    if not _DEPTH:
        for tracker in TRACKERS:
            tracker.enter_chip()
    _DEPTH.append(None)
    try:
        yield
    finally:
        _DEPTH.pop()
        if not _DEPTH:
            for tracker in TRACKERS:
                tracker.leave_chip()
