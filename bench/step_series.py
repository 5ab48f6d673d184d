"""A spec's reference training step timed many times in a row on this CPU, median per window of steps: how a
step's time moves as the run goes on (dropless experts meet new GEMM shapes less often as their library's kernel
cache fills; bench/step_cpu_results.md run 19).

    python bench/step_series.py specs/ci/moe.yaml --steps 200 --window 20
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from costplan.loading import load_spec
from costplan.profiling.model import build_model
from costplan.profiling.step import Trainer, batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--window", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    spec = load_spec(args.spec, ["training.precision=bf16", "training.fusion=eager"])
    trainer = Trainer(build_model(spec, device="cpu"), spec)
    data = batch(spec, spec.training.micro_batch_size, "cpu")
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.step(data)
        seconds.append(time.perf_counter() - start)
    print("| steps | median step |")
    print("|---|---:|")
    for first in range(0, len(seconds), args.window):
        window = seconds[first:first + args.window]
        print(f"| {first + 1}-{first + len(window)} | {statistics.median(window) * 1e3:.2f} ms |")


if __name__ == "__main__":
    main()
