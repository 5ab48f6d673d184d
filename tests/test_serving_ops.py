"""The serving model's GEMM timing (costs/serving_ops.py) against a published kernel benchmark, not a serving
result: vLLM's benchmarks/kernels/bench_fp8_gemm.py on an H100 (vllm-project/vllm pull request #49363, 2026),
torch's bf16 GEMM on google/gemma-4-31B-it's N = 12288, K = 5376 weight at batch 1, 64 and 128: 2.870, 182.59 and
352.56 TFLOP/s. At these sizes the GEMM is memory-bound: the model's max(FLOPs at the curve, bytes at 84% of
3.35 TB/s) must give the measured time. No constant comes from these bf16 figures (data/kernels.yaml's memory_fp8
is the same run's fp8 column); they check the model, they did not shape it. Below, the same for routed experts
run as grouped GEMMs (DeepGEMM, torch._grouped_mm, vLLM's fused_moe): cross-checks, nothing fitted to them."""
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
# near these sizes are (813, 0.144), (1024, 0.249) (data/kernels.yaml), read linearly in log2.
def _h100_bf16(x):
    import math
    return 0.144 + (0.249 - 0.144) * math.log2(x / 813) / math.log2(1024 / 813)


def _h100_kernels(precision="bf16"):
    from costplan import kernels
    from costplan.costs.serving_ops import Kernels
    curve = kernels.curves("h100-sxm").gemm[precision]
    peak = {"bf16": 989e12, "fp8": 1979e12}[precision]
    fp8 = precision == "fp8"     # fp8 weights at memory_fp8, 16-bit ones as any stream (data/kernels.yaml)
    return Kernels(peak=peak, curve=curve, flat=0.75, bandwidth=3.35e12, memory=0.84,
                   weight_memory=0.71 if fp8 else 0.84, quantized_bytes=1.0 if fp8 else 2.0, tensor=1, kv_tensor=1)


def test_a_grouped_expert_projection_is_all_experts_work_at_one_experts_efficiency():
    # 128 experts of 512 rows by a 2048 × 768 weight, one grouped kernel: 2·512·2048·768·128 FLOPs at the curve
    # read at one expert's (512·2048·768)^(1/3) = 930.2, not at the kernel's 128× larger volume (4,711, where the
    # curve is 0.79: 3.3× faster); its bytes are every expert's weights and rows.
    compute, memory = serving_ops.gemm_seconds(Gemm(512, 2048, 768, count=128, expert=True), _h100_kernels())
    one = (512 * 2048 * 768) ** (1 / 3)
    assert compute == pytest.approx(2 * 512 * 2048 * 768 * 128 / (989e12 * _h100_bf16(one)), rel=1e-12)
    weights, rows = 2048 * 768 * 128 * 2, 512 * (2048 + 768) * 128 * 2
    assert memory == pytest.approx((weights + rows) / 0.84 / 3.35e12, rel=1e-12)
    assert compute > memory


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


def test_a_moe_layers_routed_projections_are_one_grouped_op_each():
    # Qwen3-30B-A3B decoding 129 sequences: 129 · 8 = 1,032 routed rows over the 128·(1 − (15/16)^129) experts
    # they touch; one op for gate and up (2 products an expert) and one for down, each over every touched expert
    model = costplan.load_spec("qwen3-30b-a3b").model
    touched = 128 * (1 - (1 - 8 / 128) ** 129)
    experts = [(op, n) for op, n in serving_ops.operations(model, 129, 129) if isinstance(op, Gemm) and op.expert]
    assert [n for _, n in experts] == [48, 48]       # one layer kind, repeated 48 times
    (gate_up, _), (down, _) = experts
    assert (gate_up.d_in, gate_up.d_out, down.d_in, down.d_out) == (2048, 768, 768, 2048)
    assert gate_up.rows == pytest.approx(1032 / touched) and down.rows == pytest.approx(1032 / touched)
    assert gate_up.count == pytest.approx(2 * touched) and down.count == pytest.approx(touched)


# torch._grouped_mm (CUTLASS grouped GEMM) on an H100, bf16, forward of a whole routed MLP (gate, up, down) for
# 32,768 tokens (ByteDance-Seed/VeOmni pull request #460, 2026): Qwen3-Next's shape (512 experts, top 10, 2048 →
# 512, so 640 rows an expert) 11.411 ms, 180.67 TFLOP/s. At one expert's size (875.5) the curve gives 176
# TFLOP/s; at the kernel's volume it would give 802.
def test_grouped_bf16_experts_match_torch_grouped_mm_on_an_h100():
    k = _h100_kernels()
    rows, touched = 32768 * 10 / 512, 512
    seconds = sum(max(*serving_ops.gemm_seconds(Gemm(rows, d_in, d_out, count=n * touched, expert=True), k))
                  for d_in, d_out, n in ((2048, 512, 2), (512, 2048, 1)))
    assert seconds == pytest.approx(11.411e-3, rel=0.10)
