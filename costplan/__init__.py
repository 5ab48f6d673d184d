"""costplan: exact parameters, FLOPs, memory, GPU-hours and cost of training transformer language models.

    >>> import costplan
    >>> spec = costplan.load_spec("llama2-7b")          # a preset name, a YAML path, or a mapping
    >>> costplan.estimate(spec).params.total
    6738415616
    >>> model = costplan.build_model(spec, device="meta")   # the PyTorch model it describes (needs torch)
"""
from __future__ import annotations

__version__ = "0.1.0"

from costplan.costs.estimate import estimate
from costplan.costs.result import Estimate
from costplan.errors import CostplanError, SpecError
from costplan.spec import Spec, load_spec

__all__ = ["CostplanError", "Estimate", "Spec", "SpecError", "__version__", "build_model", "estimate", "load_spec"]


def __getattr__(name: str):
    # build_model imports torch; it is looked up only when used, so `import costplan` stays light.
    if name == "build_model":
        from costplan.profiling import build_model

        return build_model
    raise AttributeError(f"module 'costplan' has no attribute {name!r}")
