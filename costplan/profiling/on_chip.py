"""Reference kernels that stand for one fused GPU kernel (blocks.BlockAttention, a flash kernel's tiles) run
under `on_chip()`: on a GPU their tiles' temporaries live in registers and shared memory, so the peak-memory
tracker (memory.LiveBytes) counts what such a kernel leaves allocated (its outputs, what it saves), as it sees
torch's fused attention, which is one op. Its own module, so that kernels and the tracker both import it."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

TRACKERS: list = []             # the peak trackers now running (memory.LiveBytes)
_DEPTH: list[None] = []         # one entry per fused-kernel stand-in now running


def running_on_chip() -> bool:
    return bool(_DEPTH)


@contextmanager
def on_chip() -> Iterator[None]:
    """The body is one fused GPU kernel: its temporaries do not reach the peak, what is still allocated when it
    ends does. Run the kernel's body as a function inside, so that its locals are freed before the end."""
    _DEPTH.append(None)
    try:
        yield
    finally:
        _DEPTH.pop()
        if not _DEPTH:
            for tracker in TRACKERS:
                tracker.peak = max(tracker.peak, tracker.live)
