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


def test_readme_lists_every_preset():
    from costplan import presets

    listed = re.search(r"^Presets: (.+?) \(", README, flags=re.S | re.M).group(1)
    assert " ".join(listed.split()).split(", ") == list(presets.names())


def test_readme_names_every_command():
    for name in cli.list_commands(None):
        assert f"costplan {name}" in README, name


def _required(model_class) -> set[str]:
    return {name for name, field in model_class.model_fields.items() if field.is_required()}


def test_readme_marks_every_required_spec_field():
    from costplan.spec import ModelSpec

    block = re.search(r"```yaml\nname: llama2-7b.*?```", README, flags=re.S).group(0)
    marked = set(re.findall(r"^  (\w+): .*# required", block, flags=re.M))
    assert marked == _required(ModelSpec)


def test_readme_names_the_required_hardware_fields():
    from costplan.hardware import GPU

    sentence = re.search(r"A hardware file has the shape.*?are required", README, flags=re.S).group(0)
    assert set(re.findall(r"`(\w+)`", sentence)) == _required(GPU)


def test_readme_error_example_is_what_the_tool_prints(monkeypatch):
    monkeypatch.chdir(Path(__file__).parent / "specs")
    block = re.search(r"## Errors\n.*?```\n(.*?)```", README, flags=re.S).group(1)
    result = CliRunner().invoke(cli, ["estimate", "many_problems.yaml"])
    assert result.exit_code == 2
    printed = result.stderr.splitlines()
    documented = block.splitlines()
    assert len(printed) == len(documented)
    for shown, real in zip(documented, printed):    # the README shortens long lines with "; ..."
        assert real.startswith(shown.removesuffix("; ...")), (shown, real)


@pytest.mark.parametrize("command, shown", re.findall(r"```\n\$ costplan ([^\n]+)\n(Error:.*?)```", README,
                                                      flags=re.S))
def test_readme_refusals_are_what_the_tool_prints(command, shown):
    result = CliRunner().invoke(cli, shlex.split(command))
    assert result.exit_code == 2 and result.stderr == shown


def test_readme_json_contract_lists_the_real_keys():
    import json

    block = re.search(r"The key names are a contract:\n\n```\n(.*?)```", README, flags=re.S).group(1)
    documented = {}
    for key, body in re.findall(r'"(\w+)":\s*(?:null \| )?\{(.*?)\}(?=,\n "|\}\s*$)', block, flags=re.S):
        documented[key] = set(re.findall(r'"(\w+)"', body))
    documented["name"] = set()
    real = json.loads(CliRunner().invoke(cli, ["estimate", "llama2-7b", "--format", "json",
                                               "--set", "parallelism.tensor=1",
                                               "--set", "hardware.count=8"]).stdout)[0]
    assert set(documented) == set(real)
    for key, names in documented.items():
        if isinstance(real[key], dict) and key != "assumptions":
            assert names == set(real[key]), key


@pytest.mark.parametrize("record, start, end", [
    ("costplan.planner:Option", r"JSON: one object per\nGPU type", r"GPU types are searched"),
    ("costplan.planner:Proposal", r"`--format json` prints one object with", r"its open batch's tokens"),
    ("costplan.costs.serving_result:ServingMemory", r"\| `memory` \|", r"\n"),
    ("costplan.costs.accuracy:Miss", r"`time.caveats` lists", r"`parallelism` is the"),
])
def test_readme_json_key_lists_name_every_field(record, start, end):
    # the JSON key lists written in prose, beside the estimate's contract above: a field the output gains is
    # named there too (gpu_memory_stated and three of plan's had not been)
    import importlib

    module, name = record.split(":")
    fields = set(getattr(importlib.import_module(module), name)._fields)
    listed = set(re.findall(r"`(\w+)`", re.search(start + r"(.*?)" + end, README, flags=re.S).group(1)))
    assert fields <= listed, sorted(fields - listed)


def _cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_readme_profile_example_matches_except_the_machine(monkeypatch):
    """`costplan profile` examples: every deterministic cell as the command prints it. The device in the title
    and the step-time row's measurement depend on the machine and are left out (its estimate, on the spec's GPU,
    does not); a note the README shortens with `...` must begin as printed."""
    pytest.importorskip("torch")
    monkeypatch.chdir(Path(__file__).parents[1])
    blocks = re.findall(r"```\n\$ costplan (profile [^\n]+)\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has no profile example"
    machine = re.compile(r" \(cpu: .*?, \d+ threads?\)| \(cuda: [^)]*\)")   # CPU names hold "(R)"
    for command, expected in blocks:
        result = CliRunner().invoke(cli, [*shlex.split(command), "--no-time"])
        assert result.exit_code == 0, result.output
        _same_table(command, result.stdout, expected, machine)


def test_readme_against_transformers_example_matches(monkeypatch):
    """`check --against transformers` examples: every cell as the command prints it (nothing in it is timed),
    the title but for the transformers version installed."""
    pytest.importorskip("transformers")
    monkeypatch.chdir(Path(__file__).parents[1])
    blocks = re.findall(r"```\n\$ costplan (check [^\n]+ --against transformers)\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has no check --against transformers example"
    for command, expected in blocks:
        result = CliRunner().invoke(cli, shlex.split(command))
        assert result.exit_code == 0, result.output
        _same_table(command, result.stdout, expected, re.compile(r"transformers \d[\w.]*"))


def _same_table(command: str, printed_text: str, expected: str, machine: re.Pattern) -> None:
    """A README table as the command printed it: its title (but what `machine` matches), its headers and each
    row's cells, a note shortened with `...` beginning as printed; a step-time row only by its estimate."""
    printed, shown = printed_text.splitlines(), expected.splitlines()
    assert machine.sub("", printed[0]) == machine.sub("", shown[0]), command
    assert _cells(printed[1]) == _cells(shown[1]), command
    rows = {cells[0]: cells for cells in map(_cells, printed[3:]) if cells[0]}
    assert [_cells(line)[0] for line in shown[3:]] == list(rows), command
    for line in shown[3:]:
        cells = _cells(line)
        if cells[0].startswith("step time"):          # measured on this machine: differs per machine
            assert cells[1] == _step_estimate(command, shown[0]), f"stale step estimate: {line}"
            continue
        actual = rows[cells[0]]
        assert cells[:6] == actual[:6], f"README row of `costplan {command}` is stale: {line}"
        note, real_note = (cells[6] if len(cells) > 6 else ""), (actual[6] if len(actual) > 6 else "")
        assert real_note.startswith(note.removesuffix("...").rstrip()), f"stale note: {line}"


def _step_estimate(command: str, title: str) -> str:
    """The step model's time of the profiled step, as the row prints it: on the spec's GPU's tables, the same
    on every machine (the row compares it with the measurement only where that GPU was calibrated here)."""
    import costplan
    from costplan import report
    from costplan.profiling.compare import one_step

    (path,) = [word for word in shlex.split(command)[1:] if not word.startswith("-")]
    batch = int(re.search(r"batch (\d+) ×", title).group(1))
    seconds = costplan.estimate(one_step(costplan.load_spec(path), batch)).time.step_seconds
    return report.human(seconds, "seconds")


def test_readme_python_api_example_runs_as_written():
    # the block is run as a notebook would run it, and the values its comments give are checked
    block = re.search(r"### Python API\n\n```python\n(.*?)```", README, flags=re.S).group(1)
    names: dict = {}
    exec(compile(block, "README.md", "exec"), names)  # noqa: S102 - the README's own example
    assert names["result"].params.total == int(re.search(r"result\.params\.total +# (\d+)", block).group(1))
    assert names["longer"].training.seq_len == 4096 and names["spec"].training.seq_len == 2048


def test_readme_gives_the_annotated_specs_size():
    import costplan

    copy = r"copy \[specs/annotated.yaml\]\(specs/annotated.yaml\): a [\d.]+B model \(([\d,]+)\s+parameters\)"
    said = re.search(copy, README).group(1)
    spec = costplan.load_spec(str(Path(__file__).parents[1] / "specs" / "annotated.yaml"))
    total = costplan.estimate(spec).params.total
    assert int(said.replace(",", "")) == total
    assert f"a {total / 1e9:.1f}B model" in README
