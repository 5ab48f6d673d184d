"""The first touch of fresh memory (kernels.FirstTouch): what `calibrate` makes of its fills, and the tensors the
step model says a step allocates, against the tensors torch's dispatcher sees the reference step allocate."""
from __future__ import annotations

import pytest

from costplan import yamlio
from costplan.loading import load_spec

torch = pytest.importorskip("torch")

# A GPT-2 layer shape whose vocabulary-wide tensors pass THRESHOLD and nothing else does: 32 positions of a
# vocabulary of 8,192 at width 64 (logits 512 KiB in bf16, the token table 1 MiB); its widest other tensor, the
# learned positions' fp32 master gradient, is 256 KiB.
SMALL = ["model.n_layers=2", "model.d_model=64", "model.n_heads=4", "model.d_ff=256", "model.vocab_size=8192",
         "training.seq_len=32", "training.micro_batch_size=1", "training.global_batch_size=1"]
THRESHOLD = 400_000
PER_BYTE = 1e-9


def _hardware(tmp_path, first_touch=(PER_BYTE, THRESHOLD, "test")):
    from costplan.profiling import calibrate

    c = calibrate.Calibration(device="cpu: test", rates={"fp32": {256: 100e9}, "bf16": {256: 50e9}},
                              bandwidth=20e9, interconnect=None, memory_bytes=2**34, mfu=0.5, mfu_source="test",
                              attention=calibrate.Attention("bf16", {64: {128: 20e9}}, {64: {128: 10e9}},
                                                            {64: {128: 16}}), date="2026-12-05",
                              first_touch=first_touch)
    path = tmp_path / "calibrated.yaml"
    path.write_text(yamlio.dumps(calibrate.hardware_entry(c)))
    return path


class NewStorages:
    """A dispatch mode that lists the bytes of every new storage an op returns (not one of its inputs') of at
    least `at_least` bytes."""

    def __init__(self, at_least: int):
        from torch.utils import _pytree
        from torch.utils._python_dispatch import TorchDispatchMode

        found: list[int] = []
        self.found = found

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
                out = func(*args, **(kwargs or {}))
                tensors = [t for t in _pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
                inputs = {t.untyped_storage().data_ptr() for t in tensors}
                new = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                       for t in _pytree.tree_leaves(out) if isinstance(t, torch.Tensor)}
                found.extend(n for ptr, n in new.items() if ptr not in inputs and n >= at_least)
                return out

        self.mode = Mode()


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
@pytest.mark.parametrize("tied", [True, False])
def test_the_step_allocates_what_the_reference_step_allocates(tmp_path, precision, tied):
    """The model's new tensors of at least the threshold, in bytes (its first-touch seconds over the figure), are
    those torch's dispatcher sees the reference's eager step return: the head's output and its weight's gradient,
    the loss's casts, log-softmax and their gradients, the table's dense gradient, the tied gradients' sum, and
    in bf16 each large gradient's fp32 copy for the master weights."""
    from costplan.costs.estimate import estimate
    from costplan.profiling.compare import one_step
    from costplan.profiling.model import build_model
    from costplan.profiling.step import Trainer, batch

    spec = load_spec("gpt2-small", [*SMALL, f"training.precision={precision}", f"model.tie_embeddings={tied}",
                                    f"hardware.gpu={_hardware(tmp_path)}"])
    predicted = estimate(one_step(spec, 1)).time.breakdown["first_touch"] / PER_BYTE
    trainer = Trainer(build_model(spec, device="cpu"), spec)
    data = batch(spec, 1, "cpu")
    trainer.step(data)          # the optimizer's states are made in the first step
    seen = NewStorages(THRESHOLD)
    with seen.mode:
        trainer.step(data)
    assert seen.found and predicted == pytest.approx(sum(seen.found))


def test_below_the_threshold_and_without_the_figure_nothing_is_added(tmp_path):
    from costplan.costs.estimate import estimate
    from costplan.profiling.compare import one_step

    high = load_spec("gpt2-small", [*SMALL, f"hardware.gpu={_hardware(tmp_path, (PER_BYTE, 2**30, 'test'))}"])
    assert estimate(one_step(high, 1)).time.breakdown["first_touch"] == 0
    (tmp_path / "none").mkdir()
    without = load_spec("gpt2-small", [*SMALL, f"hardware.gpu={_hardware(tmp_path / 'none', None)}"])
    assert "first_touch" not in estimate(one_step(without, 1)).time.breakdown
    assert "first_touch" not in estimate(load_spec("llama2-7b")).time.breakdown     # a GPU's caching allocator


def test_calibrate_takes_the_largest_sizes_cost_from_where_it_starts(monkeypatch):
    """Fills of a new tensor less fills of a kept one, per byte: 0.25 ns from 32 MiB up, nothing below but a
    stray small size."""
    from costplan.profiling import calibrate_memory

    calls = []

    def timed(fn, device, runs):  # noqa: ANN001, ANN202 - median_call_seconds: fresh, then kept, at each size
        calls.append(fn)
        n = calibrate_memory.FIRST_TOUCH_SIZES["cpu"][(len(calls) - 1) // 2]
        fresh = len(calls) % 2 == 1
        extra = 0.25e-9 if n >= 32 * 2**20 else (0.2e-9 if n == 2**20 else 0.0)
        return n * (1e-10 + (extra if fresh else 0.0))

    monkeypatch.setattr(calibrate_memory, "median_call_seconds", timed)
    cost, threshold, what = calibrate_memory.first_touch(torch.device("cpu"))
    assert cost == pytest.approx(0.25e-9) and threshold == 32 * 2**20
    assert "32 MiB 250 ps" in what and "16 MiB 0 ps" in what
    assert calibrate_memory.first_touch(torch.device("cuda")) is None
