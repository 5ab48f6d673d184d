"""The command line through click's CliRunner: output formats, the JSON contract, and every error path."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import costplan

SPECS = Path(__file__).parent / "specs"
TINY = str(SPECS / "tiny.yaml")


def test_version_and_help(run):
    assert run("--version").output.strip() == f"costplan, version {costplan.__version__}"
    help_text = run("--help").output
    for command in ("estimate", "presets", "hardware"):
        assert command in help_text


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "costplan", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"costplan, version {costplan.__version__}"


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs a device that is always full")
@pytest.mark.parametrize("args", [["presets"], ["estimate", "gpt2-small", "--format", "json"]])
def test_an_output_that_cannot_be_written_is_one_line(args):
    # a full disk had raised OSError with a traceback through click.echo
    with open("/dev/full", "w") as full:
        out = subprocess.run([sys.executable, "-m", "costplan", *args], stdout=full, stderr=subprocess.PIPE,
                             text=True)
    assert out.returncode == 1 and out.stderr.splitlines()[-1:] == [
        "Error: cannot write the output: No space left on device"]
    assert "Traceback" not in out.stderr


def test_estimate_table(run):
    result = run("estimate", "gpt2-small")
    assert result.exit_code == 0
    out = result.stdout
    assert out.splitlines()[0].startswith("gpt2-small: 124.4 M parameters")
    for text in ("124.4 M", "MFLOP", "EFLOP", "GiB", "GPU-hours", "attention", "share"):
        assert text in out, text
    # stderr carries the default-tokens warning, not stdout
    assert "20 tokens per parameter" in result.stderr and "warning" not in out


def test_estimate_json_contract(run):
    result = run("estimate", "llama2-7b", "gpt2-small", "--format", "json")
    data = json.loads(result.stdout)
    assert [d["name"] for d in data] == ["llama2-7b", "gpt2-small"]
    d = data[0]
    assert set(d) >= {"name", "params", "flops", "memory", "time", "assumptions"}
    assert set(d["params"]) >= {"total", "active", "embedding", "non_embedding", "by_component"}
    assert set(d["flops"]) >= {"forward_per_token", "training_per_token", "hardware_per_token", "training_total"}
    assert set(d["memory"]) >= {"weights", "gradients", "optimizer", "activations", "total_per_gpu", "fits"}
    assert set(d["time"]) >= {"gpu_hours", "wall_clock_days", "cost_usd"}
    assert d["params"]["total"] == d["params"]["active"] == 6_738_415_616      # exact integers, unrounded
    assert d["flops"]["training_total"] == costplan.estimate(costplan.load_spec("llama2-7b")).flops.training_total


def test_estimate_says_where_the_batch_comes_from(run):
    # llama2-7b fixes its batch; llama3-8b does not, and its layout (1 × 1 × 64 on 64 GPUs) makes 64 sequences
    fixed, open_ = json.loads(run("estimate", "llama2-7b", "llama3-8b", "--set", "hardware.gpu=h100-sxm",
                                  "--set", "hardware.count=64", "--format", "json").stdout)
    assert fixed["assumptions"]["global_batch_source"] == "training.global_batch_size"
    assert "no training.global_batch_size" in open_["assumptions"]["global_batch_source"]
    par = open_["parallelism"]
    assert open_["assumptions"]["global_batch_size"] == par["data"] * par["micro_batches"] == 64
    table = run("estimate", "llama3-8b", "--set", "hardware.gpu=h100-sxm", "--set", "hardware.count=64").stdout
    assert "64 sequences of 8192 (micro_batch_size × micro-batches × data ranks: no training.global_batch_size)" \
        in table


def test_estimate_csv_and_markdown(run):
    rows = list(csv.DictReader(io.StringIO(run("estimate", "gpt2-small", TINY, "--format", "csv").stdout)))
    assert [r["name"] for r in rows] == ["gpt2-small", "tiny"]
    assert rows[0]["params.total"] == "124439808"
    # flags and lists as JSON spells them, not Python's True and ['a']
    assert rows[0]["memory.fits"] in ("true", "false") and rows[0]["assumptions.fused_kernels"] == "[]"
    gemma = next(csv.DictReader(io.StringIO(run("estimate", "specs/ci/hf/gemma-2-9b", "--format", "csv").stdout)))
    assert json.loads(gemma["assumptions.config_defaults"]) == ["tie_word_embeddings"]
    md = run("estimate", "gpt2-small", "--format", "markdown").stdout
    assert md.startswith("### gpt2-small") and "|" in md and "---" in md


def test_shortcut_options_and_set(run):
    data = json.loads(run("estimate", TINY, "--format", "json", "--gpu", "h100-sxm", "--gpus", "16",
                          "--tokens", "2e9", "--mfu", "0.5", "--set", "model.n_layers=4").stdout)[0]
    a = data["assumptions"]
    assert (a["gpu"], a["gpu_count"], a["tokens"], a["mfu_override"]) == ("h100-sxm", 16, 2_000_000_000, 0.5)
    assert data["params"]["total"] == costplan.estimate(costplan.load_spec(TINY, ["model.n_layers=4"])).params.total


def test_memory_warning_goes_to_stderr(run):
    result = run("estimate", "llama2-7b", "--gpus", "1")
    assert "does not fit" in result.stderr and "does not fit" in result.stdout   # note in table, warning apart


def test_a_step_model_time_of_a_kind_of_run_it_underestimates_says_so(run, tmp_path):
    # every published MoE run, and every one at context parallelism 4 or 8, took longer than predicted
    # (costs/accuracy.py, pinned to the validation table by test_training_bench.py)
    moe = run("estimate", "mixtral-8x7b", "--gpus", "16").stderr
    assert "mixtral-8x7b: the step model underestimates mixture-of-experts training" in moe
    assert "took 1.4 to 5.9 times its predicted step" in moe and "context-parallel" not in moe
    assert "the times, GPU-hours and costs from it are likely low" in moe
    long = ["--gpus", "16", "--set", "model.max_seq_len=131072", "--set", "training.seq_len=131072"]
    wide = run("estimate", "llama3-8b", *long, "--set", "parallelism.context=4").stderr
    assert "underestimates context-parallel (degree 4 or more, 128k tokens or more) training" in wide
    assert "mixture" not in wide
    # both, as every such published run had: not degree 2 at 128k, nor degree 4 at 64k
    assert "underestimates" not in run("estimate", "llama3-8b", *long, "--set", "parallelism.context=2").stderr
    assert "underestimates" not in run("estimate", "llama3-8b", "--gpus", "16", "--set", "model.max_seq_len=65536",
                                       "--set", "training.seq_len=65536", "--set", "parallelism.context=4").stderr
    # not of a dense model, nor of a time at the user's MFU, which the step model did not compute
    assert "underestimates" not in run("estimate", "llama3-8b", "--gpus", "16").stderr
    assert "underestimates" not in run("estimate", "mixtral-8x7b", "--gpus", "16", "--mfu", "0.3").stderr
    # JSON carries the same as time.caveats, for a script to read
    (caveat,) = json.loads(run("estimate", "mixtral-8x7b", "--gpus", "16", "--format", "json").stdout)[0]["time"][
        "caveats"]
    assert (caveat["kind"], caveat["runs"], caveat["least"], caveat["most"]) == ("mixture-of-experts", 4, 1.4, 5.9)
    assert "Megatron-Bridge" in caveat["compared"]
    for args in (["llama3-8b"], ["mixtral-8x7b", "--mfu", "0.3"]):
        assert json.loads(run("estimate", *args, "--gpus", "16", "--format", "json").stdout)[0]["time"][
            "caveats"] == []
    # nor of the memory figure, which shows no time
    assert "underestimates" not in run("plot", "memory", "mixtral-8x7b", "--gpus", "16",
                                       "-o", str(tmp_path / "m.png")).stderr
    # plan --deadline: once, of the GPUs it plans, also where the spec's own MFU times its own GPU type alone
    planned = run("plan", "mixtral-8x7b", "--deadline", "30d", "--set", "hardware.mfu=0.3",   # its own: h100-sxm
                  "--gpu", "h100-sxm", "--gpu", "a100-80gb").stderr
    assert planned.count("underestimates mixture-of-experts") == 1 and "likely too few and too low" in planned
    assert "underestimates" not in run("plan", "mixtral-8x7b", "--deadline", "30d", "--mfu", "0.3",
                                       "--gpu", "a100-80gb").stderr
    # where no run meets the deadline, of the quickest one it shows; JSON carries it as each option's caveats
    missed = run("plan", "mixtral-8x7b", "--set", "training.global_batch_size=16", "--set", "training.tokens=1e12",
                 "--deadline", "1d", "--gpu", "h100-sxm", "--format", "json")
    (option,) = json.loads(missed.stdout)
    assert option["gpus"] is None and option["fastest"] and missed.stderr.count("underestimates mixture") == 1
    assert [c["kind"] for c in option["caveats"]] == ["mixture-of-experts"]
    # sweep: once, of the kinds its points are of, whatever makes them so
    swept = run("sweep", "mixtral-8x7b", "--vary", "hardware.count=16,32").stderr
    assert swept.count("underestimates mixture-of-experts") == 1
    varied = run("sweep", "llama3-8b", *long, "--vary", "parallelism.context=1,2,4,8").stderr
    assert varied.count("underestimates context-parallel") == 1
    assert "underestimates mixture" in run("sweep", "mixtral-8x7b", "--gpus", "16",
                                            "--vary", "hardware.mfu=null,0.3").stderr
    assert "underestimates" not in run("sweep", "mixtral-8x7b", "--vary", "hardware.count=16,32",
                                       "--mfu", "0.3").stderr


def test_memory_warning_names_what_would_lower_it(run):
    # searched layouts: none of them fits, so more GPUs or recomputation, not the sharding the search already tried
    searched = run("estimate", "llama3-70b", "--set", "hardware.count=12").stderr
    assert "(none of 12 layouts on 12 GPUs fits; the one needing least memory)" in searched
    assert "training.recompute: full" in searched and "more GPUs (hardware.count)" in searched
    assert "zero" not in searched
    # the spec's own layout: ZeRO 3 only where there are data ranks to shard over
    alone = run("estimate", "llama3-70b", "--set", "hardware.count=8", "--set", "parallelism.tensor=8").stderr
    shared = run("estimate", "llama3-70b", "--set", "hardware.count=16", "--set", "parallelism.tensor=8").stderr
    assert "with the spec's parallelism section" in alone and "parallelism.zero: 3" not in alone
    assert "parallelism.zero: 3" in shared
    # under a pipeline ZeRO 3 is refused (spec_rules): the hint says it needs fewer stages
    piped = run("estimate", "llama3-70b", "--set", "hardware.gpu=h100-sxm", "--set", "hardware.count=64", "--set",
                "parallelism.tensor=2", "--set", "parallelism.pipeline=4", "--set", "parallelism.zero=1", "--set",
                "training.micro_batch_size=4").stderr
    assert "fewer pipeline stages with parallelism.zero: 3" in piped
    recomputed = run("estimate", "llama3-70b", "--set", "hardware.count=1", "--set", "training.recompute=full").stderr
    assert "(one GPU)" in recomputed and "training.recompute" not in recomputed


def test_presets_and_hardware_listings(run):
    presets = run("presets").stdout
    for name in ("gpt2-small", "gpt3-175b", "llama2-70b", "llama3-8b"):
        assert name in presets
    assert "Touvron et al. 2023" in presets
    listed = json.loads(run("presets", "--format", "json").stdout)
    assert {p["name"]: p["parameters"] for p in listed}["llama2-7b"] == 6_738_415_616
    # the table cites (the source's first line); the JSON keeps the notes that follow it
    (mistral,) = [line for line in presets.splitlines() if line.startswith("mistral-7b ")]
    assert mistral.endswith('Jiang et al. 2023, "Mistral 7B", Table 1; HF config mistralai/Mistral-7B-v0.1')
    assert {p["name"]: p["source"] for p in listed}["mistral-7b"].endswith("left to the default (with a warning).")
    # the citation ends before the notes begin ("...DeepSeek-V3 671B parameters" had run them together); heads as
    # two numbers, which a spreadsheet does not read as the date "16/8"
    deepseek = {p["name"]: p for p in listed}["deepseek-v3"]
    assert "HF config deepseek-ai/DeepSeek-V3. 671B parameters in total" in deepseek["source"]
    gemma = {p["name"]: p for p in listed}["gemma2-9b"]
    assert (gemma["n_heads"], gemma["n_kv_heads"]) == (16, 8) and "heads" not in gemma
    assert "16/8" in next(line for line in presets.splitlines() if line.startswith("gemma2-9b "))
    hardware = run("hardware").stdout
    for name in ("v100", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h100-sxm-96gb", "h200", "b200", "l4",
                 "l40s", "rtx-4090", "mi300x", "tpu-v5e", "tpu-v5p"):
        assert name in hardware
    # the table's columns are named as JSON's keys: key (what --gpu takes), name (the device's)
    assert hardware.splitlines()[0].split()[:2] == ["key", "name"]
    entries = json.loads(run("hardware", "--format", "json").stdout)
    assert {e["key"]: e["name"] for e in entries}["v100"] in hardware.splitlines()[2]
    assert {e["key"]: e["peak_tflops"]["bf16"] for e in entries if "bf16" in e["peak_tflops"]}["h100-sxm"] == 989


def test_user_hardware_file_via_gpu_option(run):
    data = json.loads(run("estimate", TINY, "--gpu", str(SPECS / "gpu.yaml"), "--format", "json").stdout)[0]
    assert data["assumptions"]["gpu_name"] == "Lab GPU"


# ---------------------------------------------------------------------------------------------- errors
def errors(result) -> list[str]:
    """The error lines, after checking the contract: exit 2, stderr only, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("Error: ") for line in lines)
    return lines


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BASE = "model: {vocab_size: 1000, d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 128}\n"


def test_missing_file(run):
    assert errors(run("estimate", "nope/missing.yaml")) == ["Error: nope/missing.yaml: no such file"]


def test_unknown_preset_suggests(run):
    (line,) = errors(run("estimate", "lama2-7b"))
    assert "no such file or preset (did you mean 'llama2-7b'?)" in line


def test_empty_file(run):
    (line,) = errors(run("estimate", str(SPECS / "empty.yaml")))
    assert line.endswith("empty.yaml: the file is empty; a spec needs at least a `model` section")


def test_directory(run, tmp_path, monkeypatch):
    (line,) = errors(run("estimate", str(tmp_path)))
    assert line == (f"Error: {tmp_path}: is a folder without a config.json; give a YAML spec, a Hugging Face "
                    "config.json or a folder holding one")
    # a bare folder name that is no preset is said to be that folder, not a missing file or preset
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    assert errors(run("estimate", "adir")) == [
        "Error: adir: is a folder without a config.json; give a YAML spec, a Hugging Face config.json or a folder "
        "holding one"]


def test_invalid_yaml_names_the_line(run):
    (line,) = errors(run("estimate", str(SPECS / "bad_yaml.yaml")))
    assert "bad_yaml.yaml: line 4, column 11: invalid YAML" in line


def test_root_not_a_mapping(run):
    (line,) = errors(run("estimate", str(SPECS / "list_root.yaml")))
    assert line.endswith("the top level must be a mapping with a `model` section, not a list")


def test_another_kind_of_yaml_file_is_one_line(run, tmp_path):
    # a compose file had been an unknown field per key and a missing model
    path = write(tmp_path, 'version: "3"\nservices: {web: {image: nginx}}\nvolumes: {}\nnetworks: {}\nx: 1\n')
    assert errors(run("estimate", path)) == [f"Error: {path}: not a costplan spec: no `model` section, and none of "
                                             "its top-level keys (version, services, volumes, networks, …) is a spec's"]
    # keys a spec's are close to are still typos to correct, each named
    path = write(tmp_path, "modle: {}\ntrainng: {}\n")
    lines = errors(run("estimate", path))
    assert f"Error: {path}: modle: unknown field (did you mean 'model'?)" in lines


def test_every_unknown_override_key_is_named_at_once(run):
    # the first had stopped the loading, hiding the second
    lines = errors(run("estimate", TINY, "--set", "model.foo=1", "--set", "model.n_layers=2", "--set", "model.bar=2"))
    assert [line.split(":")[0] for line in lines] == ["Error", "Error"]
    assert lines[0].startswith("Error: --set model.foo=1: model.foo: unknown field")
    assert lines[1].startswith("Error: --set model.bar=2: model.bar: unknown field")
    lines = errors(run("sweep", TINY, "--vary", "n_layers=1,2", "--set", "model.foo=1", "--set", "model.bar=2"))
    assert [line.split(": ")[1] for line in lines] == ["--set model.foo=1", "--set model.bar=2"]


def test_unknown_keys_suggest_the_closest(run, tmp_path):
    path = write(tmp_path, BASE.replace("n_layers", "n_layer") + "trainng: {}\n")
    lines = errors(run("estimate", path))
    assert f"Error: {path}: model.n_layer: unknown field (did you mean 'n_layers'?)" in lines
    assert f"Error: {path}: trainng: unknown field (did you mean 'training'?)" in lines
    assert f"Error: {path}: model.n_layers: required field is missing" in lines


@pytest.mark.parametrize("override, message", [
    ("model.d_model=abc", "model.d_model: expected a whole number, got 'abc'"),
    ("model.d_model=64.5", "model.d_model: expected a whole number, got 64.5"),
    ("model.n_layers=true", "model.n_layers: expected a whole number, got true"),     # spelt as written
    ("model.n_layers=null", "model.n_layers: expected a whole number, got null"),
    ("model.bias=maybe", "model.bias: expected true or false, got 'maybe'"),
    ("model=7", "model: expected a mapping of fields, got a number"),
    ("hardware.gpu=7", "hardware.gpu: expected text, got a number"),
    ("hardware.mfu=high", "hardware.mfu: expected a number, got 'high'"),
])
def test_wrong_types(run, override, message):
    assert errors(run("estimate", TINY, "--set", override)) == [f"Error: {TINY}: {message}"]


def test_a_bad_head_count_is_reported_once(run):
    # gpt2-small leaves n_kv_heads to default to n_heads: it is not reported again as -4
    assert errors(run("estimate", "gpt2-small", "--set", "model.n_heads=-4")) == [
        "Error: gpt2-small: model.n_heads: must be greater than 0, got -4"]


@pytest.mark.parametrize("field", ["vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len", "d_ff"])
@pytest.mark.parametrize("value", [0, -3])
def test_zero_or_negative_sizes(run, field, value):
    assert errors(run("estimate", TINY, "--set", f"model.{field}={value}")) == [
        f"Error: {TINY}: model.{field}: must be greater than 0, got {value}"]


def test_head_counts_that_do_not_divide(run):
    assert errors(run("estimate", TINY, "--set", "model.n_kv_heads=3")) == [
        f"Error: {TINY}: model.n_kv_heads: 3 does not divide n_heads (4)"]
    assert errors(run("estimate", TINY, "--set", "model.n_kv_heads=8")) == [
        f"Error: {TINY}: model.n_kv_heads: 8 is more than n_heads (4)"]
    lines = errors(run("estimate", TINY, "--set", "model.n_heads=3", "--set", "model.n_kv_heads=1"))
    assert lines == [f"Error: {TINY}: model.n_heads: 3 does not divide d_model (64); set head_dim explicitly"]


def test_unknown_enum_values_list_the_valid_ones(run):
    lines = errors(run("estimate", TINY, "--set", "model.mlp=swish", "--set", "training.optimizer=adam8bit",
                       "--set", "model.attention=flashy"))
    assert (f"Error: {TINY}: model.mlp: 'swish' is not one of gelu, relu, swiglu or geglu (did you mean 'swiglu'?)"
            in lines)
    assert any("training.optimizer: 'adam8bit' is not one of adamw, adam, sgd, sgd_momentum, adafactor or lion"
               in line for line in lines)
    assert any("model.attention.type: 'flashy' is not one of dense, flash" in line for line in lines)


def test_unknown_gpu_suggests_the_closest(run):
    (line,) = errors(run("estimate", TINY, "--gpu", "h100"))
    assert "hardware.gpu: unknown GPU 'h100' (did you mean 'h100-sxm'?)" in line
    (line,) = errors(run("estimate", TINY, "--gpu", "missing/lab.yaml"))
    assert "hardware.gpu: hardware file 'missing/lab.yaml' not found" in line


@pytest.mark.parametrize("mfu, message", [("0", "must be greater than 0, got 0"),
                                          ("-0.1", "must be greater than 0, got -0.1"),
                                          ("1.01", "1.01 is too large (costplan accepts up to 1)")])
def test_mfu_outside_zero_one(run, mfu, message):
    assert errors(run("estimate", TINY, "--mfu", mfu)) == [f"Error: {TINY}: hardware.mfu: {message}"]


@pytest.mark.parametrize("tokens", ["0", "-1e9"])
def test_non_positive_tokens(run, tokens):
    (line,) = errors(run("estimate", TINY, "--tokens", tokens))
    assert "training.tokens: must be greater than 0" in line


@pytest.mark.parametrize("override, message", [
    ("model.d_model=1e30", "1e+30 is too large (costplan accepts up to 16,777,216)"),
    ("model.n_layers=99999999999", "99,999,999,999 is too large (costplan accepts up to 1,048,576)"),
    ("training.tokens=1e40", "1e+40 is too large (costplan accepts up to 1e+18)"),
    ("hardware.count=1e12", "1,000,000,000,000 is too large (costplan accepts up to 1,048,576)"),  # not 1000000000000.0
    ("hardware.mfu=1.0000001", "1.0000001 is too large (costplan accepts up to 1)"),      # not rounded to 1
])
def test_absurdly_large_values(run, override, message):
    (line,) = errors(run("estimate", TINY, "--set", override))
    assert line.endswith(message)


def test_non_finite_numbers(run):
    (line,) = errors(run("estimate", TINY, "--set", "hardware.mfu=.nan"))
    assert "hardware.mfu: expected a finite number, got nan" in line


def test_all_problems_in_a_file_are_reported_together(run):
    lines = errors(run("estimate", str(SPECS / "many_problems.yaml")))
    for expected in ("model.n_layer: unknown field", "model.n_kv_heads: 3 does not divide n_heads (4)",
                     "model.mlp: 'swish' is not one of", "training.tokens: must be greater than 0, got -5",
                     "hardware.gpu: unknown GPU 'a100-80'", "hardware.mfu: 1.5 is too large"):
        assert any(expected in line for line in lines), expected
    assert len(lines) == 7


def test_problems_of_several_files_are_reported_together(run):
    lines = errors(run("estimate", str(SPECS / "empty.yaml"), str(SPECS / "list_root.yaml"), "gpt2-small"))
    assert len(lines) == 2


def test_cross_section_rules(run):
    lines = errors(run("estimate", TINY, "--set", "training.seq_len=4096", "--gpu", "v100"))
    assert f"Error: {TINY}: training.seq_len: 4096 is longer than model.max_seq_len (128)" in lines
    # the precision against the GPU is a training matter, checked where a run is trained: serving runs in 16 bits
    (line,) = errors(run("estimate", TINY, "--gpu", "v100"))
    assert "training.precision: NVIDIA V100 SXM2 32GB has no bf16 peak FLOP/s (it has fp32, fp16)" in line
    assert run("serve", TINY, "--gpu", "v100").exit_code == 0


def test_recompute_layers_rules(run):
    result = run("estimate", TINY, "--set", "training.recompute_layers=1")
    assert result.exit_code == 2 and errors(result) == [
        f"Error: {TINY}: training.recompute_layers: recomputes the first 1 of each stage's layers whole: set "
        "training.recompute to full (it is none)"]
    n_layers = costplan.load_spec(TINY).model.n_layers
    assert errors(run("estimate", TINY, "--set", "training.recompute=full", "--set",
                      f"training.recompute_layers={n_layers + 1}")) == [
        f"Error: {TINY}: training.recompute_layers: {n_layers + 1} is more than model.n_layers ({n_layers})"]
    # a spec that fails elsewhere too reports this rule with the others
    lines = errors(run("estimate", TINY, "--set", "training.recompute_layers=1", "--set", "training.tokens=-1"))
    assert any("training.recompute_layers: recomputes the first 1" in line for line in lines) and len(lines) == 2


def test_bad_set_syntax(run):
    assert errors(run("estimate", TINY, "--set", "n_layers")) == [
        "Error: --set n_layers: expected KEY=VALUE with a dotted key, e.g. model.n_layers=48"]


def test_duplicate_key(run, tmp_path):
    path = write(tmp_path, BASE + "training: {tokens: 1}\ntraining: {tokens: 2}\n")
    (line,) = errors(run("estimate", path))
    assert "line 3, column 1: invalid YAML: duplicate key 'training'" in line


def test_bad_user_hardware_file(run, tmp_path):
    gpu = write(tmp_path, "name: x\npeak_tflops: {bf16: -1}\nmemory_gib: 8\n", "gpu.yaml")
    lines = errors(run("estimate", TINY, "--gpu", gpu))
    assert f"Error: {TINY}: hardware.gpu: {gpu}: peak_tflops.bf16: must be greater than 0, got -1" in lines
    assert f"Error: {TINY}: hardware.gpu: {gpu}: memory_bandwidth_gbs: required field is missing" in lines


# ---------------------------------------------------------------------------------------------- compare
def test_compare_table_and_ratios(run):
    result = run("compare", "llama2-7b", "mixtral-8x7b", "--tokens", "1e12")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "llama2-7b (baseline)" in lines[0] and "mixtral-8x7b" in lines[0]
    active = next(line for line in lines if line.startswith("parameters, active"))
    assert "6.738 B" in active and "12.88 B (1.911×)" in active       # 12,879,925,248 / 6,738,415,616
    for metric in ("forward FLOPs per token", "KV cache per token", "GPU-hours", "cost", "optimizer states"):
        assert any(line.startswith(metric) for line in lines), metric


def test_compare_shows_what_each_spec_trains_on_and_where_its_context_came_from(run):
    # a Hugging Face config has no training context: max_position_embeddings (Qwen3-0.6B: 40,960) stands in,
    # ten times the preset's, and the table and a warning say so
    result = run("compare", "llama2-7b", "specs/ci/hf/qwen3-0.6b", "--gpus", "8", "--tokens", "1e12")
    rows = {line.split("  ")[0]: line.split() for line in result.stdout.splitlines()}
    assert rows["training sequence length"][-3:] == ["4096", "40960", "(10×)"]
    assert rows["training tokens"][-5:] == ["1", "T", "1", "T", "(1×)"]
    assert rows["GPUs"][-3:] == ["8", "8", "(1×)"]
    (warning,) = [line for line in result.stderr.splitlines() if "seq_len" in line]
    assert warning.startswith("warning: qwen3-0.6b: no training.seq_len; training on sequences of "
                              "model.max_seq_len, 40,960 tokens")
    quiet = run("compare", "llama2-7b", "specs/ci/hf/qwen3-0.6b", "--set", "training.seq_len=4096")
    assert "seq_len" not in quiet.stderr


def test_compare_baseline_and_json(run):
    out = run("compare", "llama2-7b", "mixtral-8x7b", "--baseline", "mixtral-8x7b").stdout
    assert "mixtral-8x7b (baseline)" in out and "(0.1443×)" in out           # 6.738 B / 46.7 B total
    data = json.loads(run("compare", "llama2-7b", "mixtral-8x7b", "--format", "json").stdout)
    assert [d["name"] for d in data] == ["llama2-7b", "mixtral-8x7b"]
    assert data[1]["params"]["active"] == 12_879_925_248
    rows = list(csv.DictReader(io.StringIO(run("compare", "llama2-7b", "mixtral-8x7b", "--format", "csv").stdout)))
    assert {r["metric"]: r["mixtral-8x7b"] for r in rows}["parameters, total"] == "46702792704"


def test_compare_baseline_by_name_in_any_case(run):
    # preset names are read in any case on the command line, the baseline's too
    out = run("compare", "gpt2-small", "gpt2-medium", "--baseline", "GPT2-Medium").stdout
    assert "gpt2-medium (baseline)" in out


def test_compare_unknown_baseline(run):
    (line,) = errors(run("compare", "llama2-7b", "mistral-7b", "--baseline", "mistral"))
    assert line == ("Error: --baseline mistral: no spec of that name (did you mean 'mistral-7b'?); the columns "
                    "are llama2-7b, mistral-7b")


def test_compare_tells_apart_specs_that_share_a_name(run, tmp_path, monkeypatch):
    # A preset copied and edited keeps its `name`: each column then says which spec it is, in every format (CSV
    # had kept one column of the two, the other's values under it)
    monkeypatch.chdir(tmp_path)
    Path("my-llama.yaml").write_text(Path(costplan.presets.path("llama2-7b")).read_text().replace(
        "n_layers: 32", "n_layers: 40"))
    rows = list(csv.DictReader(io.StringIO(run("compare", "llama2-7b", "my-llama.yaml", "--format", "csv").stdout)))
    params = {r["metric"]: r for r in rows}["parameters, total"]
    assert (params["llama2-7b (llama2-7b)"], params["llama2-7b (my-llama.yaml)"]) == ("6738415616", "8357482496")
    units = {r["metric"]: r["unit"] for r in rows}
    assert (units["memory per GPU"], units["GPU-hours"], units["cost"], units["GPU"]) == ("bytes", "GPU-hours",
                                                                                        "USD", "")
    serving = {r["metric"]: r["unit"] for r in csv.DictReader(io.StringIO(
        run("compare", "llama2-7b", "my-llama.yaml", "--serving", "--format", "csv").stdout))}
    assert (serving["output tokens/s per GPU"], serving["$ per million output tokens"]) == ("tokens/s", "USD")
    out = run("compare", "llama2-7b", "my-llama.yaml", "--baseline", "llama2-7b (my-llama.yaml)").stdout
    assert "llama2-7b (my-llama.yaml) (baseline)" in out
    # or the spec as it was given: the file, or the preset (its argument, though the file shares its name)
    out = run("compare", "llama2-7b", "my-llama.yaml", "--baseline", "my-llama.yaml").stdout
    assert "llama2-7b (my-llama.yaml) (baseline)" in out
    out = run("compare", "my-llama.yaml", "llama2-7b", "--baseline", "llama2-7b").stdout
    assert "llama2-7b (llama2-7b) (baseline)" in out
    # a name two files share is no argument: it names both
    Path("other.yaml").write_text(Path("my-llama.yaml").read_text())
    (line,) = errors(run("compare", "other.yaml", "my-llama.yaml", "--baseline", "llama2-7b"))
    assert line.startswith("Error: --baseline llama2-7b: names more than one spec; give its column")
    # one spec given twice: its second column is #2, and can be the baseline
    out = run("compare", "llama2-7b", "llama2-7b", "--baseline", "llama2-7b (llama2-7b) #2").stdout
    assert out.splitlines()[0].split() == ["llama2-7b", "(llama2-7b)", "llama2-7b", "(llama2-7b)", "#2",
                                           "(baseline)"]


# ---------------------------------------------------------------------------------------------- --seq-len
def test_seq_len_growth_table(run):
    out = run("estimate", "llama2-7b", "--gpus", "1", "--seq-len", "1024,4096,16384").stdout
    rows = [line.split() for line in out.splitlines()[3:]]
    assert [r[0] for r in rows] == ["1024", "4096", "16384"]
    # activations of flash attention grow linearly: 4× and 16× the first row
    assert [r[8] for r in rows] == ["1×", "4×", "16×"]       # value and unit are separate words
    # 16,384 is past Llama 2's 4,096: its row runs with max_seq_len raised, which a warning says (once)
    warned = [line for line in run("estimate", "llama2-7b", "--gpus", "1", "--seq-len", "1024,4096,16384",
                                   "--format", "json").stderr.splitlines() if "max_seq_len" in line]
    assert warned == ["warning: llama2-7b: model.max_seq_len (4,096) raised to each length past it (16,384 tokens)"]


def test_seq_len_holds_the_layout_chosen_at_the_specs_own_length_and_says_so(run):
    data = json.loads(run("estimate", "llama2-7b", "--seq-len", "1024,16384", "--format", "json").stdout)
    own = json.loads(run("estimate", "llama2-7b", "--format", "json").stdout)[0]["parallelism"]
    for point in data:
        held = point["parallelism"]
        assert (held["tensor"], held["pipeline"], held["data"]) == (own["tensor"], own["pipeline"], own["data"])
        assert held["source"] == f"{own['source']} at seq_len 4,096, held for every length"
    # the table's title names the layout its per-GPU activations hold on
    title = run("estimate", "llama2-7b", "--seq-len", "1024").stdout.splitlines()[0]
    assert title == (f"llama2-7b: activations (micro-batch 1) per GPU on {own['tensor']} × {own['pipeline']} × "
                     f"{own['data']}")
    # a pipeline's first stage holds several micro-batches' at once, which the title says
    piped = run("estimate", "llama2-70b", "--gpus", "64", "--seq-len", "1024").stdout.splitlines()[0]
    assert piped.startswith("llama2-70b: activations (8 micro-batches of 1 in flight) per GPU on 2 × 8 × 4")
    # a spec's own section is still called that
    given = ["--set", "parallelism.tensor=1", "--set", "parallelism.data=2048",
             "--set", "training.global_batch_size=2048"]
    data = json.loads(run("estimate", "llama2-7b", *given, "--seq-len", "1024", "--format", "json").stdout)
    assert data[0]["parallelism"]["source"] == "parallelism"


def test_seq_len_warns_of_what_the_spec_leaves_out_once_and_of_each_length_that_does_not_fit(run):
    # it printed no warning at all: not a config's left-out keys, nor a length far past the GPU's memory
    config = SPECS.parent.parent / "specs" / "ci" / "hf" / "deepseek-v3"
    result = run("estimate", str(config), "--gpus", "1", "--seq-len", "1024,2048")
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len([line for line in warned if "num_nextn_predict_layers" in line]) == 1
    assert [line.split(" per GPU")[0].split(": ")[1] for line in warned if "does not fit" in line] == [
        "deepseek-v3 at 1,024 tokens", "deepseek-v3 at 2,048 tokens"]
    result = run("estimate", "gpt2-small", "--gpus", "1", "--seq-len", "1024,262144")
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 2 and warned[0].endswith("raised to each length past it (262,144 tokens)")
    assert warned[1].startswith("warning: gpt2-small at 262,144 tokens: ")
    assert " per GPU does not fit in a100-80gb's 79.14 GiB usable of 80 GiB" in warned[1]


def test_seq_len_raises_max_seq_len_when_needed(run):
    data = json.loads(run("estimate", "gpt2-small", "--seq-len", "512,2048", "--format", "json").stdout)
    assert [d["assumptions"]["seq_len"] for d in data] == [512, 2048]
    # learned positions: the table grows from 1024 to 2048 rows only when the context outgrows it
    assert data[1]["params"]["total"] - data[0]["params"]["total"] == (2048 - 1024) * 768


@pytest.mark.parametrize("value, message", [
    ("abc", "--seq-len: expected a number, got 'abc'"),
    ("0", "--seq-len: must be greater than 0, got 0"),
    ("1024,-1", "--seq-len: must be greater than 0, got -1"),
    ("1024.5", "--seq-len: expected a whole number, got 1024.5"),       # not silently truncated to 1024
    ("1024,,4096", "--seq-len 1024,,4096: expected comma-separated whole numbers, e.g. 1024,4096"),
    ("", "--seq-len: expected comma-separated whole numbers, e.g. 1024,4096"),      # no "--seq-len :"
])
def test_seq_len_bad_values(run, value, message):
    assert errors(run("estimate", "llama2-7b", "--seq-len", value)) == [f"Error: {message}"]


def test_plot_lengths_errors_name_their_option(run):
    assert errors(run("plot", "seq-scaling", "llama2-7b", "--lengths", "x")) == [
        "Error: --lengths: expected a number, got 'x'"]


# ---------------------------------------------------------------------------------------------- variants' errors
@pytest.mark.parametrize("overrides, message", [
    (["model.moe.n_experts=8", "model.moe.top_k=9"], "model.moe.top_k: 9 is more than n_experts (8)"),
    (["model.moe.n_experts=8", "model.moe.top_k=0"], "model.moe.top_k: must be greater than 0, got 0"),
    (["model.moe.n_experts=8", "model.moe.top_k=2", "model.moe.capacity_factor=0"],
     "model.moe.capacity_factor: must be greater than 0, got 0"),
    (["model.moe.n_experts=8", "model.moe.top_k=2", "model.moe.every=0"], "model.moe.every: must be greater than 0"),
    (["model.moe.n_experts=8", "model.moe.top_k=2", "model.moe.d_ff_shared=64"],
     "model.moe.d_ff_shared: set without shared experts; set n_shared_experts"),
    (["model.moe.n_experts=8", "model.moe.top_k=2", "model.moe.shared_expert_gate=true"],
     "model.moe.shared_expert_gate: set without shared experts; set n_shared_experts"),
    (["model.attention.type=sliding_window", "model.attention.window=0"],
     "model.attention.window: must be greater than 0, got 0"),
    (["model.attention.window=3"],
     "model.attention.window: type 'dense' has no field 'window'; sliding_window, aft_local, aft_conv have it"),
    (["model.attention.type=flash", "model.attention.block=3"],
     "model.attention.block: type 'flash' has no field 'block'; sparse has it"),
    (["model.attention.type=aft_conv", "model.attention.window=500", "model.n_kv_heads=4"],
     "model.attention.window: 500 taps are more than max_seq_len (128); the extra taps never touch a token"),
    (["model.attention.type=sparse", "model.attention.pattern=fixed", "model.attention.block=16"],
     "model.attention.summary: the fixed pattern needs `summary` (c, the summary positions per block)"),
    (["model.attention.type=sparse", "model.attention.pattern=strided", "model.attention.block=500"],
     "model.attention.block: 500 is longer than max_seq_len (128); the pattern would be dense"),
    (["model.attention.type=mla", "model.attention.kv_lora_rank=8", "model.attention.qk_nope_head_dim=8",
      "model.attention.qk_rope_head_dim=4"], "model.attention.v_head_dim: required field is missing"),
    (["model.attention.type=aft_simple"], "model.n_kv_heads: aft_simple has no key/value heads to share"),
    (["model.attention.type=mla", "model.attention.kv_lora_rank=8", "model.attention.qk_nope_head_dim=8",
      "model.attention.qk_rope_head_dim=4", "model.attention.v_head_dim=8", "model.n_kv_heads=4",
      "model.attention_sinks=true"],
     "model.attention_sinks: mla attention takes no sinks: only dense, flash, sliding_window, sparse, chunked do; "
     "remove attention_sinks"),
])
def test_variant_errors(run, overrides, message):
    args = [arg for o in overrides for arg in ("--set", o)]
    lines = errors(run("estimate", TINY, *args))
    assert any(line == f"Error: {TINY}: {message}" or line.startswith(f"Error: {TINY}: {message}")
               for line in lines), lines


# ---------------------------------------------------------------------------------------------- parallelism
@pytest.mark.parametrize("overrides, message", [
    (["hardware.count=8", "parallelism.tensor=3"],
     "parallelism: tensor (3) × pipeline (1) = 3 does not divide hardware.count (8)"),
    (["hardware.count=8", "parallelism.tensor=8"], "parallelism.tensor: 8 does not divide model.n_heads (4)"),
    (["hardware.count=4", "parallelism.tensor=4"], "parallelism.tensor: 4 does not divide model.n_kv_heads (2)"),
    (["hardware.count=3", "parallelism.pipeline=3"], "parallelism.pipeline: 3 does not divide model.n_layers (2)"),
    (["hardware.count=8", "parallelism.data=2"],
     "parallelism.data: 2 × tensor (1) × pipeline (1) = 2 GPUs, but hardware.count is 8"),
    (["parallelism.expert=2"], "parallelism.expert: 2 needs a mixture-of-experts model (model.moe)"),
    (["parallelism.zero=4"], "parallelism.zero: 4 is not one of 0, 1, 2 or 3"),
    (["parallelism.data=many"], "parallelism.data: expected a whole number or auto, got 'many'"),
    (["hardware.count=4", "training.global_batch_size=6"],
     "training.global_batch_size: 6 is not a multiple of micro_batch_size (1) × data-parallel degree (4) = 4"),
])
def test_parallel_degrees_that_do_not_divide(run, overrides, message):
    args = [a for o in overrides for a in ("--set", o)]
    if not any(o.startswith("parallelism.") for o in overrides):
        args += ["--set", "parallelism.zero=1"]
    assert f"Error: {TINY}: {message}" in errors(run("estimate", TINY, *args))


def test_expert_degree_must_divide_the_experts(run):
    lines = errors(run("estimate", "mixtral-8x7b", "--gpus", "48", "--set", "parallelism.expert=3"))
    assert lines == ["Error: mixtral-8x7b: parallelism.expert: 3 does not divide model.moe.n_experts (8)"]
    lines = errors(run("estimate", "mixtral-8x7b", "--gpus", "4", "--set", "parallelism.expert=8"))
    assert lines == ["Error: mixtral-8x7b: parallelism.expert: 8 does not divide the data-parallel degree (4)"]


def test_parallel_problems_are_reported_with_the_others(run, tmp_path):
    path = write(tmp_path, BASE + "hardware: {count: 6}\nparallelism: {tensor: 4, pipeline: 3, zero: 5}\n")
    lines = errors(run("estimate", path))
    assert f"Error: {path}: parallelism.zero: 5 is not one of 0, 1, 2 or 3" in lines
    assert f"Error: {path}: parallelism: tensor (4) × pipeline (3) = 12 does not divide hardware.count (6)" in lines
    assert f"Error: {path}: parallelism.pipeline: 3 does not divide model.n_layers (2)" in lines


def test_compare_names_each_gpu_and_whether_it_fits(run):
    rows = {line.split("  ")[0].strip(): line for line in run("compare", "llama2-7b", "mistral-7b").stdout.splitlines()}
    assert rows["GPU"].split()[1:] == ["a100-80gb", "h100-sxm"]                   # no ratio of names
    assert rows["fits in GPU memory"].split()[4:] == ["yes", "no"]               # 152 GiB on one 80 GiB H100
    assert "weights per GPU" in rows and "gradients per GPU" in rows            # ZeRO shards them per GPU


def test_compare_shows_the_layout_and_the_step_each_spec_runs(run):
    # compare prints what estimate prints next to GPU-hours: the layout, step time, tokens/s per GPU, MFU and wall
    # clock, each the estimate's own figure (the CSV holds the raw values)
    specs = ("llama2-7b", "llama3-8b", "--gpus", "64")
    rows = {r["metric"]: r for r in csv.DictReader(io.StringIO(run("compare", *specs, "--format", "csv").stdout))}
    for name in ("llama2-7b", "llama3-8b"):
        (e,) = json.loads(run("estimate", name, "--gpus", "64", "--format", "json").stdout)
        t, p = e["time"], e["parallelism"]
        assert float(rows["step time"][name]) == pytest.approx(t["step_seconds"])
        assert float(rows["training tokens/s per GPU"][name]) == pytest.approx(t["tokens_per_second_per_gpu"])
        assert float(rows["MFU"][name]) == pytest.approx(t["mfu"])
        assert float(rows["wall clock"][name]) == pytest.approx(t["wall_clock_days"])
        assert rows["layout (tensor × pipeline × data)"][name].startswith(
            f"{p['tensor']} × {p['pipeline']} × {p['data']}")
    assert rows["MFU"]["unit"] == "fraction" and rows["step time"]["unit"] == "seconds"
    # Transformer Engine's fp8 weight copies have a row where a compared spec keeps them, and only there
    assert "fp8 weight copies per GPU" not in rows
    cached = ["--set", "hardware.gpu=h100-sxm", "--set", "training.precision=fp8", "--set",
              "training.fp8_saved_inputs=true", "--set", "training.fp8_weight_cache=true"]
    table = run("compare", "llama2-7b", "--gpus", "64", "--set", "parallelism.tensor=2", *cached).stdout
    (copies,) = [line for line in table.splitlines() if line.startswith("fp8 weight copies per GPU")]
    # the linears of 32 layers, 32 × (4 · 4096² + 3 · 4096 · 11008) = 6,476,005,376 weights (not the embedding,
    # head or norms), over 2 tensor ranks, 2 bytes each (a copy and its transpose on Hopper): 6.031 GiB
    assert copies.split()[-2:] == ["6.031", "GiB"]


def test_hardware_csv_keeps_the_peaks_together(run):
    # the catalogue's first device (a V100) has no bf16 or fp8 peak: the header still names every precision's
    # peak side by side after the name, not after the kernel tables
    header = run("hardware", "--format", "csv").stdout.splitlines()[0].split(",")
    assert header[:7] == ["key", "name", "peak_tflops.fp32", "peak_tflops.tf32", "peak_tflops.fp16",
                          "peak_tflops.bf16", "peak_tflops.fp8"]


def test_errors_found_after_validation_name_the_file_not_the_specs_name(run, tmp_path):
    # the spec's `name` is what tables print; an error points at the file to fix, as validation's do, and a copy
    # of the spec with --set keeps pointing there
    path = tmp_path / "named.yaml"
    path.write_text("name: othername\nmodel: {n_layers: 2, d_model: 64, n_heads: 4, vocab_size: 100, "
                    "max_seq_len: 64}\n")
    assert errors(run("estimate", str(path), "--set", "training.precision=fp8", "--gpu", "a100-80gb")) == [
        f"Error: {path}: training.precision: NVIDIA A100 80GB SXM has no fp8 peak FLOP/s (it has fp32, tf32, fp16, "
        "bf16)"]
    # estimate --seq-len lays the spec out once before timing any length: the same refusal, not the kernel table's
    assert errors(run("estimate", str(path), "--set", "training.precision=fp8", "--gpu", "a100-80gb", "--gpus", "8",
                      "--seq-len", "32,64")) == [
        f"Error: {path}: training.precision: NVIDIA A100 80GB SXM has no fp8 peak FLOP/s (it has fp32, tf32, fp16, "
        "bf16)"]
    assert errors(run("serve", str(path), "--output-tokens", "64")) == [
        f"Error: {path}: serving.output_tokens: 64 leaves no room for a prompt in model.max_seq_len (64); give "
        "fewer output tokens"]
    assert errors(run("serve", str(path), "--output-tokens", "16", "--batch", "1048576", "--gpu", "l4",
                      "--tensor", "1"))[0].startswith(
        f"Error: {path}: serving.batch: 1048576 sequences need ")
    spec = costplan.load_spec(str(path))
    assert spec.label == str(path) and spec.model_copy().label == str(path)


@pytest.mark.parametrize("command, args, message", [
    ("estimate", ["--gpus", "8", "--set", "hardware.count=4"],
     "Error: --gpus 8 and --set hardware.count=4 set one field; give one of them"),
    ("estimate", ["--mfu", "0.4", "--set", "hardware.mfu=0.5"], "Error: --mfu 0.4 and --set hardware.mfu=0.5 set"),
    ("serve", ["--prompt-tokens", "600", "--set", "serving.prompt_tokens=100"],
     "Error: --prompt-tokens 600 and --set serving.prompt_tokens=100 set one field; give one of them"),
    # a whole section holding the field sets it too
    ("estimate", ["--gpus", "8", "--set", "hardware={gpu: h100-sxm, count: 4}"], "Error: --gpus 8 and --set hardware="),
    ("profile", ["--batch", "2", "--set", "training.micro_batch_size=4", "--no-time"],
     "Error: --batch 2 and --set training.micro_batch_size=4 set one field"),
])
def test_a_shortcut_and_a_set_of_its_field_together_are_refused(run, command, args, message):
    # one of them would silently win (the shortcut, as it was applied last)
    (line,) = errors(run(command, "llama2-7b", *args))
    assert line.startswith(message)


@pytest.mark.parametrize("args, message", [
    (["--mfu", "45"], "hardware.mfu: 45 is too large (costplan accepts up to 1; a fraction: 0.45 for 45%)"),
    (["--tokens", "2T"], "training.tokens: expected a whole number, got '2T' (write 2e12 for 2T)"),
    (["--set", "n_layers=1.5k"], "model.n_layers: expected a whole number, got '1.5k' (write 1.5e3 for 1.5k)"),
])
def test_a_newcomers_shorthand_is_answered_with_the_form_costplan_reads(run, args, message):
    assert errors(run("estimate", TINY, *args)) == [f"Error: {TINY}: {message}"]


def test_an_option_of_one_value_given_twice_is_refused(run):
    # click keeps the last without a word: a user who wrote two GPUs got the second's estimate
    result = run("estimate", "llama2-7b", "--gpu", "h100-sxm", "--gpu=a100-80gb")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.strip() == ("Error: --gpu: given 2 times (--gpu h100-sxm, then --gpu a100-80gb); give it "
                                     "once")
    assert run("serve", "llama3-8b", "--batch", "1", "--batch", "2").exit_code == 2
    # a plot's options too (its group had passed them on unchecked: the figure went to the second file), a short
    # option's value attached to it, and an empty value shown as such
    assert errors(run("plot", "memory", "gpt2-small", "-o", "a.png", "--output=b.svg")) == [
        "Error: -o: given 2 times (-o a.png, then --output b.svg); give it once"]
    assert errors(run("estimate", "gpt2-small", "--format", "csv", "--format=")) == [
        "Error: --format: given 2 times (--format csv, then --format ''); give it once"]
    assert run("import", "specs/ci/hf/qwen3-0.6b", "-oa.yaml", "-ob.yaml").exit_code == 2
    # --help is answered first, as click answers it; -h as a value is a value, and a value is shown on one line
    assert run("estimate", "--help", "--gpu", "a", "--gpu", "b").stdout.startswith("Usage: ")
    assert errors(run("import", "specs/ci/hf/qwen3-0.6b", "-o", "-h", "-o", "b.yaml")) == [
        "Error: -o: given 2 times (-o -h, then -o b.yaml); give it once"]
    assert errors(run("estimate", "gpt2-small", "--gpu", "a\nb", "--gpu", "c")) == [
        "Error: --gpu: given 2 times (--gpu 'a\\nb', then --gpu c); give it once"]
    # what takes several may repeat, and so may a flag; plan --deadline takes several GPU types
    # two --set of one field keep the last (the README says so): a hint's --set is added to the command as it is
    last = run("estimate", "llama2-7b", "--set", "n_layers=8", "--set", "model.n_layers=9", "--format", "json")
    assert last.exit_code == 0 and json.loads(last.stdout)[0]["params"]["total"] == costplan.estimate(
        costplan.load_spec("llama2-7b", ["model.n_layers=9"])).params.total
    assert run("sweep", "llama2-7b", "--vary", "n_layers=8", "--vary", "d_model=4096", "--search-layouts",
               "--search-layouts").exit_code == 0
    assert run("plan", "llama2-7b", "--deadline", "90d", "--gpu", "h100-sxm", "--gpu", "a100-80gb").exit_code == 0


def test_completing_a_line_that_repeats_an_option_is_no_error():
    # the shell's completion parses half-typed lines: the repeat check had raised a traceback there
    import os
    env = {**os.environ, "COMP_WORDS": "costplan estimate gpt2-small --gpu a --gpu b --f", "COMP_CWORD": "7",
           "_COSTPLAN_COMPLETE": "bash_complete"}
    done = subprocess.run([sys.executable, "-c", "from costplan.cli import main; main()"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0 and "--format" in done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "said"), [
    (("estimate", "llama2-7b", "--format", "xml"), "Error: Invalid value for '--format': 'xml' is not one of "),
    (("estimate",), "Error: Missing argument 'SPEC_OR_PRESET...'. (`costplan estimate --help` shows the usage)"),
    (("estimat", "llama2-7b"), "Error: No such command 'estimat'. (`costplan --help` shows the usage)"),
    (("estimate", "llama2-7b", "--bogus"), "Error: No such option '--bogus'."),
    (("estimate", "llama2-7b", "--gpus"), "Error: Option '--gpus' requires an argument."),
    (("serve", "llama2-7b", "--weights", "int3"), "Error: Invalid value for '--weights': 'int3' is not one of "),
    (("plot", "bogus"), "Error: No such command 'bogus'. (`costplan plot --help` shows the usage)"),
    (("--bogus",), "Error: No such option '--bogus'. (`costplan --help` shows the usage)"),
])
def test_a_usage_error_is_one_line(run, args, said):
    # click prints a usage line, a hint and a blank line before its error; every other refusal is one line
    result = run(*args)
    assert result.exit_code == 2 and result.stdout == ""
    stderr = result.stderr.replace("`cli ", "`costplan ")     # the test runner's program name
    assert stderr.splitlines() == [stderr.strip()] and stderr.startswith(said), stderr
