"""Attention variants, one module each; `COST[type](attention_spec, model_spec, shape) -> Cost` for one layer.

A test keeps this dict and the spec's union of attention types in step.
"""
from __future__ import annotations

from costplan.costs.attention import aft, chunked, dense, flash, mla, sliding_window, sparse

COST = {
    "dense": dense.cost,
    "flash": flash.cost,
    "sliding_window": sliding_window.cost,
    "sparse": sparse.cost,
    "chunked": chunked.cost,
    "mla": mla.cost,
    **aft.COST,
}
# Attention types whose projections read a copy of the block input (AFT's sequence-major layout,
# profiling/aft.py) rather than the normed tensor itself: a normed tensor that the MLP reads too
# (parallel_shared_norm) is then saved once by each.
COPIES_INPUT = frozenset(aft.COST)
