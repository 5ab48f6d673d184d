"""Decode step time of the reference model against the memory-bandwidth roofline (`costplan profile --serve`).

Each round runs `costplan calibrate` within CALIBRATION_SECONDS (the check needs a hardware file calibrated on
this device; its fixed cost per kernel is what the check adds per kernel a step launches), writes its hardware
file, and runs `costplan profile --serve` against it. The check reads the weights at the rate calibrate's
matrix-vector products reach when timed between the decode steps, so that both see the same load on a shared
machine; the hardware file's rate is printed beside it. Prints one markdown row per spec and round. Run from
the project's root:

    OMP_NUM_THREADS=1 python bench/serve_decode_time.py [ROUNDS]
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from costplan import report
from costplan.profiling.calibrate import calibrate, hardware_entry

# Decode is timed on copies large enough that a step reads ~0.75-1.0 GB of fp32 weights, far beyond the CPU's
# caches, so that reading them, not per-op overhead, takes the time.
SIZE = ["model.d_model=2048", "model.n_layers=4"]
CALIBRATION_SECONDS = 60
SPECS = {
    "flash": SIZE + ["model.d_ff=8192"],                      # GQA, SwiGLU, RoPE
    "dense": SIZE + ["model.d_ff=8192"],                      # MHA, GELU, learned positions, tied head
    "mla": SIZE + ["model.d_ff=8192"],
    "sliding-window": SIZE + ["model.d_ff=8192"],
    "moe": SIZE + ["model.moe.d_ff_expert=4096"],             # top-2 of 4: a step reads half the experts
    "aft-simple": SIZE + ["model.d_ff=8192"],
}


def hardware_file(folder: Path) -> Path:
    path = folder / "cpu.yaml"
    calibration = calibrate(torch.device("cpu"), CALIBRATION_SECONDS)
    path.write_text(report.hardware_yaml(hardware_entry(calibration), "bench/serve_decode_time.py"))
    return path


def main(rounds: int) -> None:
    print("| spec | round | bytes read per step | read rate (between steps) | hardware file's | kernels × fixed cost "
          "| predicted | measured (median) | IQR | error |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(1, rounds + 1):
            hardware = hardware_file(Path(folder))
            for name, overrides in SPECS.items():
                command = ["costplan", "profile", "--serve", f"specs/ci/{name}.yaml", "--set",
                           "training.precision=fp32", "--gpu", str(hardware), "--format", "json"]
                for override in overrides:
                    command += ["--time-set", override]
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                record = json.loads(out)[0]
                row = record["checks"][-1]
                # the check's note: "547.2 MiB read at 21.7 GB/s (... the hardware file's 23.88 GB/s) + 56 kernels
                # × 25.62 µs"
                read, rate, filed = re.search(r"([\d.]+ \S+) read at ([\d.]+ GB/s) .*? file's ([\d.]+ GB/s)",
                                              row["note"]).groups()
                fixed = re.search(r"\+ (\d+ kernels × [\d.]+ µs)", row["note"])
                iqr = record["timing"]["iqr_s"] / record["timing"]["median_s"] / 2
                print(f"| ci-{name} | {round_} | {read} | {rate} | {filed} | {fixed.group(1) if fixed else '-'} | "
                      f"{1e3 * row['estimate']:.1f} ms | {1e3 * row['measured']:.1f} ms | ±{100 * iqr:.0f}% | "
                      f"{100 * row['relative_error']:+.0f}% |", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
