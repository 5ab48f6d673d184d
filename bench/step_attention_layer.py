"""One attention layer of the reference model, forward and backward, timed on this CPU against the step model's
parts for it (training.fusion eager): where a spec's step misses, whether its attention is why.

    python bench/step_attention_layer.py cpu.yaml specs/ci/sparse-fixed.yaml [more specs]

cpu.yaml is a `costplan calibrate` file. The layer's kernels are priced at the fixed costs of the tiny step and
the tiny block loop (profiling/fixed_costs.py), timed between the layer's runs as `check` times them between its
steps, so that the machine's load falls on both alike; its rooflines are the file's. Calibration and validation
stay apart: nothing here changes a figure of the file.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from costplan.costs import ops
from costplan.costs.components import shape_of
from costplan.costs.device import device
from costplan.costs.layers import layers
from costplan.costs.step import Tally, Timer
from costplan.loading import load_spec
from costplan.profiling.fixed_costs import FixedStep, fixed_costs_of
from costplan.profiling.model import build_model

RUNS = 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hardware")
    parser.add_argument("specs", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(2)
    tiny = FixedStep(torch.device("cpu"), "bf16")
    print("| spec | measured | rooflines | module kernels | loop kernels | modelled | error | µs a kernel, a loop's |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for path in args.specs:
        spec = load_spec(path, ["training.fusion=eager", "training.precision=bf16", f"hardware.gpu={args.hardware}"])
        reference = build_model(spec, device="cpu")
        attention = reference.layers[0].attention
        positions = reference.positions(spec.seq_len)
        x = torch.randn(spec.training.micro_batch_size, spec.seq_len, spec.model.d_model,
                        dtype=next(attention.parameters()).dtype, requires_grad=True)

        def layer_step() -> None:
            out = attention(x, positions)
            torch.autograd.grad(out, [x, *attention.parameters()], torch.ones_like(out))

        for _ in range(5):
            layer_step()
            tiny.seconds()
        measured, between = [], []
        for _ in range(RUNS):
            start = time.perf_counter()
            layer_step()
            measured.append(time.perf_counter() - start)
            between.append(tiny.seconds())
        step, update, loop = (statistics.median(times) for times in zip(*between))
        fixed = fixed_costs_of("bf16", args.hardware, step, update, "timed between the layer's runs", loop)
        shape = shape_of(spec)
        dev = device(spec.gpu, "bf16")
        attention_ops = ops.attention_ops(layers(spec.model)[0], spec.model, shape)
        tally = Tally()
        Timer(spec, dev, shape).tally(attention_ops, tally, shape.recompute == "full")
        modules = sum(sum(ops.kernels(op)) for op in attention_ops) * fixed.kernel
        looped = sum(sum(ops.looped(op)) for op in attention_ops) * fixed.loop
        modelled = tally.total + modules + looped
        seconds = statistics.median(measured)
        print(f"| {spec.name} | {seconds * 1e3:.2f} ms | {tally.total * 1e3:.2f} ms | {modules * 1e3:.2f} ms | "
              f"{looped * 1e3:.2f} ms | {modelled * 1e3:.2f} ms | {seconds / modelled - 1:+.0%} | "
              f"{fixed.kernel * 1e6:.1f}, {fixed.loop * 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
