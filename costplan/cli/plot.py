"""`costplan plot`: figures as PNG or SVG."""
from __future__ import annotations

import click

from costplan.cli import RefusingRepeats
from costplan.cli.options import (collect_overrides, echo_warnings, law_option, load_all, parse_lengths,
                                  spec_options)
from costplan.errors import CostplanError


@click.group(cls=RefusingRepeats)
def plot() -> None:
    """Figures as PNG or SVG (needs the `plot` extra: pip install -e '.[plot]' in costplan's checkout)."""


def output_option(default: str):  # noqa: ANN201 - a click decorator
    return click.option("--output", "-o", metavar="FILE.png|FILE.svg", default=default, show_default=True,
                        help="Where to write the figure; the extension picks the format.")
force_option = click.option("--force", is_flag=True, help="Replace the output file if it exists.")


@plot.command("seq-scaling")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@output_option("seq-scaling.png")
@force_option
@click.option("--lengths", metavar="N,N,...", callback=parse_lengths,
              help="Context lengths to plot (default: 512 to 131072 in powers of two).")
@spec_options(shortcuts=("gpu", "gpus"))
def plot_seq_scaling(specs, output, force, lengths, overrides, gpu, gpus, tokens, mfu) -> None:
    """FLOPs per token and activation memory against context length, one line per spec."""
    from costplan import plots, series, tables

    _refuse_unused("FLOPs per token and activations do not depend on the training length or utilisation",
                   {"--tokens": tokens, "--mfu": mfu})
    plots.check_output(output, force)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    names = tables.column_names([s.name for s in loaded], specs)
    plots.save(plots.seq_scaling(loaded, lengths or series.DEFAULT_LENGTHS, names), output, force)
    click.echo(output)


@plot.command("memory")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@output_option("memory.png")
@force_option
@spec_options
def plot_memory(specs, output, force, overrides, gpu, gpus, tokens, mfu) -> None:
    """Per-GPU training memory by kind (weights and their fp8 copies, gradients, optimizer, activations and the
    transients held at the step's peak), one bar per spec, against the GPU's usable memory."""
    from costplan import plots, tables
    from costplan.costs.estimate import estimate as run_estimate

    plots.check_output(output, force)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    results = [run_estimate(s) for s in loaded]
    _warn(results)
    plots.save(plots.memory(results, tables.column_names([s.name for s in loaded], specs)), output, force)
    click.echo(output)


def _refuse_unused(why: str, options: dict) -> None:
    """An error naming the options given that the figure would not use (rather than drawing it without them)."""
    given = [name for name, value in options.items() if value is not None]
    if given:
        them = "them" if len(given) > 1 else "it"
        raise CostplanError(f"{', '.join(given)}: not used by this figure ({why}); leave {them} out")


def _warn(results) -> None:  # noqa: ANN001 - Estimates
    """What estimate would warn of these specs (a context or token count assumed, a run that does not fit), except
    the step model's caveat: the memory figure shows no time."""
    from costplan import tables

    for result in results:
        echo_warnings(tables.warnings(result, timed=False))


@plot.command("scaling")
@click.argument("specs", nargs=-1, metavar="[SPEC_OR_PRESET...]")
@output_option("scaling.png")
@force_option
@law_option
@spec_options(shortcuts=("tokens",))
def plot_scaling(specs, output, force, law, overrides, gpu, gpus, tokens, mfu) -> None:
    """Predicted loss against compute: the compute-optimal frontier, iso-FLOP curves and the specs as points."""
    from costplan import plots, scaling, tables
    from costplan.costs.estimate import law_point

    _refuse_unused("a point is its parameters and tokens, which no GPU changes", {"--gpu": gpu, "--gpus": gpus,
                                                                                  "--mfu": mfu})
    plots.check_output(output, force)
    constants = scaling.resolve(law)
    sets = collect_overrides(overrides, gpu, gpus, tokens, mfu)
    if sets and not specs:
        raise CostplanError("--set and --tokens change the specs plotted as points; give a spec, or leave them out "
                            "for the frontier alone")
    # a point needs the parameters and tokens alone: no layout is searched, so no GPU count can fail it
    points = [law_point(s, constants) for s in load_all(specs, sets)] if specs else []
    for point in points:
        echo_warnings(tables.assumed_inputs(point.name, point.tokens_source, point.config_defaults,
                                            point.config_left_out))
    plots.save(plots.scaling_law(constants, points, tables.column_names([p.name for p in points], specs)),
               output, force)
    click.echo(output)
