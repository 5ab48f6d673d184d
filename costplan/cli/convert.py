"""`costplan import`: a Hugging Face config.json as a costplan spec."""
from __future__ import annotations

import click

from costplan.errors import CostplanError

@click.command("import")
@click.argument("config", metavar="CONFIG")
@click.option("-o", "--output", metavar="FILE", help="Write the spec here (a .yaml file); default, or -: print it.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
def import_config(config, output, force) -> None:
    """Write a Hugging Face config.json (or a folder holding one) as a costplan spec, a comment per field."""
    from pathlib import Path

    from costplan import files, hf, sources
    from costplan.loading import RawSpec

    output = None if output == "-" else output
    path = sources.config_file(Path(config))
    if output is not None:
        files.check_spec_output("--output", output, force)    # so never the config imported either
    if path is None:
        raise CostplanError(f"{config}: not a .json file or a folder holding a config.json")
    imported = hf.read(path)
    RawSpec.of_config(imported, config, path).validate()
    text = hf.to_yaml(imported, config)
    for label, keys in (("used", imported.used), ("taken from the class defaults", imported.defaulted),
                        ("ignored (no cost)", imported.ignored)):
        if keys:
            click.echo(f"{label}: {', '.join(keys)}", err=True)
    for said in imported.left_out:
        click.echo(f"left out (not modelled): {said}", err=True)
    if output is not None:
        files.write_text("--output", output, text, force)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
