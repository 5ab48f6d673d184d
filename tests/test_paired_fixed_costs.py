"""The step check's fixed costs, taken from the tiny step timed between the checked steps (fixed_costs.py,
compare.time_check): a shared machine's load moves the steps and those costs alike."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import CALIBRATED

from costplan.costs.components import shape_of
from costplan.costs.estimate import estimate
from costplan.costs.run import step_of
from costplan.costs.step import stage_counts
from costplan.loading import load_spec

pytest.importorskip("torch")

CI = Path(__file__).parents[1] / "specs" / "ci"
TINY = ["model.n_layers=2", "model.d_model=48", "model.d_ff=192", "model.vocab_size=64", "training.seq_len=32",
        "training.micro_batch_size=1", "training.global_batch_size=1", "training.fusion=eager",
        "training.precision=bf16"]


def hardware(tmp_path, name, kernel=None, update=None, loop=None, checkpoint=None, on="cpu: test") -> str:
    device = {**CALIBRATED, "kernels": dict(CALIBRATED["kernels"]), "calibrated_on": on}
    for field, value in (("kernel_seconds", kernel), ("update_seconds", update), ("loop_kernel_seconds", loop),
                         ("checkpoint_op_seconds", checkpoint)):
        if value is not None:
            device["kernels"][field] = {"value": value, "source": "test"}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(device))
    return str(path)


def check(path: str, fixed, device_name="cpu: test", name="dense", spread=0.1):  # noqa: ANN001
    from costplan.profiling.compare import time_check

    spec = load_spec(CI / f"{name}.yaml", [f"hardware.gpu={path}"])
    m = SimpleNamespace(timing=SimpleNamespace(runs=12, spread=spread, median=0.02, settled=0), timed_spec=spec,
                        spec=spec,
                        batch=2, time_overrides=[], time_note="", time_precision=None, time_probe=None,
                        time_fixed=fixed, device_name=device_name)
    return time_check(m, 0.3)


def test_the_tiny_steps_times_between_the_steps_set_the_fixed_costs(tmp_path):
    filed = hardware(tmp_path, "filed", kernel=40e-6, update=30e-6)
    # The tiny step (GPT-2's layer at d_model 48, 2 layers) took 10 ms between the checked steps, 3 ms of them
    # its update: less their rooflines on this hardware, over its 118 kernels and 36 parameter tensors.
    tiny = load_spec("gpt2-small", [*TINY, f"hardware.gpu={filed}"])
    parts = step_of(tiny, shape_of(tiny)).breakdown
    kernel = (0.010 - 0.003 - parts["matmul"] - parts["attention"] - parts["memory_bound"]) / 118
    update = (0.003 - parts["optimizer"]) / 36
    assert kernel > 40e-6 and update > 30e-6
    by_hand = hardware(tmp_path, "by-hand", kernel=kernel, update=update)
    from costplan.profiling.compare import one_step

    expected = estimate(one_step(load_spec(CI / "dense.yaml", [f"hardware.gpu={by_hand}"]), 2)).time.step_seconds
    at_file = estimate(one_step(load_spec(CI / "dense.yaml", [f"hardware.gpu={filed}"]), 2)).time.step_seconds
    row = check(filed, (0.010, 0.003, 0.001))
    assert row.estimate == pytest.approx(expected) and row.estimate > at_file
    assert f"{kernel * 1e6:.4g} µs a kernel" in row.note and "(the file's 40, 30)" in row.note
    assert "loop" not in row.note       # the file has no figure for block loops: none is paired


def test_on_a_gpu_the_tiny_steps_time_is_its_hosts(tmp_path):
    # A GPU's host issues the tiny step's kernels slower than they run, so the step is the host's time alone
    # (costs/step.py host_and_device): nothing of the rooflines comes off, as it does on a CPU.
    from costplan.profiling.fixed_costs import fixed_costs_of

    gpu = hardware(tmp_path, "gpu", on="cuda: test")
    fixed = fixed_costs_of("bf16", gpu, 0.010, 0.003, "median of 3")
    assert fixed.kernel == pytest.approx((0.010 - 0.003) / 118) and fixed.update == pytest.approx(0.003 / 36)
    cpu = fixed_costs_of("bf16", hardware(tmp_path, "cpu"), 0.010, 0.003, "median of 3")
    assert cpu.kernel < fixed.kernel and cpu.update < fixed.update


def test_a_file_with_a_loop_figure_pairs_it_with_the_tiny_block_loop(tmp_path):
    filed = hardware(tmp_path, "filed", kernel=40e-6, update=30e-6, loop=4e-6)
    # the tiny block loop launches 924 kernels (tests/test_step_counts.py): 9.24 ms of it is 10 µs a kernel
    row = check(filed, (0.010, 0.003, 0.00924), name="sliding-window")
    assert "10 µs a loop's kernel" in row.note and "(the file's 40, 30, 4)" in row.note
    tiny = load_spec("gpt2-small", [*TINY, f"hardware.gpu={filed}"])
    parts = step_of(tiny, shape_of(tiny)).breakdown
    kernel = (0.010 - 0.003 - parts["matmul"] - parts["attention"] - parts["memory_bound"]) / 118
    update = (0.003 - parts["optimizer"]) / 36
    by_hand = hardware(tmp_path, "by-hand", kernel=kernel, update=update, loop=10e-6)
    from costplan.profiling.compare import one_step

    spec = load_spec(CI / "sliding-window.yaml", [f"hardware.gpu={by_hand}"])
    assert row.estimate == pytest.approx(estimate(one_step(spec, 2)).time.step_seconds)
    # 6 µs more than at 4 for each kernel of its loops: 4 tiles of 40 (window 40 over 128), 2 layers, each
    # forward 2 + 6 + 4 · (26 + 3) and backward 10 + 12 + 4 · (29 + 3) (costs/eager.py loop_kernels); and of its
    # 5 RMSNorms' Functions (2 a layer and the final one), 9 forward and 14 backward in bf16 each
    four = hardware(tmp_path, "four", kernel=kernel, update=update, loop=4e-6)
    at_four = estimate(one_step(load_spec(CI / "sliding-window.yaml", [f"hardware.gpu={four}"]), 2))
    overhead = estimate(one_step(spec, 2)).time.breakdown["overhead"] - at_four.time.breakdown["overhead"]
    assert overhead == pytest.approx((2 * (124 + 150) + 5 * (9 + 14)) * 6e-6)


def test_without_fixed_costs_in_the_file_or_a_calibration_here_nothing_is_paired(tmp_path):
    bare = hardware(tmp_path, "bare")
    row = check(bare, (0.010, 0.003, 0.001))
    assert "between the steps" not in row.note
    spec = load_spec(CI / "dense.yaml", [f"hardware.gpu={bare}"])
    from costplan.profiling.compare import one_step

    assert row.estimate == pytest.approx(estimate(one_step(spec, 2)).time.step_seconds)
    elsewhere = check(hardware(tmp_path, "filed", kernel=40e-6, update=30e-6), (0.010, 0.003, 0.001), "cpu: another")
    assert elsewhere.status == "skip" and "between the steps" not in elsewhere.note


def test_only_hardware_calibrated_here_with_fixed_costs_pairs(tmp_path):
    from costplan.hardware import resolve
    from costplan.profiling.fixed_costs import paired

    with_costs = resolve(hardware(tmp_path, "filed", kernel=40e-6))
    assert paired(with_costs, "cpu: test")
    assert not paired(with_costs, "cpu: another")
    assert not paired(resolve(hardware(tmp_path, "bare")), "cpu: test")
    assert not paired(resolve("a100-80gb"), "cpu: test")


def test_per_op_checkpointing_pairs_its_cost_per_op_with_the_tiny_checkpointed_steps(tmp_path):
    from costplan.profiling.compare import one_step
    from costplan.profiling.fixed_costs import tiny_checkpointed

    filed = hardware(tmp_path, "filed", kernel=40e-6, update=30e-6, loop=4e-6, checkpoint=90e-6)
    # the tiny step, its update, the block loop; then the tiny step as per-op checkpointing takes it, 3 ms without
    # and 7 ms with it
    row = check(filed, (0.010, 0.003, 0.00924, 0.003, 0.007), name="flash-selective-op")
    assert "µs an op under per-op checkpointing" in row.note and "(the file's 40, 30, 4, 90)" in row.note
    tiny = load_spec("gpt2-small", [*TINY, f"hardware.gpu={filed}"])
    parts = step_of(tiny, shape_of(tiny)).breakdown
    kernel = (0.010 - 0.003 - parts["matmul"] - parts["attention"] - parts["memory_bound"]) / 118
    specs = [tiny_checkpointed("bf16", on, filed) for on in (False, True)]
    (p0, c0), (p1, c1) = ((step_of(s, shape_of(s)).breakdown, stage_counts(s, shape_of(s))) for s in specs)
    rerun = (sum(p1[k] - p0[k] for k in ("matmul", "attention", "memory_bound"))
             + (c1.launched - c0.launched) * kernel + (c1.looped - c0.looped) * 10e-6)
    op = (0.007 - 0.003 - rerun) / c1.dispatched
    assert f"{op * 1e6:.4g} µs an op under per-op checkpointing" in row.note
    by_hand = hardware(tmp_path, "by-hand", kernel=kernel, update=(0.003 - parts["optimizer"]) / 36, loop=10e-6,
                       checkpoint=op)
    spec = load_spec(CI / "flash-selective-op.yaml", [f"hardware.gpu={by_hand}"])
    assert row.estimate == pytest.approx(estimate(one_step(spec, 2)).time.step_seconds)


def test_a_stall_while_timing_withholds_the_comparison_or_the_paired_costs(tmp_path):
    # a shared machine stalled during one check of specs/ci: steps spread ±2141% about their median, and the tiny
    # step gave 5,352 µs a kernel against the file's 28.8 (an estimate of 811 ms against 40 ms measured)
    from costplan.profiling.compare import one_step

    filed = hardware(tmp_path, "filed", kernel=40e-6, update=30e-6)
    spread = check(filed, (0.010, 0.003, 0.001), spread=42.8)
    assert spread.status == "skip" and spread.estimate > 0 and spread.withheld
    assert "not compared: the steps' times spread wider than their median" in spread.note
    at_file = estimate(one_step(load_spec(CI / "dense.yaml", [f"hardware.gpu={filed}"]), 2)).time.step_seconds
    stalled = check(filed, (1.0, 0.003, 0.001))        # 1 s for the tiny step: about 8 ms a kernel
    assert stalled.status in ("ok", "FAIL") and stalled.estimate == pytest.approx(at_file)
    assert "over 10x the file's, a stall while they were timed, so the file's are used" in stalled.note
