"""Results shared while a block of estimates runs (a sweep, a layout search): component costs, per-layer costs
and operations, layer times. Outside such a block nothing is kept, so a formula changed at run time (as the
tests change them) is always the one used."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator
from typing import TypeVar

T = TypeVar("T")
_store: dict | None = None


@contextlib.contextmanager
def shared() -> Iterator[None]:
    """Compute each keyed result once while the block runs (nested blocks share the outer one's results)."""
    global _store
    previous = _store
    if _store is None:
        _store = {}
    try:
        yield
    finally:
        _store = previous


def cached(key: Hashable, compute: Callable[[], T]) -> T:
    """compute(), or the result kept for `key` inside a shared() block."""
    if _store is None:
        return compute()
    if key not in _store:
        _store[key] = compute()
    return _store[key]
