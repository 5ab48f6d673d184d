"""The step model's count of parameter tensors (what the optimizer updates one at a time, costs/ops.py tensors)
against the reference model's own parameters, counted by torch."""
from __future__ import annotations

from pathlib import Path

import pytest

from costplan.costs import parallel
from costplan.costs.components import shape_of
from costplan.costs.run import laid_out_once, stages_of
from costplan.costs import step
from costplan.loading import load_spec

torch = pytest.importorskip("torch")

CI = Path(__file__).parents[1] / "specs" / "ci"
# Exact for these. The others hold a few tensors the step model has no operation for: AFT-full's and -local's
# position biases, MLA's inner norms, attention sinks, ALiBi's learned parts (2 to 14 tensors of 13 to 77).
EXACT = ["dense", "dense-selective", "flash", "moe", "moe-capacity", "moe-shared", "aft-simple",
         "block-parallel", "block-parallel-shared-norm", "block-sandwich", "sliding-window", "sparse-fixed",
         "chunked", "attention-pattern"]


def _tensors(spec) -> float:  # noqa: ANN001
    spec = laid_out_once(spec)
    shape = shape_of(spec)
    memories = parallel.stage_memories(spec, stages_of(spec, shape))
    params = [(m.params, m.routed_params) for m in memories]
    return step.step_time(spec, step.device(spec.gpu, "bf16"), shape, params).tensors


@pytest.mark.parametrize("name", EXACT)
def test_parameter_tensors_are_the_reference_models(name):
    from costplan.profiling.model import build_model

    spec = load_spec(CI / f"{name}.yaml")
    assert _tensors(spec) == len(list(build_model(spec, device="meta").parameters()))
