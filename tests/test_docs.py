"""The README stays true: its example output is what the command prints today, and it names every command."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from costplan.cli import cli

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_readme_examples_match_the_output(monkeypatch):
    monkeypatch.chdir(Path(__file__).parents[1])     # the examples use paths from the project's root
    blocks = re.findall(r"<!-- output: costplan (.+?) -->\n```\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has no checked example"
    for command, expected in blocks:
        result = CliRunner().invoke(cli, shlex.split(command))
        assert result.stdout == expected, f"README output of `costplan {command}` is stale"


def test_readme_names_every_command():
    for name in cli.commands:
        assert f"costplan {name}" in README, name


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_readme_profile_example_matches_except_the_machine(monkeypatch):
    """`costplan profile` examples: every deterministic cell as the command prints it. The device in the title
    and the step-time row's values depend on the machine and are left out; a note the README shortens with
    `...` must begin as printed."""
    pytest.importorskip("torch")
    monkeypatch.chdir(Path(__file__).parents[1])
    blocks = re.findall(r"```\n\$ costplan (profile [^\n]+)\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has no profile example"
    for command, expected in blocks:
        result = CliRunner().invoke(cli, [*shlex.split(command), "--no-time"])
        assert result.exit_code == 0, result.output
        machine = re.compile(r" \(cpu: [^)]*\)| \(cuda: [^)]*\)")
        printed, shown = result.stdout.splitlines(), expected.splitlines()
        assert machine.sub("", printed[0]) == machine.sub("", shown[0]), command
        assert _cells(printed[1]) == _cells(shown[1]), command
        rows = {cells[0]: cells for cells in map(_cells, printed[3:]) if cells[0]}
        assert [_cells(line)[0] for line in shown[3:]] == list(rows), command
        for line in shown[3:]:
            cells = _cells(line)
            if cells[0].startswith("step time"):
                continue                                  # measured on this machine: differs per machine
            actual = rows[cells[0]]
            assert cells[:6] == actual[:6], f"README row of `costplan {command}` is stale: {line}"
            note, real_note = (cells[6] if len(cells) > 6 else ""), (actual[6] if len(actual) > 6 else "")
            assert real_note.startswith(note.removesuffix("...").rstrip()), f"stale note: {line}"
