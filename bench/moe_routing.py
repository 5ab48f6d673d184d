"""The reference MoE's routing on this machine: what its kernels cost, and how soon its experts' GEMM shapes settle.

    python bench/moe_routing.py [--steps 60]

1. The fixed cost per kernel of the routing's plain tensor code (the dropless and the capacity plan under no_grad;
   the gathers, gate product and scatter-add with autograd recording, forward and backward) at tiny sizes, in a
   loop, against a tiny SwiGLU MLP module's (GEMMs and module calls): the step model prices the routing's kernels
   at the block loop's figure (kernels.loop_kernel_seconds), the others at a module kernel's (kernel_seconds).
2. For ci-moe and ci-moe-shared, trained on one batch as `costplan check` times them: per step, how many of the
   experts' row counts (the GEMM shapes of a dropless expert) had not been met before. `check` times such a spec
   after timing.SETTLE_STEPS steps (bench/step_cpu_results.md, run 29).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from costplan.loading import load_spec
from costplan.profiling import moe as reference_moe
from costplan.profiling.model import build_model
from costplan.profiling.modules import MLP
from costplan.profiling.step import Trainer, batch

CI = Path(__file__).parents[1] / "specs" / "ci"


def median_seconds(fn, runs: int = 300) -> float:
    for _ in range(30):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_kernel() -> None:
    moe = {"n_experts": 4, "top_k": 2, "d_ff_expert": 16}
    model = {"vocab_size": 64, "d_model": 16, "n_layers": 1, "n_heads": 2, "max_seq_len": 16, "bias": False,
             "mlp": "swiglu", "d_ff": 32}
    probs = torch.softmax(torch.randn(16, 4), -1)
    for capacity, kernels in ((None, 1 + 7), (1.25, 1 + 25)):      # top-k and the plan
        spec = load_spec({"model": {**model, "moe": {**moe, **({"capacity_factor": capacity} if capacity else {})}},
                          "training": {"precision": "bf16", "seq_len": 16}})
        block = reference_moe.MoE(spec.model.moe, spec.model, dtype=torch.bfloat16)

        def plan() -> None:
            with torch.no_grad():
                choice = torch.topk(probs, 2, dim=-1).indices
                block._capacity_plan(choice, 1, 16) if capacity else block._dropless_plan(choice, False)
        name = "capacity" if capacity else "dropless"
        print(f"{name} plan (no_grad): {median_seconds(plan) / kernels * 1e6:.2f} µs a kernel ({kernels} kernels)")

    x = torch.randn(32, 16, dtype=torch.bfloat16, requires_grad=True)
    index, weights = torch.arange(64) % 33, torch.rand(64)

    def gathers() -> torch.Tensor:   # zeros row, cat, index; the gate product; zeros and scatter-add (6 kernels)
        rows = torch.cat([x, x.new_zeros(1, 16)])[index]
        zeros = x.new_zeros(33, 16, dtype=torch.float32)
        return zeros.scatter_add(0, index[:, None].expand(-1, 16), rows * weights[:, None])[:32]
    forward = median_seconds(gathers)
    grad = torch.ones(32, 16)
    both = median_seconds(lambda: torch.autograd.grad(gathers(), [x], grad))
    print(f"gathers, gate product, scatter-add (recorded): {forward / 6 * 1e6:.2f} µs a kernel forward (6); "
          f"their backward {(both - forward) * 1e6:.1f} µs")
    mlp = MLP("swiglu", 16, 32, False, dtype=torch.bfloat16)
    y = torch.randn(1, 16, 16, dtype=torch.bfloat16, requires_grad=True)
    params, out_grad = [y, *mlp.parameters()], torch.ones(1, 16, 16, dtype=torch.bfloat16)
    step = median_seconds(lambda: torch.autograd.grad(mlp(y), params, out_grad))
    # gate, up, down (3, 6), SiLU and the product (2, 3), the sum of the input's two gradients (0, 1)
    print(f"a SwiGLU MLP module, forward and backward: {step / 15 * 1e6:.2f} µs a kernel (15)")


def settling(steps: int) -> None:
    seen_rows: list[int] = []
    original = reference_moe.MoE._dropless_plan

    def plan(self, choice, static):  # noqa: ANN001, ANN202 - records the row counts the plan gives
        planned = original(self, choice, static)
        seen_rows.extend(planned[2])
        return planned
    reference_moe.MoE._dropless_plan = plan
    try:
        for name in ("moe", "moe-shared"):
            spec = load_spec(str(CI / f"{name}.yaml"))
            trainer = Trainer(build_model(spec, device=torch.device("cpu")), spec)
            data = batch(spec, spec.training.micro_batch_size, "cpu")
            met: set[int] = set()
            fractions = []
            for _ in range(steps):
                seen_rows.clear()
                trainer.step(data)
                fractions.append(f"{sum(r not in met for r in seen_rows)}/{len(seen_rows)}")
                met.update(seen_rows)
            print(f"ci-{name}: experts at a row count not met before, step by step: {' '.join(fractions)}")
    finally:
        reference_moe.MoE._dropless_plan = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(2)
    per_kernel()
    settling(args.steps)


if __name__ == "__main__":
    main()
