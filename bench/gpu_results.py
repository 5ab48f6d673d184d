"""Turn a GPU check's folder (bench/gpu_check.sh) into bench/gpu_results.md: the kernel tables measured there
against the catalogue's published ones, every CI spec's measured step against the step model calibrated there,
and presets at real widths against both.

    python bench/gpu_results.py [FOLDER] [--output FILE]        # default bench/gpu-h200, bench/gpu_results.md

What fed what: the calibration (calibrated.yaml: square matmuls, attention kernels, copies, elementwise kernels,
a tiny step's fixed costs) is kernel-level data; the CI specs' steps (check.json) and the presets' steps
(profile.json) are whole steps, used only to validate. The estimates of the last columns are computed here, from
the committed files, by the step model of this tree.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import costplan
from costplan.costs.estimate import estimate
from costplan.hardware import resolve
from costplan.profiling.compare import one_step

ROOT = Path(__file__).parents[1]
CATALOGUE = "h200"
ATTENTION_LENGTHS = (512, 1024, 2048, 4096, 8192)


def tflops(x: float) -> str:
    return f"{x / 1e12:.0f}"


def percent(x: float | None) -> str:
    return "" if x is None else f"{x:+.1%}"


def kernel_tables(folder: Path) -> list[str]:
    measured, published = resolve(str(folder / "calibrated.yaml")), resolve(CATALOGUE)
    mk, pk = measured.curves(), published.curves()
    lines = [f"## Kernels: measured on the {measured.calibrated_on[6:]} against the catalogue's `{CATALOGUE}`", "",
             "The calibration's rates (best of 5, each timing 2 ms or more of calls back to back) against the "
             "catalogue's published tables at the same size, both in TFLOP/s. The catalogue's GEMM curve is the "
             "OpenXLA H100 table, its attention curves FlashAttention-3's (H100 SXM5, the same compute die). Both "
             "columns of each table are short bursts at the boost clock; a training step runs the catalogue's at "
             f"{pk.sustained_share.value} of these rates, what the device sustains at its power limit "
             f"(`sustained_share`), and the calibrated file's at {_share(mk)}.", "",
             "| bf16 square GEMM, n | measured | catalogue |", "|---:|---:|---:|"]
    bf16 = measured.peak_flops("bf16")
    for n, efficiency in mk.gemm["bf16"].points:
        lines.append(f"| {n:g} | {tflops(bf16 * efficiency)} | "
                     f"{tflops(published.peak_flops('bf16') * pk.gemm['bf16'].at(n))} |")
    lines += ["", "| causal attention, bf16 | head_dim | " + " | ".join(f"s = {s}" for s in ATTENTION_LENGTHS) + " |",
              "|---|---:|" + "---:|" * len(ATTENTION_LENGTHS)]
    for name, curves, peak in (("measured", mk, bf16), ("catalogue", pk, published.peak_flops("bf16"))):
        for backward in (False, True):
            for d in (64, 128):
                curve = curves.attention(backward, d, "fastest")
                lines.append(f"| {'backward' if backward else 'forward'}, {name} | {d} | "
                             + " | ".join(tflops(peak * curve.at(s)) for s in ATTENTION_LENGTHS) + " |")
    copy = measured.memory_bandwidth_gbs
    lines += ["", "| memory | measured | catalogue |", "|---|---:|---:|",
              f"| copy, GB/s (read + write) | {copy:.0f} | {published.memory_bandwidth_gbs:.0f} datasheet × "
              f"{costplan.kernels.efficiencies(CATALOGUE).memory.value} |",
              f"| elementwise kernels (memory_bound), of the copy's | {mk.memory_bound.value:.2f} | "
              f"{'—' if pk.memory_bound is None else f'{pk.memory_bound.value:.2f}'} |",
              f"| one token's weight products (weight_read), of the copy's | {mk.weight_read.value:.2f} | "
              f"{'—' if pk.weight_read is None else f'{pk.weight_read.value:.2f}'} |",
              "", "Fixed costs of the reference model's eager step there (the catalogue has none): "
              f"{mk.kernel_seconds.value * 1e6:.1f} µs a kernel, {mk.update_seconds.value * 1e6:.1f} µs a parameter "
              f"tensor's update, {mk.loop_kernel_seconds.value * 1e6:.1f} µs a block loop's kernel."]
    return lines


def _share(curves) -> str:  # noqa: ANN001 - kernels.Curves
    """The calibration's own sustained share, or why there is none."""
    if curves.sustained_share is None:
        return "1 (its calibration predates the soak that measures the share: rerun `bash bench/gpu_check.sh`)"
    return f"{curves.sustained_share.value:.3f}, its own soak's ({curves.sustained_share.source})"


def _timed(result: dict, gpu: str) -> costplan.Spec:
    """The spec as the check timed it, on `gpu`, as the time check estimates it (compare.one_step)."""
    path = ROOT / "specs" / "ci" / f"{result['name'].removeprefix('ci-')}.yaml"
    source = str(path) if path.exists() else result["name"]
    spec = costplan.load_spec(source, [*result["timing"]["timed_with"], f"hardware.gpu={gpu}", "parallelism=null",
                                       "hardware.count=1"])
    return one_step(spec, result["batch"])


def check_table(folder: Path) -> list[str]:
    runs = json.loads((folder / "check.json").read_text())
    calibrated = str(folder / "calibrated.yaml")
    lines = ["## The CI specs' steps on the GPU (validation)", "",
             "`costplan check specs/ci/*.yaml --device cuda --gpu calibrated.yaml`: the measured step (median), the "
             "estimate the check made (fixed costs timed between the steps, host and device time added as on a "
             "CPU), and the estimate of this tree at the file's fixed costs (the longer of the device's work and "
             "the host's fixed costs).", "",
             "| spec | measured | check's estimate | error | this tree's estimate | error |",
             "|---|---:|---:|---:|---:|---:|"]
    then, now = [], []
    for batch in runs.values():
        if not isinstance(batch, list):
            continue
        for result in batch:
            row = next(c for c in result["checks"] if c["metric"] == "time")
            measured = row["measured"]
            current = estimate(_timed(result, calibrated)).time.step_seconds
            then.append(row["relative_error"])
            now.append(measured / current - 1)
            lines.append(f"| {result['name']} | {measured * 1e3:.2f} ms | {row['estimate'] * 1e3:.2f} ms | "
                         f"{percent(then[-1])} | {current * 1e3:.2f} ms | {percent(now[-1])} |")
    for name, errors in (("check's", then), ("this tree's", now)):
        lines.append(f"\n{name} estimates: median |error| {statistics.median(abs(e) for e in errors):.1%}, "
                     f"{sum(abs(e) <= 0.3 for e in errors)} of {len(errors)} within 30%.")
    return lines


def _as_a_cpu(folder: Path, into: Path) -> str:
    """The calibrated file as if measured on a CPU, whose fixed costs the step model adds to the device's work
    (hardware.GPU.queues_kernels): what the host's fixed costs come to alone."""
    text = (folder / "calibrated.yaml").read_text(encoding="utf-8")
    into.write_text(text.replace("\ncalibrated_on: 'cuda:", "\ncalibrated_on: 'cpu: as if"), encoding="utf-8")
    return str(into)


def profile_table(folder: Path) -> list[str]:
    runs = json.loads((folder / "profile.json").read_text())
    lines = ["## Presets at real widths (validation)", "",
             "`costplan profile PRESET --device cuda --gpu h200 --time-budget 5`, a few layers of the full width and "
             "sequence: the measured step of the reference model (eager PyTorch, torch's scaled_dot_product_attention) "
             "against the step model on the catalogue's published tables and on the tables calibrated there; the "
             "last columns split the calibrated estimate into the device's work and the host's fixed costs, and add "
             "them as a CPU's would be.", "",
             "| run | measured | catalogue `h200` | error | calibrated | error | calibrated: where the step goes "
             "| device's work | host's fixed costs | added | error |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as scratch:
        summed = _as_a_cpu(folder, Path(scratch) / "as-a-cpu.yaml")
        for batch in runs.values():
            if not isinstance(batch, list):
                continue
            for result in batch:
                measured = result["timing"]["median_s"]
                label = " ".join([result["name"], f"batch {result['batch']} × {result['seq_len']}",
                                  *result["timing"]["timed_with"]])
                cells = [label, f"{measured * 1e3:.1f} ms"]
                for gpu in (CATALOGUE, str(folder / "calibrated.yaml")):
                    step = estimate(_timed(result, gpu)).time
                    cells += [f"{step.step_seconds * 1e3:.1f} ms", percent(measured / step.step_seconds - 1)]
                cells.append(", ".join(f"{k} {v * 1e3:.1f}" for k, v in step.breakdown.items() if v) + " ms")
                added = estimate(_timed(result, summed)).time
                host = added.breakdown.get("overhead", 0.0)
                cells += [f"{(added.step_seconds - host) * 1e3:.1f} ms", f"{host * 1e3:.1f} ms",
                          f"{added.step_seconds * 1e3:.1f} ms", percent(measured / added.step_seconds - 1)]
                lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default=str(ROOT / "bench" / "gpu-h200"))
    parser.add_argument("--output", default=str(ROOT / "bench" / "gpu_results.md"))
    args = parser.parse_args()
    folder = Path(args.folder).resolve()    # the header names it relative to the project
    environment = (folder / "env.txt").read_text().splitlines()
    notes = folder / "notes.md"          # how the files were made, by hand
    lines = ["# The step model on a GPU", "",
             f"Written by `python bench/gpu_results.py {folder.relative_to(ROOT)}` from the files `bash "
             f"bench/gpu_check.sh` wrote on: {environment[1]}; {environment[2]}; {environment[3]} CPU cores.", "",
             *(notes.read_text(encoding="utf-8").splitlines() + [""] if notes.exists() else []),
             *kernel_tables(folder), "", *check_table(folder), "", *profile_table(folder), ""]
    Path(args.output).write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
