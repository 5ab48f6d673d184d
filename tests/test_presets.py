"""Bundled presets: sourced, valid, and shipped inside the package."""
from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

import costplan
from costplan import presets

REQUIRED = ["gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", "gpt3-175b", "llama2-7b", "llama2-13b",
            "llama2-70b", "llama3-8b", "llama3-70b", "gemma2-9b", "qwen3-30b-a3b", "gpt-oss-120b",
            "gemma3-27b", "llama4-scout"]
HF = __import__("pathlib").Path(__file__).parents[1] / "specs" / "ci" / "hf"
# Presets that cite a Hugging Face config kept in specs/ci/hf/, and where the preset departs from it on purpose.
FROM_CONFIGS = {
    "llama2-7b": ("llama-2-7b", {}),
    "mistral-7b": ("mistral-7b", {"max_seq_len": 8192}),        # the paper's context; the config allows 32768
    "mixtral-8x7b": ("mixtral-8x7b", {}),
    "deepseek-v3": ("deepseek-v3", {"max_seq_len": 4096}),      # the pre-training context (paper §4.2)
    "gemma2-9b": ("gemma-2-9b", {}),
    "qwen3-30b-a3b": ("qwen3-30b-a3b", {}),
    "gpt-oss-120b": ("gpt-oss-120b", {}),
    "gemma3-27b": ("gemma-3-27b", {}),
    "llama4-scout": ("llama-4-scout", {}),
}


def test_required_presets_present():
    assert set(REQUIRED) <= set(presets.names())


@pytest.mark.parametrize("name", presets.names())
def test_each_preset_is_sourced_and_valid(name):
    assert presets.source(name), f"{name} has no '# source:' line"
    spec = costplan.load_spec(name)
    assert spec.name == name
    assert costplan.estimate(spec).params.total > 0


@pytest.mark.parametrize("name", FROM_CONFIGS)
def test_presets_are_their_configs(name):
    """A preset's model section is what its cited config reads as, but for the choices it documents."""
    folder, departures = FROM_CONFIGS[name]
    config = costplan.load_spec(HF / folder).model.model_dump()
    preset = costplan.load_spec(name).model.model_dump()
    assert {k: v for k, v in preset.items() if config[k] != v} == departures


def test_presets_are_in_the_wheel(tmp_path):
    # A normal (not editable) install must find them: they are package data, not files of the checkout.
    root = __import__("pathlib").Path(__file__).parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(root)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("costplan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in REQUIRED:
        assert f"costplan/presets/{name}.yaml" in names
    assert "costplan/data/hardware.yaml" in names


def test_example_specs_load():
    folder = __import__("pathlib").Path(__file__).parents[1] / "specs"
    examples = sorted(folder.glob("**/*.yaml"))
    assert examples
    for path in examples:
        spec = costplan.load_spec(path)
        assert costplan.estimate(spec).params.total > 0
        assert path.read_text().startswith("# source:"), path


@pytest.mark.parametrize("name", presets.names())
def test_each_citation_is_whole_on_its_first_line(name):
    # the presets table shows a source's first line: a citation cut where the comment wrapped ("...; HF config",
    # an open bracket or quote) would say nothing, or something else
    citation = presets.source(name, citation_only=True)
    assert not citation.endswith(("HF config", ",", ";", " and", "("))
    assert citation.count("(") == citation.count(")") and citation.count('"') % 2 == 0

