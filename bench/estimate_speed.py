"""Speed targets of the analytic side: `costplan estimate llama2-7b` under 0.3 s wall, one API estimate under 1 ms.

    python bench/estimate_speed.py [--runs 20]

Prints the median and spread of each figure. The test suite checks behaviour, not time; this script is where
the targets are measured.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def cli_seconds(runs: int) -> list[float]:
    exe = shutil.which("costplan")
    command = [exe] if exe else [sys.executable, "-m", "costplan"]
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([*command, "estimate", "llama2-7b"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def api_seconds(runs: int, repeat: int = 1000) -> list[float]:
    import costplan

    spec = costplan.load_spec("llama2-7b")
    costplan.estimate(spec)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(repeat):
            costplan.estimate(spec)
        times.append((time.perf_counter() - start) / repeat)
    return times


def describe(times: list[float], scale: float, unit: str) -> str:
    return (f"median {statistics.median(times) * scale:.3f} {unit} "
            f"(min {min(times) * scale:.3f}, max {max(times) * scale:.3f}, {len(times)} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"costplan estimate llama2-7b (process, wall): {describe(cli_seconds(args.runs), 1, 's')}  target < 0.3 s")
    print(f"costplan.estimate(spec) (Python API):        {describe(api_seconds(args.runs), 1e3, 'ms')}  target < 1 ms")


if __name__ == "__main__":
    main()
