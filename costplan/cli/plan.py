"""`costplan plan`: what to train with a budget, or how many GPUs meet a deadline."""
from __future__ import annotations

import click

from costplan.cli.options import FORMATS, echo_warnings, law_option, load_all
from costplan.errors import CostplanError, shown

def progress_lines():  # noqa: ANN201
    """A progress(gpu, done, total) for a search over several GPU types (the catalogue takes tens of seconds on
    two cores): a line on standard error as each type is in, where a person watches it (a terminal); nothing in a
    pipe or a CI log."""
    import sys
    import time

    from costplan import report

    if not sys.stderr.isatty():
        return None
    started = time.monotonic()

    def progress(gpu: str, done: int, total: int) -> None:
        if total > 1:
            click.echo(f"plan: {gpu} searched, {done} of {total} GPU types "
                       f"({report.seconds(time.monotonic() - started)})", err=True)
    return progress


@click.command()
@click.argument("spec", required=False, metavar="[SPEC_OR_PRESET]")
@click.option("--budget", metavar="AMOUNT", help="Compute budget, in --unit (e.g. 5.76e23 FLOPs).")
@click.option("--unit", default="flops", show_default=True, metavar="flops|gpu-hours|usd",
              help="What --budget counts; GPU-hours and dollars are priced on --gpu.")
@click.option("--deadline", metavar="DURATION",
              help="With SPEC: finish within this long, e.g. 30d, 12h, 2w, 90min, 1y (365 days).")
@click.option("--gpu", "gpu_names", multiple=True, metavar="NAME",
              help="GPU type (catalogue name or file); with --deadline, repeat to compare several "
                   "(default: the whole catalogue). Default with --budget: a100-80gb.")
@click.option("--gpus", metavar="N", default="1", show_default=True, help="With --budget: GPUs for wall clock.")
@click.option("--seq-len", "seq_len", metavar="N", default=str(2048), show_default=True,
              help="With --budget: the proposed model's training context.")
@click.option("--vocab", metavar="N", default=str(32000), show_default=True,
              help="With --budget: the proposed model's vocabulary size.")
@click.option("--write", "write_path", metavar="FILE", help="With --budget: write the proposed spec as YAML.")
@click.option("--force", is_flag=True, help="With --write: replace FILE if it exists.")
@click.option("--mfu", metavar="X", help="Time every run at this model FLOPs utilisation, from 0.0001 to 1, instead of "
                                         "the step model (a GPU without kernel tables needs it).")
@law_option(only="With --budget: ")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="With SPEC: override a field.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_context
def plan(ctx, spec, budget, unit, deadline, gpu_names, gpus, seq_len, vocab, write_path, force, mfu, law,
         overrides, fmt) -> None:
    """What to train with a budget (--budget), or how many GPUs finish SPEC by a deadline (--deadline)."""
    from costplan import files, hardware, planner, report, scaling, tables, yamlio
    from costplan.validation import (MAX_COUNT, MAX_WIDTH, parse_count, parse_duration, parse_mfu, parse_positive,
                                     parse_unit)

    problems = []

    def check(parse, *args):
        try:
            return parse(*args)
        except CostplanError as exc:
            problems.append(str(exc))
            return None

    if spec is None and budget is None:
        raise CostplanError("plan needs --budget AMOUNT, or SPEC and --deadline DURATION")
    if spec is not None and (budget is not None or deadline is None):
        raise CostplanError("with SPEC, plan needs --deadline DURATION (and no --budget)")
    given = [name for name in ("unit", "gpus", "seq_len", "vocab")
             if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT]
    budget_only = ([f"--{name.replace('_', '-')}" for name in given] + ["--write"] * (write_path is not None)
                   + ["--law"] * (law is not None))     # a deadline's table has no loss to predict
    spec_only = ["--deadline"] * (deadline is not None) + ["--set"] * bool(overrides)
    if force and write_path is None:
        problems.append("--force: only with --write")
    utilisation = None if mfu is None else check(parse_mfu, "--mfu", mfu)
    gpu_names = tuple(dict.fromkeys(gpu_names))     # a type named twice is one row
    for name in gpu_names:
        try:
            hardware.resolve(name)
        except CostplanError as exc:
            problems.append(f"--gpu: {exc}")
    if spec is None:
        # Options that only make sense with SPEC would be ignored: say so rather than plan without them.
        problems += [f"{option}: only with SPEC (--budget plans on --gpus GPUs; give SPEC and --deadline to "
                     "find the GPUs a deadline needs)" for option in spec_only]
        amount, unit = check(parse_positive, "--budget", budget), check(parse_unit, unit)
        count, context, words = (check(parse_count, name, text, limit) for name, text, limit in
                                 (("--gpus", gpus, MAX_COUNT), ("--seq-len", seq_len, MAX_WIDTH),
                                  ("--vocab", vocab, MAX_WIDTH)))
        constants = check(scaling.resolve, law)
        if len(gpu_names) > 1:
            problems.append(f"--gpu: give one GPU type with --budget, not {len(gpu_names)} "
                            f"({', '.join(map(shown, gpu_names))})")
        if write_path is not None:
            check(files.check_spec_output, "--write", write_path, force)
        if problems:
            raise CostplanError("\n".join(problems))
        gpu = gpu_names[0] if gpu_names else "a100-80gb"
        proposal = planner.propose(amount, unit, constants, gpu, count, context, words, utilisation)
        if write_path:
            header = (f"proposed by costplan plan --budget {budget} --unit {unit}: the {constants.name} law's "
                      f"compute-optimal size,\nshaped by the rule in costplan/sizing.py")
            if law is not None and law != scaling.DEFAULT_LAW:   # a spec names no law: estimate takes the default
                header += f"\nits predicted loss is the {constants.name} law's: costplan estimate FILE --law {law}"
            files.write_text("--write", write_path, yamlio.dumps(proposal.spec, header), force)
        click.echo(report.render(tables.proposal(proposal), fmt))
        echo_warnings(tables.proposal_warnings(proposal))
        if write_path:
            click.echo(f"wrote {write_path}", err=True)
        return
    hours = check(parse_duration, "--deadline", deadline)
    loaded = check(load_all, [spec], list(overrides), True)
    problems += [f"{option}: only with --budget" for option in budget_only]
    if problems:
        raise CostplanError("\n".join(problems))
    options = planner.deadline_options(loaded[0], hours, list(gpu_names) or None, utilisation, progress_lines())
    click.echo(report.render(tables.deadline(options), fmt))
    echo_warnings(tables.deadline_warnings(loaded[0].name, options))
    if all(o.gpus is None for o in options):    # a script's `plan && train` should stop here
        click.echo(f"no GPU type tried trains {loaded[0].name} within {deadline}", err=True)
        ctx.exit(1)
