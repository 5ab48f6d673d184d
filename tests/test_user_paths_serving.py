"""Paths a new user meets in serve, sweep, compare and import: a context with no room for a prompt, int4 groups,
a GPU without bf16, what a sweep's serving columns say, and what import writes."""
import json
from pathlib import Path

import costplan
from costplan.costs import serving as sizes

ROOT = Path(__file__).parents[1]
NO_PROMPT = ("Error: gpt2-small: serving.output_tokens: 1024 leaves no room for a prompt in model.max_seq_len (1024); "
             "give fewer output tokens")


def test_an_output_that_fills_the_context_is_an_error_not_a_traceback(run):
    out = run("serve", "gpt2-small", "--output-tokens", "1024")
    assert out.exit_code == 2 and out.stderr.splitlines() == [NO_PROMPT]
    out = run("compare", "gpt2-small", "--serving", "--set", "serving.output_tokens=1024")
    assert out.exit_code == 2 and out.stderr.splitlines()[-1] == NO_PROMPT     # after the training warnings
    out = run("sweep", "gpt2-small", "--serving", "--vary", "serving.output_tokens=256,1024")
    assert out.exit_code == 2
    assert "[serving.output_tokens=1024]: serving.output_tokens: 1024 leaves no room" in out.stderr
    assert run("serve", "gpt2-small", "--output-tokens", "1023").exit_code == 0     # a one-token prompt
    # a spec that trains at one token is sound: only serving it needs room for a prompt
    tiny = ["model.max_seq_len=1", "training.seq_len=1"]
    assert costplan.estimate(costplan.load_spec("gpt2-small", tiny)).time.step_seconds > 0


def test_int4_groups_are_powers_of_two_and_only_with_int4(run):
    out = run("serve", "llama3-8b", "--weights", "int4", "--group-size", "100")
    assert out.stderr.splitlines() == ["Error: llama3-8b: serving.group_size: 100 is not a power of two, as int4 "
                                       "kernels' groups are (GPTQ and AWQ use 32, 64 or 128 weights)"]
    out = run("serve", "llama3-8b", "--group-size", "64")
    assert out.exit_code == 2 and "--group-size: only with int4 weights" in out.stderr
    # a group longer than every row (llama3-8b's widest input is 14,336) keeps one scale a row
    spec = costplan.load_spec("llama3-8b")
    assert sizes.weight_bytes(spec, "int4", 16384) == sizes.weight_bytes(spec, "int4", None)
    assert sizes.weight_bytes(spec, "int4", 128) > sizes.weight_bytes(spec, "int4", None)


def test_serving_settings_read_as_the_command_line_writes_them(run, tmp_path):
    spec = tmp_path / "rated.yaml"
    spec.write_text("name: rated\nmodel: {vocab_size: 1000, d_model: 256, n_layers: 2, n_heads: 4, max_seq_len: 2048}\n"
                    "serving: {rate: 5/s}\n")
    assert costplan.load_spec(str(spec)).serving.rate == 5
    out = run("serve", "llama3-8b", "--set", "serving.reserve=1")
    assert out.stderr.splitlines() == ["Error: llama3-8b: serving.reserve: 1 keeps every byte of the GPU; give a "
                                       "fraction below 1"]


def test_a_gpu_without_bf16_serves_in_fp16_and_refuses_to_train_in_bf16(run):
    served = run("serve", "llama3-8b", "--gpu", "v100", "--format", "json")
    assert served.exit_code == 0
    assert json.loads(served.stdout)[0]["assumptions"]["compute_precision"] == "fp16"
    trained = run("estimate", "llama3-8b", "--gpu", "v100")
    assert trained.exit_code == 2 and trained.stderr.splitlines() == [
        "Error: llama3-8b: training.precision: NVIDIA V100 SXM2 32GB has no bf16 peak FLOP/s (it has fp32, fp16)"]
    swept = run("sweep", "llama3-8b", "--vary", "hardware.gpu=a100-80gb,v100").stderr.splitlines()
    assert swept[0].startswith("Error: llama3-8b [hardware.gpu=v100]: training.precision: NVIDIA V100 SXM2 32GB has "
                               "no bf16 peak")
    assert swept[-1].startswith("Error: 1 of 2 points are invalid")


def test_a_sweep_says_which_points_serve_as_asked(run):
    out = run("sweep", "llama3-8b", "--serving", "--vary", "serving.batch=1,100000", "--vary",
              "serving.tpot_ms=1,50", "--format", "json")
    points = {(p["serving.batch"], p["serving.tpot_ms"]): p for p in json.loads(out.stdout)}
    assert points[1, 50]["serving_fits"] and points[1, 50]["meets_targets"]
    # a 1 ms target is missed (an 8B model's weights take longer than that to read), and 100,000 do not fit
    assert points[1, 1]["serving_fits"] and not points[1, 1]["meets_targets"]
    assert not points[100000, 50]["serving_fits"]


def test_a_sweeps_invalid_points_are_counted(run):
    heads = ",".join(str(n) for n in range(1, 9))
    out = run("sweep", "llama2-7b", "--vary", f"n_heads={heads}")
    assert out.exit_code == 2
    # llama2-7b's 32 KV heads divide no n_heads from 1 to 8: every point is invalid
    assert out.stderr.splitlines()[-1] == ("Error: 8 of 8 points are invalid; each problem above is named once, "
                                           "with the first point that shows it")


def test_import_writes_yaml_where_asked_and_names_the_configs_keys(run, tmp_path):
    config = tmp_path / "config.json"
    data = json.loads((ROOT / "specs/ci/hf/llama-2-7b/config.json").read_text())
    config.write_text(json.dumps(data))
    assert run("import", str(config), "-o", "-").stdout.startswith("# source:")
    refused = run("import", str(config), "-o", str(tmp_path / "spec.json"))
    assert refused.exit_code == 2 and "a spec is written as YAML" in refused.stderr
    config.write_text(json.dumps({**data, "num_hidden_layers": -2}))
    for command in ("import", "estimate"):
        assert run(command, str(config)).stderr.splitlines() == [
            f"Error: {config}: model.n_layers: must be greater than 0, got -2 (config key num_hidden_layers)"]
