"""The serving model's GEMM timing (costs/serving_ops.py) against a published kernel benchmark, not a serving
result: vLLM's benchmarks/kernels/bench_fp8_gemm.py on an H100 (vllm-project/vllm pull request #49363, 2026),
torch's bf16 GEMM on google/gemma-4-31B-it's N = 12288, K = 5376 weight at batch 1, 64 and 128: 2.870, 182.59 and
352.56 TFLOP/s. At these sizes the GEMM is memory-bound: the model's max(FLOPs at the curve, bytes at 84% of
3.35 TB/s) must give the measured time. Nothing in costplan was tuned to these figures."""
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
