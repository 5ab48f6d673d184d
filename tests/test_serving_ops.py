"""The serving model's GEMM timing (costs/serving_ops.py) against a published kernel benchmark, not a serving
result: vLLM's benchmarks/kernels/bench_fp8_gemm.py on an H100 (vllm-project/vllm pull request #49363, 2026),
torch's bf16 GEMM on google/gemma-4-31B-it's N = 12288, K = 5376 weight at batch 1, 64 and 128: 2.870, 182.59 and
352.56 TFLOP/s. At these sizes the GEMM is memory-bound: the model's max(FLOPs at the curve, bytes at 84% of
3.35 TB/s) must give the measured time. No constant comes from these bf16 figures (data/kernels.yaml's memory_fp8
is the same run's fp8 column); they check the model, they did not shape it."""
from __future__ import annotations

import pytest

import costplan
from costplan.costs import serving_ops
from costplan.costs.inference import _setup
from costplan.costs.ops import Gemm

N, K = 12288, 5376
MEASURED_TFLOPS = {1: 2.870333, 64: 182.588263, 128: 352.560566}


@pytest.mark.parametrize("rows", sorted(MEASURED_TFLOPS))
def test_bf16_gemm_on_an_h100_matches_the_kernel_benchmark(rows):
    kernels = _setup(costplan.load_spec("llama2-7b", ["hardware.gpu=h100-sxm"]))[2].kernels
    compute, memory = serving_ops.gemm_seconds(Gemm(rows, K, N), kernels)
    assert memory > compute
    measured = 2 * rows * K * N / (MEASURED_TFLOPS[rows] * 1e12)
    assert max(compute, memory) == pytest.approx(measured, rel=0.05)


def test_fp8_weights_stream_at_their_kernels_efficiency_on_an_h100():
    # Llama 2 7B in fp8 on an H100: one decode GEMM of a 4096 × 11008 weight reads its fp8 bytes (one byte each
    # and, averaged over the model's 224 matrices, their fp32 scales) at data/kernels.yaml's memory_fp8 (0.71)
    # and its 16-bit activations (4096 + 11008 elements) at the streaming 0.84, of 3.35 TB/s.
    spec = costplan.load_spec("llama2-7b", ["hardware.gpu=h100-sxm", "serving.weights=fp8"])
    kernels = _setup(spec)[2].kernels
    per_weight = 1 + 32 * 7 * 4 / 6_476_005_376
    assert kernels.quantized_bytes == pytest.approx(per_weight, rel=1e-12)
    compute, memory = serving_ops.gemm_seconds(Gemm(1, 4096, 11008), kernels)
    expected = (4096 * 11008 * per_weight / 0.71 + (4096 + 11008) * 2 / 0.84) / 3.35e12
    assert memory == pytest.approx(expected, rel=1e-12) and compute < memory


# A layer's routed experts as one grouped kernel (ops.gemm_size), by hand on the H100's bf16 curve, whose points
# near these sizes are (813, 0.144), (1024, 0.249), (1625, 0.495) (data/kernels.yaml), read linearly in log2.
def _h100_bf16(x):
    import math
    (x0, y0), (x1, y1) = ((813, 0.144), (1024, 0.249)) if x <= 1024 else ((1024, 0.249), (1625, 0.495))
    return y0 + (y1 - y0) * math.log2(x / x0) / math.log2(x1 / x0)


def _h100_kernels(precision="bf16"):
    from costplan import kernels
    from costplan.costs.serving_ops import Kernels
    curve = kernels.curves("h100-sxm").gemm[precision]
    peak = {"bf16": 989e12, "fp8": 1979e12}[precision]
    fp8 = precision == "fp8"     # fp8 weights at memory_fp8, 16-bit ones as any stream (data/kernels.yaml)
    return Kernels(peak=peak, curve=curve, flat=0.75, bandwidth=3.35e12, memory=0.84,
                   weight_memory=0.71 if fp8 else 0.84, quantized_bytes=1.0 if fp8 else 2.0, tensor=1)


def test_routed_experts_run_as_one_grouped_kernel_filling_the_device():
    # 128 experts of 512 rows by a 2048 × 768 weight: one expert is (512·2048·768)^(1/3) = 930, below the 1,470
    # at which tiles cover the device, and all 128 together are far above it, so the grouped kernel reads 1,470;
    # 128 separate GEMMs of that shape read 930.
    k = _h100_kernels()
    flops = 2 * 512 * 2048 * 768 * 128
    grouped, memory = serving_ops.gemm_seconds(Gemm(512, 2048, 768, count=128, expert=True), k)
    separate, _ = serving_ops.gemm_seconds(Gemm(512, 2048, 768, count=128), k)
    assert grouped == pytest.approx(flops / (989e12 * _h100_bf16(1470)), rel=1e-9)
    assert separate == pytest.approx(flops / (989e12 * _h100_bf16(930.2)), rel=1e-3)
    assert grouped < separate / 2 and grouped > memory      # still compute-bound, at less than half the time
    # its bytes are every expert's weights and rows, as before
    weights, rows = 2048 * 768 * 128 * 2, 512 * (2048 + 768) * 128 * 2
    assert memory == pytest.approx((weights + rows) / 0.84 / 3.35e12, rel=1e-12)


def test_few_experts_read_their_whole_volume_and_large_ones_their_own_size():
    from costplan.costs.ops import FILL_SIZE, gemm_size
    # 8 experts of 4 rows by 1024 × 1024: 8 · 4 · 1024² = 2^25 in all, 2^(25/3) = 322.5, below FILL_SIZE
    assert gemm_size(4, 1024, 1024, 8) == pytest.approx(2 ** (25 / 3))
    # one expert of 2048 rows by 2048 × 2048 is 2048 on its own, above FILL_SIZE: as it is
    assert gemm_size(2048, 2048, 2048, 64) == pytest.approx(2048)
    # a dense GEMM (one group) is its own size whatever it is
    assert gemm_size(8, 2048, 768) == pytest.approx((8 * 2048 * 768) ** (1 / 3))
    assert FILL_SIZE == pytest.approx(128 * 132 ** 0.5, rel=0.01)


# DeepGEMM's grouped fp8 GEMMs on an H800 SXM5 (the H100 SXM's compute and 3.35 TB/s; deepseek-ai/DeepGEMM README,
# "Performance", revision of 25 March 2025): groups, rows per group, N, K and TFLOP/s, contiguous layout (prefill,
# training) then masked (decode). A cross-check of the grouped reading: nothing was fitted to these.
DEEPGEMM_GROUPED = [(4, 8192, 4096, 7168, 1346), (4, 8192, 7168, 2048, 1214), (8, 4096, 4096, 7168, 1346),
                    (8, 4096, 7168, 2048, 1214), (1, 1024, 4096, 7168, 1233), (1, 1024, 7168, 2048, 925),
                    (2, 512, 4096, 7168, 1040), (2, 512, 7168, 2048, 916), (4, 256, 4096, 7168, 932),
                    (4, 256, 7168, 2048, 815)]


@pytest.mark.parametrize("groups, rows, n, k, tflops", DEEPGEMM_GROUPED)
def test_grouped_fp8_gemms_match_deepgemms_published_figures(groups, rows, n, k, tflops):
    compute, memory = serving_ops.gemm_seconds(Gemm(rows, k, n, count=groups, expert=True), _h100_kernels("fp8"))
    measured = 2 * groups * rows * n * k / (tflops * 1e12)
    assert max(compute, memory) == pytest.approx(measured, rel=0.16)


# vLLM's benchmarks/kernels/benchmark_moe.py on an H100 (vllm-project/vllm pull request #24700, 2025, "Main"):
# the whole fused_moe of one layer at batch 128, where every expert is touched and the grouped kernels stream the
# weights: Qwen3-30B-A3B in fp8 (128 experts, top 8, 2048 → 768, one GPU) 273.72 us; Mixtral 8x7B in bf16 (8
# experts, top 2, 4096 → 14336, tensor parallel 2) 491.39 us. The model's two projections, within 10%.
@pytest.mark.parametrize("experts, top_k, d, f, tensor, precision, measured_us", [
    (128, 8, 2048, 768, 1, "fp8", 273.72), (8, 2, 4096, 14336, 2, "bf16", 491.39)])
def test_a_layers_grouped_experts_match_vllms_fused_moe_at_batch_128(experts, top_k, d, f, tensor, precision,
                                                                       measured_us):
    from dataclasses import replace
    k = replace(_h100_kernels(precision), tensor=tensor)
    touched = serving_ops.expected_experts(experts, top_k, 128)
    rows = 128 * top_k / touched
    fp8 = precision == "fp8"
    seconds = sum(max(*serving_ops.gemm_seconds(Gemm(rows, d_in, d_out, count=n * touched, expert=True, fp8=fp8), k))
                  for d_in, d_out, n in ((d, f, 2), (f, d, 1)))
    assert seconds * 1e6 == pytest.approx(measured_us, rel=0.10)


@pytest.mark.parametrize("preset, tokens, dense", [("llama2-7b", 1, True), ("llama2-7b", 512, True),
                                                  ("llama3-70b", 64, True), ("qwen3-30b-a3b", 129, False)])
def test_a_dense_models_pass_reads_every_gemm_at_its_own_size(preset, tokens, dense, monkeypatch):
    # only routed experts take the grouped reading: with gemm_size replaced by the plain (m·k·n)^(1/3), a dense
    # model's pass is the same to the last bit, a MoE model's decode at batch 129 (8 rows an expert) is not
    kernels = _setup(costplan.load_spec(preset, ["hardware.gpu=h100-sxm"]))[2].kernels
    model = costplan.load_spec(preset).model
    before = serving_ops.forward(model, tokens, tokens, kernels)
    monkeypatch.setattr(serving_ops, "gemm_size", lambda rows, d_in, d_out, groups=1: (rows * d_in * d_out) ** (1 / 3))
    assert (serving_ops.forward(model, tokens, tokens, kernels) == before) is dense
