"""`costplan profile`, `check` and `calibrate`: the torch side, imported inside each command."""
from __future__ import annotations

import sys
from dataclasses import replace

import click
from click.core import ParameterSource

from costplan.cli.options import collect_overrides, echo_warnings, load_all, spec_options, with_shortcuts
from costplan.errors import CostplanError, printable

PROFILE_FORMATS = ["table", "json", "markdown", "junit"]
# gloo ranks on a CPU share its cores (and each holds the whole model); more than a few per core only thrashes
CPU_PROCESSES_PER_CORE = 4


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
        click.option("--time-budget", default="2", show_default=True, metavar="SECONDS",
                     help="Longest step timed at full size (larger specs are timed on a shrunk copy), and "
                          "about how long a spec is timed."),
        click.option("--time-set", "time_set", multiple=True, metavar="KEY=VALUE",
                     help="Shrink the timed copy yourself instead (repeatable), e.g. model.n_layers=2."),
        click.option("--serve", is_flag=True, help="Instead: serving measurements at the spec's serving settings "
                     "(KV cache, prefill and decode FLOPs, weight bytes per format, decode step time)."),
        click.option("--against", type=click.Choice(["reference", "transformers"]), default="reference",
                     show_default=True, help="What to measure: costplan's reference model, or (for Hugging Face "
                     "configs) the transformers class built from the same config.json, with eager attention."),
        click.option("--nproc", metavar="N", help="Instead: train under torchrun on N processes with FSDP2 "
                     "(gloo on CPU, NCCL on GPUs) and compare each rank's parameter, gradient and optimizer "
                     "shards with the estimate at parallelism {data: N, zero: 3}."),
    ]
    for option in reversed(options):
        command = option(command)
    return spec_options(command)


def measure_all(specs, device, batch, seq_len, overrides, gpu, gpus, tokens, mfu, tolerance_texts, detail,
                no_time, time_budget, time_set, nproc=None, serve=False, against="reference", gate=False):
    """Load, measure and compare every spec: one record of raw values per spec, in order, for tables.checks (a
    spec that could not be measured a record of its error: each_spec). `gate` (check) refuses what would compare
    estimates of something else than what is measured."""
    from costplan.profiling import require_torch

    require_torch()
    from costplan.profiling.compare import checks, parse_tolerances
    from costplan.profiling.measure import measure, resolve_device
    from costplan.loading import parse_override
    from costplan.validation import parse_positive

    tolerances = parse_tolerances(tolerance_texts)
    time_budget = parse_positive("--time-budget", time_budget)
    all_overrides = with_shortcuts(collect_overrides(overrides, gpu, gpus, tokens, mfu),
                                   {"--batch": ("training.micro_batch_size", batch),
                                    "--seq-len": ("training.seq_len", seq_len)})
    loaded = load_all(specs, all_overrides)
    for text in time_set:   # malformed ones are reported now, before any measuring
        path, _ = parse_override(text, "--time-set")
        if path == ["training", "micro_batch_size"]:    # every row, the time's estimate too, is at one batch
            raise CostplanError(f"--time-set {printable(text)}: the step is timed at the micro-batch every row "
                                 "measures; give it with --batch")
    try:                    # and settings no spec takes
        if time_set:
            load_all(specs, [*all_overrides, *time_set])
    except CostplanError as exc:
        raise CostplanError("\n".join(f"--time-set {' '.join(time_set)}: {line}"
                                      for line in str(exc).splitlines())) from None
    dev = resolve_device(device)
    if nproc is not None:   # the distributed run checks memory shards only: anything else would go unused
        budget_given = click.get_current_context().get_parameter_source("time_budget") != ParameterSource.DEFAULT
        unused = [name for name, given in (("--serve", serve), ("--detail", detail), ("--time-set", time_set),
                                           ("--tolerance", tolerance_texts), ("--no-time", no_time),
                                           ("--time-budget", budget_given)) if given]
        if unused:
            raise click.UsageError(f"--nproc checks each rank's memory shards; {', '.join(unused)} cannot be "
                                   "combined with it")
    if time_set and no_time:
        raise click.UsageError("--time-set shrinks the copy that is timed; it cannot be combined with --no-time")
    if serve and (batch is not None or seq_len is not None):
        raise click.UsageError("--serve measures at the spec's serving settings (serving.prompt_tokens, "
                               "serving.output_tokens); --batch and --seq-len do not apply: give those with --set")
    time_overrides = list(time_set) if time_set else None
    if against == "transformers":
        if nproc is not None or serve:
            raise click.UsageError("--against transformers measures one training step; it cannot be combined "
                                   "with --nproc or --serve")
        unused = [name for name, given in (("--time-set", time_set), ("--detail", detail),
                                           (f"--device {device}", dev.type != "cpu")) if given]
        if unused:
            raise click.UsageError(f"--against transformers counts the class's parameters, FLOPs and memory on the "
                                   f"CPU, untimed; {', '.join(unused)} cannot be combined with it")
        # the class is built from the file: a model override would change the estimate alone, but for the context
        # a rotary or ALiBi model trains at, which its class does not size (a learned position table it does)
        learned = any(spec.model.position == "learned" for spec in loaded)
        changed = [text for text in overrides if parse_override(text)[0][0] == "model"
                   and (parse_override(text)[0] != ["model", "max_seq_len"] or learned)]
        if changed:
            raise CostplanError("\n".join(f"--set {text}: --against transformers builds the class from the "
                                          "config file as it is; change the config.json instead" for text in changed))
        from costplan.profiling import against as transformers_check

        configs = {source: transformers_check.config_path(source) for source in specs}   # all before building
        return each_spec(specs, loaded, lambda source, spec: transformers_check.record(configs[source], spec,
                                                                                        tolerances, progress_lines()))
    if nproc is not None:
        return sharded_all(specs, loaded, all_overrides, nproc, dev)
    if serve:
        from costplan.profiling.serve import serve_record

        return each_spec(specs, loaded, lambda source, spec: serve_record(
            spec, dev, tolerances, time=not no_time, time_overrides=time_overrides, progress=progress_lines()))

    def record(source, spec):
        # the reference model saves what fused kernels save; the estimate of transformers' modules is checked
        # against those modules (profile shows the comparison, and its title says so)
        if gate and spec.training.implementation != "fused":
            raise CostplanError(f"{source}: training.implementation {spec.training.implementation} estimates what "
                                "transformers' modules save, not the reference model measured here; check a Hugging "
                                "Face config with --against transformers, or drop the setting")
        m = measure(spec, dev, time=not no_time, time_budget=time_budget, time_overrides=time_overrides,
                    progress=progress_lines())
        timing = None if m.timing is None else {
            "median_s": m.timing.median, "min_s": m.timing.minimum, "max_s": m.timing.maximum,
            "iqr_s": m.timing.iqr, "runs": m.timing.runs, "timed_with": m.time_overrides}
        return {
            "name": spec.name, "device": m.device, "device_name": m.device_name, "batch": m.batch,
            "seq_len": m.spec.seq_len, "precision": m.spec.training.precision,
            "recompute": m.spec.training.recompute, "recompute_layers": m.spec.training.recompute_layers,
            # what the spec lays out that the one device measured does not (loading.on_one_gpu)
            "spec_gpus": spec.hardware.count, "spec_parallelism": spec.parallelism is not None,
            "implementation": spec.training.implementation,
            "timing": timing,
            "checks": checks(m, tolerances, detail),
            "arithmetic_not_counted": m.flops.ops.arithmetic_not_counted,
            "fvcore_unsupported": m.fvcore.unsupported if m.fvcore else {},
        }

    return each_spec(specs, loaded, record)


def progress_lines():  # noqa: ANN201
    """Where a measurement's stages are told as they start (training, serving, a distributed run, a transformers
    class): stderr when a person watches it (a terminal); nothing in a pipe or a CI log, whose stderr carries only
    failures and errors."""
    if not sys.stderr.isatty():
        return None
    return lambda line: click.echo(f"measuring {line}", err=True)


def each_spec(sources, loaded, record) -> list[dict]:
    """record(source, spec) for every spec, in order, with the source it was given as. One that cannot be
    measured (a CostplanError: a setting this torch cannot run, a spec the measurement refuses) is a record of its
    error instead, with no checks (tables.checks), and the others are still measured, so one spec does not hide
    the results of the rest."""
    records = []
    for source, spec in zip(sources, loaded):
        try:
            records.append({"source": source, **record(source, spec)})
        except CostplanError as exc:
            prefix = f"{source}: "
            reason = "\n".join(line.removeprefix(prefix) for line in str(exc).splitlines())
            records.append({"source": source, "name": spec.name, "error": reason, "checks": []})
    return records


def echo_checks(records: list[dict], detail: bool, fmt: str) -> None:
    """The checks as `fmt`; nothing where no spec was measured and the format (text) leaves errors to stderr."""
    from costplan import report, tables

    text = report.render(tables.checks(records, detail), fmt)
    if text:
        click.echo(text)


def unmeasured_error(records: list[dict]) -> CostplanError | None:
    """The specs that could not be measured, a `SOURCE: reason` line each: the exit-2 message, after the rest's
    results; None when every spec was measured."""
    lines = [f"{r['source']}: {line}" for r in records if "error" in r for line in r["error"].splitlines()]
    return CostplanError("\n".join(lines)) if lines else None


def sharded_all(sources, loaded, overrides, nproc_text, device):
    """Each spec trained under FSDP2 on N processes: its records of per-rank shard checks."""
    from costplan.forked import available_cpus
    from costplan.profiling import distributed
    from costplan.profiling.stages import Stages
    from costplan.validation import parse_count

    nproc = parse_count("--nproc", nproc_text)
    if device.type == "cuda":       # NCCL runs one process per GPU
        import torch

        devices = torch.cuda.device_count()
        if nproc > devices:
            raise CostplanError(f"--nproc {nproc}: this machine has {devices} CUDA device{'s' * (devices != 1)}; "
                                "NCCL runs one process on each")
    elif nproc > CPU_PROCESSES_PER_CORE * available_cpus():
        raise CostplanError(f"--nproc {nproc}: at most {CPU_PROCESSES_PER_CORE} processes per CPU core "
                            f"({CPU_PROCESSES_PER_CORE * available_cpus()} here): each builds the whole model")

    def record(source, spec):
        stage = Stages(spec.name, progress_lines())
        stage(f"a training step under torchrun, FSDP2 on {nproc} {'GPUs' if device.type == 'cuda' else 'processes'}")
        ranks = distributed.run(source, overrides, nproc, device.type)
        stage.done()
        return {
            "name": spec.name, "device": f"{device.type} × {nproc} processes",
            "device_name": f"FSDP2, {'NCCL' if device.type == 'cuda' else 'gloo'}", "batch":
            spec.training.micro_batch_size, "seq_len": spec.seq_len, "precision": spec.training.precision,
            "recompute": spec.training.recompute, "recompute_layers": spec.training.recompute_layers,
            "timing": None,
            "checks": distributed.checks(spec, ranks),
            "arithmetic_not_counted": {}, "fvcore_unsupported": {},
        }

    return each_spec(sources, loaded, record)


@click.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@profile_options
def profile(specs, device, batch, seq_len, fmt, detail, no_time, time_budget, time_set, serve, against, nproc,
            overrides, gpu, gpus, tokens, mfu) -> None:
    """Build each spec's PyTorch model, measure it, and show estimate and measurement side by side."""
    records = measure_all(specs, device, batch, seq_len, overrides, gpu, gpus, tokens, mfu, (), detail, no_time,
                          time_budget, time_set, nproc, serve, against)
    echo_checks(records, detail, fmt)
    error = unmeasured_error(records)
    if error:
        raise error


@click.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@click.option("--tolerance", "tolerances", multiple=True, metavar="METRIC=X",
              help="Relative tolerance per metric (params, flops, activations, peak, time, kv_cache, weights), "
                   "e.g. peak=0.2 or peak=20%. Defaults: params, flops, kv_cache and weights exact, activations "
                   "5%, peak 10%, time 30%.")
@click.option("--strict", is_flag=True, help="A comparison that could not be made fails instead of being "
              "skipped (fvcore missing, a step time with no calibration to estimate it on, a step too large for "
              "this machine); the step time --no-time leaves out, and rows shown for information, stay skipped.")
@profile_options
def check(specs, tolerances, strict, device, batch, seq_len, fmt, detail, no_time, time_budget, time_set, serve,
          against, nproc, overrides, gpu, gpus, tokens, mfu) -> None:
    """Like profile, for CI: exit 0 when every measurement is within tolerance, 1 (listing them) when not, 2
    when a spec could not be measured (after the others' results)."""
    from costplan import tables

    records = measure_all(specs, device, batch, seq_len, overrides, gpu, gpus, tokens, mfu, tolerances, detail,
                          no_time, time_budget, time_set, nproc, serve, against, gate=True)
    if strict:      # what could not be compared fails, but the step time --no-time leaves out
        records = [{**r, "checks": [replace(c, required=not (no_time and c.metric == "time")) for c in r["checks"]]}
                   for r in records]
    echo_checks(records, detail, fmt)
    failed = tables.check_failures(records)
    for line in failed:
        click.echo(line, err=True)
    error = unmeasured_error(records)
    if error:
        raise error
    if failed:
        sys.exit(1)


# Below it a calibration's shares of the budget time nothing usable: a 0.001 s budget timed only 64³ matmuls and
# wrote a step MFU clamped from about 2; 2 s and 5 s gave the same matmul rates (2 cores of an AMD EPYC).
MIN_CALIBRATION_SECONDS = 2.0


@click.command()
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--output", "output", metavar="FILE",
              help="Write the hardware YAML here (usable as hardware.gpu: FILE); default: print it.")
@click.option("--force", is_flag=True, help="Replace --output if it exists.")
@click.option("--time-budget", default="180", show_default=True, metavar="SECONDS",
              help="About how long to measure: slow matmul sizes and attention lengths are left out, the "
                   "reference step timed less.")
def calibrate(device, output, force, time_budget) -> None:
    """Measure this machine's matmul FLOP/s, memory bandwidth, step MFU and kernel efficiency curves (GEMM by
    size, causal attention by sequence length) as a hardware file; on a GPU also the share of those burst rates
    its matmuls sustain at its power limit (a 20 s soak)."""
    from costplan import files
    from costplan.profiling import require_torch
    from costplan.validation import parse_positive

    budget = parse_positive("--time-budget", time_budget)
    if budget < MIN_CALIBRATION_SECONDS:
        raise CostplanError(f"--time-budget: at least {MIN_CALIBRATION_SECONDS:g} s for a calibration (default 180), "
                            f"got {time_budget}")
    if force and output is None:
        raise CostplanError("--force: only with --output")
    if output is not None:          # a bad path fails now, not after minutes of measuring
        files.check_output("--output", output, force)
    require_torch()
    from costplan import report, tables
    from costplan.profiling.calibrate import calibrate as run_calibration
    from costplan.profiling.calibrate import hardware_entry
    from costplan.profiling.measure import resolve_device

    result = run_calibration(resolve_device(device), budget,
                             progress=lambda line: click.echo(f"calibrate: {line}", err=True))
    echo_warnings(result.doubts)
    header = ("Written by `costplan calibrate`: achieved rates on the device below, not datasheet peaks.\n"
              "Use it as `hardware.gpu: FILE` (or --gpu FILE) to compare estimated and measured step times.")
    text = report.hardware_yaml(hardware_entry(result), header)
    if output is None:
        click.echo(text, nl=False)
        return
    files.write_text("--output", output, text, force)
    click.echo(report.render(tables.calibration(result.rates, result.bandwidth, result.interconnect, result.mfu),
                             "table"))
    click.echo(f"\nwrote {output}")
