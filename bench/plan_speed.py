"""Time of `costplan plan llama3-70b --deadline 30d` over the whole GPU catalogue, the whole process, wall clock.

    python bench/plan_speed.py [--runs 3]

The search is pure Python (step-model estimates, GPU types in parallel, one process per CPU), so the figure is the
machine's Python speed and CPU count, not its matrix units. No target: the README quotes what this prints, with
the CPU it ran on. The test suite checks the search's answers (tests/test_plan.py), not its time.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import time

from costplan.forked import available_cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    exe = shutil.which("costplan")
    command = [exe] if exe else [sys.executable, "-m", "costplan"]
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        subprocess.run([*command, "plan", "llama3-70b", "--deadline", "30d"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    print(f"CPUs this process may use: {available_cpus()} ({platform.processor() or platform.machine()})")
    print(f"costplan plan llama3-70b --deadline 30d, the catalogue: median {statistics.median(times):.1f} s "
          f"(min {min(times):.1f}, max {max(times):.1f}, {len(times)} runs)")


if __name__ == "__main__":
    main()
