"""The torch side of costplan: build the model a spec describes, measure it, compare with the estimate.

Everything under this package may import torch (and fvcore); nothing outside it does, and this package is
imported only by the commands that need it, so `costplan estimate` starts without torch.
"""
from __future__ import annotations

import importlib.util

from costplan.errors import CostplanError, install_hint

NEEDS_TORCH = f"costplan profile, check and calibrate need PyTorch: {install_hint('profile')}"


def require_torch() -> None:
    """Raise the install hint as a CostplanError (exit status 2) when torch cannot be imported."""
    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a broken or blocked installation counts as missing
        found = False
    if not found:
        raise CostplanError(NEEDS_TORCH)
    try:
        import torch  # noqa: F401
    except ImportError:
        raise CostplanError(NEEDS_TORCH) from None


def build_model(spec, **options):
    """The reference nn.Module of a spec (see costplan.profiling.model.build_model)."""
    require_torch()
    from costplan.profiling.model import build_model as build

    return build(spec, **options)
