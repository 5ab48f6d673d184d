"""`costplan estimate` and `costplan --help` start without torch or a model library (a fresh interpreter checks
sys.modules)."""
from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from click.testing import CliRunner
from costplan.cli import cli
for args in (["--help"], ["estimate", "llama2-7b", "--format", "json"], ["presets"], ["hardware"],
             ["plot", "--help"], ["plan", "--budget", "1e21"], ["sweep", "gpt2-small", "--vary", "n_layers=1,2"]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
# pydantic too: the spec is validated by costplan/sections.py, as building a model library's validators took
# longer at every start than the estimate itself
heavy = sorted(m for m in ("torch", "fvcore", "matplotlib", "numpy", "pydantic") if m in sys.modules)
print(",".join(heavy))
"""


def test_estimate_and_help_do_not_import_torch():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cost_model_imports_nothing_heavy():
    code = "import sys, costplan; costplan.estimate(costplan.load_spec('gpt2-small')); " \
           "print([m for m in ('torch', 'tabulate', 'click') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"    # the API needs neither the CLI nor the table formatter


@pytest.mark.parametrize("module", ["costplan.costs", "costplan.spec", "costplan.hardware", "costplan.scaling",
                                    "costplan.planner", "costplan.sweep", "costplan.series"])
def test_library_modules_do_not_import_click(module):
    code = f"import sys, {module}; print('click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_version_and_help_build_no_spec_models():
    # `costplan --version` and `--help` answer without importing the spec's sections or the results.
    code = ("import sys; from click.testing import CliRunner; from costplan.cli import cli; "
            "[CliRunner().invoke(cli, a) for a in (['--version'], ['--help'], ['estimate', '--help'])]; "
            "print(sorted(m for m in ('costplan.spec', 'costplan.costs.result', 'costplan.sections') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

