"""Attention variants, one module each; `COST[type](attention_spec, model_spec, shape) -> Cost` for one layer.

A test keeps this dict and the spec's union of attention types in step.
"""
from __future__ import annotations

from costplan.costs.attention import aft, dense, flash, mla, sliding_window, sparse

COST = {
    "dense": dense.cost,
    "flash": flash.cost,
    "sliding_window": sliding_window.cost,
    "sparse": sparse.cost,
    "mla": mla.cost,
    **aft.COST,
}
