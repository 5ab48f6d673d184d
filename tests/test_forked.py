"""Work shared over forked processes (costplan/forked.py): the same results, in order, as one process, and a
worker's error raised here as it was made."""
from __future__ import annotations

import os
import pickle

import pytest

from costplan import forked
from costplan.errors import SpecError

needs_fork = pytest.mark.skipif(not forked.can_fork(), reason="fork is unsafe or absent here")


def _square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


@needs_fork
def test_map_forked_returns_what_one_process_does_in_order():
    items = list(range(7))
    results = forked.map_forked(_square_and_pid, items, 2)
    assert [r for r, _ in results] == [x * x for x in items]
    assert os.getpid() not in {pid for _, pid in results}          # the workers did the work
    assert forked.map_forked(_square_and_pid, items, 1) == [(x * x, os.getpid()) for x in items]   # here alone


def _slow_first(x: int) -> int:
    import time

    time.sleep(1.0 if x == 0 else 0.0)
    return x


@needs_fork
def test_unordered_results_come_as_they_are_done():
    # the first item takes a second: over two processes the others are all done before it
    assert list(forked.imap_forked(_slow_first, range(4), 2, ordered=False)) == [1, 2, 3, 0]
    assert list(forked.imap_forked(_slow_first, range(4), 2)) == [0, 1, 2, 3]


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise SpecError("spec.yaml", ["model.d_model: must be greater than 0", "model.n_layers: required"])
    return x


@needs_fork
def test_a_worker_s_spec_error_is_raised_here_as_it_was_made():
    with pytest.raises(SpecError) as raised:
        forked.map_forked(_fail_on_three, list(range(5)), 2)
    assert raised.value.source == "spec.yaml" and len(raised.value.problems) == 2
    assert str(raised.value).splitlines()[0] == "spec.yaml: model.d_model: must be greater than 0"


def test_spec_errors_pickle():
    error = SpecError("a.yaml", ["x: y"])
    again = pickle.loads(pickle.dumps(error))
    assert (again.source, again.problems, str(again)) == ("a.yaml", ["x: y"], "a.yaml: x: y")
