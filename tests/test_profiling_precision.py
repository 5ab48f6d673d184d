"""Timing where a precision is slow: the fallback decision on given rates, the time budget of a timed step,
and calibrate's budget and reference precision. Rates and clocks are injected: nothing depends on how fast
this machine is."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from costplan.profiling import calibrate, calibrate_attention, precision, timing  # noqa: E402

CPU = torch.device("cpu")
NO_BF16 = {"bf16": 0.9e9, "fp32": 60e9}         # AVX2 only: bf16 converted element by element
NATIVE = {"bf16": 120e9, "fp32": 60e9}          # AMX / tensor cores


@pytest.mark.parametrize("requested, rates, used", [
    ("bf16", NO_BF16, "fp32"),
    ("bf16", NATIVE, "bf16"),
    ("fp16", {"fp16": 2e9, "fp32": 60e9}, "fp32"),
    # native AVX-512 bf16 without AMX probes at 0.51-0.56 of fp32 (an Intel Xeon), where a threshold of one half
    # flipped the timed precision from one run to the next; emulated bf16 runs at 0.01-0.08 of fp32
    ("bf16", {"bf16": 30e9, "fp32": 60e9}, "bf16"),
    ("bf16", {"bf16": 27e9, "fp32": 60e9}, "bf16"),
    ("bf16", {"bf16": 15e9, "fp32": 60e9}, "bf16"),     # a quarter of the fp32 rate is still native
    ("bf16", {"bf16": 14e9, "fp32": 60e9}, "fp32"),
    ("fp32", {"fp32": 60e9}, "fp32"),
    ("bf16", {}, "bf16"),                               # nothing probed: nothing to decide on
])
def test_choose(requested, rates, used):
    choice = precision.choose(requested, rates)
    assert choice.used == used and choice.fell_back == (used != requested)


def _probes(monkeypatch, rates: dict[str, float]) -> list[str]:
    """The precisions timing_precision probes from now on, at `rates`."""
    probed: list[str] = []

    def fake_probe(device, p):
        probed.append(p)
        return rates[p]

    monkeypatch.setattr(precision, "probe", fake_probe)
    return probed


def test_timing_precision_probes_16_bit_specs_only(monkeypatch):
    probed = _probes(monkeypatch, NO_BF16)
    assert precision.timing_precision("fp32", CPU).used == "fp32" and probed == []
    assert precision.timing_precision("bf16", CPU).used == "fp32" and sorted(probed) == ["bf16", "fp32"]


def test_fp8_and_tf32_are_timed_in_what_the_reference_computes_them_in(monkeypatch):
    # The reference runs fp8's matmuls in bf16 and tf32's in fp32 (torch leaves TF32 matmuls off): those are
    # probed and timed, and fp32 is not probed.
    probed = _probes(monkeypatch, NATIVE)
    assert precision.timing_precision("tf32", CPU) == precision.PrecisionChoice("tf32", "fp32", {})
    assert probed == []
    choice = precision.timing_precision("fp8", CPU)
    assert (choice.requested, choice.used, sorted(probed)) == ("fp8", "bf16", ["bf16", "fp32"])
    assert [precision.runs_as(p) for p in ("fp32", "tf32", "bf16", "fp16", "fp8")] == \
        ["fp32", "fp32", "bf16", "fp16", "bf16"]


def _clock(monkeypatch, step_seconds: float = 1.0):
    """A fake clock for timing.time_steps, and a step that advances it."""
    now = [0.0]
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def step() -> None:
        now[0] += step_seconds
    return step, now


def test_a_slow_step_is_timed_within_the_budget(monkeypatch):
    step, now = _clock(monkeypatch)
    result = timing.time_steps(step, CPU, budget=6.0)
    # 3 warm-ups (1 s each), then the 3 timed steps a median needs; a 7th step would end past 6 s
    assert result.runs == timing.MIN_RUNS == 3 and now[0] == 6.0
    step, now = _clock(monkeypatch)
    assert timing.time_steps(step, CPU, budget=1.5).runs == 3 and now[0] == 4.0   # 1 warm-up, 3 timed
    step, _ = _clock(monkeypatch)
    assert timing.time_steps(step, CPU).runs == timing.RUNS                      # no budget: as before


def test_shapes_settle_before_the_timing_outside_its_budget(monkeypatch):
    step, now = _clock(monkeypatch, 0.1)
    unsettled = timing.time_steps(step, CPU, budget=1.5)
    alone = now[0]
    assert unsettled.settled == 0 and alone == pytest.approx(1.3)       # 3 warm-ups, 10 timed steps
    step, now = _clock(monkeypatch, 0.1)
    result = timing.time_steps(step, CPU, budget=1.5, settle=True)
    # SETTLE_STEPS untimed steps first (5 s), then the same warm-ups and timed steps within the same budget
    assert result.settled == timing.SETTLE_STEPS == 50 and result.runs == unsettled.runs
    assert now[0] == pytest.approx(5.0 + alone)
    step, now = _clock(monkeypatch, 1.0)            # at most SETTLE_SECONDS of them, whatever the steps
    assert timing.time_steps(step, CPU, settle=True).settled == timing.SETTLE_SECONDS == 10


def test_only_dropless_experts_settle_their_shapes():
    from costplan.costs.moe import routes_dropless
    from costplan.loading import load_spec

    model = {"vocab_size": 64, "d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 64}
    moe = {"n_experts": 4, "top_k": 2, "d_ff_expert": 32}
    assert routes_dropless(load_spec({"model": {**model, "moe": moe}}).model)
    assert not routes_dropless(load_spec({"model": {**model, "moe": {**moe, "capacity_factor": 1.25}}}).model)
    assert not routes_dropless(load_spec({"model": model}).model)


def test_a_paired_measurement_runs_before_each_timed_step_outside_its_time(monkeypatch):
    step, now = _clock(monkeypatch)
    paired = []

    def between() -> None:          # 5 s of its own, none of it in a step's time
        paired.append(now[0])
        now[0] += 5.0
    result = timing.time_steps(step, CPU, between=between)
    assert len(paired) == result.runs == timing.RUNS and result.median == 1.0
    assert paired[:2] == [3.0, 9.0]                      # after the 3 warm-ups, then after each step


def test_calibrate_leaves_out_matmul_sizes_that_would_overrun(monkeypatch):
    monkeypatch.setitem(calibrate.SIZES, "cpu", (64, 128, 256))
    monkeypatch.setattr(calibrate, "time", SimpleNamespace(perf_counter=lambda: 0.0))
    # 1 MFLOP/s: n = 128 takes (BEST_OF + 1) × 2 × 128³ / 1e6 ≈ 25 s
    monkeypatch.setattr(calibrate, "matmul_rate", lambda n, p, d: 1e6)
    assert list(calibrate.matmul_rates("bf16", CPU, seconds=20)) == [64]
    assert list(calibrate.matmul_rates("bf16", CPU, seconds=30)) == [64, 128]
    assert list(calibrate.matmul_rates("bf16", CPU, seconds=1e6)) == [64, 128, 256]


def test_calibrate_leaves_out_attention_lengths_that_would_overrun(monkeypatch):
    monkeypatch.setitem(calibrate_attention.SEQ_LENS, "cpu", (128, 256, 512))
    now = [0.0]
    monkeypatch.setattr(calibrate_attention, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    monkeypatch.setattr(calibrate_attention, "attention_forward_once",
                        lambda h, s, d, p, dev: calibrate_attention.forward_flops(h, s, d) / 1e9)

    def times(h, s, d, p, dev):          # 1 GFLOP/s forward, 0.5 backward; 1 s of wall time per length
        now[0] += 1.0
        flops = calibrate_attention.forward_flops(h, s, d)
        return flops / 1e9, calibrate_attention.BACKWARD_FLOPS * flops / 0.5e9

    monkeypatch.setattr(calibrate_attention, "attention_times", times)
    lines = []
    got = calibrate.attention_rates(2e9, "fp32", CPU, seconds=1.5, progress=lines.append)
    assert list(got.forward[64]) == [128] and got.forward[64][128] == pytest.approx(1e9)   # always measured
    assert got.backward[64][128] == pytest.approx(0.5e9) and got.heads[64][128] >= 1
    assert lines == ["fp32 causal attention, head_dim 64 (s = 128): best forward 1 GFLOP/s, backward "
                     "500 MFLOP/s"]
    assert list(calibrate.attention_rates(2e9, "fp32", CPU, 2.5, lines.append).forward[64]) == [128, 256]


def test_calibrated_curves_are_fractions_of_the_file_s_peaks_and_capped():
    attention = calibrate.Attention("fp32", forward={64: {128: 30e9, 256: 90e9}},
                                    backward={64: {128: 20e9, 256: float("inf")}}, heads={64: {128: 64, 256: 16}})
    c = calibrate.Calibration(device="cpu: test CPU, 2 threads", rates={"fp32": {64: 20e9, 128: 40e9},
                              "bf16": {64: 1e9}}, bandwidth=1e10, interconnect=None, memory_bytes=2**30,
                              mfu=0.5, mfu_source="given", attention=attention, date="2026-12-02")
    kernels = calibrate.hardware_entry(c)["kernels"]
    assert kernels["gemm"]["fp32"]["points"] == [[64, 0.5], [128, 1.0]]
    assert "no native bf16 kernels here" in kernels["gemm"]["bf16"]["source"]
    assert kernels["attention_forward"][64]["points"] == [[128, 0.75], [256, 1.5]]      # 2.25 capped
    assert kernels["attention_backward"][64]["points"] == [[128, 0.5], [256, 1.5]]
    source = kernels["attention_forward"][64]["source"]
    assert source.startswith("measured by costplan calibrate on cpu: test CPU, 2 threads on 2026-12-02: fp32 ")
    assert "1 of 2 points capped at 1.5" in source and "over the fp32 peak" in source
    assert kernels["collective"]["points"] == [[1, 1.0]]


def _gpu_clock(monkeypatch, kernel_seconds: float, sync_seconds: float = 20e-6):
    """A fake GPU: each call queues `kernel_seconds` of work, and synchronising costs `sync_seconds` besides."""
    now = [0.0]
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    def synchronize(device) -> None:
        if device.type == "cuda":
            now[0] += sync_seconds
    monkeypatch.setattr(timing, "synchronize", synchronize)

    def kernel() -> None:
        now[0] += kernel_seconds
    return kernel


@pytest.mark.parametrize("timer", [timing.best_seconds,
                                   lambda fn, device: timing.median_call_seconds(fn, device, 5)])
def test_a_short_gpu_kernel_is_timed_back_to_back(monkeypatch, timer):
    gpu = torch.device("cuda")          # constructed, never touched: the clock and synchronize are fake
    kernel = _gpu_clock(monkeypatch, 3e-6)
    # one call a timing would take the synchronisation for the kernel: 23 µs instead of 3
    assert timer(kernel, gpu) == pytest.approx(3e-6, rel=0.01)
    run, calls = timing.back_to_back(kernel, gpu)
    assert calls == timing.MAX_CALLS            # 1,024 × 3 µs: the first count past 2 ms of work
    kernel = _gpu_clock(monkeypatch, 1e-4)
    _, calls = timing.back_to_back(kernel, gpu)
    assert calls == 64                          # 16 calls: 1.6 ms; 64: 6.4 ms
    kernel = _gpu_clock(monkeypatch, 5e-3)      # long enough alone: one call, its synchronisation in it
    assert timing.back_to_back(kernel, gpu)[1] == 1
    assert timer(kernel, gpu) == pytest.approx(5.02e-3)
    kernel = _gpu_clock(monkeypatch, 3e-6)      # a CPU runs a call to its end: timed alone
    assert timing.back_to_back(kernel, CPU)[1] == 1 and timer(kernel, CPU) == pytest.approx(3e-6)


def test_a_cpu_is_described_by_its_vector_units_too():
    # Two machines both naming themselves "AMD EPYC", one with native bf16 and one with AVX2 only, run 16-bit
    # matmuls ten times apart: a calibration of one must not apply to the other
    from costplan.profiling.measure import cpu_description
    info = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 {}\n"
    assert cpu_description(info.format("avx512f avx512_bf16"), 2) == "cpu: AMD EPYC (AVX-512, native bf16), 2 threads"
    assert cpu_description(info.format("avx512f"), 2) == "cpu: AMD EPYC (AVX-512), 2 threads"
    assert cpu_description(info.format(""), 2) == "cpu: AMD EPYC (AVX2), 2 threads"
    assert cpu_description("", 4) == "cpu: unknown CPU, 4 threads"
