"""Speed targets of the analytic side: `costplan estimate llama2-7b` under 0.3 s wall, one API estimate under 1 ms.

    python bench/estimate_speed.py [--runs 20]

Prints the median and spread of each figure. The test suite checks behaviour, not time; this script is where
the targets are measured. costplan's modules are byte-compiled first, as pip does when it installs a package
(the dependencies it is compared with are), so that a checkout run with PYTHONDONTWRITEBYTECODE does not time
the compiler; `--no-compile` leaves that out.
"""
from __future__ import annotations

import argparse
import compileall
import importlib.util
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


# The yardstick of issue 11: the bare import of costplan's dependencies (click, tabulate, yaml; the spec is
# validated by costplan itself, so no model library is among them). For comparison with earlier tables, the
# same with pydantic imported too, as when it was a dependency.
BARE_IMPORT = [sys.executable, "-c", "import click, tabulate, yaml"]
WITH_PYDANTIC = [sys.executable, "-c", "import click, pydantic, tabulate, yaml"]


def estimate_command() -> list[str]:
    exe = shutil.which("costplan")
    return [exe, "estimate", "llama2-7b"] if exe else [sys.executable, "-m", "costplan", "estimate", "llama2-7b"]


def process_seconds(commands: list[list[str]], runs: int) -> list[list[float]]:
    """Wall seconds of each command per run, the commands taking turns so that drift hits all alike."""
    times: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for command, out in zip(commands, times):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            out.append(time.perf_counter() - start)
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
    parser.add_argument("--no-compile", action="store_true", help="do not byte-compile costplan's modules first")
    args = parser.parse_args()
    if not args.no_compile:
        compileall.compile_dir(Path(__file__).resolve().parent.parent / "costplan", quiet=1)
    commands = [estimate_command(), BARE_IMPORT]
    if importlib.util.find_spec("pydantic") is not None:
        commands.append(WITH_PYDANTIC)
    cli, bare, *older = process_seconds(commands, args.runs)
    print(f"costplan estimate llama2-7b (process, wall): {describe(cli, 1, 's')}  target < 0.3 s")
    for label, base in (("the bare import of click, tabulate, yaml", bare),
                        *(("the bare import of click, pydantic, tabulate, yaml", b) for b in older)):
        ratios = [a / b for a, b in zip(cli, base)]
        print(f"  against {label}: {describe(base, 1, 's')}; ratio median {statistics.median(ratios):.2f}"
              + ("  target < 1.5" if base is bare else ""))
    print(f"costplan.estimate(spec) (Python API):        {describe(api_seconds(args.runs), 1e3, 'ms')}  target < 1 ms")


if __name__ == "__main__":
    main()
