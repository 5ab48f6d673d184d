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
from costplan.costs.estimate import LawPoint
from costplan.costs.result import Estimate
from costplan.errors import CostplanError, install_hint
from costplan.spec import Spec
from costplan.spec_attention import describe

FORMATS = {".png": "png", ".svg": "svg"}
GIB = 2 ** 30
DPI = 120


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise CostplanError(f"plots need matplotlib: {install_hint('plot')}") from None
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


def seq_scaling(specs: Sequence[Spec], lengths: Sequence[int], names: Sequence[str] | None = None) -> Any:
    """FLOPs per token and activation memory against context length, one line per spec (log-log), each named
    `names` (the specs' names where not given; the CLI tells apart two of one name)."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for spec, name in zip(specs, names or [s.name for s in specs]):
        rows = series.seq_scaling(spec, lengths)
        label = f"{name} ({describe(spec.model.attention)})"
        left.plot([r[0] for r in rows], [r[1] for r in rows], marker="o", label=label)
        # per GPU, so on the spec's own layout: tensor and sequence parallelism divide them
        right.plot([r[0] for r in rows], [r[2] / GIB for r in rows], marker="o",
                   label=f"{name}: {series.layout_of(spec)}, micro-batch {spec.training.micro_batch_size}")
    left.set(xscale="log", yscale="log", xlabel="context length (tokens)",
             ylabel="forward FLOPs per token (FLOP)", title="Compute per token")
    right.set(xscale="log", yscale="log", xlabel="context length (tokens)",
              ylabel="activations per GPU, one micro-batch (GiB)", title="Activation memory (tensor × pipeline × data)")
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


def memory(estimates: Sequence[Estimate], names: Sequence[str] | None = None) -> Any:
    """Horizontal stacked bars of per-GPU training memory by kind, one row per spec (named `names`, else its
    name), each with its GPU's capacity marked on the row and its total and fit written beside it."""
    plt = _pyplot()
    rows = len(estimates)
    figure, axes = plt.subplots(figsize=(10, min(MAX_HEIGHT, 2.6 + ROW_INCHES * rows)), layout="constrained")
    places = list(range(rows))
    starts = [0.0] * rows
    for color, part in enumerate(series.MEMORY_PARTS):
        widths = [series.memory_parts(e)[part] / GIB for e in estimates]
        if not any(widths):     # no bar holds it: not in the legend either
            continue
        # each part its own colour whichever parts a figure shows
        axes.barh(places, widths, left=starts, height=0.7, label=part, color=f"C{color}")
        starts = [s + w for s, w in zip(starts, widths)]
    capacities = [e.memory.gpu_memory / GIB for e in estimates]
    axes.vlines(capacities, [p - 0.45 for p in places], [p + 0.45 for p in places], color="black", linewidth=2,
                label="the GPU's usable memory")
    reach = max(max(capacities), min(max(starts), AXIS_REACH * max(capacities))) * 1.04
    axes.set_xlim(0, reach)
    axes.set_ylim(rows - 0.5, -0.5)                     # the first spec on top
    axes.set_yticks(places, names or [e.name for e in estimates])
    for place, e in zip(places, estimates):
        m = e.memory
        verdict = "fits" if m.fits else "does not fit"
        cut = " (bar cut)" if m.total_per_gpu / GIB > reach else ""
        axes.annotate(f"{report.size(m.total_per_gpu)}{cut}: {verdict} in {report.size(m.gpu_memory)} "
                      f"({e.assumptions.gpu})", (1.01, place), xycoords=("axes fraction", "data"),
                      va="center", fontsize=8, color="black" if m.fits else "firebrick")
    axes.set(xlabel="training memory per GPU (GiB)",
             title="Training memory per GPU (inference KV cache not included)")
    axes.grid(True, axis="x", alpha=0.3)
    axes.set_axisbelow(True)
    figure.legend(fontsize=8, ncols=3, loc="outside lower center")
    return figure


SPEC_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "h")
SPEC_FILLS = ("white", "0.55", "black")        # with the shapes: 24 specs told apart before one repeats
# Offsets (points) tried in turn for a point's label: close by first, then further out with a leader line.
LABEL_OFFSETS = tuple((round(r * dx), round(r * dy)) for r in (5, 14, 26, 40, 56, 75, 100, 130)
                      for dx, dy in ((1, 0.6), (1, -0.6), (-1, 0.6), (-1, -0.6), (0, 1), (0, -1), (1, 0), (-1, 0),
                                     (0.5, 1), (-0.5, 1), (0.5, -1), (-0.5, -1)))


def _display(axes: Any, point: tuple[float, float]) -> Any:
    """A data point in display pixels (floats: a Python int past 2**63 would not survive numpy)."""
    return axes.transData.transform((float(point[0]), float(point[1])))


def _marker_box(axes: Any, x: float, y: float, points: float = 8) -> Any:
    """The display box a marker of `points` size covers."""
    from matplotlib.transforms import Bbox

    px, py = _display(axes, (x, y))
    half = points * axes.figure.dpi / 72 / 2
    return Bbox.from_extents(px - half, py - half, px + half, py + half)


def _inside(box: Any, frame: Any) -> bool:
    return frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


def _text_box(axes: Any, renderer: Any, name: str, point: tuple[float, float], style: dict) -> Any:
    """The display box a label would take, with a little room around it."""
    label = axes.annotate(name, point, **style)
    box = label.get_window_extent(renderer).padded(2)
    label.remove()
    return box


def _label_style(offset: tuple[int, int]) -> dict:
    """Annotation settings for a label set `offset` points from its point, aligned away from it."""
    dx, dy = offset
    return dict(textcoords="offset points", xytext=offset, fontsize=9,
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="bottom" if dy > 0 else "top" if dy < 0 else "center")


def _leader(axes: Any, origin: Any, offset: tuple[int, int]) -> Any:
    """The display path of a leader line from just outside a point's marker to its label, or None when close."""
    from matplotlib.path import Path as Line

    dx, dy = offset
    if abs(dx) + abs(dy) <= 10:
        return None
    scale = axes.figure.dpi / 72
    length = (dx * dx + dy * dy) ** 0.5
    start = (origin[0] + 8 * dx / length, origin[1] + 8 * dy / length)   # past the marker's edge
    return Line([start, (origin[0] + dx * scale, origin[1] + dy * scale)])


def label_points(axes: Any, points: Sequence[tuple[float, float]], names: Sequence[str],
                 obstacles: Sequence[tuple[float, float]] = ()) -> None:
    """Name each point at the first offset where its label stays inside the axes and covers no other label,
    marker or the legend, its leader line crosses no other line or label, and, where it can, the label crosses
    no curve. The layout must be final: boxes are measured in display space."""
    renderer = axes.figure.canvas.get_renderer()
    frame = axes.get_window_extent(renderer)
    taken = [_marker_box(axes, x, y) for x, y in [*points, *obstacles]]
    if axes.get_legend() is not None:
        taken.append(axes.get_legend().get_window_extent(renderer))
    curves = [line.get_transform().transform_path(line.get_path()) for line in axes.get_lines()
              if len(line.get_xdata()) > 1]
    leaders: list[Any] = []     # leader lines cross neither each other nor a label (they may pass a marker)
    labels: list[Any] = []

    def free(name: str, point: tuple[float, float], offset: tuple[int, int], avoid: Sequence[Any]) -> bool:
        box = _text_box(axes, renderer, name, point, _label_style(offset))
        if not _inside(box, frame) or any(box.overlaps(other) for other in taken) \
                or any(curve.intersects_bbox(box, filled=False) for curve in avoid):
            return False
        leader = _leader(axes, _display(axes, point), offset)
        return leader is None or not (any(leader.intersects_path(other) for other in leaders)
                                      or any(leader.intersects_bbox(other) for other in labels))

    def crowd(point: tuple[float, float]) -> int:  # the most crowded points choose their places first
        px, py = _display(axes, point)
        return -sum(abs(px - qx) + abs(py - qy) < 60 for qx, qy in (_display(axes, other) for other in points))

    for point, name in sorted(zip(points, names), key=lambda pair: crowd(pair[0])):
        # clear of the curves if anywhere, else across them; nowhere free: no name, and the legend's marker says
        # whose point it is (overlapping names are read by nobody)
        offset = next((offset for avoid in (curves, ()) for offset in LABEL_OFFSETS
                       if free(name, point, offset, avoid)), None)
        if offset is None:
            continue
        leader = _leader(axes, _display(axes, point), offset)
        axes.annotate(name, point, **_label_style(offset),
                      bbox=dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none", alpha=0.8),
                      arrowprops=dict(arrowstyle="-", color="0.35", linewidth=0.6, shrinkA=1, shrinkB=4)
                      if leader is not None else None)
        labels.append(_text_box(axes, renderer, name, point, _label_style(offset)))
        taken.append(labels[-1])
        if leader is not None:
            leaders.append(leader)


def scaling_law(law: scaling.ScalingLaw, specs: Sequence[LawPoint], names: Sequence[str] | None = None) -> Any:
    """Loss against compute with the compute-optimal frontier and fixed-size curves; iso-FLOP curves of loss
    against size with their optima; specs as points on both, each named (`names`, else its name) beside it
    without overlap."""
    plt = _pyplot()
    points = [series.spec_point(p) for p in specs]
    c_lo = min([1e18, *(p[0] / 10 for p in points)])
    c_hi = max([1e26, *(p[0] * 10 for p in points)])
    computes = series.geometric(c_lo, c_hi, 60)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), layout="constrained")

    edge = series.frontier(law, computes)
    for n in (1e8, 1e9, 1e10, 1e11, 1e12):
        curve = series.fixed_params(law, n, computes)
        left.plot([c for c, _ in curve], [loss for _, loss in curve], linewidth=1, alpha=0.7,
                  label=f"N = {report.count(n)} parameters")
    left.plot([c for c, _, _ in edge], [loss for _, _, loss in edge], color="black", linewidth=2.5, zorder=2.5,
              label="compute-optimal frontier")
    left.set(xscale="log", xlabel="training compute C = 6·N·D (FLOPs)", ylabel="predicted loss (nats per token)",
             title="Loss against compute")

    sizes = series.geometric(1e7, 1e13, 80)
    stars = []
    for c in (1e19, 1e21, 1e23, 1e25):
        curve = series.iso_flop(law, c, sizes)
        line, = right.plot([n for n, _ in curve], [loss for _, loss in curve],
                           label=f"iso-FLOP: C = {report.flop_power(c)}")
        n_opt, d_opt = law.compute_optimal(c)
        stars.append((n_opt, law.loss(n_opt, d_opt)))
        right.plot(*stars[-1], marker="*", markersize=12, color=line.get_color(), zorder=2.5)
    right.set(xscale="log", xlabel="parameters N", ylabel="predicted loss (nats per token)",
              title="Iso-FLOP curves (★ = compute-optimal size)")
    low = min(loss for _, _, loss in edge)
    # 2 nats above the frontier's lowest loss, or a thousandth of it where a law's losses are so large that 2 nats
    # vanish in the float (matplotlib had warned of identical limits)
    span = max(2.0, abs(low) * 1e-3)
    for axes in (left, right):
        axes.set_ylim(low - span / 20, max([low + span, *(loss + span / 20 for _, _, loss in points)]))  # every spec
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=9, loc="upper right")

    names = names or [p.name for p in specs]
    for index, (c, n, loss) in enumerate(points):
        style = dict(marker=SPEC_MARKERS[index % len(SPEC_MARKERS)], markersize=7, color="black",
                     markerfacecolor=SPEC_FILLS[index // len(SPEC_MARKERS) % len(SPEC_FILLS)], linestyle="none",
                     zorder=3)
        left.plot([c], [loss], **style, label=names[index])
        right.plot([n], [loss], **style)
    if names:  # the markers tell apart points too close for their names to say whose is whose
        figure.legend(handles=left.get_lines()[-len(names):], loc="outside lower center",
                      ncols=min(len(names), 6), fontsize=9, title="specs", title_fontsize=9)
        left.legend(handles=left.get_lines()[:-len(names)], fontsize=9, loc="upper right")
    figure.suptitle(f"Scaling law '{law.name}': {report.law_formula(law)}\n{law.source}", fontsize=10)
    figure.draw_without_rendering()          # lay out once and keep it: labels are placed in display space
    figure.set_layout_engine("none")
    label_points(left, [(c, loss) for c, _, loss in points], names)
    label_points(right, [(n, loss) for _, n, loss in points], names, obstacles=stars)
    return figure
