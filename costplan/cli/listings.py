"""`costplan presets` and `costplan hardware`: what is bundled."""
from __future__ import annotations

import click

from costplan.cli.options import FORMATS

@click.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def presets(fmt) -> None:
    """List the bundled preset specs, usable by name wherever a spec file is."""
    from costplan import presets as bundled
    from costplan import report, tables
    from costplan.costs.estimate import estimate as run_estimate
    from costplan.loading import load_spec

    specs = {name: load_spec(name) for name in bundled.names()}
    params = {name: run_estimate(spec).params.total for name, spec in specs.items()}
    sources = {name: bundled.source(name) for name in specs}
    citations = {name: bundled.source(name, citation_only=True) for name in specs}
    click.echo(report.render(tables.presets(specs, params, sources, citations), fmt))


@click.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def hardware(fmt) -> None:
    """List the hardware catalogue: dense peaks, memory (as the maker states it, and usable: what PyTorch has of
    it, or nvidia-smi's total where PyTorch's was not found, which steps and serving replicas must fit in),
    bandwidth, the budget MFU (plan --budget's first guess of the size GPU-hours buy, which the step model then
    times; a hardware file without kernel tables needs --mfu to time a run) and price."""
    from costplan import report, tables
    from costplan.hardware import catalogue

    click.echo(report.render(tables.hardware(catalogue()), fmt))
