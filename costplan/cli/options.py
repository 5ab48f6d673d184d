"""Options and helpers shared by the commands: spec overrides, loading every spec, warnings."""
from __future__ import annotations

from collections.abc import Sequence

import click

from costplan.errors import CostplanError, printable

FORMATS = ["table", "json", "csv", "markdown"]


# the shortcut options: flag, metavar, help
SHORTCUTS = {
    "gpu": ("--gpu", "NAME", "hardware.gpu: a catalogue name or a hardware YAML file."),
    "gpus": ("--gpus", "N", "hardware.count: number of GPUs training (a serving estimate's are serving.gpus)."),
    "tokens": ("--tokens", "N", "training.tokens, e.g. 2e12."),
    "mfu": ("--mfu", "X", "hardware.mfu: model FLOPs utilisation, from 0.0001 to 1."),
}


def spec_options(command=None, *, shortcuts: Sequence[str] = tuple(SHORTCUTS)):  # noqa: ANN001, ANN201
    """--set and the shortcut options --gpu, --gpus, --tokens, --mfu: overrides applied to every spec before
    validation. Those not in `shortcuts` (a figure that does not depend on them) are still parsed, so that the
    command can refuse them by name, but left out of --help."""
    def apply(command):  # noqa: ANN001, ANN202
        options = [click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                                help="Override a spec field by its dotted path, e.g. model.n_layers=48 (repeatable)."),
                   *(click.option(flag, metavar=metavar, help=text, hidden=name not in shortcuts)
                     for name, (flag, metavar, text) in SHORTCUTS.items())]
        for option in reversed(options):
            command = option(command)
        return command

    return apply if command is None else apply(command)


LAW_HELP = ("Scaling-law constants: epoch (default; Besiroglu et al. 2024), chinchilla (Hoffmann et al. 2022), or a "
            "YAML file with E, A, B, alpha, beta.")


def law_option(command=None, *, only: str = ""):  # noqa: ANN001, ANN201
    """--law; `only` heads its help where a command takes it in one mode alone ("With --budget: ")."""
    option = click.option("--law", metavar="NAME|FILE", default=None,
                          help=only + (LAW_HELP[0].lower() + LAW_HELP[1:] if only else LAW_HELP))
    return option if command is None else option(command)


def collect_overrides(overrides: Sequence[str], gpu: str | None = None, gpus: str | None = None,
                      tokens: str | None = None, mfu: str | None = None) -> list[str]:
    """The shortcut options as --set overrides, so they are validated (and reported) like the file."""
    return with_shortcuts(overrides, {"--gpu": ("hardware.gpu", gpu), "--gpus": ("hardware.count", gpus),
                                      "--tokens": ("training.tokens", tokens), "--mfu": ("hardware.mfu", mfu)})


def with_shortcuts(overrides: Sequence[str], shortcuts: dict[str, tuple[str, str | None]]) -> list[str]:
    """The overrides and the shortcut options given (option: its field and value) as overrides after them; an
    option and a --set of its field together is an error, since one would silently win."""
    from costplan.loading import parse_override, sets_field

    given = {key: (option, value) for option, (key, value) in shortcuts.items() if value is not None}
    for text in overrides:
        try:
            path, value = parse_override(text)
        except CostplanError:
            continue            # reported with the others (override_key_problems)
        for key, (option, said) in given.items():
            if sets_field(path, value, key.split(".")):
                raise CostplanError(f"{option} {printable(said)} and --set {printable(text)} set one field; give "
                                    "one of them")
    return [*overrides, *(f"{key}={value}" for key, (_, value) in given.items())]


def override_key_problems(overrides: Sequence[str]) -> list[str]:
    """Each override whose key or form is wrong, all at once: the loading stops at the first, hiding the rest."""
    from costplan.loading import parse_override

    problems = []
    for text in overrides:
        try:
            parse_override(text)
        except CostplanError as exc:
            problems.append(str(exc))
    return problems


def load_all(specs: Sequence[str], overrides: Sequence[str], searched_count: bool = False):
    """Every spec, validated; the problems of all files are reported together, after every override's key is
    checked (all at once: an unknown one would otherwise stop the loading at the first file). With
    searched_count (plan --deadline) a parallelism section is not checked against hardware.count, which the
    search chooses."""
    from costplan.errors import SpecError
    from costplan.loading import load_for_search, load_spec

    problems = override_key_problems(overrides)
    if problems:
        raise CostplanError("\n".join(problems))
    load = load_for_search if searched_count else load_spec
    loaded = []
    for source in specs:
        try:
            loaded.append(load(source, overrides))
        except SpecError as exc:
            problems.append(str(exc))
    if problems:
        raise CostplanError("\n".join(problems))
    return loaded


def echo_warnings(lines: Sequence[str]) -> None:
    for line in lines:
        click.echo(f"warning: {line}", err=True)


def parse_lengths(ctx, param, value: str | None) -> list[int] | None:  # noqa: ANN001 - click callback
    """`4096,1024,16384` → [1024, 4096, 16384]: whole numbers, each checked like any count on the command line,
    in ascending order, each once."""
    from costplan.validation import parse_count

    if value is None:
        return None
    option = param.opts[0]
    parts = [part.strip() for part in value.split(",")]
    if not any(parts) or not all(parts):
        given = f" {printable(value)}" if value.strip() else ""       # an empty value: no stray space
        raise CostplanError(f"{option}{given}: expected comma-separated whole numbers, e.g. 1024,4096")
    return sorted({parse_count(option, part) for part in parts})     # each once, shortest first
