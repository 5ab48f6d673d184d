"""The command line: parse options, call the library, render. Nothing else happens here.

Errors meant for the user (CostplanError) become `Error: ...` lines on stderr and exit status 2, in one place
(CostplanGroup.invoke). Data goes to stdout, warnings to stderr. torch is never imported at module level.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from costplan import __version__
from costplan.errors import CostplanError

FORMATS = ["table", "json", "csv", "markdown"]


class UserError(click.ClickException):
    """A CostplanError on its way out: one `Error:` line per problem, exit status 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        for line in self.message.splitlines():
            click.echo(f"Error: {line}", err=True)


class CostplanGroup(click.Group):
    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except CostplanError as exc:
            raise UserError(str(exc)) from None


@click.group(cls=CostplanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="costplan")
def cli() -> None:
    """Exact parameters, FLOPs, memory, GPU-hours and cost of training transformer language models.

    SPEC_OR_PRESET is a YAML spec file, a Hugging Face config.json (or a folder holding one), or the name of a
    bundled preset (`costplan presets`).
    """


# ---------------------------------------------------------------------------------------------- shared options
def spec_options(command):
    """--set, --gpu, --gpus, --tokens, --mfu: overrides applied to every spec before validation."""
    options = [
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a spec field by its dotted path, e.g. model.n_layers=48 (repeatable)."),
        click.option("--gpu", metavar="NAME", help="hardware.gpu: a catalogue name or a hardware YAML file."),
        click.option("--gpus", metavar="N", help="hardware.count: number of GPUs."),
        click.option("--tokens", metavar="N", help="training.tokens, e.g. 2e12."),
        click.option("--mfu", metavar="X", help="hardware.mfu: model FLOPs utilisation in (0, 1]."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


law_option = click.option(
    "--law", metavar="NAME|FILE", default=None,
    help="Scaling-law constants: epoch (default; Besiroglu et al. 2024), chinchilla (Hoffmann et al. 2022), or a "
         "YAML file with E, A, B, alpha, beta.")


def collect_overrides(overrides: Sequence[str], gpu: str | None, gpus: str | None, tokens: str | None,
                      mfu: str | None) -> list[str]:
    """The shortcut options as --set overrides, so they are validated (and reported) like the file."""
    extra = [f"{key}={value}" for key, value in (("hardware.gpu", gpu), ("hardware.count", gpus),
                                                 ("training.tokens", tokens), ("hardware.mfu", mfu))
             if value is not None]
    return [*overrides, *extra]


def load_all(specs: Sequence[str], overrides: Sequence[str]):
    """Every spec, validated; the problems of all files are reported together."""
    from costplan.errors import SpecError
    from costplan.spec import load_spec

    loaded, problems = [], []
    for source in specs:
        try:
            loaded.append(load_spec(source, overrides))
        except SpecError as exc:
            problems.append(str(exc))
    if problems:
        raise CostplanError("\n".join(problems))
    return loaded


def echo_warnings(lines: Sequence[str]) -> None:
    for line in lines:
        click.echo(f"warning: {line}", err=True)


# ---------------------------------------------------------------------------------------------- commands
def parse_lengths(ctx, param, value: str | None) -> list[int] | None:  # noqa: ANN001 - click callback
    """`1024,4096,16384` → [1024, 4096, 16384]: whole numbers, each checked like any count on the command line."""
    from costplan.validation import parse_count

    if value is None:
        return None
    option = param.opts[0]
    parts = [part.strip() for part in value.split(",")]
    if not any(parts) or not all(parts):
        raise CostplanError(f"{option} {value}: expected comma-separated whole numbers, e.g. 1024,4096")
    return [parse_count(option, part) for part in parts]


@cli.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--seq-len", "lengths", metavar="N,N,...", callback=parse_lengths,
              help="Show how FLOPs per token, activations and KV cache grow with context, one row per length.")
@law_option
@spec_options
def estimate(specs, fmt, lengths, law, overrides, gpu, gpus, tokens, mfu) -> None:
    """Parameters, FLOPs, memory, GPU-hours and cost of training each spec, and its predicted loss."""
    from costplan import report, scaling, tables
    from costplan.costs.estimate import estimate as run_estimate
    from costplan.spec import at_seq_len

    constants = scaling.resolve(law)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    if lengths:
        groups = [[run_estimate(at_seq_len(spec, n), constants) for n in lengths] for spec in loaded]
        click.echo(report.render(tables.seq_len(groups), fmt))
        return
    results = [run_estimate(s, constants) for s in loaded]
    for result in results:
        echo_warnings(tables.warnings(result))
    click.echo(report.render(tables.estimates(results), fmt))


@cli.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--baseline", metavar="NAME", help="The spec the ratios are taken against (default: the first).")
@click.option("--serving", is_flag=True, help="Add the serving metrics (costplan serve) at each spec's "
                                              "serving settings.")
@spec_options
def compare(specs, fmt, baseline, serving, overrides, gpu, gpus, tokens, mfu) -> None:
    """Specs side by side: one column per spec, with each value's ratio to the baseline."""
    from costplan import report, tables
    from costplan.costs.estimate import estimate as run_estimate
    from costplan.errors import did_you_mean

    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    results = [run_estimate(s) for s in loaded]
    names = [r.name for r in results]
    if baseline is not None and baseline not in names:
        raise CostplanError(f"--baseline {baseline}: no spec of that name{did_you_mean(baseline, names)}; "
                            f"the specs are {', '.join(names)}")
    for result in results:
        echo_warnings(tables.warnings(result))
    if serving:
        from costplan.costs.inference import serve as run_serve
        from costplan.tables import serve as serve_tables

        table = serve_tables.compare(results, [run_serve(s) for s in loaded], names.index(baseline) if baseline else 0)
    else:
        table = tables.compare(results, names.index(baseline) if baseline else 0)
    click.echo(report.render(table, fmt))


@cli.command()
@click.argument("spec", required=False, metavar="[SPEC_OR_PRESET]")
@click.option("--budget", metavar="AMOUNT", help="Compute budget, in --unit (e.g. 5.76e23 FLOPs).")
@click.option("--unit", default="flops", show_default=True, metavar="flops|gpu-hours|usd",
              help="What --budget counts; GPU-hours and dollars are priced on --gpu.")
@click.option("--deadline", metavar="DURATION", help="With SPEC: finish within this long, e.g. 30d, 12h, 2w.")
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
@law_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="With SPEC: override a field.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_context
def plan(ctx, spec, budget, unit, deadline, gpu_names, gpus, seq_len, vocab, write_path, force, law, overrides,
         fmt) -> None:
    """What to train with a budget (--budget), or how many GPUs finish SPEC by a deadline (--deadline)."""
    from costplan import files, planner, report, scaling, tables, yamlio
    from costplan.validation import parse_count, parse_duration, parse_positive, parse_unit

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
    budget_only = [f"--{name.replace('_', '-')}" for name in given] + ["--write"] * bool(write_path)
    spec_only = ["--deadline"] * (deadline is not None) + ["--set"] * bool(overrides)
    if force and not write_path:
        problems.append("--force: only with --write")
    if spec is None:
        # Options that only make sense with SPEC would be ignored: say so rather than plan without them.
        problems += [f"{option}: only with SPEC (--budget plans on --gpus GPUs; give SPEC and --deadline to "
                     "find the GPUs a deadline needs)" for option in spec_only]
        amount, unit = check(parse_positive, "--budget", budget), check(parse_unit, unit)
        count, context, words = (check(parse_count, name, text) for name, text in
                                 (("--gpus", gpus), ("--seq-len", seq_len), ("--vocab", vocab)))
        constants = check(scaling.resolve, law)
        if len(gpu_names) > 1:
            problems.append("--gpu: give one GPU type with --budget")
        if write_path:
            check(files.check_output, "--write", write_path, force)
        if problems:
            raise CostplanError("\n".join(problems))
        gpu = gpu_names[0] if gpu_names else "a100-80gb"
        proposal = planner.propose(amount, unit, constants, gpu, count, context, words)
        if write_path:
            header = (f"proposed by costplan plan --budget {budget} --unit {unit}: the {constants.name} law's "
                      f"compute-optimal size,\nshaped by the rule in costplan/sizing.py")
            files.write_text("--write", write_path, yamlio.dumps(proposal.spec, header), force)
        click.echo(report.render(tables.proposal(proposal), fmt))
        if write_path:
            click.echo(f"wrote {write_path}", err=True)
        return
    hours = check(parse_duration, "--deadline", deadline)
    loaded = check(load_all, [spec], list(overrides))
    problems += [f"{option}: only with --budget" for option in budget_only]
    if problems:
        raise CostplanError("\n".join(problems))
    options = planner.deadline_options(loaded[0], hours, list(gpu_names) or None)
    click.echo(report.render(tables.deadline(options), fmt))


@cli.command()
@click.argument("spec", metavar="SPEC_OR_PRESET")
@click.option("--vary", "varies", multiple=True, required=True, metavar="KEY=V1,V2,...",
              help="A field and its values, e.g. model.n_layers=12,24,48 (repeatable: the cartesian product; "
                   "the model. prefix may be left out).")
@click.option("--sort-by", "sort_by", metavar="COLUMN", help="Order by a result column or a varied key.")
@click.option("--limit", metavar="N", help="Evaluate only the first N points (needed above 100,000).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--serving", is_flag=True, help="Add serving columns (costplan serve) at the spec's serving "
                                              "settings.")
@law_option
@spec_options
def sweep(spec, varies, sort_by, limit, fmt, serving, law, overrides, gpu, gpus, tokens, mfu) -> None:
    """Estimate every combination of --vary values of one spec: one row per point."""
    from costplan import report, scaling, tables
    from costplan import sweep as sweeps
    from costplan.spec import read_source
    from costplan.validation import parse_count

    problems, axes = [], []
    for text in varies:
        try:
            axes.append(sweeps.parse_vary(text))
        except CostplanError as exc:
            problems.append(str(exc))
    checks = [lambda: parse_count("--limit", limit) if limit is not None else None,
              lambda: scaling.resolve(law), lambda: read_source(spec)]
    sets = collect_overrides(overrides, gpu, gpus, tokens, mfu)
    if not problems:
        checks += [lambda: sweeps.check_size(axes, limit), lambda: sweeps.sort_key(sort_by, axes, serving),
                   lambda: sweeps.check_axes(axes, sets)]
    results = []
    for check in checks:
        try:
            results.append(check())
        except CostplanError as exc:
            problems.append(str(exc))
            results.append(None)
    if problems:
        raise CostplanError("\n".join(problems))
    count, constants, raw = results[:3]
    order = results[4]
    points = sweeps.run(raw, axes, sets, constants, count, serving)
    if order is not None:
        points = sorted(points, key=order)
    if serving:
        from costplan.tables import serve as serve_tables

        click.echo(report.render(serve_tables.sweep(points, [axis.key for axis in axes]), fmt))
    else:
        click.echo(report.render(tables.sweep(points, [axis.key for axis in axes]), fmt))


@cli.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@click.option("--batch", metavar="N", help="serving.batch: concurrent sequences (default: the most that fit "
                                           "and meet the latency targets).")
@click.option("--prompt-tokens", metavar="N", help="serving.prompt_tokens (default 1024).")
@click.option("--output-tokens", metavar="N", help="serving.output_tokens (default 256).")
@click.option("--weights", type=click.Choice(["bf16", "fp8", "int8", "int4"]), help="serving.weights format.")
@click.option("--group-size", metavar="N", help="serving.group_size: int4 weights per scale (default 128).")
@click.option("--kv-cache", type=click.Choice(["bf16", "fp8"]), help="serving.kv_cache format.")
@click.option("--tensor", metavar="N", help="serving.tensor: GPUs per replica (default: the fewest that hold "
                                            "the model).")
@click.option("--tpot-ms", metavar="MS", help="serving.tpot_ms: time-per-output-token target in milliseconds.")
@click.option("--ttft-ms", metavar="MS", help="serving.ttft_ms: time-to-first-token target in milliseconds.")
@click.option("--rate", metavar="N[/s]", help="serving.rate: requests per second to plan GPUs for, e.g. 50/s.")
@click.option("--gpu", metavar="NAME", help="hardware.gpu: a catalogue name or a hardware YAML file.")
@click.option("--gpus", metavar="N", help="serving.gpus: GPUs serving in all, replicas × --tensor (default: one "
                                          "replica).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec field by its dotted path, e.g. serving.reserve=0.05 (repeatable).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def serve(specs, batch, prompt_tokens, output_tokens, weights, group_size, kv_cache, tensor, tpot_ms, ttft_ms,
          rate, gpu, gpus, overrides, fmt) -> None:
    """Memory, latency, throughput and cost per million tokens of serving each spec."""
    from costplan import report
    from costplan.costs.inference import serve as run_serve
    from costplan.tables import serve as serve_tables

    flags = {"serving.batch": batch, "serving.prompt_tokens": prompt_tokens,
             "serving.output_tokens": output_tokens, "serving.weights": weights, "serving.group_size": group_size,
             "serving.kv_cache": kv_cache, "serving.tensor": tensor, "serving.tpot_ms": tpot_ms,
             "serving.ttft_ms": ttft_ms, "serving.rate": rate.removesuffix("/s") if rate else None,
             "hardware.gpu": gpu, "serving.gpus": gpus}
    extra = [f"{key}={value}" for key, value in flags.items() if value is not None]
    results = [run_serve(spec) for spec in load_all(specs, [*overrides, *extra])]
    problems = [p for p in map(serve_tables.problem, results) if p]
    if problems:
        raise CostplanError("\n".join(problems))
    click.echo(report.render(serve_tables.serving(results), fmt))


@cli.group()
def plot() -> None:
    """Figures as PNG or SVG (needs the `plot` extra: pip install 'costplan[plot]')."""


output_option = click.option("--output", "-o", metavar="FILE.png|FILE.svg",
                             help="Where to write the figure; the extension picks the format.")
force_option = click.option("--force", is_flag=True, help="Replace the output file if it exists.")


@plot.command("seq-scaling")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@output_option
@force_option
@click.option("--lengths", metavar="N,N,...", callback=parse_lengths,
              help="Context lengths to plot (default: 512 to 131072 in powers of two).")
@spec_options
def plot_seq_scaling(specs, output, force, lengths, overrides, gpu, gpus, tokens, mfu) -> None:
    """FLOPs per token and activation memory against context length, one line per spec."""
    from costplan import plots, series

    output = output or "seq-scaling.png"
    plots.check_output(output, force)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    plots.save(plots.seq_scaling(loaded, lengths or series.DEFAULT_LENGTHS), output, force)
    click.echo(output)


@plot.command("memory")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@output_option
@force_option
@spec_options
def plot_memory(specs, output, force, overrides, gpu, gpus, tokens, mfu) -> None:
    """Per-GPU training memory by kind (weights, gradients, optimizer, activations), one bar per spec, against
    the GPU's capacity."""
    from costplan import plots
    from costplan.costs.estimate import estimate as run_estimate

    output = output or "memory.png"
    plots.check_output(output, force)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    plots.save(plots.memory([run_estimate(s) for s in loaded]), output, force)
    click.echo(output)


@plot.command("scaling")
@click.argument("specs", nargs=-1, metavar="[SPEC_OR_PRESET...]")
@output_option
@force_option
@law_option
@spec_options
def plot_scaling(specs, output, force, law, overrides, gpu, gpus, tokens, mfu) -> None:
    """Predicted loss against compute: the compute-optimal frontier, iso-FLOP curves and the specs as points."""
    from costplan import plots, scaling
    from costplan.costs.estimate import estimate as run_estimate

    output = output or "scaling.png"
    plots.check_output(output, force)
    constants = scaling.resolve(law)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu)) if specs else []
    plots.save(plots.scaling_law(constants, [run_estimate(s, constants) for s in loaded]), output, force)
    click.echo(output)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def presets(fmt) -> None:
    """List the bundled preset specs, usable by name wherever a spec file is."""
    from costplan import presets as bundled
    from costplan import report, tables
    from costplan.costs.estimate import estimate as run_estimate
    from costplan.spec import load_spec

    specs = {name: load_spec(name) for name in bundled.names()}
    params = {name: run_estimate(spec).params.total for name, spec in specs.items()}
    click.echo(report.render(tables.presets(specs, params, {name: bundled.source(name) for name in specs}), fmt))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def hardware(fmt) -> None:
    """List the hardware catalogue: dense peaks, memory, bandwidth, default MFU and price."""
    from costplan import report, tables
    from costplan.hardware import catalogue

    click.echo(report.render(tables.hardware(catalogue()), fmt))


# ---------------------------------------------------------------------------------------------- profiling
PROFILE_FORMATS = ["table", "json", "markdown", "junit"]


def profile_options(command):
    """Options shared by `profile` and `check`: where and how to measure, and how to print."""
    options = [
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where to run the model (auto: cuda when available)."),
        click.option("--batch", metavar="N", help="training.micro_batch_size: sequences per step."),
        click.option("--seq-len", metavar="N", help="training.seq_len: tokens per sequence."),
        click.option("--format", "fmt", type=click.Choice(PROFILE_FORMATS), default="table", show_default=True),
        click.option("--detail", is_flag=True, help="Per-component rows and the ops no counter counts."),
        click.option("--no-time", "no_time", is_flag=True, help="Skip the step-time measurement."),
        click.option("--time-budget", type=float, default=2.0, show_default=True, metavar="SECONDS",
                     help="Longest step timed at full size; larger specs are timed on a shrunk copy."),
        click.option("--time-set", "time_set", multiple=True, metavar="KEY=VALUE",
                     help="Shrink the timed copy yourself instead (repeatable), e.g. model.n_layers=2."),
        click.option("--nproc", metavar="N", help="Instead: train under torchrun on N processes with FSDP2 "
                     "(gloo on CPU, NCCL on GPUs) and compare each rank's parameter, gradient and optimizer "
                     "shards with the estimate at parallelism {data: N, zero: 3}."),
    ]
    for option in reversed(options):
        command = option(command)
    return spec_options(command)


def measure_all(specs, device, batch, seq_len, overrides, gpu, gpus, tokens, mfu, tolerance_texts, detail,
                no_time, time_budget, time_set, nproc=None):
    """Load, measure and compare every spec: one record of raw values per spec, for tables.checks."""
    from costplan.profiling import require_torch

    require_torch()
    from costplan.profiling.compare import checks, parse_tolerances
    from costplan.profiling.measure import measure, resolve_device
    from costplan.spec import parse_override

    tolerances = parse_tolerances(tolerance_texts)
    shortcuts = [f"training.micro_batch_size={batch}"] * (batch is not None) + \
        [f"training.seq_len={seq_len}"] * (seq_len is not None)
    all_overrides = [*collect_overrides(overrides, gpu, gpus, tokens, mfu), *shortcuts]
    loaded = load_all(specs, all_overrides)
    for text in time_set:        # malformed ones are reported now, before any measuring
        parse_override(text)
    dev = resolve_device(device)
    if nproc is not None:
        return sharded_all(specs, loaded, all_overrides, nproc, dev)
    results = []
    for spec in loaded:
        m = measure(spec, dev, time=not no_time, time_budget=time_budget,
                    time_overrides=list(time_set) if time_set else None)
        timing = None if m.timing is None else {
            "median_s": m.timing.median, "min_s": m.timing.minimum, "max_s": m.timing.maximum,
            "iqr_s": m.timing.iqr, "runs": m.timing.runs, "timed_with": m.time_overrides}
        results.append({
            "name": spec.name, "device": m.device, "device_name": m.device_name, "batch": m.batch,
            "seq_len": m.spec.seq_len, "precision": m.spec.training.precision,
            "recompute": m.spec.training.recompute, "timing": timing, "checks": checks(m, tolerances, detail),
            "arithmetic_not_counted": m.flops.ops.arithmetic_not_counted,
            "fvcore_unsupported": m.fvcore.unsupported if m.fvcore else {},
        })
    return results


def sharded_all(sources, loaded, overrides, nproc_text, device):
    """Each spec trained under FSDP2 on N processes: its records of per-rank shard checks."""
    from costplan.profiling import distributed
    from costplan.validation import parse_count

    nproc = parse_count("--nproc", nproc_text)
    results = []
    for source, spec in zip(sources, loaded):
        ranks = distributed.run(source, overrides, nproc, device.type)
        results.append({
            "name": spec.name, "device": f"{device.type} × {nproc} processes",
            "device_name": f"FSDP2, {'NCCL' if device.type == 'cuda' else 'gloo'}", "batch":
            spec.training.micro_batch_size, "seq_len": spec.seq_len, "precision": spec.training.precision,
            "recompute": spec.training.recompute, "timing": None, "checks": distributed.checks(spec, ranks),
            "arithmetic_not_counted": {}, "fvcore_unsupported": {},
        })
    return results


@cli.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@profile_options
def profile(specs, device, batch, seq_len, fmt, detail, no_time, time_budget, time_set, nproc, overrides, gpu,
            gpus, tokens, mfu) -> None:
    """Build each spec's PyTorch model, measure it, and show estimate and measurement side by side."""
    from costplan import report, tables

    results = measure_all(specs, device, batch, seq_len, overrides, gpu, gpus, tokens, mfu, (), detail,
                          no_time, time_budget, time_set, nproc)
    click.echo(report.render(tables.checks(results, detail), fmt))


@cli.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@click.option("--tolerance", "tolerances", multiple=True, metavar="METRIC=X",
              help="Relative tolerance per metric (params, flops, activations, peak, time), e.g. peak=0.2 or "
                   "peak=20%. Defaults: params and flops exact, activations 5%, peak 10%, time 30%.")
@profile_options
def check(specs, tolerances, device, batch, seq_len, fmt, detail, no_time, time_budget, time_set, nproc,
          overrides, gpu, gpus, tokens, mfu) -> None:
    """Like profile, for CI: exit 0 when every measurement is within tolerance, 1 (listing them) when not."""
    from costplan import report, tables

    results = measure_all(specs, device, batch, seq_len, overrides, gpu, gpus, tokens, mfu, tolerances,
                          detail, no_time, time_budget, time_set, nproc)
    click.echo(report.render(tables.checks(results, detail), fmt))
    failed = tables.check_failures(results)
    for line in failed:
        click.echo(line, err=True)
    if failed:
        sys.exit(1)


@cli.command("import")
@click.argument("config", metavar="CONFIG")
@click.option("-o", "--output", metavar="FILE", help="Write the spec here; default: print it.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def import_config(config, output, force) -> None:
    """Write a Hugging Face config.json (or a folder holding one) as a costplan spec, a comment per field."""
    from pathlib import Path

    from costplan import files, hf
    from costplan.spec import validate

    if output:
        files.check_output("--output", output, force)
    path = hf.config_file(Path(config))
    if path is None:
        raise CostplanError(f"{config}: not a .json file or a folder holding a config.json")
    imported = hf.read(path)
    validate(imported.spec, (), label=config, default_name=imported.spec["name"], base_dir=str(path.parent))
    text = hf.to_yaml(imported, config)
    for label, keys in (("used", imported.used), ("taken from the class defaults", imported.defaulted),
                        ("ignored (no cost)", imported.ignored)):
        if keys:
            click.echo(f"{label}: {', '.join(keys)}", err=True)
    if output:
        files.write_text("--output", output, text, force)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--output", "output", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the hardware YAML here (usable as hardware.gpu: FILE); default: print it.")
def calibrate(device, output) -> None:
    """Measure this machine's matmul FLOP/s, memory bandwidth and step MFU as a hardware file."""
    from costplan.profiling import require_torch

    require_torch()
    from costplan import report, tables
    from costplan.profiling.calibrate import calibrate as run_calibration
    from costplan.profiling.calibrate import hardware_entry
    from costplan.profiling.measure import resolve_device

    result = run_calibration(resolve_device(device))
    header = ("Written by `costplan calibrate`: achieved rates on the device below, not datasheet peaks.\n"
              "Use it as `hardware.gpu: FILE` (or --gpu FILE) to compare estimated and measured step times.")
    text = report.hardware_yaml(hardware_entry(result), header)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as out:
            out.write(text)
    except OSError as exc:
        raise CostplanError(f"--output {output}: cannot write: {exc.strerror}") from None
    click.echo(report.render(tables.calibration(result.rates, result.bandwidth, result.interconnect, result.mfu),
                             "table"))
    click.echo(f"\nwrote {output}")


def main() -> None:
    """Console entry point."""
    cli(prog_name="costplan")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
