"""`costplan serve`: memory, latency, throughput and cost of serving."""
from __future__ import annotations

import click

from costplan.cli.options import FORMATS, echo_warnings, load_all, with_shortcuts
from costplan.errors import CostplanError

@click.command()
@click.argument("specs", nargs=-1, required=True, metavar="SPEC_OR_PRESET...")
@click.option("--batch", metavar="N", help="serving.batch: concurrent sequences (default: the most that fit "
                                           "and meet the latency targets).")
@click.option("--prompt-tokens", metavar="N", help="serving.prompt_tokens (default 1024, shortened to fit "
                                                   "model.max_seq_len with the output).")
@click.option("--output-tokens", metavar="N", help="serving.output_tokens (default 256, at most a quarter of "
                                                   "model.max_seq_len).")
@click.option("--weights", type=click.Choice(["bf16", "fp8", "int8", "int4"], case_sensitive=False),
              help="serving.weights format.")
@click.option("--group-size", metavar="N", help="serving.group_size: int4 weights per scale (default 128).")
@click.option("--kv-cache", type=click.Choice(["bf16", "fp8"], case_sensitive=False),
              help="serving.kv_cache format.")
@click.option("--tensor", metavar="N", help="serving.tensor: GPUs per replica (default: the fewest that hold "
                                            "the model and one sequence, or the --batch).")
@click.option("--tpot-ms", metavar="MS", help="serving.tpot_ms: target for the time per output token under load "
                                              "(a decode step and the prefill passes between steps), in milliseconds.")
@click.option("--ttft-ms", metavar="MS", help="serving.ttft_ms: time-to-first-token target in milliseconds.")
@click.option("--rate", metavar="N[/s]", help="serving.rate: requests per second to plan GPUs for, e.g. 50/s "
                                             "(or per minute or hour: 3000/min, 180000/h).")
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

    flags = {"--batch": ("serving.batch", batch), "--prompt-tokens": ("serving.prompt_tokens", prompt_tokens),
             "--output-tokens": ("serving.output_tokens", output_tokens), "--weights": ("serving.weights", weights),
             "--group-size": ("serving.group_size", group_size), "--kv-cache": ("serving.kv_cache", kv_cache),
             "--tensor": ("serving.tensor", tensor), "--tpot-ms": ("serving.tpot_ms", tpot_ms),
             "--ttft-ms": ("serving.ttft_ms", ttft_ms), "--rate": ("serving.rate", rate),
             "--gpu": ("hardware.gpu", gpu), "--gpus": ("serving.gpus", gpus)}
    loaded = load_all(specs, with_shortcuts(overrides, flags))
    if group_size is not None:      # it would be ignored: only int4 weights are grouped
        others = [f"{spec.name} ({spec.serving.weights})" for spec in loaded if spec.serving.weights != "int4"]
        if others:
            raise CostplanError(f"--group-size: only with int4 weights (--weights int4); {', '.join(others)} "
                                "store no groups")
    from costplan.tables.estimate import left_out_warnings

    echo_warnings([w for spec in loaded for w in left_out_warnings(spec.name, spec.config_left_out)])
    results = [run_serve(spec) for spec in loaded]
    problems = [p for p in (serve_tables.problem(r, s.label) for s, r in zip(loaded, results)) if p]
    if problems:
        raise CostplanError("\n".join(problems))
    from costplan.costs.inference import cheaper_degree

    echo_warnings([serve_tables.cheaper_note(r, other) for s, r in zip(loaded, results)
                   if (other := cheaper_degree(s, r)) is not None])
    click.echo(report.render(serve_tables.serving(results), fmt))
