"""GPU-hours, wall clock and cost: the user's MFU override by hand, the catalogue defaults. The step model is
tested in test_step.py and validated against published runs in bench/training_validation.py."""
from __future__ import annotations

import pytest

import costplan
from conftest import make_spec


def test_gpt3_training_compute():
    # Brown et al. 2020, Table D.1: 3.14e23 FLOPs for GPT-3 175B on 300B tokens (6ND, no attention term).
    assert costplan.estimate(costplan.load_spec("gpt3-175b")).flops.training_total == pytest.approx(3.14e23,
                                                                                                   rel=0.03)


def test_time_and_cost_by_hand():
    spec = make_spec(training={"tokens": 10**9}, hardware={"gpu": "h100-sxm", "count": 8, "mfu": 0.5,
                                                           "usd_per_gpu_hour": 2.0})
    e = costplan.estimate(spec)
    hours = e.flops.training_total / (989e12 * 0.5) / 3600
    assert e.time.gpu_hours == pytest.approx(hours, rel=1e-12)
    assert e.time.wall_clock_days == pytest.approx(hours / 8 / 24, rel=1e-12)
    assert e.time.cost_usd == pytest.approx(hours * 2.0, rel=1e-12)
    assert e.assumptions.time_model == "hardware.mfu" and e.assumptions.mfu_override == 0.5
    assert e.time.mfu == pytest.approx(0.5) and e.time.breakdown == {"compute at hardware.mfu": e.time.step_seconds}


def test_steps_are_whole_and_the_hours_the_tokens_share(run):
    # 10^9 tokens in batches of 8 × 128 are 976,562.5 steps: 976,563 optimizer steps, the last one partial,
    # which costs its part (GPU-hours are the tokens' share, as 6ND / throughput figures are)
    spec = make_spec(training={"tokens": 10**9, "global_batch_size": 8, "micro_batch_size": 1, "seq_len": 128},
                     hardware={"gpu": "h100-sxm", "count": 8, "mfu": 0.5})
    e = costplan.estimate(spec)
    assert e.assumptions.steps == 976_563
    assert e.time.gpu_hours == pytest.approx(10**9 / 1024 * e.time.step_seconds * 8 / 3600, rel=1e-12)
    def hours_note(*args: str) -> str:
        """The GPU-hours row's note before what every one ends with (the steps alone are counted)."""
        (line,) = [line for line in run("estimate", "gpt2-small", *args).stdout.splitlines() if "GPU-hours" in line]
        steps_only = "; training steps only: no failures, restarts, checkpoints or evaluation"
        assert line.rstrip().endswith(steps_only)
        return line.rstrip().removesuffix(steps_only)

    # a partial last step that whole steps would price 1% higher is said to be timed at its share (gpt2-small's
    # batch: 512 sequences of 1024 tokens); 976,563 steps with a last half batch are not
    assert hours_note("--tokens", "1000").endswith(" 1 step, the last 0.001907 of a batch, timed at that share of "
                                                  "a step")
    assert hours_note("--tokens", str(512 * 1024 * 3 // 2)).endswith(" 2 steps, the last 0.5 of a batch, timed at "
                                                                     "that share of a step")
    assert hours_note("--tokens", str(512 * 1024 * 200)).endswith(" 200 steps")
    assert hours_note("--tokens", str(512 * 1024 * 1999 // 2)).endswith(" 1 k steps")
    # 99.005 steps: 100 whole ones would cost 1.005% more, noted (the old rule divided by 100 steps: 0.995%)
    assert hours_note("--tokens", str(512 * 1024 * 99 + 512 * 1024 // 200)).endswith(
        " 100 steps, the last 0.004999 of a batch, timed at that share of a step")   # 2621 of 524,288 tokens


def test_catalogue_defaults_and_precision_peak():
    e = costplan.estimate(make_spec(training={"tokens": 10**9, "precision": "fp8"}, hardware={"gpu": "h100-sxm"}))
    assert e.assumptions.peak_flops_per_gpu == 1979e12 and e.assumptions.time_model == "step model"
    assert e.assumptions.usd_per_gpu_hour == 2.95 and e.assumptions.kernel_tables == "data/kernels.yaml, h100-sxm"


@pytest.mark.parametrize("gpu, mfu, share", [
    ("h100-sxm", None, 0.888),    # OpenXLA's GEMM and FlashAttention-3's tables are bursts: H200 MSMF / MAMF
    ("a100-80gb", None, None),    # Azure's GEMMs after 10,000 warm-ups, FlashAttention-2's cases back to back
    ("h100-sxm", 0.4, None),      # one utilisation figure reads no kernel table
])
def test_the_estimate_says_what_burst_timed_kernels_ran_at(run, gpu, mfu, share):
    hardware = {"gpu": gpu, **({"mfu": mfu} if mfu else {})}
    e = costplan.estimate(make_spec(training={"tokens": 10**9}, hardware=hardware))
    assert e.assumptions.sustained_share == share
    args = ["estimate", "gpt2-small", "--gpu", gpu, *(["--mfu", str(mfu)] if mfu else [])]
    (step,) = [line for line in run(*args).stdout.splitlines() if "step time" in line]
    assert ("0.888 of their rate, as the device sustains them (sustained_share)" in step) == (share is not None)


def test_default_tokens_are_twenty_per_parameter():
    e = costplan.estimate(make_spec())
    assert e.assumptions.tokens == 20 * e.params.total
    assert e.assumptions.tokens_per_param == 20


def test_the_mfu_overrides_part_is_named_as_it_is(run):
    lines = run("estimate", "llama2-7b", "--mfu", "0.45").stdout.splitlines()
    (part,) = [line for line in lines if "compute at hardware.mfu" in line]
    assert "traffic" not in part and "100.0%" in part


@pytest.mark.parametrize("gpu, precision, said", [
    ("v100", "fp16", "assumed from a100-80gb's: no kernel benchmark of this device was read"),
    ("tpu-v5p", "bf16", "assumed from h100-sxm's: no kernel benchmark of this device was read"),
    ("l40s", "bf16", "assumed from a100-80gb's: no kernel benchmark of this device was read"),
    ("mi300x", "bf16", "assumed from h100-sxm's: no kernel benchmark of this device was read"),
    # B200 GEMMs were measured, its attention was not; Ada's fp8 GEMMs are the H100's, its attention the A100's
    ("b200", "bf16", "its attention curves assumed from h100-sxm's: no attention benchmark of this device was read"),
    ("l4", "fp8", "its GEMM curves assumed from h100-sxm's and its attention curves assumed from a100-80gb's: no "
                  "kernel benchmark of this device was read"),
    ("h100-sxm", "bf16", None), ("h100-pcie", "bf16", None), ("a100-40gb", "bf16", None)])
def test_a_device_running_anothers_kernel_curves_says_so(gpu, precision, said):
    # Devices without a kernel benchmark by size in data/kernels.yaml run on another device's curves, which the
    # estimate names (the H100 PCIe's are derived from the SXM's by datasheet ratios and the A100 40GB's are the
    # 80GB's die: their own)
    e = costplan.estimate(make_spec(training={"tokens": 10**9, "precision": precision}, hardware={"gpu": gpu}))
    tables = e.assumptions.kernel_tables
    assert tables.endswith(f"{gpu}, {said}") if said else tables == f"data/kernels.yaml, {gpu}"


def test_one_utilisation_figure_takes_no_pipeline_it_can_do_without():
    # With --mfu every layout of a size runs at one figure, and the bubble is not seen: of Llama 2 7B's two-GPU
    # replicas on 2,048 A100s, tensor 2 rather than a 2-stage pipeline of one micro-batch a step
    e = costplan.estimate(costplan.load_spec("llama2-7b", ["hardware.mfu=0.45"]))
    assert (e.parallelism.tensor, e.parallelism.pipeline, e.parallelism.data) == (2, 1, 1024)


def test_an_open_batch_past_any_published_runs_warns(run):
    # 7,680 GPUs of one 8,192-token sequence each make 62.9 M tokens a step, DeepSeek-V3's largest batch
    # (15,360 × 4,096): no warning there; one GPU more, and there is
    def warned(gpus: int, *sets: str) -> bool:
        return "past the largest published run's" in run("estimate", "llama3-8b", "--gpus", str(gpus), *sets).stderr

    assert not warned(7_680)
    assert warned(7_681)
    assert not warned(7_681, "--set", "training.global_batch_size=7681")     # fixed by the spec: its author's
