"""The spec format: defaults, numbers, overrides, the Python API."""
from __future__ import annotations

from pathlib import Path

import pytest

import costplan
from costplan import yamlio
from costplan.errors import SpecError
from costplan.loading import apply_overrides

SPECS = Path(__file__).parent / "specs"


def test_defaults_are_filled_in():
    m = costplan.load_spec({"model": {"vocab_size": 10, "d_model": 64, "n_layers": 1, "n_heads": 4,
                                      "max_seq_len": 32}})
    assert (m.model.n_kv_heads, m.model.head_dim, m.model.d_ff, m.model.qkv_bias) == (4, 16, 256, True)
    assert (m.model.mlp, m.model.norm, m.model.position, m.model.tie_embeddings) == (
        "gelu", "layernorm", "learned", True)
    assert (m.model.o_bias, m.model.head_bias, m.model.block) == (True, False, "sequential")
    assert m.training.seq_len == 32 and m.name == "spec"
    assert m.hardware.gpu == "a100-80gb" and m.training.precision == "bf16"


def test_name_defaults_to_file_stem():
    assert costplan.load_spec(SPECS / "tiny.yaml").name == "tiny"
    assert costplan.load_spec("llama2-7b").name == "llama2-7b"


@pytest.mark.parametrize("text, value", [("2e12", 2e12), ("2.0e12", 2e12), ("2.0e+12", 2e12), ("1_000", 1000),
                                         ("4096", 4096), ("-1.5e3", -1500.0), ("e5", "e5")])
def test_yaml_numbers(text, value):
    assert yamlio.loads(f"x: {text}")["x"] == value


def test_tokens_written_as_float_become_exact_int():
    spec = costplan.load_spec(SPECS / "tiny.yaml")
    assert spec.training.tokens == 1_000_000 and isinstance(spec.training.tokens, int)


def test_duplicate_keys_are_errors(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("model:\n  d_model: 1\n  d_model: 2\n")
    with pytest.raises(SpecError, match="line 3.*duplicate key 'd_model'"):
        costplan.load_spec(path)
    path.write_text("model:\n  null: 1\n  ~: 2\n")        # a key spelt as YAML spells it
    with pytest.raises(SpecError, match="line 3.*duplicate key null"):
        costplan.load_spec(path)


@pytest.mark.parametrize("text, problem", [
    ("  [a, b]: 1\n", "line 3, column 3: invalid YAML: a key must be a plain value, not a list or mapping"),
    ("  n_layers: !!int abc\n", "line 3, column 13: invalid YAML: 'abc' cannot be read as !!int"),
    ("  n_layers: !!int 0x10\n", "line 3, column 13: invalid YAML: '0x10' cannot be read as !!int"),
    ("  n_layers: !!float abc\n", "line 3, column 13: invalid YAML: 'abc' cannot be read as !!float"),
    ("  n_layers: !!float\n", "line 3, column 13: invalid YAML: '' cannot be read as !!float"),
    ("  n_layers: !!bool maybe\n", "line 3, column 13: invalid YAML: 'maybe' cannot be read as !!bool"),
    ("  n_layers: !!timestamp foo\n", "line 3, column 13: invalid YAML: 'foo' cannot be read as !!timestamp"),
    ("  <<: {n_layers: 2}\n", "line 3, column 3: invalid YAML: a merge key (<<) is not read"),
    ("  ? !!set {x: null}\n  : 1\n", "line 3, column 5: invalid YAML: a key must be a plain value"),
    ("  n_layers: !!map [1]\n", "line 3, column 13: invalid YAML: a list cannot be read as !!map"),
])
def test_yaml_python_cannot_construct_is_an_error_at_its_line(tmp_path, text, problem):
    # PyYAML's own readers fail on these as Python does (TypeError, ValueError, KeyError, AttributeError,
    # IndexError): each
    # is a one-line error naming the file and place, not a traceback
    path = tmp_path / "odd.yaml"
    path.write_text("name: odd\nmodel:\n" + text)
    with pytest.raises(SpecError) as caught:
        costplan.load_spec(path)
    assert caught.value.problems[0].startswith(problem)


def test_overrides_create_and_replace():
    data = {"model": {"d_model": 1, "attention": "flash"}}
    out = apply_overrides(data, ["model.d_model=2", "training.tokens=2e12", "model.attention.type=dense",
                                 "name=x"])
    assert out == {"model": {"d_model": 2, "attention": {"type": "dense"}}, "training": {"tokens": 2e12},
                   "name": "x"}
    assert data == {"model": {"d_model": 1, "attention": "flash"}}   # the input is not modified


def test_overrides_are_validated_like_the_file():
    with pytest.raises(SpecError, match=r"model\.n_layers: must be greater than 0, got -1"):
        costplan.load_spec("gpt2-small", ["model.n_layers=-1"])


def test_attention_shorthand():
    spec = costplan.load_spec({"model": {"vocab_size": 10, "d_model": 8, "n_layers": 1, "n_heads": 2,
                                         "max_seq_len": 8, "attention": "flash"}})
    assert spec.model.attention.type == "flash"


def test_spec_is_frozen():
    spec = costplan.load_spec("gpt2-small")
    with pytest.raises(Exception):
        spec.model.d_model = 1  # type: ignore[misc]


def test_hardware_file_relative_to_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # not the spec's folder: the path resolves against the spec file
    spec = costplan.load_spec(SPECS / "uses_gpu_file.yaml")
    e = costplan.estimate(spec)
    assert e.assumptions.gpu_name == "Lab GPU" and e.assumptions.peak_flops_per_gpu == 100e12
    assert e.memory.gpu_memory == 48 * 2**30


def test_python_api_round_trip():
    e = costplan.estimate(costplan.load_spec("llama3-8b"))
    assert set(e.model_dump()) == {"name", "params", "flops", "memory", "time", "assumptions", "scaling",
                                   "parallelism"}


def test_bias_overrides_follow_bias_unless_stated():
    base = {"vocab_size": 10, "d_model": 8, "n_layers": 1, "n_heads": 2, "max_seq_len": 8, "bias": False}
    m = costplan.load_spec({"model": base}).model
    assert (m.qkv_bias, m.o_bias) == (False, False)
    m = costplan.load_spec({"model": {**base, "o_bias": True}}).model
    assert (m.bias, m.qkv_bias, m.o_bias) == (False, False, True)


def test_an_unknown_block_names_the_field():
    with pytest.raises(SpecError, match=r"model\.block: 'serial' is not one of sequential, sandwich, parallel or "
                                        r"parallel_shared_norm"):
        costplan.load_spec("gpt2-small", ["model.block=serial"])


# ---------------------------------------------------------------------------------------------- uneven stages
# Megatron-Core's rules (TransformerConfig.__post_init__): 10 layers over 4 stages do not divide evenly; the first
# and last stages may take given counts, the rest dividing over the middle stages; or the embedding and loss count
# as layers of the first and last stages.
UNEVEN = "model: {vocab_size: 1000, d_model: 64, n_layers: 10, n_heads: 4, max_seq_len: 128}\nhardware: {count: 4}\n"


@pytest.mark.parametrize("section, message", [
    ("{pipeline: 4, first_stage_layers: 5, last_stage_layers: 6}",
     "parallelism.first_stage_layers: first_stage_layers (5) + last_stage_layers (6) = 11 is more than "
     "model.n_layers (10)"),
    ("{pipeline: 4, first_stage_layers: 5, last_stage_layers: 5}",
     "parallelism.first_stage_layers: first_stage_layers (5) + last_stage_layers (5) leaves no layer of "
     "model.n_layers (10) for 2 middle stages"),
    ("{pipeline: 4, first_stage_layers: 2}",     # 8 left over 3 middle stages
     "parallelism.pipeline: the 8 layers left by first_stage_layers (2) do not divide over 3 middle stages"),
    ("{pipeline: 2, first_stage_layers: 3, last_stage_layers: 3}",
     "parallelism.first_stage_layers: first_stage_layers (3) + last_stage_layers (3) = 6, not model.n_layers "
     "(10), with no middle stage"),
    ("{pipeline: 4, account_for_embedding: true}",    # 11 over 4
     "parallelism.pipeline: 4 does not divide model.n_layers + the embedding (11)"),
    ("{pipeline: 4, account_for_loss: true, last_stage_layers: 4}",
     "parallelism.account_for_loss: set with last_stage_layers; give the stages' layers one way (Megatron-Core "
     "allows one or the other)"),
    ("{pipeline: 1, first_stage_layers: 4}",
     "parallelism.first_stage_layers: set with pipeline 1; it splits the layers over pipeline stages"),
    ("{pipeline: 2, stage_layers: []}",     # not read as leaving it out
     "parallelism.stage_layers: is empty: give one depth per pipeline stage, or leave it out"),
    # interleaved: each stage's layers come in v chunks (3 is not a multiple of 2; the middle stages' 2 are)
    ("{pipeline: 4, virtual_stages: 2, first_stage_layers: 3, last_stage_layers: 3, micro_batches: 4}",
     "parallelism.first_stage_layers: 3 is not a multiple of virtual_stages (2)\n"
     "parallelism.last_stage_layers: 3 is not a multiple of virtual_stages (2)"),
    ("{pipeline: 4, virtual_stages: 2, first_stage_layers: 4, last_stage_layers: 4, micro_batches: 4}",
     "parallelism.virtual_stages: 2 does not divide each middle stage's layers (1)"),
    ("{pipeline: 4, virtual_stages: 2, account_for_embedding: true, account_for_loss: true, micro_batches: 4}",
     "parallelism.virtual_stages: 2 does not divide each stage's layers (model.n_layers + the embedding + the "
     "loss over 4 stages: 3)"),
])
def test_uneven_stage_errors(run, tmp_path, section, message):
    path = tmp_path / "spec.yaml"
    path.write_text(UNEVEN + f"parallelism: {section}\n")
    result = run("estimate", str(path))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"Error: {path}: {line}" for line in message.splitlines()]


@pytest.mark.parametrize("section", [
    "{pipeline: 4, first_stage_layers: 1, last_stage_layers: 3}",    # 1, 3, 3, 3
    "{pipeline: 4, last_stage_layers: 1}",                           # 3, 3, 3, 1
    "{pipeline: 4, account_for_embedding: true, account_for_loss: true}",   # 12 over 4: 2, 3, 3, 2
    "{pipeline: 2, first_stage_layers: 4, last_stage_layers: 6}",
    "{pipeline: 4, virtual_stages: 2, first_stage_layers: 2, last_stage_layers: 4, micro_batches: 4}",  # 2, 2, 2, 4
])
def test_uneven_splits_that_megatron_accepts(tmp_path, section):
    path = tmp_path / "spec.yaml"
    path.write_text(UNEVEN + f"parallelism: {section}\n")
    assert costplan.load_spec(str(path)).parallel.pipeline in (2, 4)


def test_overrides_on_a_loaded_spec_derive_its_defaults_again_as_set_does():
    # ci-flash: 4 heads of d_model 256 / 4 = 64, training.seq_len = max_seq_len 128, both derived. A copy with
    # d_model 2048 has heads of 512, as `--set` gives; with max_seq_len 64, sequences of 64.
    from costplan.loading import load_spec, with_overrides

    flash = Path(__file__).parents[1] / "specs" / "ci" / "flash.yaml"
    spec = load_spec(flash)
    wider = with_overrides(spec, ["model.d_model=2048"])
    assert wider.model.head_dim == 512 == load_spec(flash, ["model.d_model=2048"]).model.head_dim
    assert with_overrides(spec, ["model.max_seq_len=64"]).training.seq_len == 64
    assert with_overrides(wider, ["model.n_layers=4"]).model.head_dim == 512     # overrides accumulate
    # A copy made in code holds updates the mapping does not: its fields, derived ones included, are kept.
    copied = spec.model_copy(update={"name": "copied"})
    assert copied == spec.model_copy(update={"name": "copied"}) and copied.name == "copied"
    assert with_overrides(copied, ["model.d_model=2048"]).model.head_dim == 64
    assert with_overrides(copied, ["model.n_layers=4"]).name == "copied"


def test_a_file_cannot_set_the_folder_its_hardware_file_is_read_from(tmp_path):
    # base_dir is where the spec was read from; a file giving its own would have its hardware file checked in
    # one folder and used from another
    path = tmp_path / "moved.yaml"
    path.write_text("name: moved\nbase_dir: /tmp\nmodel: {n_layers: 2, d_model: 64, n_heads: 4, vocab_size: 100, "
                    "max_seq_len: 64}\n")
    with pytest.raises(SpecError, match="base_dir: unknown field"):
        costplan.load_spec(path)


def test_a_word_yaml_read_as_a_flag_is_said_to_be_one(tmp_path):
    # YAML 1.1 reads `off` as false: the message says why a word the user wrote came back as false
    path = tmp_path / "off.yaml"
    path.write_text("name: a\nmodel: {n_layers: 2, d_model: 64, n_heads: 4, vocab_size: 100, max_seq_len: 64}\n"
                    "training: {recompute: off}\n")
    with pytest.raises(SpecError, match=r"training.recompute: false is not one of .*\(YAML reads off, no, on and "
                                        r"yes as false or true: quote a word\)"):
        costplan.load_spec(path)
