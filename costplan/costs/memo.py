"""Results shared while a block of estimates runs (a sweep, a layout search): component costs, per-layer costs
and operations, layer times. Outside such a block nothing is kept, so a formula changed at run time (as the
tests change them) is always the one used.

Keys name frozen spec sections by `token(section)`: hashing and comparing a section field by field on
every look-up was a large part of a sweep's time, so each object is compared by value once per block."""
from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")
_store: dict | None = None
# token()'s two tables, made with the store: an object's id → (the object, its token); a value → its token
_ids: dict[int, tuple] = {}
_values: dict[Hashable, int] = {}
_MISSING = object()


class shared:  # noqa: N801 - used as a function: `with memo.shared():`
    """Compute each keyed result once while the block runs (nested blocks share the outer one's results). A
    class rather than a generator: a step opens one per call, and this costs less to enter."""

    def __enter__(self) -> None:
        global _store, _ids, _values
        self._previous = _store, _ids, _values
        if _store is None:
            _store, _ids, _values = {}, {}, {}

    def __exit__(self, *_: object) -> None:
        global _store, _ids, _values
        _store, _ids, _values = self._previous


def cached(key: Hashable, compute: Callable[[], T]) -> T:
    """compute(), or the result kept for `key` inside a shared() block."""
    if _store is None:
        return compute()
    found = _store.get(key, _MISSING)
    if found is _MISSING:
        found = _store[key] = compute()
    return found


def token(section: Hashable) -> Hashable:
    """A small stand-in for a frozen, hashable object inside a shared() block: equal objects get equal tokens.
    Each object is hashed and compared by value once per block; the block keeps it alive, so its id is not
    reused by another object while the block runs. Outside a block, the object itself."""
    if _store is None:
        return section
    known = _ids.get(id(section))
    if known is not None:
        return known[1]
    found = _values.setdefault(section, len(_values))
    _ids[id(section)] = (section, found)
    return found


def of_object(tag: str, held: object, compute: Callable[[], T]) -> T:
    """compute(), kept for this very object inside a shared() block: the entry holds the object, so no other
    object takes its id while the block runs. For results derived from an unhashable object (a dict of costs)."""
    if _store is None:
        return compute()
    key = (tag, id(held))
    found = _store.get(key)
    if found is None or found[0] is not held:
        found = _store[key] = (held, compute())
    return found[1]
