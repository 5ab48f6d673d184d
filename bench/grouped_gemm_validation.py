"""Grouped expert GEMMs as costplan times them (costs/ops.py: gemm_size, gemm_time) against published kernel
timings (bench/grouped_gemm_published.yaml).

    python bench/grouped_gemm_validation.py [--markdown bench/grouped_gemm_results.md] [--forms]

Each row is timed on its device's catalogue entry (peak, HBM bandwidth, the `gemm` curve at its precision as
measured, the memory figures of costplan/data/kernels.yaml), as the serving model times a MoE layer's routed
experts (costs/serving_ops.py); the ratio measured / predicted is printed (above 1: the model is too fast).
Nothing is fitted to these rows. `--forms` prints the rule's median against the two forms it was chosen over.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import yaml

from costplan import hardware, kernels
from costplan.costs.inference import gemm_curve
from costplan.costs.ops import Gemm
from costplan.costs.serving_ops import Kernels, gemm_seconds

HERE = Path(__file__).parent
SIXTEEN_BIT = 2


def load(path: Path = HERE / "grouped_gemm_published.yaml") -> list[dict]:
    return yaml.safe_load(path.read_text())


def device_kernels(gpu_key: str, precision: str) -> Kernels:
    """One GPU's figures for a grouped GEMM at `precision` (fp8 weights read at the fp8 kernels' rate)."""
    gpu, eff = hardware.resolve(gpu_key), kernels.efficiencies(gpu_key)
    fp8 = precision == "fp8"
    return Kernels(peak=gpu.peak_flops(precision), curve=gemm_curve(gpu, precision),
                   flat=eff.matmul.value, bandwidth=gpu.memory_bandwidth_gbs * 1e9, memory=eff.memory.value,
                   weight_memory=eff.weight_memory("fp8" if fp8 else "bf16").value,
                   quantized_bytes=1.0 if fp8 else SIXTEEN_BIT, tensor=1, kv_tensor=1)


def operations(row: dict) -> list[Gemm]:
    """The grouped GEMMs a row times: a fused MoE layer's two projections (gate and up, then down) over every
    expert at the rows uniform routing sends it, or one grouped GEMM."""
    fp8 = row["precision"] == "fp8"
    if row["kind"] == "moe":
        rows = row["tokens"] * row["top_k"] / row["experts"]
        return [Gemm(rows, row["k"], row["n"], count=2 * row["experts"], expert=True, fp8=fp8),
                Gemm(rows, row["n"], row["k"], count=row["experts"], expert=True, fp8=fp8)]
    return [Gemm(row["rows"], row["k"], row["n"], count=row["groups"], expert=True, fp8=fp8)]


def flops(row: dict) -> float:
    return sum(2 * g.rows * g.d_in * g.d_out * g.count for g in operations(row))


def measured_seconds(row: dict) -> float:
    measured = row["measured"]
    return measured["us"] * 1e-6 if "us" in measured else flops(row) / (measured["tflops"] * 1e12)


FORMS = {"each expert at its own size, roofline (before stop 51)": "per expert",
         "whole kernel as a batched GEMM, roofline": "batched roofline",
         "whole kernel as a batched GEMM, weights' loads added (adopted)": "adopted"}


def predicted_seconds(row: dict, form: str = "adopted") -> float:
    """The row's time by the rule (ops.gemm_time), or by a form it was chosen over: each group read at its own
    size, or the whole kernel's, on the roofline."""
    k = device_kernels(row["gpu"], row["precision"])
    total = 0.0
    for g in operations(row):
        if form == "per expert":
            total += gemm_seconds(replace(g, expert=False), k).seconds
        else:
            timed = gemm_seconds(g, k)
            total += timed.seconds if form == "adopted" else max(timed.compute, timed.memory)
    return total


def forms_markdown(rows: list[dict]) -> str:
    lines = ["| rule | median \\|ln(measured / predicted)\\| | within a factor of 1.25 |", "|---|---:|---:|"]
    for name, form in FORMS.items():
        errors = [abs(math.log(measured_seconds(r) / predicted_seconds(r, form))) for r in rows]
        lines.append(f"| {name} | {statistics.median(errors):.3f} | "
                     f"{sum(e <= math.log(1.25) for e in errors)} of {len(rows)} |")
    return "\n".join(lines)


def compare(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        measured, predicted = measured_seconds(row), predicted_seconds(row)
        per = operations(row)[0]
        out.append({"id": row["id"], "gpu": row["gpu"], "precision": row["precision"], "kernel": row["kernel"],
                    "rows": per.rows, "measured_tflops": flops(row) / measured / 1e12,
                    "predicted_tflops": flops(row) / predicted / 1e12, "ratio": measured / predicted})
    return out


def median_log_error(results: list[dict]) -> float:
    """Median |ln(measured / predicted)|: a factor of 1.15 either way is 0.14."""
    return statistics.median(abs(math.log(r["ratio"])) for r in results)


def markdown(results: list[dict]) -> str:
    lines = ["| row | GPU | precision | kernel | rows per group | measured TFLOP/s | predicted "
             "| measured / predicted |", "|---|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['id']} | {r['gpu']} | {r['precision']} | {r['kernel']} | {r['rows']:.0f} | "
                     f"{r['measured_tflops']:.0f} | {r['predicted_tflops']:.0f} | {r['ratio']:.2f} |")
    within = sum(abs(math.log(r["ratio"])) <= math.log(1.25) for r in results)
    lines.append("")
    lines.append(f"median |ln(measured / predicted)| {median_log_error(results):.3f} over {len(results)} rows; "
                 f"{within} within a factor of 1.25")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--forms", action="store_true", help="compare the rule with the forms it was chosen over")
    args = parser.parse_args(argv)
    text = forms_markdown(load()) if args.forms else markdown(compare(load()))
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
