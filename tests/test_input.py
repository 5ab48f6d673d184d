"""Bad and surprising input: numbers as people write them, names vs paths, oversized files and values, and the
plan and sweep options that used to be ignored or misread."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import costplan
from costplan import yamlio
from costplan.errors import SpecError
from costplan.loading import field_path
from costplan.spec import Spec
from costplan.sections import field_sections
from costplan.validation import Flag
from test_cli import TINY, errors, write


# ---------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("text, value", [("064", 64), ("0100000", 100_000), ("-007", -7), ("1_000", 1000),
                                         ("0x40", "0x40"), ("0o17", "0o17"), ("1:30", "1:30"),
                                         ("1.5", 1.5), (".5", 0.5), ("2e12", 2e12), ("1e-3", 0.001)])
def test_numbers_are_decimal(text, value):
    # YAML 1.1 reads 064 as octal 52, 0x40 as hex and 1:30 as base 60 (90); people and YAML 1.2 do not.
    assert yamlio.value(text) == value
    assert yamlio.loads(f"x: {text}") == {"x": value}


def test_leading_zeros_on_the_command_line_are_decimal(run):
    data = json.loads(run("estimate", TINY, "--gpus", "064", "--tokens", "0100000", "--format", "json").stdout)[0]
    assert data["assumptions"]["gpu_count"] == 64 and data["assumptions"]["tokens"] == 100_000


def test_hex_is_not_a_number(run):
    assert errors(run("estimate", TINY, "--gpus", "0x40")) == [
        f"Error: {TINY}: hardware.count: expected a whole number, got '0x40'"]


def test_an_integer_too_long_to_read(tmp_path, run):
    path = write(tmp_path, "model: {d_model: " + "9" * 5000 + "}\n")
    (line,) = errors(run("estimate", path))
    assert line.endswith("invalid YAML: an integer of more than 100 digits") and len(line) < 300


def _fields(sections, prefix=""):
    """Every dotted field path of the spec format with its annotation."""
    for cls in sections:
        for name, field in cls.model_fields.items():
            if field.exclude:
                continue
            inner = field_sections(field.annotation)
            yield f"{prefix}{name}", field.kind
            yield from _fields(inner, f"{prefix}{name}.")


FLAGS = {path for path, kind in _fields([Spec]) if getattr(kind, "inner", kind) is Flag}


@pytest.mark.parametrize("path", sorted({p for p, _ in _fields([Spec])} - FLAGS - {"base_dir"}))
def test_true_is_no_number_anywhere(path):
    # `parallelism.zero: true` used to be ZeRO 1: no field but a flag takes a boolean.
    base = {"model": {"vocab_size": 1000, "d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 128,
                      "moe": {"n_experts": 4, "top_k": 1}},
            "parallelism": {}}
    parts = path.split(".")
    data = json.loads(json.dumps(base))
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
    node[parts[-1]] = True
    with pytest.raises(SpecError) as info:
        costplan.load_spec(data)
    assert any(problem.startswith(path) for problem in info.value.problems), info.value.problems


def test_flags_found():   # the test above skips these: make sure it found the flags and not everything
    assert {"model.bias", "model.tie_embeddings", "parallelism.sequence_parallel"} <= FLAGS
    assert "parallelism.zero" not in FLAGS and len(FLAGS) < 23   # 22 with training.fp8_weight_cache


# ---------------------------------------------------------------------------------------------- names and paths
def test_a_folder_named_like_a_preset_does_not_hide_it(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gpt2-small").mkdir()
    (tmp_path / "a100-80gb").mkdir()
    (tmp_path / "epoch").mkdir()
    result = run("estimate", "gpt2-small", "--gpu", "a100-80gb", "--law", "epoch", "--tokens", "1e9")
    assert result.exit_code == 0 and result.stdout.startswith("gpt2-small: 124.4 M parameters")
    assert errors(run("estimate", "./gpt2-small")) == [
        "Error: gpt2-small: is a folder without a config.json; give a YAML spec, a Hugging Face config.json or a "
        "folder holding one"]


def test_a_file_is_a_path_only_when_it_looks_like_one_or_exists(tmp_path, monkeypatch):
    from costplan import sources

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").write_text("x: 1\n")
    assert sources.find("mine", ["a"]) == Path("mine")
    assert sources.find("missing.yaml", ["a"]) == Path("missing.yaml")      # reported by the reader
    assert sources.find("missing", ["a"]) is None
    assert sources.find("A", ["a", "b"]) == "a"                             # case ignored when unambiguous
    assert sources.find("A", ["a", "A2", "a2"]) == "a"


def test_bundled_names_in_any_case(run):
    result = run("estimate", "GPT2-Small", "--gpu", "H100-SXM", "--law", "Epoch", "--tokens", "1e9",
                 "--format", "json")
    data = json.loads(result.stdout)[0]
    assert data["name"] == "gpt2-small" and data["assumptions"]["gpu"] == "h100-sxm"
    assert costplan.load_spec("gpt2-small", ["hardware.gpu=H100-SXM"]).hardware.gpu == "h100-sxm"


@pytest.mark.parametrize("option", [None, "--gpu", "--law"])
@pytest.mark.parametrize("suffix", ["", ".yaml"])
def test_file_names_too_long(run, option, suffix):
    name = "a" * 300 + suffix
    args = ["estimate", name] if option is None else ["estimate", TINY, option, name]
    result = run(*args)
    (line,) = errors(result)
    assert result.exit_code == 2 and line.endswith("a file name is longer than 255 bytes") and len(line) < 200


LONG_PATH = "/".join(["a"] * 2100)      # 4,199 bytes of one-letter folders: no name too long, the path is


@pytest.mark.parametrize("args", [["estimate", LONG_PATH + ".yaml"], ["estimate", TINY, "--gpu", "./" + LONG_PATH],
                                  ["import", LONG_PATH + ".json"],
                                  ["plan", "--budget", "1e20", "--write", LONG_PATH + ".yaml"]])
def test_paths_too_long(run, args):
    result = run(*args)
    (line,) = errors(result)
    assert result.exit_code == 2 and line.endswith("the path is longer than 4095 bytes") and len(line) < 200


@pytest.mark.parametrize("command, suffix", [("estimate", ".yaml"), ("estimate", ".json"), ("import", ".json")])
def test_a_spec_that_is_a_device_or_a_pipe_is_refused_not_read(run, tmp_path, command, suffix):
    # /dev/zero would be read without end, a pipe would wait for a writer
    import os
    device, pipe = tmp_path / f"zero{suffix}", tmp_path / f"pipe{suffix}"
    device.symlink_to("/dev/zero")
    os.mkfifo(pipe)
    for path in (device, pipe):
        result = run(command, str(path))
        (line,) = errors(result)
        assert result.exit_code == 2 and line.endswith("is not a regular file (a device, a pipe or a socket)")


def test_control_characters_in_a_name(run):
    (line,) = errors(run("estimate", TINY, "--set", "name=red\x1b[31mtext"))
    assert line == f"Error: {TINY}: name: contains the control character '\\x1b'; a name is printed as it is"
    # a line separator ends a line as a newline does: a name is one line
    (line,) = errors(run("estimate", TINY, "--set", "name=a\u2028b"))
    assert line == f"Error: {TINY}: name: contains the line separator '\\u2028'; a name is printed as it is"


@pytest.mark.parametrize("command", ["estimate", "serve"])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_line_break_in_a_file_name_keeps_its_error_one_line(command, suffix, run, tmp_path):
    path = tmp_path / f"a\nb{suffix}"
    (line,) = errors(run(command, str(path)))
    assert line == f"Error: {tmp_path}/a\\nb{suffix}: no such file"


def test_control_characters_in_a_field_name_are_escaped(run, tmp_path):
    path = write(tmp_path, "model: {vocab_size: 10, d_model: 8, n_layers: 1, n_heads: 1, max_seq_len: 8}\n"
                           "\"x\\e[2J\": 1\n")
    assert errors(run("estimate", path)) == [f"Error: {path}: x\\x1b[2J: unknown field"]


# ---------------------------------------------------------------------------------------------- huge input
def _alias_bomb(levels: int) -> str:
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nmodel: {{d_model: *a{levels - 1}}}\n"


@pytest.mark.parametrize("levels", [7, 9])
def test_aliases_cannot_expand_a_small_file_into_a_huge_one(run, tmp_path, levels):
    text = _alias_bomb(levels)
    assert len(text) < 600
    (line,) = errors(run("estimate", write(tmp_path, text)))
    assert line.endswith("invalid YAML: this document holds more than 100,000 values, aliases expanded")


def test_an_empty_spec_name_is_no_folder(run):
    # Path("") is the current folder: "" had been read as `.`, "a folder without a config.json"
    assert errors(run("estimate", "")) == ["Error: '': no spec named: give a preset name, a YAML spec, a Hugging "
                                           "Face config.json or a folder holding one"]


def test_a_date_is_echoed_as_written(run):
    # YAML reads 2000-01-01 as a date, which a message had shown as datetime.date(2000, 1, 1)
    assert errors(run("estimate", "llama2-7b", "--set", "model.n_layers=2000-01-01")) == [
        "Error: llama2-7b: model.n_layers: expected a whole number, got 2000-01-01"]


def test_a_value_that_contains_itself(run, tmp_path):
    (line,) = errors(run("estimate", write(tmp_path, "model: &a [*a]\n")))
    assert line.endswith("invalid YAML: an alias refers to a value that contains it")


def test_aliases_within_the_limit_still_work():
    assert yamlio.loads("a: &x {b: 1}\nc: *x\n") == {"a": {"b": 1}, "c": {"b": 1}}


@pytest.mark.parametrize("name", ["hardware.yaml", "kernels.yaml"])
def test_bundled_tables_have_no_aliases(name):
    # yamlio.loads(bundled=True) skips the expansion bound for these files: it holds only while they have none.
    import yaml

    from costplan import bundled

    kinds = {type(token).__name__ for token in yaml.scan(bundled.text("data", name))}
    assert "KeyToken" in kinds and not kinds & {"AliasToken", "AnchorToken"}


def test_the_bound_on_aliases_is_skipped_only_when_asked():
    bomb = _alias_bomb(7)
    import yaml

    with pytest.raises(yaml.YAMLError, match="aliases expanded"):
        yamlio.loads(bomb)
    assert len(yamlio.loads(bomb, bundled=True)["model"]["d_model"]) == 9


def test_large_values_are_cut_short_in_messages(run, tmp_path):
    path = write(tmp_path, _alias_bomb(4) + "training: {optimizer: " + "x" * 10_000 + "}\n")
    lines = errors(run("estimate", path))
    assert any("model.d_model: expected a whole number, got [[[...]" in line for line in lines)
    assert any("training.optimizer: 'xxxx" in line for line in lines)
    assert all(len(line) < 400 for line in lines)


def test_shown_and_printable():
    from costplan import errors as errs

    assert len(errs.shown("x" * 10**6)) <= errs.MAX_SHOWN
    assert errs.shown([[1] * 9] * 9).startswith("[[1, 1, 1, 1, ...], [1, 1, 1, 1, ...]")
    assert errs.printable("a\x1bb\u202ec") == "a\\x1bb\\u202ec"
    assert errs.printable("p" * 500, cut=False) == "p" * 500


# ---------------------------------------------------------------------------------------------- finite results
def test_an_mfu_too_small_to_mean_anything(run):
    # 1e-300 used to overflow the table's formatting and print Infinity in JSON.
    assert errors(run("estimate", "llama2-7b", "--mfu", "1e-300", "--tokens", "1e18")) == [
        "Error: llama2-7b: hardware.mfu: 1e-300 is too small (costplan accepts from 0.0001)"]


def test_the_slowest_accepted_inputs_give_finite_json(run, tmp_path):
    gpu = write(tmp_path, "name: slow\npeak_tflops: {bf16: 0.000001}\nmemory_gib: 0.000001\n"
                          "memory_bandwidth_gbs: 0.000001\ninterconnect_gbs: 0.000001\nmfu: 0.0001\n"
                          "usd_per_gpu_hour: 1000000\n", "slow.yaml")
    result = run("estimate", "llama2-70b", "--gpu", gpu, "--mfu", "1e-4", "--tokens", "1e18", "--format", "json")
    assert result.exit_code == 0

    def refuse(constant):
        raise AssertionError(f"JSON holds {constant}")

    data = json.loads(result.stdout, parse_constant=refuse)[0]
    assert data["time"]["cost_usd"] > 1e30


def test_a_peak_too_small(run, tmp_path):
    gpu = write(tmp_path, "name: x\npeak_tflops: {bf16: 1e-300}\nmemory_gib: 8\nmemory_bandwidth_gbs: 1\n"
                          "interconnect_gbs: 1\nmfu: 0.5\nusd_per_gpu_hour: 1\n", "gpu.yaml")
    assert errors(run("estimate", TINY, "--gpu", gpu)) == [
        f"Error: {TINY}: hardware.gpu: {gpu}: peak_tflops.bf16: 1e-300 is too small (costplan accepts from 1e-06)"]


def test_a_law_beyond_floating_point(run, tmp_path):
    law = write(tmp_path, "E: 1\nA: 1e30\nB: 0.000001\nalpha: 0.000001\nbeta: 0.000001\n", "odd.yaml")
    for args in (["estimate", TINY, "--law", law], ["plan", "--budget", "1e20", "--law", law]):
        (line,) = errors(run(*args))
        assert line.startswith("Error: --law odd: G is not a finite positive number with E=1.0, A=1e+30")




def test_set_takes_the_keys_vary_takes(run):
    short = json.loads(run("estimate", TINY, "--set", "n_layers=3", "--format", "json").stdout)[0]
    long = json.loads(run("estimate", TINY, "--set", "model.n_layers=3", "--format", "json").stdout)[0]
    assert short == long and short["params"]["total"] != json.loads(
        run("estimate", TINY, "--format", "json").stdout)[0]["params"]["total"]
    assert errors(run("estimate", TINY, "--set", "n_layer=3")) == [
        "Error: --set n_layer=3: model.n_layer: unknown field (did you mean 'n_layers'?); model has "
        + ", ".join(sorted(n for n, f in costplan.spec.ModelSpec.model_fields.items() if not f.exclude))]
    assert field_path("moe.top_k") == ("model", "moe", "top_k")


# ---------------------------------------------------------------------------------------------- suggestions
def test_words_in_any_case_are_accepted():
    spec = costplan.load_spec({"model": {"vocab_size": 10, "d_model": 64, "n_layers": 1, "n_heads": 4,
                                         "max_seq_len": 8, "mlp": "SwiGLU", "norm": "RMSNorm", "position": "RoPE",
                                         "attention": {"type": "Sliding_Window", "window": 4}},
                               "training": {"precision": "BF16", "optimizer": "AdamW"}})
    assert (spec.model.mlp, spec.model.norm, spec.model.position, spec.model.attention.type) == (
        "swiglu", "rmsnorm", "rope", "sliding_window")
    assert (spec.training.precision, spec.training.optimizer) == ("bf16", "adamw")
    assert costplan.load_spec({**spec.model_dump(exclude_none=True), "model": {
        **spec.model.model_dump(exclude_none=True), "attention": "FLASH"}}).model.attention.type == "flash"


@pytest.mark.parametrize("override, suggestion", [
    ("model.mlp=swi-glu", "swiglu"), ("model.norm=rms_norm", "rmsnorm"), ("training.precision=bfloat16", "bf16"),
    ("model.mlp=silu", "swiglu"), ("training.optimizer=adam_w", "adamw"),
])
def test_values_suggested_from_other_spellings(run, override, suggestion):
    (line,) = errors(run("estimate", TINY, "--set", override))
    assert line.endswith(f"(did you mean '{suggestion}'?)")


@pytest.mark.parametrize("name, field", [
    ("num_attention_heads", "n_heads"), ("hidden_size", "d_model"), ("num_hidden_layers", "n_layers"),
    ("intermediate_size", "d_ff"), ("num_key_value_heads", "n_kv_heads"), ("max_position_embeddings", "max_seq_len"),
    ("n_embd", "d_model"), ("tie_word_embeddings", "tie_embeddings"), ("Vocab_Size", "vocab_size"),
])
def test_fields_suggested_from_hugging_face_names(run, tmp_path, name, field):
    path = write(tmp_path, f"model: {{{name}: 4}}\n")
    assert f"Error: {path}: model.{name}: unknown field (did you mean '{field}'?)" in errors(run("estimate", path))


def test_gpu_suggested_regardless_of_case(run):
    (line,) = errors(run("estimate", TINY, "--gpu", "H100"))
    assert "unknown GPU 'H100' (did you mean 'h100-sxm'?)" in line


@pytest.mark.parametrize("text", ["064", "1_000", "2e12", "-1.5e3", "1.", ".5", "+.5", "1__0.5", " 7 ", ".inf",
                                  "-.inf", "1e-300", "0x40", "1:30", "e5", "true"])
def test_command_line_values_read_like_yaml(text):
    # value() reads plain numbers without a YAML parse: it must agree with the loader on every form.
    assert repr(yamlio.value(text)) == repr(yamlio.loads(text))


@pytest.mark.parametrize("args", [["import", "a" * 300 + ".json"], ["import", "a" * 300],
                                  ["import", "specs/ci/hf/tiny/llama.json", "-o", "a" * 300 + ".yaml"],
                                  ["plan", "--budget", "1e20", "--write", "a" * 300 + ".yaml"]])
def test_file_names_too_long_for_import_and_outputs(run, args):
    result = run(*args)
    (line,) = errors(result)
    assert result.exit_code == 2 and line.endswith("a file name is longer than 255 bytes") and len(line) < 200


def test_the_python_api_names_its_misuse():
    # a preset name where a Spec goes, one override string where a list goes, no source at all: TypeErrors that
    # say what to pass (not an AttributeError from deep inside, nor a string read character by character)
    with pytest.raises(TypeError, match=r"estimate\(\) takes a Spec, not str: costplan.load_spec"):
        costplan.estimate("llama2-7b")
    with pytest.raises(TypeError, match="as a list of KEY=VALUE strings"):
        costplan.load_spec("llama2-7b", "training.seq_len=2048")
    with pytest.raises(TypeError, match="takes a preset name, a path, a mapping or a Spec, not NoneType"):
        costplan.load_spec(None)
    assert costplan.load_spec("llama2-7b", ("training.seq_len=2048",)).training.seq_len == 2048
    # an override that is no string: what to pass (it had been an AttributeError from the parser); None: none
    with pytest.raises(TypeError, match=r"each override as a KEY=VALUE string.*not tuple \(\('training"):
        costplan.load_spec("llama2-7b", [("training.seq_len", 2048)])
    assert costplan.load_spec("llama2-7b", None) == costplan.load_spec("llama2-7b")


GPT2_MAPPING = {"model": {"vocab_size": 50257, "d_model": 768, "n_layers": 12, "n_heads": 12, "max_seq_len": 1024}}


def test_a_spec_built_directly_is_estimated_as_one_loaded():
    # equal specs, equal estimates: training.seq_len defaulted from max_seq_len is said so of both (a Spec built
    # from keywords had said "training.seq_len", the mapping it came from not being kept)
    direct, loaded = costplan.Spec(**GPT2_MAPPING), costplan.load_spec(GPT2_MAPPING)
    assert direct == loaded and costplan.estimate(direct) == costplan.estimate(loaded)
    assert costplan.estimate(direct).assumptions.seq_len_source == "model.max_seq_len"
    given = costplan.load_spec({**GPT2_MAPPING, "training": {"seq_len": 1024}})
    assert costplan.estimate(given).assumptions.seq_len_source == "training.seq_len"


def test_a_loaded_spec_does_not_follow_the_callers_mapping():
    # a notebook reusing its dict for the next experiment: the spec loaded before is as it was loaded
    mapping = {"model": dict(GPT2_MAPPING["model"]), "training": {}}
    spec = costplan.load_spec(mapping)
    before = costplan.estimate(spec)
    mapping["training"]["seq_len"] = 512
    mapping["model"]["d_model"] = 1536
    assert costplan.estimate(spec) == before
    assert costplan.load_spec(spec, ["model.n_layers=24"]).model.d_model == 768


def test_a_spec_changed_through_load_spec_derives_its_defaults_again():
    # load_spec(spec, overrides): a validated copy, defaults following the new values as with --set (head_dim
    # and d_ff from a new d_model), where model_copy would keep the old ones unchecked
    spec = costplan.load_spec(GPT2_MAPPING)
    wider = costplan.load_spec(spec, ["model.d_model=1536"])
    assert (wider.model.head_dim, wider.model.d_ff) == (128, 6144) and wider.label == spec.label
    with pytest.raises(SpecError, match=r"training.seq_len: 4096 is longer than model.max_seq_len \(1024\)"):
        costplan.load_spec(spec, ["training.seq_len=4096"])
    # so from a Spec built from keywords, whose seq_len follows a new max_seq_len too (it had kept 1024)
    direct = costplan.load_spec(costplan.Spec(**GPT2_MAPPING), ["model.d_model=1536", "model.max_seq_len=2048"])
    assert (direct.model.head_dim, direct.model.d_ff, direct.training.seq_len) == (128, 6144, 2048)


def test_numpy_numbers_are_numbers():
    np = pytest.importorskip("numpy")
    spec = costplan.load_spec({**GPT2_MAPPING, "hardware": {"count": np.int64(8)},
                               "training": {"tokens": np.int64(10**10), "micro_batch_size": np.float64(4)}})
    assert (spec.hardware.count, spec.training.tokens, spec.training.micro_batch_size) == (8, 10**10, 4)
    assert type(spec.hardware.count) is int
    for bad in (True, np.bool_(True), np.float32(2.5)):     # a boolean is no count, nor a fraction
        with pytest.raises(SpecError, match="hardware.count: expected a whole number"):
            costplan.load_spec({**GPT2_MAPPING, "hardware": {"count": bad}})


def test_the_lazily_imported_names_are_listed():
    assert {"estimate", "load_spec", "Spec", "SpecError", "build_model"} <= set(dir(costplan))
    assert "annotations" not in dir(costplan)


def test_an_empty_optional_section_is_its_defaults(tmp_path):
    # `hardware:` with every key under it commented out reads as YAML null: the section at its defaults, as a
    # section left out is (it had been "expected a mapping of fields, got nothing" for hardware and serving)
    base = "model: {vocab_size: 1000, d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 128}\n"
    bare = costplan.load_spec(write(tmp_path, base, "bare.yaml"))
    empty = costplan.load_spec(write(tmp_path, base + "training:\nhardware:\nserving:\n", "empty.yaml"))
    assert (empty.training, empty.hardware, empty.serving) == (bare.training, bare.hardware, bare.serving)
    # a search (plan --deadline) reads an empty hardware section as the defaults too: its GPU count is the
    # search's, not the default one GPU a tensor degree of 2 does not divide
    from costplan.loading import load_for_search
    laid = base + "parallelism: {tensor: 2}\n"
    assert load_for_search(write(tmp_path, laid + "hardware:\n", "null_hw.yaml")).hardware == \
        load_for_search(write(tmp_path, laid, "no_hw.yaml")).hardware
    # an empty parallelism section is no section: the layout is searched, as without one
    assert costplan.load_spec(write(tmp_path, base + "parallelism:\n", "open.yaml")).parallelism is None


def test_a_spec_built_from_bad_keywords_raises_a_costplan_error():
    with pytest.raises(costplan.CostplanError, match="model.n_heads: required field is missing"):
        costplan.Spec(model={"vocab_size": 10, "d_model": 8, "n_layers": 1, "max_seq_len": 8})
