"""The command line: parse options, call the library, render. Nothing else happens here.

Errors meant for the user (CostplanError) become `Error: ...` lines on stderr and exit status 2, in one place
(CostplanGroup.invoke). Data goes to stdout, warnings to stderr. torch is never imported at module level.
Each command lives in a small module of this package, imported only when that command runs (or for --help),
so `costplan estimate` does not pay for the definitions of the others.
"""
from __future__ import annotations

import errno
import importlib
import os
import shlex
import sys

import click

from costplan import __version__
from costplan.errors import CostplanError, printable

# command name → module of this package that defines it (under the same name, `import` as import_config)
COMMANDS = {
    "calibrate": "profile", "check": "profile", "compare": "estimate", "estimate": "estimate",
    "hardware": "listings", "import": "convert", "plan": "plan", "plot": "plot", "presets": "listings",
    "profile": "profile", "serve": "serve", "sweep": "sweep",
}


class UserError(click.ClickException):
    """A CostplanError on its way out: one `Error:` line per problem, exit status 2."""

    exit_code = 2

    def show(self, file=None) -> None:  # noqa: ANN001 - click's signature
        for line in self.message.splitlines():
            click.echo(f"Error: {line}", err=True)


class RefusingRepeats(click.Group):
    """A group whose commands refuse an option of one value given twice (refuse_repeats)."""

    def resolve_command(self, ctx: click.Context, args: list[str]):  # noqa: ANN201 - click's signature
        name, command, rest = super().resolve_command(ctx, args)
        # not while the shell completes a word: a half-typed line may repeat an option, and says nothing yet
        if command is not None and not isinstance(command, click.Group) and not ctx.resilient_parsing:
            refuse_repeats(command, rest, ctx.help_option_names)
        return name, command, rest


class CostplanGroup(RefusingRepeats):
    def list_commands(self, ctx: click.Context | None) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context | None, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"costplan.cli.{COMMANDS[name]}")
        return getattr(module, "import_config" if name == "import" else name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:    # costplan's own options (costplan --bogus)
            return super().parse_args(ctx, args)
        except _HELP_ASKED:
            raise
        except click.UsageError as exc:
            raise one_line(exc) from None

    def invoke(self, ctx: click.Context):  # noqa: ANN201 - click's signature
        try:
            return super().invoke(ctx)
        except CostplanError as exc:
            raise UserError(str(exc)) from None
        except _HELP_ASKED:
            raise
        except click.UsageError as exc:
            raise one_line(exc) from None


def one_line(exc: click.UsageError) -> UserError:
    """A usage error as one Error line, where click prints its usage line, a hint and a blank line before it."""
    hint = f" (`{exc.ctx.command_path} --help` shows the usage)" if exc.ctx is not None else ""
    return UserError(exc.format_message() + hint)


# a command given no arguments where that asks for its help (click 8.2 on): shown as click shows it
_HELP_ASKED = getattr(click.exceptions, "NoArgsIsHelpError", ())


def refuse_repeats(command: click.Command, args: list[str], help_names: list[str]) -> None:
    """An option that takes one value, given more than once: an error, where click would keep the last without a
    word (`--gpu h100-sxm --gpu a100-80gb`). Flags and options that take several (--set, --vary) may repeat."""
    single = {opt: param for param in command.params if isinstance(param, click.Option)
              and not param.multiple and not param.is_flag and not param.count for opt in param.opts}
    valued = {opt for param in command.params if isinstance(param, click.Option) and not param.is_flag
              and not param.count for opt in param.opts}
    given: dict[str, list[tuple[str, str]]] = {}     # a parameter's name → (option, value) as given
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            break
        if token in help_names:     # asked for as an option (a value is taken below): the help, as click gives it
            return
        if token.startswith("--"):
            opt, equals, value = token.partition("=")
            attached = bool(equals)
        else:       # a short option, its value in the next token or attached to it (-ofile)
            opt, value = token[:2], token[2:]
            attached = bool(value)
        if opt not in valued:
            continue
        value = value if attached else next(tokens, "")
        if opt in single:
            given.setdefault(single[opt].name, []).append((opt, value))
    repeated = [uses for uses in given.values() if len(uses) > 1]
    if repeated:
        raise CostplanError("\n".join(
            f"{uses[0][0]}: given {len(uses)} times "
            f"({', then '.join(f'{opt} {shlex.quote(printable(value))}' for opt, value in uses)}); give it once"
            for uses in repeated))


@click.group(cls=CostplanGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="costplan")
def cli() -> None:
    """Exact parameters, FLOPs, memory, GPU-hours and cost of training transformer language models.

    SPEC_OR_PRESET is a YAML spec file, a Hugging Face config.json (or a folder holding one), or the name of a
    bundled preset (`costplan presets`).
    """


# Failures of the output stream itself (a full disk, a device error): no file name, as an open() error has
OUTPUT_FAILURES = {errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG}


def main() -> None:
    """Console entry point."""
    try:
        cli(prog_name="costplan")
    except OSError as exc:
        if exc.errno not in OUTPUT_FAILURES or exc.filename is not None:
            raise
        # what is still buffered would fail again as the interpreter exits, with a message of its own
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        click.echo(f"Error: cannot write the output: {exc.strerror}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
