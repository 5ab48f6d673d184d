"""Saved-tensor bytes are counted once per storage; the peak tracker agrees with torch's MemTracker."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

import costplan  # noqa: E402
from conftest import make_spec  # noqa: E402
from costplan.profiling.measure import measure_peak  # noqa: E402
from costplan.profiling.memory import peak_fake, saved_bytes  # noqa: E402
from costplan.profiling.model import build_model  # noqa: E402
from costplan.profiling.private import fake_tensor_mode, memory_tracker, tracker_new_step, tracker_peak  # noqa: E402
from costplan.profiling.step import Trainer, batch  # noqa: E402


class Toy(torch.nn.Module):
    """One weight; its forward saves x twice (two muls), a view of x once more, and the weight."""

    def __init__(self):
        super().__init__()
        self.mlp = torch.nn.Linear(4, 4, bias=False)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.mlp(x * x + x[:, :2].repeat(1, 2))


def test_saved_bytes_count_each_storage_once_and_skip_parameters():
    model = Toy()
    x = torch.randn(3, 4, requires_grad=True)
    y = torch.randn(3, 4)

    def forward(scope):  # noqa: ANN001, ANN202
        return (model(x * 1.0) * y).sum()

    saved = saved_bytes(model, forward)
    # Outside every component (the root module is none): `x * x` saves its input twice, one storage (3 × 4
    # fp32); `· 1.0`, the slice, repeat and add save nothing; `* y` saves y only (its other operand's gradient
    # needs y, y needs none). Inside `mlp`: the linear's input; its weight is a parameter and does not count.
    assert saved == {"outside": 2 * 12 * 4, "mlp": 12 * 4}


def test_saved_bytes_skip_tensors_freed_before_backward():
    """A branch of the graph that leads only to indices (a router's group selection) is freed with its locals:
    what it saved is not held at backward, and its storage's address may be reused by a tensor saved later."""
    x = torch.randn(3, 4, requires_grad=True)

    def forward(scope):  # noqa: ANN001, ANN202
        groups = x.view(3, 2, 2).topk(1, dim=-1).values.sum(-1)   # topk saves its indices (int64, 3 × 2 × 1)
        chosen = torch.topk(groups, 1).indices                      # ... and these (3 × 1): only indices leave
        return (x * 2.0).gather(1, chosen).sum()                    # gather saves x · 2 and the chosen indices

    assert saved_bytes(Toy(), forward) == {"outside": 3 * 4 * 4 + 3 * 1 * 8}


def phases(spec):  # noqa: ANN001, ANN201
    model = build_model(spec)
    trainer = Trainer(model, spec)
    first, second = batch(spec, 2, "cpu"), batch(spec, 2, "cpu")
    return [lambda: trainer.accumulate(*first), lambda: trainer.accumulate(*second), trainer.update]


@pytest.mark.parametrize("spec", [
    make_spec(),
    make_spec({"attention": "flash", "norm": "rmsnorm", "mlp": "swiglu", "position": "rope"},
              {"recompute": "full", "optimizer": "adafactor"}),
    make_spec({"moe": {"n_experts": 4, "top_k": 2}}, {"optimizer": "lion", "precision": "fp32"}),
], ids=["gpt", "llama-full-recompute-adafactor", "moe-lion-fp32"])
def test_peak_tracker_agrees_with_torch_memtracker(spec):
    ours = peak_fake(lambda: phases(spec)).bytes
    with fake_tensor_mode():
        tracker = memory_tracker()
        with tracker:
            steps = phases(spec)
            for _ in range(2):
                for step in steps:
                    tracker_new_step(tracker)
                    step()
        theirs = tracker_peak(tracker)
    assert ours == theirs


def test_what_the_peak_holds():
    # A step accumulating two micro-batches peaks when the second one's backward starts: weights, gradients,
    # optimizer states and the fp32 master copy, all saved activations, and the loss's working buffers, the fp32
    # gradients of the log-softmax and of the fp32 logits (2 · batch · s · vocab · 4 bytes) — the estimate's
    # total — plus the model's constant buffers (position ids). Within 0.1%: a few per-row statistics are
    # transient too.
    spec = make_spec({"vocab_size": 256, "d_model": 128, "max_seq_len": 512, "attention": "flash"},
                     {"micro_batch_size": 2})
    m = costplan.estimate(spec).memory
    assert m.workspace == 2 * 2 * 512 * 256 * 4
    position_ids = 512 * 8
    peak = measure_peak(spec, 2, torch.device("cpu")).bytes
    assert peak == pytest.approx(m.total_per_gpu + position_ids, rel=1e-3)
