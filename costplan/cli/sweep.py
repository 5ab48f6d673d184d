"""`costplan sweep`: every combination of --vary values of one spec."""
from __future__ import annotations

import click

from costplan.cli.options import (FORMATS, collect_overrides, echo_warnings, law_option, override_key_problems,
                                  spec_options)
from costplan.errors import CostplanError


# A sweep of this many points takes several seconds: it says how far it is on standard error, every few seconds.
PROGRESS_FROM = 20_000
PROGRESS_EVERY = 5.0          # seconds


def progress_lines():  # noqa: ANN201
    """A progress(done, total) printing a line to standard error every PROGRESS_EVERY seconds, and at the end."""
    import time

    from costplan import report

    started = last = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if total >= PROGRESS_FROM and (now - last >= PROGRESS_EVERY or done == total):
            last = now
            click.echo(f"sweep: {done:,} of {total:,} points ({report.seconds(now - started)})", err=True)
    return progress


def _base_warnings(raw, axes, sets) -> list[str]:  # noqa: ANN001
    """What every point rests on that the spec does not say, as estimate warns of it: its tokens' rule and its
    training length (unless a --vary gives them), its config's class defaults and what of its config no estimate
    counts. Nothing where the base spec is not valid on its own (the points are checked one by one)."""
    from costplan import tables
    from costplan.costs.estimate import law_point

    try:
        base = raw.validate(sets)
    except CostplanError:
        return []
    point = law_point(base)
    varied = {a.key for a in axes}
    source = "training.tokens" if "training.tokens" in varied else point.tokens_source
    out = tables.assumed_inputs(base.name, source, point.config_defaults, point.config_left_out)
    if base.seq_len_defaulted and "training.seq_len" not in varied:
        lengths = "each point's" if "model.max_seq_len" in varied else f"{base.seq_len:,} tokens"
        out.append(tables.defaulted_seq_len(base.name, lengths))
    return out


@click.command()
@click.argument("spec", metavar="SPEC_OR_PRESET")
@click.option("--vary", "varies", multiple=True, required=True, metavar="KEY=V1,V2,...",
              help="A field and its values, e.g. model.n_layers=12,24,48 (repeatable: the cartesian product; "
                   "the model. prefix may be left out).")
@click.option("--sort-by", "sort_by", metavar="COLUMN", help="Order by a result column or a varied key.")
@click.option("--limit", metavar="N", help="Evaluate only the first N points (needed above 100,000).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--serving", is_flag=True, help="Add serving columns (costplan serve) at the spec's serving "
                                              "settings.")
@click.option("--jobs", metavar="N", help="Processes sharing the points (default: one per CPU, from 1,000 "
                                          "points each; 1 runs them all in this process).")
@click.option("--search-layouts", "search_layouts", is_flag=True,
              help="Each point searches its own parallel layout, as estimate does (slower); by default points "
                   "keep the base spec's layout where it splits them and fits (the layout column).")
@law_option
@spec_options
def sweep(spec, varies, sort_by, limit, fmt, serving, jobs, search_layouts, law, overrides, gpu, gpus, tokens,
          mfu) -> None:
    """Estimate every combination of --vary values of one spec: one row per point."""
    from costplan import report, scaling, tables
    from costplan import sweep as sweeps
    from costplan.loading import read_source
    from costplan.validation import parse_count

    problems, axes = [], []
    for text in varies:
        try:
            axes.append(sweeps.parse_vary(text))
        except CostplanError as exc:
            problems.append(str(exc))
    checks = [lambda: parse_count("--limit", limit) if limit is not None else None,
              lambda: scaling.resolve(law), lambda: read_source(spec),
              lambda: parse_count("--jobs", jobs) if jobs is not None else None]
    sets = collect_overrides(overrides, gpu, gpus, tokens, mfu)
    problems += override_key_problems(sets)
    if not problems:
        checks += [lambda: sweeps.check_size(axes, limit), lambda: sweeps.sort_key(sort_by, axes, serving),
                   lambda: sweeps.check_axes(axes, sets), lambda: sweeps.check_serving_axes(axes, serving)]
    results = []
    for check in checks:
        try:
            results.append(check())
        except CostplanError as exc:
            problems.append(str(exc))
            results.append(None)
    if problems:
        raise CostplanError("\n".join(problems))
    count, constants, raw, job_count = results[:4]
    order = results[5]
    total = sweeps.size(axes)
    if count is not None and count < total:     # said, as the points left out are nowhere in the table
        click.echo(f"sweep: the first {count:,} of {total:,} points (--limit)", err=True)
    warned = _base_warnings(raw, axes, sets)
    points = sweeps.run(raw, axes, sets, constants, count, serving, job_count, progress_lines(), search_layouts)
    echo_warnings(warned)       # once every point is valid: a sweep that fails prints its errors alone
    echo_warnings(tables.accuracy_warnings(raw.label, sweeps.misses(points)))
    note = sweeps.held_note(points)
    if note:
        click.echo(f"note: {note}", err=True)
    if order is not None:
        points = sorted(points, key=order)
    keys, texts = [axis.key for axis in axes], [axis.texts for axis in axes]
    if serving:
        from costplan.tables import serve as serve_tables

        click.echo(report.render(serve_tables.sweep(points, keys, texts), fmt))
    else:
        click.echo(report.render(tables.sweep(points, keys, texts), fmt))
