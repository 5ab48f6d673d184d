"""The command line: parse options, call the library, render. Nothing else happens here.

Errors meant for the user (CostplanError) become `Error: ...` lines on stderr and exit status 2, in one place
(CostplanGroup.invoke). Data goes to stdout, warnings to stderr. torch is never imported at module level.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

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

    SPEC_OR_PRESET is a YAML spec file or the name of a bundled preset (`costplan presets`).
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
    from costplan import report, scaling
    from costplan.costs.estimate import estimate as run_estimate
    from costplan.spec import at_seq_len

    constants = scaling.resolve(law)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    if lengths:
        groups = [[run_estimate(at_seq_len(spec, n), constants) for n in lengths] for spec in loaded]
        if fmt in ("json", "csv"):
            click.echo(report.render_estimates([e for group in groups for e in group], fmt))
        else:
            click.echo("\n\n".join(f"{group[0].name}\n{report.seq_len_table(group, fmt)}" for group in groups))
        return
    results = [run_estimate(s, constants) for s in loaded]
    for result in results:
        echo_warnings(report.warnings(result))
    click.echo(report.render_estimates(results, fmt))


@cli.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--baseline", metavar="NAME", help="The spec the ratios are taken against (default: the first).")
@click.option("--serving", is_flag=True, help="Add the serving metrics (costplan serve) at each spec's "
                                              "serving settings.")
@spec_options
def compare(specs, fmt, baseline, serving, overrides, gpu, gpus, tokens, mfu) -> None:
    """Specs side by side: one column per spec, with each value's ratio to the baseline."""
    from costplan import report
    from costplan.costs.estimate import estimate as run_estimate
    from costplan.errors import did_you_mean

    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    results = [run_estimate(s) for s in loaded]
    names = [r.name for r in results]
    if baseline is not None and baseline not in names:
        raise CostplanError(f"--baseline {baseline}: no spec of that name{did_you_mean(baseline, names)}; "
                            f"the specs are {', '.join(names)}")
    for result in results:
        echo_warnings(report.warnings(result))
    if serving:
        from costplan import report_serve
        from costplan.costs.inference import serve as run_serve

        served = [run_serve(s) for s in loaded]
        click.echo(report.to_json([{**r.model_dump(), "serving": s.model_dump()} for r, s in zip(results, served)])
                   if fmt == "json" else
                   report_serve.compare_table(results, served, names.index(baseline) if baseline else 0, fmt))
    elif fmt == "json":
        click.echo(report.render_estimates(results, fmt))
    else:
        click.echo(report.compare_table(results, names.index(baseline) if baseline else 0, fmt))


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
@law_option
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="With SPEC: override a field.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def plan(spec, budget, unit, deadline, gpu_names, gpus, seq_len, vocab, write_path, law, overrides, fmt) -> None:
    """What to train with a budget (--budget), or how many GPUs finish SPEC by a deadline (--deadline)."""
    from costplan import planner, report, scaling, yamlio
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
    if spec is None:
        amount, unit = check(parse_positive, "--budget", budget), check(parse_unit, unit)
        count, context, words = (check(parse_count, name, text) for name, text in
                                 (("--gpus", gpus), ("--seq-len", seq_len), ("--vocab", vocab)))
        constants = check(scaling.resolve, law)
        if len(gpu_names) > 1:
            problems.append("--gpu: give one GPU type with --budget")
        if problems:
            raise CostplanError("\n".join(problems))
        gpu = gpu_names[0] if gpu_names else "a100-80gb"
        proposal = planner.propose(amount, unit, constants, gpu, count, context, words)
        if write_path:
            header = (f"proposed by costplan plan --budget {budget} --unit {unit}: the {constants.name} law's "
                      f"compute-optimal size,\nshaped by the rule in costplan/sizing.py")
            Path(write_path).write_text(yamlio.dumps(proposal.spec, header), encoding="utf-8")
        click.echo(report.to_json(proposal.model_dump()) if fmt == "json" else
                   report.csv_text([report.flatten(proposal.model_dump())]) if fmt == "csv" else
                   report.table(report.proposal_rows(proposal), fmt, report.proposal_title(proposal)))
        return
    hours = check(parse_duration, "--deadline", deadline)
    loaded = check(load_all, [spec], list(overrides))
    if write_path:
        problems.append("--write: only with --budget")
    if problems:
        raise CostplanError("\n".join(problems))
    options = planner.deadline_options(loaded[0], hours, list(gpu_names) or None)
    if fmt == "json":
        click.echo(report.to_json([o.model_dump() for o in options]))
    else:
        click.echo(report.deadline_grid(options, fmt) if fmt != "csv" else
                   report.csv_text([report.flatten(o.model_dump()) for o in options]))


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
    from costplan import report, scaling
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
    if not problems:
        checks += [lambda: sweeps.check_size(axes, limit), lambda: sweeps.sort_key(sort_by, axes, serving)]
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
    points = sweeps.run(raw, axes, collect_overrides(overrides, gpu, gpus, tokens, mfu), constants, count, serving)
    if order is not None:
        points = sorted(points, key=order)
    if serving:
        from costplan import report_serve

        click.echo(report_serve.sweep_output(points, [axis.key for axis in axes], fmt))
    else:
        click.echo(report.sweep_output(points, [axis.key for axis in axes], fmt))


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
@click.option("--gpus", metavar="N", help="hardware.count: GPUs in all (replicas × --tensor).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec field by its dotted path, e.g. serving.reserve=0.05 (repeatable).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def serve(specs, batch, prompt_tokens, output_tokens, weights, group_size, kv_cache, tensor, tpot_ms, ttft_ms,
          rate, gpu, gpus, overrides, fmt) -> None:
    """Memory, latency, throughput and cost per million tokens of serving each spec."""
    from costplan import report_serve
    from costplan.costs.inference import serve as run_serve

    flags = {"serving.batch": batch, "serving.prompt_tokens": prompt_tokens,
             "serving.output_tokens": output_tokens, "serving.weights": weights, "serving.group_size": group_size,
             "serving.kv_cache": kv_cache, "serving.tensor": tensor, "serving.tpot_ms": tpot_ms,
             "serving.ttft_ms": ttft_ms, "serving.rate": rate.removesuffix("/s") if rate else None,
             "hardware.gpu": gpu, "hardware.count": gpus}
    extra = [f"{key}={value}" for key, value in flags.items() if value is not None]
    results = [run_serve(spec) for spec in load_all(specs, [*overrides, *extra])]
    problems = [p for p in map(report_serve.problem, results) if p]
    if problems:
        raise CostplanError("\n".join(problems))
    click.echo(report_serve.render_serving(results, fmt))


@cli.group()
def plot() -> None:
    """Figures as PNG or SVG (needs the `plot` extra: pip install 'costplan[plot]')."""


output_option = click.option("--output", "-o", metavar="FILE.png|FILE.svg",
                             help="Where to write the figure; the extension picks the format.")


@plot.command("seq-scaling")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@output_option
@click.option("--lengths", metavar="N,N,...", callback=parse_lengths,
              help="Context lengths to plot (default: 512 to 131072 in powers of two).")
@spec_options
def plot_seq_scaling(specs, output, lengths, overrides, gpu, gpus, tokens, mfu) -> None:
    """FLOPs per token and activation memory against context length, one line per spec."""
    from costplan import plots, series

    output = output or "seq-scaling.png"
    plots.check_output(output)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    plots.save(plots.seq_scaling(loaded, lengths or series.DEFAULT_LENGTHS), output)
    click.echo(output)


@plot.command("memory")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@output_option
@spec_options
def plot_memory(specs, output, overrides, gpu, gpus, tokens, mfu) -> None:
    """Stacked bars of per-GPU memory (weights, gradients, optimizer, activations, KV cache) against the GPU's."""
    from costplan import plots
    from costplan.costs.estimate import estimate as run_estimate

    output = output or "memory.png"
    plots.check_output(output)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu))
    plots.save(plots.memory([run_estimate(s) for s in loaded]), output)
    click.echo(output)


@plot.command("scaling")
@click.argument("specs", nargs=-1, metavar="[SPEC_OR_PRESET...]")
@output_option
@law_option
@spec_options
def plot_scaling(specs, output, law, overrides, gpu, gpus, tokens, mfu) -> None:
    """Predicted loss against compute: the compute-optimal frontier, iso-FLOP curves and the specs as points."""
    from costplan import plots, scaling
    from costplan.costs.estimate import estimate as run_estimate

    output = output or "scaling.png"
    plots.check_output(output)
    constants = scaling.resolve(law)
    loaded = load_all(specs, collect_overrides(overrides, gpu, gpus, tokens, mfu)) if specs else []
    plots.save(plots.scaling_law(constants, [run_estimate(s, constants) for s in loaded]), output)
    click.echo(output)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def presets(fmt) -> None:
    """List the bundled preset specs, usable by name wherever a spec file is."""
    from costplan import presets as bundled
    from costplan import report
    from costplan.costs.estimate import estimate as run_estimate
    from costplan.spec import load_spec

    headers = ["name", "parameters", "layers", "d_model", "heads", "context", "attention", "source"]
    body = []
    for name in bundled.names():
        spec = load_spec(name)
        m = spec.model
        params = run_estimate(spec).params.total
        body.append([name, params if fmt in ("json", "csv") else report.count(params), m.n_layers, m.d_model,
                     f"{m.n_heads}/{m.n_kv_heads}", m.max_seq_len, m.attention.type, bundled.source(name)])
    if fmt == "json":
        click.echo(report.to_json([dict(zip(headers, row)) for row in body]))
    else:
        click.echo(report.grid(headers, body, fmt))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def hardware(fmt) -> None:
    """List the hardware catalogue: dense peaks, memory, bandwidth, default MFU and price."""
    from costplan import report
    from costplan.hardware import PRECISIONS, catalogue

    gpus = catalogue()
    if fmt in ("json", "csv"):
        records = [{"key": key, **gpu.model_dump()} for key, gpu in gpus.items()]
        click.echo(report.to_json(records) if fmt == "json" else
                   report.csv_text([report.flatten(r) for r in records]))
        return
    headers = ["name", "device", *(f"{p} TFLOP/s" for p in PRECISIONS), "memory", "bandwidth", "MFU",
               "$/GPU-hour", "price date"]
    body = [[key, gpu.name, *(report.human(gpu.peak_tflops.get(p), "number") for p in PRECISIONS),
             report.size(gpu.memory_bytes), f"{report.human(gpu.memory_bandwidth_gbs, 'number')} GB/s",
             report.percent(gpu.mfu), report.price(gpu.usd_per_gpu_hour), gpu.price_date]
            for key, gpu in gpus.items()]
    click.echo(report.grid(headers, body, fmt))


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
        click.option("--serve", is_flag=True, help="Instead: serving measurements at the spec's serving settings "
                     "(KV cache, prefill and decode FLOPs, weight bytes per format, decode step time)."),
        click.option("--nproc", metavar="N", help="Instead: train under torchrun on N processes with FSDP2 "
                     "(gloo on CPU, NCCL on GPUs) and compare each rank's parameter, gradient and optimizer "
                     "shards with the estimate at parallelism {data: N, zero: 3}."),
    ]
    for option in reversed(options):
        command = option(command)
    return spec_options(command)


def measure_all(specs, device, batch, seq_len, overrides, gpu, gpus, tokens, mfu, tolerance_texts, detail,
                no_time, time_budget, time_set, nproc=None, serve=False):
    """Load, measure and compare every spec: one record of raw values per spec, for report.render_checks."""
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
    if serve:
        from costplan.profiling.serve import serve_records

        return serve_records(loaded, dev, tolerances, time=not no_time, time_overrides=list(time_set))
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
def profile(specs, device, batch, seq_len, fmt, detail, no_time, time_budget, time_set, serve, nproc, overrides,
            gpu, gpus, tokens, mfu) -> None:
    """Build each spec's PyTorch model, measure it, and show estimate and measurement side by side."""
    from costplan import report

    results = measure_all(specs, device, batch, seq_len, overrides, gpu, gpus, tokens, mfu, (), detail,
                          no_time, time_budget, time_set, nproc, serve)
    click.echo(report.render_checks(results, fmt, detail))


@cli.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@click.option("--tolerance", "tolerances", multiple=True, metavar="METRIC=X",
              help="Relative tolerance per metric (params, flops, activations, peak, time, kv_cache, weights), "
                   "e.g. peak=0.2 or peak=20%. Defaults: params, flops, kv_cache and weights exact, activations "
                   "5%, peak 10%, time 30%.")
@profile_options
def check(specs, tolerances, device, batch, seq_len, fmt, detail, no_time, time_budget, time_set, serve, nproc,
          overrides, gpu, gpus, tokens, mfu) -> None:
    """Like profile, for CI: exit 0 when every measurement is within tolerance, 1 (listing them) when not."""
    from costplan import report

    results = measure_all(specs, device, batch, seq_len, overrides, gpu, gpus, tokens, mfu, tolerances,
                          detail, no_time, time_budget, time_set, nproc, serve)
    click.echo(report.render_checks(results, fmt, detail))
    failed = [(r["name"], c) for r in results for c in r["checks"] if c.status == "FAIL"]
    for name, c in failed:
        click.echo(f"FAIL {name}: {c.name} [{c.metric}]: estimate {c.estimate}, measured {c.measured} "
                   f"({report.check_error(c)}, tolerance {report.check_tolerance(c)})", err=True)
    if failed:
        sys.exit(1)


@cli.command()
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--output", "output", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write the hardware YAML here (usable as hardware.gpu: FILE); default: print it.")
def calibrate(device, output) -> None:
    """Measure this machine's matmul FLOP/s, memory bandwidth and step MFU as a hardware file."""
    from costplan.profiling import require_torch

    require_torch()
    from costplan import report
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
    click.echo(report.calibration_table(result.rates, result.bandwidth, result.interconnect, result.mfu))
    click.echo(f"\nwrote {output}")


def main() -> None:
    """Console entry point."""
    cli(prog_name="costplan")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
