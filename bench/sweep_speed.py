"""Speed target of `costplan sweep`: 10,000 points in under 5 seconds, the whole process, wall clock.

    python bench/sweep_speed.py [--runs 5] [--jobs N]

Runs `costplan sweep llama2-7b --gpus 256` over 100 layer counts × 25 widths × 4 micro-batch sizes (10,000
points, every one validated and estimated; on the preset's 2,048 GPUs no layout cuts its 1,024 sequences into
micro-batches of 8 for a model too small to split over 16 tensor or pipeline ranks, an invalid point) in each
output format and prints the median and spread. The sweep uses every CPU the process may use (`--jobs N`
passes N on: `--jobs 1` times it in one process). The test suite checks behaviour, not time; this script is
where the target is measured.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

from costplan.forked import available_cpus

VARY = ["--vary", "model.n_layers=" + ",".join(str(n) for n in range(1, 101)),
        "--vary", "model.d_model=" + ",".join(str(128 * k) for k in range(1, 26)),
        "--vary", "training.micro_batch_size=1,2,4,8", "--gpus", "256"]


def seconds(fmt: str, runs: int, jobs: list[str]) -> list[float]:
    exe = shutil.which("costplan")
    command = [exe] if exe else [sys.executable, "-m", "costplan"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([*command, "sweep", "llama2-7b", *VARY, "--format", fmt, *jobs], check=True,
                             capture_output=True, text=True).stdout
        times.append(time.perf_counter() - start)
    rows = out.count("\n") - (1 if fmt in ("csv", "table") else 0)
    assert fmt == "json" or rows >= 10_000, rows
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", help="passed to costplan sweep (default: its own, one process per CPU)")
    args = parser.parse_args()
    jobs = ["--jobs", args.jobs] if args.jobs else []
    print(f"CPUs this process may use: {available_cpus()}; --jobs {args.jobs or 'default'}")
    for fmt in ("csv", "json", "table"):
        times = seconds(fmt, args.runs, jobs)
        print(f"costplan sweep, 10,000 points, --format {fmt:5}: median {statistics.median(times):.2f} s "
              f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs)  target < 5 s")


if __name__ == "__main__":
    main()
