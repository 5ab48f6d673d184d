#!/usr/bin/env bash
# The GPU checks of the step-time model, as one script for a machine with an NVIDIA GPU (about 4 minutes on an
# H200, at most 10):
#
#   bash bench/gpu_check.sh [OUT_DIR]
#
# 1. `costplan calibrate --device cuda` measures the device's kernel tables (GEMM efficiency by size, attention
#    forward and backward by sequence length, memory bandwidth, fixed costs) and writes them as a hardware file;
# 2. `costplan check specs/ci/*.yaml --device cuda --gpu THAT_FILE` compares every CI spec's measured step time
#    with the step model calibrated on the same device (and parameters, FLOPs, memory as on CPU);
# 3. `costplan profile` of presets at their real widths (a few layers, full sequence length) against the
#    catalogue's entry for the GPU ($CATALOGUE, default h200): the published kernel tables, not this machine's.
# costplan runs from this checkout with the machine's own torch (nothing is installed: such a machine may have
# no package index). Each step runs under its own time limit and the next runs whatever it returned; if the
# calibration fails, the check runs against the catalogue entry. Everything lands in OUT_DIR (default
# bench/gpu-results): env.txt, calibrated.yaml, check.json, profile.json and each step's log; turn them into
# bench/gpu_results.md with `python bench/gpu_results.py OUT_DIR`.
set -uo pipefail
out="${1:-bench/gpu-results}"
device="${DEVICE:-cuda}"
catalogue="${CATALOGUE:-h200}"
py="${PYTHON:-python3}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

exec 3>&1   # the script's own output, which a step's redirections leave alone
step() {    # step NAME LIMIT_SECONDS COMMAND...: run it under its limit, say how it ended
    local name=$1 limit=$2 started=$SECONDS
    shift 2
    echo "== $name (at most ${limit} s): $*" >&3
    timeout "$limit" "$@"
    echo "== $name: exit $? after $((SECONDS - started)) s" >&3
}

{
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv 2>&1
    "$py" -c "import platform, torch; print('python', platform.python_version(), 'torch', torch.__version__,
'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no cuda')" 2>&1
    nproc
} > "$out/env.txt"
cat "$out/env.txt"

step calibrate "${CALIBRATE_LIMIT:-120}" "$py" -m costplan calibrate --device "$device" \
    --output "$out/calibrated.yaml" --force --time-budget "${CALIBRATE_BUDGET:-60}" 2> "$out/calibrate.log"
tail -n 30 "$out/calibrate.log"
gpu="$out/calibrated.yaml"
[ -s "$gpu" ] || gpu="$catalogue"

# The CI specs in batches, each under its own limit, so that one slow batch costs only its own results. A spec
# the machine's torch cannot measure (per-op checkpointing on torch 2.11, whose checkpoint policy gets no op
# output) is named in check.log and the rest of its batch is still checked.
specs=(specs/ci/*.yaml)
for i in 0 1 2 3; do
    batch=("${specs[@]:$((i * 7)):7}")
    [ "${#batch[@]}" = 0 ] && continue
    step "check batch $i" "${CHECK_LIMIT:-55}" "$py" -m costplan check "${batch[@]}" \
        --device "$device" --gpu "$gpu" --format json > "$out/check-$i.json" 2>> "$out/check.log"
done
tail -n 5 "$out/check.log"

# Real widths: what one GPU's step costs at a few layers of each, against the published tables.
: > "$out/profile.log"
runs=("gpt2-small" "gpt2-small --batch 8" "llama2-7b --time-set model.n_layers=4"
      "llama3-8b --time-set model.n_layers=4")
for i in "${!runs[@]}"; do
    read -r -a args <<< "${runs[$i]}"
    step "profile ${runs[$i]}" "${PROFILE_LIMIT:-45}" "$py" -m costplan profile "${args[@]}" --device "$device" \
        --gpu "$catalogue" --time-budget 5 --format json > "$out/profile-$i.json" 2>> "$out/profile.log"
done
"$py" - "$out" <<'EOF'
import json, pathlib, sys
folder = pathlib.Path(sys.argv[1])


def merge(pattern: str, into: str) -> None:
    """Each step's JSON (a list of results per spec) into one mapping by step, a step without JSON noted."""
    runs = {}
    for path in sorted(folder.glob(pattern)):
        try:
            runs[path.stem] = json.loads(path.read_text())
        except ValueError as exc:
            runs[path.stem] = {"error": f"no JSON (the step failed or ran out of time): {exc}"}
        path.unlink()
    (folder / into).write_text(json.dumps(runs, indent=1))


merge("check-*.json", "check.json")
merge("profile-*.json", "profile.json")
EOF
echo "wrote $out"
