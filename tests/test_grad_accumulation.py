"""training.grad_accumulation: a step's micro-batches adding up their weight gradients by separate kernels
(costs/memory.accumulation_adds), counted on the CPU as PyTorch's autograd and the reference Trainer run them;
the step model's share of them, by hand on a flat device, is in test_step.py."""
from __future__ import annotations

import pytest

from conftest import make_spec
from costplan.costs.memory import accumulation_adds


def _added_bytes(fn):
    """Bytes the in-place adds of `fn` read and write (aten.add_: its two inputs and its output)."""
    torch = pytest.importorskip("torch")
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        moved = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.add_.Tensor:
                held, new = args[:2]
                self.moved += 2 * held.numel() * held.element_size() + new.numel() * new.element_size()
            return func(*args, **(kwargs or {}))

    with Count() as count:
        fn()
    return count.moved


def test_autograd_adds_from_the_second_micro_batch_on():
    torch = pytest.importorskip("torch")
    layer = torch.nn.Linear(256, 512, bias=False, dtype=torch.bfloat16)
    x = torch.randn(8, 256, dtype=torch.bfloat16)

    def backward():
        layer(x).sum().backward()

    first, second = _added_bytes(backward), _added_bytes(backward)
    adds, moved = accumulation_adds("bf16", False, False, 2)
    assert (first, second) == (0, adds * moved * layer.weight.numel())


def test_the_reference_adds_into_fp32_buffers_every_micro_batch():
    torch = pytest.importorskip("torch")
    from costplan.profiling.model import build_model
    from costplan.profiling.step import Trainer, batch

    spec = make_spec(training={"fp32_gradients": True, "micro_batch_size": 1})
    model = build_model(spec, dtype=torch.bfloat16)
    trainer = Trainer(model, spec)
    ids, targets = batch(spec, 1, "cpu")
    added = _added_bytes(lambda: trainer.accumulate(ids, targets))
    adds, moved = accumulation_adds("bf16", False, True, 1)
    assert added == adds * moved * sum(p.numel() for p in model.parameters())


def test_check_estimates_the_reference_step_with_its_adds():
    from costplan.profiling.compare import one_step
    assert one_step(make_spec(training={"grad_accumulation": "fused"}), 2).training.grad_accumulation == "add"


def test_estimate_says_how_gradients_accumulate(run):
    import json
    added = ("--set", "training.grad_accumulation=add", "--set", "training.global_batch_size=64", "--gpus", "8")
    data = json.loads(run("estimate", "llama2-7b", *added, "--format", "json").stdout)[0]
    assert data["assumptions"]["grad_accumulation"] == "add"
    (row,) = [line for line in run("estimate", "llama2-7b", *added).stdout.splitlines() if "memory-bound ops" in line]
    assert row.endswith("gradients added by separate kernels (training.grad_accumulation)")
    plain = json.loads(run("estimate", "llama2-7b", "--format", "json").stdout)[0]
    assert plain["assumptions"]["grad_accumulation"] == "fused"
