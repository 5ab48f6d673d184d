"""`costplan estimate` and `costplan compare`."""
from __future__ import annotations

import click

from costplan.cli.options import (FORMATS, collect_overrides, echo_warnings, law_option, load_all, parse_lengths,
                                  spec_options)
from costplan.errors import CostplanError

@click.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--seq-len", "lengths", metavar="N,N,...", callback=parse_lengths,
              help="Show how FLOPs per token, activations and KV cache grow with context, one row per length "
                   "(a length past model.max_seq_len raises it for that row, which a note says).")
@law_option
@spec_options
def estimate(specs, fmt, lengths, law, overrides, gpu, gpus, tokens, mfu) -> None:
    """Parameters, FLOPs, memory, GPU-hours and cost of training each spec, and its predicted loss."""
    from costplan import report, scaling, tables
    from costplan.costs.estimate import estimate as run_estimate
    from costplan.costs.run import at_lengths

    constants = scaling.resolve(law)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    if lengths:
        groups = [[run_estimate(copy, constants) for copy in at_lengths(spec, lengths)] for spec in loaded]
        for spec, group in zip(loaded, groups):
            echo_warnings(tables.seq_len_warnings(group, spec.model.max_seq_len))
        click.echo(report.render(tables.seq_len(groups), fmt))
        return
    results = [run_estimate(s, constants) for s in loaded]
    for result in results:
        echo_warnings(tables.warnings(result))
    click.echo(report.render(tables.estimates(results), fmt))


@click.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--baseline", metavar="NAME", help="The spec the ratios are taken against: its column, name or "
                                                 "argument as given (default: the first).")
@click.option("--serving", is_flag=True, help="Add the serving metrics (costplan serve) at each spec's "
                                              "serving settings.")
@law_option
@spec_options
def compare(specs, fmt, baseline, serving, law, overrides, gpu, gpus, tokens, mfu) -> None:
    """Specs side by side: one column per spec, with each value's ratio to the baseline."""
    from costplan import report, scaling, tables
    from costplan.costs.estimate import estimate as run_estimate
    from costplan.errors import did_you_mean

    constants = scaling.resolve(law)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    results = [run_estimate(s, constants) for s in loaded]
    names = [r.name for r in results]
    columns = tables.column_names(names, specs)
    index = 0
    if baseline is not None:
        # its column, the argument as given (a file of a name another spec shares), or its name
        matches = [i for i, column in enumerate(columns) if baseline == column] or \
                  [i for i, given in enumerate(specs) if baseline == given] or \
                  [i for i, name in enumerate(names) if baseline == name] or \
                  [i for i, name in enumerate(names) if baseline.casefold() == name.casefold()]   # as presets
        if len(matches) != 1:
            why = "names more than one spec; give its column" if matches else \
                f"no spec of that name{did_you_mean(baseline, columns)}"
            raise CostplanError(f"--baseline {baseline}: {why}; the columns are {', '.join(columns)}")
        index = matches[0]
    for result in results:
        echo_warnings(tables.warnings(result))
    if serving:
        from costplan.costs.inference import serve as run_serve
        from costplan.tables import serve as serve_tables

        table = serve_tables.compare(results, [run_serve(s) for s in loaded], index, columns)
    else:
        table = tables.compare(results, index, columns)
    click.echo(report.render(table, fmt))
