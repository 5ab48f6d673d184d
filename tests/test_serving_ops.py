"""The serving model's GEMM timing (costs/serving_ops.py) against a published kernel benchmark, not a serving
result: vLLM's benchmarks/kernels/bench_fp8_gemm.py on an H100 (vllm-project/vllm pull request #49363, 2026),
torch's bf16 GEMM on google/gemma-4-31B-it's N = 12288, K = 5376 weight at batch 1, 64 and 128: 2.870, 182.59 and
352.56 TFLOP/s. At these sizes the GEMM is memory-bound: the model's max(FLOPs at the curve, bytes at 84% of
3.35 TB/s) must give the measured time. No constant comes from these bf16 figures (data/kernels.yaml's memory_fp8
is the same run's fp8 column); they check the model, they did not shape it. Below, the same for routed experts
run as grouped GEMMs (vLLM's fused_moe at a decode batch; the kernel-level table of grouped GEMMs is
bench/grouped_gemm_published.yaml, kept by tests/test_grouped_gemm_bench.py): cross-checks, nothing fitted to them."""
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
    timed = serving_ops.gemm_seconds(Gemm(rows, K, N), kernels)
    assert timed.memory > timed.compute and timed.seconds == timed.memory
    measured = 2 * rows * K * N / (MEASURED_TFLOPS[rows] * 1e12)
    assert timed.seconds == pytest.approx(measured, rel=0.05)


def test_fp8_weights_stream_at_their_kernels_efficiency_on_an_h100():
    # Llama 2 7B in fp8 on an H100: one decode GEMM of a 4096 × 11008 weight reads its fp8 bytes (one byte each
    # and, averaged over the model's 224 matrices, their fp32 scales) at data/kernels.yaml's memory_fp8 (0.71)
    # and its 16-bit activations (4096 + 11008 elements) at the streaming 0.84, of 3.35 TB/s.
    spec = costplan.load_spec("llama2-7b", ["hardware.gpu=h100-sxm", "serving.weights=fp8"])
    kernels = _setup(spec)[2].kernels
    per_weight = 1 + 32 * 7 * 4 / 6_476_005_376
    assert kernels.quantized_bytes == pytest.approx(per_weight, rel=1e-12)
    timed = serving_ops.gemm_seconds(Gemm(1, 4096, 11008), kernels)
    expected = (4096 * 11008 * per_weight / 0.71 + (4096 + 11008) * 2 / 0.84) / 3.35e12
    assert timed.memory == pytest.approx(expected, rel=1e-12) and timed.seconds == timed.memory


def _h100_kernels(precision="bf16"):
    from costplan import kernels
    from costplan.costs.serving_ops import Kernels
    curve = kernels.curves("h100-sxm").gemm[precision]
    peak = {"bf16": 989e12, "fp8": 1979e12}[precision]
    fp8 = precision == "fp8"     # fp8 weights at memory_fp8, 16-bit ones as any stream (data/kernels.yaml)
    return Kernels(peak=peak, curve=curve, flat=0.75, bandwidth=3.35e12, memory=0.84,
                   weight_memory=0.71 if fp8 else 0.84, quantized_bytes=1.0 if fp8 else 2.0, tensor=1, kv_tensor=1)


def test_a_grouped_expert_projection_is_a_batched_gemm_whose_weights_load_before_it_computes():
    # 128 experts of 512 rows by a 2048 × 768 weight, one grouped kernel: 2·512·2048·768·128 FLOPs read on the
    # H100's bf16 curve as a batched GEMM of the kernel's volume, (128·512·2048·768)^(1/3) = 4,711, between its
    # points (3251, 0.773) and (5161, 0.811) (data/kernels.yaml, linear in log2); every expert's weights stream
    # first, then the larger of the compute and the rows' bytes (ops.gemm_time).
    import math
    size = (128 * 512 * 2048 * 768) ** (1 / 3)
    efficiency = 0.773 + (0.811 - 0.773) * math.log2(size / 3251) / math.log2(5161 / 3251)
    timed = serving_ops.gemm_seconds(Gemm(512, 2048, 768, count=128, expert=True), _h100_kernels())
    compute = 2 * 512 * 2048 * 768 * 128 / (989e12 * efficiency)
    weights, rows = 2048 * 768 * 128 * 2 / 0.84 / 3.35e12, 512 * (2048 + 768) * 128 * 2 / 0.84 / 3.35e12
    assert timed.compute == pytest.approx(compute, rel=1e-12) and timed.memory == pytest.approx(weights + rows)
    assert timed.seconds == pytest.approx(weights + compute, rel=1e-12)


def test_a_dense_gemm_keeps_the_roofline():
    # the same bytes and FLOPs as one GEMM: the larger of compute and memory, nothing added
    timed = serving_ops.gemm_seconds(Gemm(512, 2048, 768 * 128), _h100_kernels())
    assert timed.seconds == max(timed.compute, timed.memory)


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
