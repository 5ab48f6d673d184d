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
