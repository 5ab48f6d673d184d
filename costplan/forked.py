"""Work shared over forked processes. A forked worker starts with what this process has already read and
computed (the parsed spec, the memo), so only the results cross back. Where fork is unsafe (macOS) or absent,
or one process is asked for, the work runs here."""
from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        return os.cpu_count() or 1


def can_fork() -> bool:
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


_TASK: tuple[Callable, Sequence] | None = None      # what the workers inherit: the function and its items


def _call(index: int):  # noqa: ANN202 - whatever the task returns
    assert _TASK is not None
    function, items = _TASK
    return function(items[index])


def imap_forked(function: Callable[[T], R], items: Sequence[T], jobs: int, ordered: bool = True) -> Iterator[R]:
    """function(item) for each item, in order (or, not `ordered`, as each is done), as they come in, over up to
    `jobs` forked processes taking one item at a time each (items may cost unequally); an exception in a worker
    is raised here."""
    jobs = min(jobs, len(items)) if can_fork() else 1
    if jobs <= 1:
        yield from map(function, items)
        return
    global _TASK
    _TASK = function, items
    try:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as workers:
            if ordered:
                yield from workers.map(_call, range(len(items)))
            else:
                for done in as_completed([workers.submit(_call, index) for index in range(len(items))]):
                    yield done.result()
    finally:
        _TASK = None


def map_forked(function: Callable[[T], R], items: Sequence[T], jobs: int) -> list[R]:
    """[function(item) for item in items], as imap_forked computes them."""
    return list(imap_forked(function, items, jobs))
