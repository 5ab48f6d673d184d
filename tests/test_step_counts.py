"""The step model's count of parameter tensors (what the optimizer updates one at a time, costs/ops.py tensors)
against the reference model's own parameters, counted by torch."""
from __future__ import annotations

from pathlib import Path

import pytest

from costplan.costs import step
from costplan.costs.components import shape_of
from costplan.loading import load_spec

torch = pytest.importorskip("torch")

CI = Path(__file__).parents[1] / "specs" / "ci"
# Exact for these. The others hold a few tensors the step model has no operation for: AFT-full's and -local's
# position biases, MLA's inner norms, attention sinks, ALiBi's learned parts (2 to 14 tensors of 13 to 77).
EXACT = ["dense", "dense-selective", "flash", "moe", "moe-capacity", "moe-shared", "aft-simple",
         "block-parallel", "block-parallel-shared-norm", "block-sandwich", "sliding-window", "sparse-fixed",
         "chunked", "attention-pattern"]


@pytest.mark.parametrize("name", EXACT)
def test_parameter_tensors_are_the_reference_models(name):
    from costplan.profiling.model import build_model

    spec = load_spec(CI / f"{name}.yaml")
    assert step.stage_counts(spec, shape_of(spec))[1] == len(list(build_model(spec, device="meta").parameters()))


def test_fixed_costs_are_the_tiny_step_less_its_rooflines_over_its_counts(monkeypatch, tmp_path):
    """calibrate.fixed_costs with the tiny step's times given. A GPT-2 layer's step of 2 layers counts 81 kernels
    fused (tests/test_step.py counts them by hand) and 87 as eager PyTorch runs them, as check counts the
    reference model's: per layer autograd's two adds summing the gradients of the normed input that q, k and v
    read, and the loss's cast to fp32 and back; and 36 parameter tensors."""
    from costplan import yamlio
    from costplan.costs.run import step_of
    from costplan.profiling import calibrate, fixed_costs

    times = iter([0.004, 0.010])            # the update alone, then the whole step
    monkeypatch.setattr(calibrate, "median_seconds", lambda *args, **kwargs: next(times))
    c = calibrate.Calibration(device="cpu: test", rates={"fp32": {256: 100e9}, "bf16": {256: 50e9}},
                              bandwidth=20e9, interconnect=None, memory_bytes=2**34, mfu=0.5, mfu_source="test",
                              attention=calibrate.Attention("bf16", {64: {128: 20e9}}, {64: {128: 10e9}},
                                                            {64: {128: 16}}), date="2026-12-03")
    fixed = calibrate.fixed_costs(c, torch.device("cpu"), "bf16")
    hardware = tmp_path / "calibrated.yaml"
    hardware.write_text(yamlio.dumps(calibrate.hardware_entry(c)))
    tiny = load_spec("gpt2-small", [*fixed_costs.FIXED_STEP, "training.precision=bf16", f"hardware.gpu={hardware}"])
    parts = step_of(tiny, shape_of(tiny)).breakdown
    rooflines = parts["matmul"] + parts["attention"] + parts["memory_bound"]
    assert fixed.kernel == pytest.approx((0.010 - 0.004 - rooflines) / 87)
    assert fixed.update == pytest.approx((0.004 - parts["optimizer"]) / 36)
    assert "87 kernels and 36 parameter tensors" in fixed.source
    assert fixed.source.startswith("measured by costplan calibrate on cpu: test on 2026-12-03: gpt2-small with")
