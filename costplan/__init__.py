"""costplan: exact parameters, FLOPs, memory, GPU-hours and cost of training transformer language models.

    >>> import costplan
    >>> spec = costplan.load_spec("llama2-7b")          # a preset name, a YAML path, or a mapping
    >>> costplan.estimate(spec).params.total
    6738415616
    >>> model = costplan.build_model(spec, device="meta")   # the PyTorch model it describes (needs torch)
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["CostplanError", "Estimate", "Spec", "SpecError", "__version__", "build_model", "estimate", "load_spec"]

# Every public name is imported on first use, so that `costplan --version`, `--help` and a bare
# `import costplan` do not build the spec's sections and the results, and never import torch.
_LAZY = {
    "estimate": "costplan.costs.estimate",
    "Estimate": "costplan.costs.result",
    "CostplanError": "costplan.errors",
    "SpecError": "costplan.errors",
    "Spec": "costplan.spec",
    "load_spec": "costplan.loading",
    "build_model": "costplan.profiling",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'costplan' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names too, which are imported on first use (tab completion in a notebook lists them)."""
    return sorted({*globals(), *__all__} - {"annotations"})
