"""`costplan plot`: the figures, drawn with matplotlib from costplan/series.py's numbers.

matplotlib is imported inside each function (the `plot` extra), with the non-interactive Agg backend, so
nothing else in costplan needs it. Every figure has axis labels with units, a title and a legend; `save`
writes PNG or SVG by the file's extension.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from costplan import files, report, scaling, series
from costplan.costs.result import Estimate
from costplan.errors import CostplanError
from costplan.spec import Spec

FORMATS = {".png": "png", ".svg": "svg"}
GIB = 2 ** 30
DPI = 120


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise CostplanError("plots need matplotlib: pip install 'costplan[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def check_output(path: str, force: bool = False) -> str:
    """The image format for an output path, once the path is known to be writable (before any work)."""
    files.check_output("--output", path, force)
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise CostplanError(f"--output {path}: the file name must end in .png or .svg")
    return fmt


def save(figure: Any, path: str, force: bool = False) -> None:
    """Write the figure whole or not at all: a failed write (a full disk) leaves an older file as it was."""
    fmt = check_output(path, force)
    try:
        files.write_atomically("--output", path, lambda temporary: figure.savefig(
            temporary, format=fmt, dpi=DPI, bbox_inches="tight"), force)
    finally:
        _pyplot().close(figure)


def seq_scaling(specs: Sequence[Spec], lengths: Sequence[int]) -> Any:
    """FLOPs per token and activation memory against context length, one line per spec (log-log)."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for spec in specs:
        rows = series.seq_scaling(spec, lengths)
        label = f"{spec.name} ({spec.model.attention.type})"
        left.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label=label)
        right.plot([r[0] for r in rows], [r[2] / GIB for r in rows], marker="o", label=label)
    left.set(xscale="log", yscale="log", xlabel="context length (tokens)",
             ylabel="forward FLOPs per token (FLOP)", title="Compute per token")
    right.set(xscale="log", yscale="log", xlabel="context length (tokens)",
              ylabel="activations of one micro-batch (GiB)", title="Activation memory")
    for axes in (left, right):
        axes.set_xscale("log", base=2)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle("Cost against context length: quadratic attention versus linear")
    figure.tight_layout()
    return figure


ROW_INCHES = 0.32               # one bar and its gap: readable name and bar at 120 dpi
MAX_HEIGHT = 14.0               # inches; past about 38 specs the rows get thinner instead of the figure taller
AXIS_REACH = 2.0                # the axis stops at twice the largest GPU: bars beyond it are cut, their total shown


def memory(estimates: Sequence[Estimate]) -> Any:
    """Horizontal stacked bars of per-GPU training memory by kind, one row per spec, each with its GPU's capacity
    marked on the row and its total and fit written beside it."""
    plt = _pyplot()
    rows = len(estimates)
    figure, axes = plt.subplots(figsize=(10, min(MAX_HEIGHT, 2.6 + ROW_INCHES * rows)), layout="constrained")
    places = list(range(rows))
    starts = [0.0] * rows
    for part in series.MEMORY_PARTS:
        widths = [series.memory_parts(e)[part] / GIB for e in estimates]
        axes.barh(places, widths, left=starts, height=0.7, label=part)
        starts = [s + w for s, w in zip(starts, widths)]
    capacities = [e.memory.gpu_memory / GIB for e in estimates]
    axes.vlines(capacities, [p - 0.45 for p in places], [p + 0.45 for p in places], color="black", linewidth=2,
                label="the GPU's memory")
    reach = max(max(capacities), min(max(starts), AXIS_REACH * max(capacities))) * 1.04
    axes.set_xlim(0, reach)
    axes.set_ylim(rows - 0.5, -0.5)                     # the first spec on top
    axes.set_yticks(places, [e.name for e in estimates])
    for place, e in zip(places, estimates):
        m = e.memory
        verdict = "fits" if m.fits else "does not fit"
        cut = " (bar cut)" if m.total_per_gpu / GIB > reach else ""
        axes.annotate(f"{report.size(m.total_per_gpu)}{cut}: {verdict} in {report.size(m.gpu_memory)} "
                      f"({e.assumptions['gpu']})", (1.01, place), xycoords=("axes fraction", "data"),
                      va="center", fontsize=8, color="black" if m.fits else "firebrick")
    axes.set(xlabel="training memory per GPU (GiB)",
             title="Training memory per GPU (inference KV cache not included)")
    axes.grid(True, axis="x", alpha=0.3)
    axes.set_axisbelow(True)
    figure.legend(fontsize=8, ncols=3, loc="outside lower center")
    return figure


def scaling_law(law: scaling.ScalingLaw, estimates: Sequence[Estimate]) -> Any:
    """Loss against compute with the compute-optimal frontier and fixed-size curves; iso-FLOP curves of loss
    against size with their optima; specs as points on both."""
    plt = _pyplot()
    points = [series.spec_point(e) for e in estimates]
    c_lo = min([1e18, *(p[0] / 10 for p in points)])
    c_hi = max([1e26, *(p[0] * 10 for p in points)])
    computes = series.geometric(c_lo, c_hi, 60)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5))

    edge = series.frontier(law, computes)
    left.plot([c for c, _, _ in edge], [loss for _, _, loss in edge], color="black", linewidth=2,
              label="compute-optimal frontier")
    for n in (1e8, 1e9, 1e10, 1e11, 1e12):
        curve = series.fixed_params(law, n, computes)
        left.plot([c for c, _ in curve], [loss for _, loss in curve], linewidth=1, alpha=0.7,
                  label=f"N = {report.count(n)} parameters")
    left.set(xscale="log", xlabel="training compute C = 6·N·D (FLOPs)", ylabel="predicted loss (nats per token)",
             title="Loss against compute")

    sizes = series.geometric(1e7, 1e13, 80)
    for c in (1e19, 1e21, 1e23, 1e25):
        curve = series.iso_flop(law, c, sizes)
        line, = right.plot([n for n, _ in curve], [loss for _, loss in curve], label=f"C = {report.flop(c)}")
        n_opt, d_opt = law.compute_optimal(c)
        right.plot([n_opt], [law.loss(n_opt, d_opt)], marker="*", markersize=10, color=line.get_color())
    right.set(xscale="log", xlabel="parameters N", ylabel="predicted loss (nats per token)",
              title="Iso-FLOP curves (★ = optimum)")
    low = min(loss for _, _, loss in edge)
    left.set_ylim(low - 0.1, low + 2.0)
    right.set_ylim(low - 0.1, low + 2.0)

    for (c, n, loss), e in zip(points, estimates):
        left.scatter([c], [loss], zorder=3, s=30)
        left.annotate(e.name, (c, loss), textcoords="offset points", xytext=(4, 4), fontsize=8)
        right.scatter([n], [loss], zorder=3, s=30, color="black")
        right.annotate(e.name, (n, loss), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for axes in (left, right):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle(f"Scaling law '{law.name}': {report.law_formula(law)}  ({law.source})", fontsize=9)
    figure.tight_layout()
    return figure
