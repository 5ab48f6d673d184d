#!/usr/bin/env bash
# The GPU checks of the step-time model, as one script for a machine with an NVIDIA GPU (about 10 minutes):
#
#   bash bench/gpu_check.sh [OUT_DIR]
#
# 1. `costplan calibrate --device cuda` measures the device's kernel tables (GEMM efficiency by size, attention
#    forward and backward by sequence length, memory bandwidth) and writes them as a hardware file;
# 2. `costplan check specs/ci/*.yaml --device cuda --gpu THAT_FILE` compares every CI spec's measured step
#    time with the step model calibrated on the same device (and parameters, FLOPs, memory as on CPU);
# Everything lands in OUT_DIR (default bench/gpu-results): the hardware file, the check results as JSON, the
# logs and the device's description. Commit them with a results table in bench/.
set -euo pipefail
out="${1:-bench/gpu-results}"
mkdir -p "$out"
python -m pip install -q -e '.[dev]' >/dev/null 2>&1 || true
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv > "$out/device.csv"
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" \
    > "$out/torch.txt"
costplan calibrate --device cuda --output "$out/calibrated.yaml" --force --time-budget 240 2> "$out/calibrate.log"
costplan check specs/ci/*.yaml --device cuda --gpu "$out/calibrated.yaml" --format json \
    > "$out/check.json" 2> "$out/check.log" || true
echo "wrote $out"
