"""`costplan serve`: the JSON contract, the flags, and every error as one line per problem with exit status 2."""
from __future__ import annotations

import json

import pytest

import costplan
from costplan.costs import inference

CONTRACT = {
    "memory": {"weights", "kv_cache_per_token", "kv_cache_per_sequence", "total_per_gpu", "max_batch"},
    "latency": {"ttft_seconds", "tpot_seconds"},
    "throughput": {"tokens_per_second_per_gpu", "requests_per_second"},
    "cost": {"usd_per_million_input_tokens", "usd_per_million_output_tokens"},
}


def test_json_is_an_array_with_the_contract_keys(run):
    result = run("serve", "llama3-8b", "mistral-7b", "--gpus", "1", "--gpu", "h100-sxm", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [d["name"] for d in data] == ["llama3-8b", "mistral-7b"]
    for obj in data:
        for section, keys in CONTRACT.items():
            assert keys <= obj[section].keys()
        assert obj["memory"]["kv_cache_per_token"] == 131072            # 32 layers × 2 × 8 heads × 128 × 2 bytes
        assert isinstance(obj["memory"]["weights"], int)
        assert obj["assumptions"]["efficiencies"]["memory"]["source"]


def test_flags_reach_the_estimate(run):
    result = run("serve", "llama3-8b", "--gpus", "2", "--tensor", "2", "--batch", "16", "--prompt-tokens", "2000",
                 "--output-tokens", "100", "--weights", "int4", "--group-size", "64", "--kv-cache", "fp8",
                 "--rate", "50/s", "--format", "json")
    assert result.exit_code == 0, result.stderr
    (obj,) = json.loads(result.stdout)
    a = obj["assumptions"]
    assert (a["tensor"], a["gpus"], a["prompt_tokens"], a["output_tokens"]) == (2, 2, 2000, 100)
    assert (a["weights"], a["group_size"], a["kv_cache"]) == ("int4", 64, "fp8")
    assert obj["throughput"]["batch"] == 16
    assert obj["memory"]["kv_cache_per_sequence"] == 2099 * 131072 // 2     # 2000 + 100 − 1 tokens in fp8
    assert obj["cost"]["gpus_for_rate"] % 2 == 0


def test_table_lists_the_assumptions(run):
    result = run("serve", "llama3-8b", "--gpus", "1")
    assert result.exit_code == 0
    assert "time per output token" in result.stdout and "Assumptions:" in result.stdout
    assert "kernel efficiencies (h100-sxm in data/kernels.yaml)" in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_other_formats(run, fmt):
    result = run("serve", "llama3-8b", "--gpus", "1", "--format", fmt)
    assert result.exit_code == 0 and result.stdout.strip()


def error_lines(result) -> list[str]:
    assert result.exit_code == 2 and not result.stdout
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("Error: ") for line in lines)
    return lines


def test_a_model_that_does_not_fit_at_batch_1(run):
    (line,) = error_lines(run("serve", "deepseek-v3", "--gpus", "8", "--weights", "fp8"))
    assert "do not fit in h100-sxm's 79.11 GiB usable of 80 GiB with 8 GPUs per replica" in line
    # More GPUs would only add replicas of 8; the advice is the one that works: a wider replica.
    assert "use more GPUs per replica (--tensor)" in line
    assert run("serve", "deepseek-v3", "--weights", "fp8", "--tensor", "16").exit_code == 0
    # 12 GPUs hold replicas of at most 4 in powers of two: a wider one needs a --gpus it divides
    (line,) = error_lines(run("serve", "deepseek-v3", "--gpus", "12", "--weights", "fp8", "--gpu", "h200"))
    assert "(--tensor, with a --gpus it divides; 12 GPUs split into replicas of 4)" in line
    # a reserve raised past the default (10%), at which the weights and a sequence would fit, is what to undo first
    # (99% of 79.11 GiB against 1.87 GiB of weights); where they would not (Llama 3 70B's 131 GiB on one L4, and
    # DeepSeek-V3 above at the default), it is not named
    (line,) = error_lines(run("serve", "llama3-8b", "--set", "serving.reserve=0.99"))
    assert "use a smaller serving.reserve (99.0%), more GPUs per replica (--tensor)" in line
    (line,) = error_lines(run("serve", "llama3-70b", "--gpu", "l4", "--tensor", "1"))
    assert "do not fit in l4's 22.49 GiB" in line and "serving.reserve" not in line


def test_a_batch_larger_than_fits(run):
    (line,) = error_lines(run("serve", "llama3-8b", "--gpus", "1", "--batch", "100000"))
    assert "serving.batch: 100000 sequences need" in line and line.endswith(
        "at most 360 fit in 79.11 GiB usable of 80 GiB with 1 GPU per replica; give a smaller --batch, or use more "
        "GPUs per replica (--tensor), a larger --gpu, smaller --weights or an fp8 --kv-cache")


def test_format_names_ignore_case_as_the_spec_does(run):
    # serving: {weights: INT4} was read, --weights INT4 refused with a usage error
    def formats(*args: str) -> tuple[str, str]:
        a = json.loads(run("serve", "llama3-8b", "--format", "json", *args).stdout)[0]["assumptions"]
        return a["weights"], a["kv_cache"]

    assert formats("--weights", "INT4", "--kv-cache", "FP8") == formats("--weights", "int4", "--kv-cache", "fp8") == (
        "int4", "fp8")
    assert formats("--set", "serving.weights=INT4", "--set", "serving.kv_cache=FP8") == ("int4", "fp8")


def test_the_automatic_tensor_degree_holds_the_batch_asked_for(run):
    # Llama 3 70B's bf16 weights take 2 H100s with room for 28 sequences of 1,279 tokens (320 KiB a token,
    # 400 MiB a sequence over the GPUs: 79.11 GiB for PyTorch less its 10% and 65.71 GiB of weights leave 5.49 GiB,
    # 28 halves of 400 MiB); 500 need 8 GPUs (each a quarter of 131 GiB at 4: 40.8 GiB with the reserve, 38.3 GiB
    # left: 392 sequences of 100 MiB), where 2 had been taken and the batch refused
    def tensor(*args: str) -> int:
        return json.loads(run("serve", "llama3-70b", "--format", "json", *args).stdout)[0]["assumptions"]["tensor"]

    assert tensor() == 2 and tensor("--batch", "28") == 2 and tensor("--batch", "29") == 4
    assert tensor("--batch", "500") == 8
    (line,) = error_lines(run("serve", "llama3-70b", "--batch", "5000"))   # past 8 GPUs' 1,122: named at 8
    assert "at most 1122 fit in 79.11 GiB usable of 80 GiB with 8 GPUs per replica" in line


def test_tensor_that_does_not_divide_the_heads(run):
    lines = error_lines(run("serve", "llama3-8b", "--gpus", "3", "--tensor", "3"))
    assert "Error: llama3-8b: serving.tensor: 3 does not divide model.n_heads (32)" in lines


def test_a_context_longer_than_the_model(run):
    (line,) = error_lines(run("serve", "llama3-8b", "--prompt-tokens", "9000"))
    assert "9256 is longer than model.max_seq_len (8192)" in line


def test_an_unreachable_latency_target(run):
    (line,) = error_lines(run("serve", "llama3-8b", "--gpus", "1", "--tpot-ms", "1"))
    assert "time per output token under load" in line and "at batch 1 (target 1 ms)" in line
    assert "time to first token" not in line            # no target was set for it
    (line,) = error_lines(run("serve", "llama3-8b", "--gpus", "1", "--tpot-ms", "1000", "--ttft-ms", "1"))
    assert "time to first token" in line and "time per output token" not in line      # the met one is not listed


@pytest.mark.parametrize("args, field", [
    (("--batch", "0"), "serving.batch"),
    (("--rate", "fast"), "serving.rate"),
    (("--group-size", "-1"), "serving.group_size"),
])
def test_bad_flag_values_name_their_field(run, args, field):
    (line,) = error_lines(run("serve", "llama3-8b", *args))
    assert field in line


@pytest.mark.parametrize("rate, said", [("nan/s", "nan"), ("inf/s", "inf")])
def test_a_rate_that_is_no_number_says_so(run, rate, said):
    # 'nan/s' had been refused as "must be greater than 0", which nan is not
    (line,) = error_lines(run("serve", "llama3-8b", "--rate", rate))
    assert line == f"Error: llama3-8b: serving.rate: expected a finite number, got {said}"


def test_a_rate_per_minute_or_hour(run):
    def gpus(rate: str) -> int:
        data = json.loads(run("serve", "llama3-8b", "--rate", rate, "--format", "json").stdout)[0]
        return data["cost"]["gpus_for_rate"]

    assert gpus("3000/min") == gpus("180000/h") == gpus("50/s") == gpus("50") == gpus("50/S") > gpus("49/s")
    for rate in ("50/day", "50/s/s", "/s"):       # '50/min' had said only "expected a number"
        (line,) = error_lines(run("serve", "llama3-8b", "--rate", rate))
        assert line == (f"Error: llama3-8b: serving.rate: expected requests per second such as 50 or 50/s (or "
                        f"3000/min, 180000/h), got '{rate}'")


def test_a_rate_no_count_of_gpus_can_serve_is_refused(run):
    # 1e30 requests/s had printed 8,215,642,476,575,255,399,759,872 GPUs
    (line,) = error_lines(run("serve", "llama3-8b", "--rate", "1e30/s"))
    assert line.startswith("Error: llama3-8b: serving.rate: 1e+30 requests/s needs ")
    assert line.endswith(" GPUs, more than the 1,048,576 costplan plans for (hardware.count's limit)")


def test_compare_with_serving_is_one_table_with_the_serving_rows(run):
    # MLA against GQA at a 32k-token prompt: MLA's 576-element latent per layer holds far more sequences
    args = ("compare", "deepseek-v3", "llama3-70b", "--serving", "--gpus", "8", "--gpu", "h200",
            "--set", "serving.prompt_tokens=32768", "--set", "model.max_seq_len=40960", "--set", "serving.weights=fp8")
    result = run(*args)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("parameters, total") for line in lines)
    per_sequence = next(line for line in lines if line.startswith("KV cache per sequence (serving)"))
    assert "2.161 GiB" in per_sequence                  # 61 layers × 576 × 2 bytes × 33,023 tokens
    data = json.loads(run(*args, "--format", "json").stdout)
    assert data[0]["serving"]["memory"]["kv_cache_per_sequence"] == 61 * 576 * 2 * (32768 + 255)
    assert data[0]["serving"]["memory"]["max_batch"] > data[1]["serving"]["memory"]["max_batch"]


def test_sweep_with_serving_columns(run):
    result = run("sweep", "llama3-8b", "--vary", "serving.kv_cache=bf16,fp8", "--gpus", "1", "--serving",
                 "--sort-by", "usd_per_million_output_tokens", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [d["serving.kv_cache"] for d in data] == ["fp8", "bf16"]
    assert data[0]["kv_cache_per_sequence"] * 2 == data[1]["kv_cache_per_sequence"]
    assert data[0]["max_batch"] > data[1]["max_batch"]
    # the serving throughput is named as output tokens, beside training columns (it had been tokens_per_second_per_gpu,
    # estimate's name for training tokens)
    (served,) = json.loads(run("serve", "llama3-8b", "--set", "serving.kv_cache=fp8", "--format", "json").stdout)
    assert data[0]["output_tokens_per_second_per_gpu"] == served["throughput"]["tokens_per_second_per_gpu"]
    assert "tokens_per_second_per_gpu" not in data[0]


def test_sweep_serving_columns_only_with_serving(run):
    result = run("sweep", "llama3-8b", "--vary", "serving.kv_cache=bf16,fp8", "--sort-by", "max_batch")
    assert result.exit_code == 2 and "'max_batch' is not a column" in result.stderr


def test_one_replica_unless_gpus_asks_for_more(run):
    # The preset's hardware.count (2048) is a training cluster: serving it was 2048 replicas and 54,567 requests/s.
    (one,) = json.loads(run("serve", "llama3-8b", "--gpu", "h100-sxm", "--format", "json").stdout)
    (four,) = json.loads(run("serve", "llama3-8b", "--gpu", "h100-sxm", "--gpus", "4", "--format", "json").stdout)
    assert (one["assumptions"]["gpus"], one["assumptions"]["replicas"]) == (1, 1)
    assert (four["assumptions"]["gpus"], four["assumptions"]["replicas"]) == (4, 4)
    assert four["throughput"]["requests_per_second"] == pytest.approx(4 * one["throughput"]["requests_per_second"])


def test_an_int4_group_must_divide_every_quantized_matrix(run):
    # gpt-oss-120b's width and expert width are 2,880: 128-weight groups would split rows (GPTQ/AWQ/Marlin
    # quantize whole groups), 32-weight ones (its own MXFP4 blocks) divide them
    (line,) = error_lines(run("serve", "gpt-oss-120b", "--weights", "int4", "--group-size", "128"))
    assert line == ("Error: gpt-oss-120b: serving.group_size: 128 does not divide the input width of every "
                    "quantized matrix (2880); give one that does, or null for a scale per row")
    assert run("serve", "gpt-oss-120b", "--weights", "int4", "--group-size", "32").exit_code == 0


def test_an_int4_group_must_divide_each_gpus_share_of_a_split_matrix(run):
    # Tensor parallelism splits the output and down projections along their input: Qwen3-30B-A3B's experts' down
    # projections take 768 inputs, 96 a GPU at tensor 8, which 128-weight groups would cut (vLLM refuses such a
    # degree); an automatic degree skips it, a given one is an error naming both settings
    (line,) = error_lines(run("serve", "qwen3-30b-a3b", "--weights", "int4", "--tensor", "8"))
    assert line == ("Error: qwen3-30b-a3b: serving.group_size: 128 does not divide the input width of every "
                    "quantized matrix, each GPU's share at serving.tensor 8 (96); give one that does, or null for "
                    "a scale per row")
    assert run("serve", "qwen3-30b-a3b", "--weights", "int4", "--tensor", "8", "--group-size", "32").exit_code == 0
    # gpt-oss-120b's 2,880-wide projections split over 4 GPUs are 720 wide: groups of 32 leave 16 over
    (line,) = error_lines(run("serve", "gpt-oss-120b", "--weights", "int4", "--group-size", "32", "--tensor", "4"))
    assert "each GPU's share at serving.tensor 4 (720)" in line
    # an automatic degree tries only those whose shares hold whole groups of 128: 768 and 384 (1 and 2 GPUs) do,
    # 192 and 96 (4 and 8) do not
    spec = costplan.load_spec("qwen3-30b-a3b", ["serving.weights=int4"])
    assert [inference._misaligned(spec, t) for t in (1, 2, 4, 8)] == ["", "", "192", "96"]
    assert inference.serve(spec).assumptions.tensor_skipped == [4, 8]
    # where no degree left fits, the advice is a smaller group, not more GPUs a group would refuse
    (line,) = error_lines(run("serve", "gpt-oss-120b", "--weights", "int4", "--group-size", "64", "--gpu", "a100-40gb"))
    assert "use a smaller --group-size, or null (each GPU's share of a matrix would cut an int4 group of 64 at " \
           "--tensor 2, 4, 8)" in line


@pytest.mark.parametrize("gpu, sixteen", [("h100-sxm", "bf16"), ("v100", "fp16")])
def test_sixteen_bit_weights_are_named_as_the_device_runs_them(run, gpu, sixteen):
    # a V100 has no bf16 peak: its engines load and run 16-bit weights as fp16, which the timing uses too
    a = inference.serve(costplan.load_spec("llama3-8b", [f"hardware.gpu={gpu}"])).assumptions
    assert a.compute_precision == a.sixteen_bit == sixteen
    assert a.quantized == f"no weight: every weight in {sixteen}"
    # the weights' note says nothing of the cache, whose format is its own (an fp8 cache of 16-bit weights)
    fp8_cache = inference.serve(costplan.load_spec("llama3-8b", [f"hardware.gpu={gpu}", "serving.kv_cache=fp8"]))
    assert (fp8_cache.assumptions.quantized, fp8_cache.assumptions.kv_cache) == (a.quantized, "fp8")
    assert run("serve", "llama3-8b", "--gpu", gpu).stdout.startswith(
        f"llama3-8b: {sixteen} weights, {sixteen} KV cache, prompt 1024 + output 256 tokens on 1 × {gpu}")


def test_a_cache_its_window_caps_says_so(run):
    # Mistral 7B's 4,096-token window keeps 4,096 tokens' keys and values of an 8,448-token sequence: 32 layers ×
    # 8 KV heads × 128 × 2 (K and V) × 2 bytes × 4,096 = 512 MiB, half of per token × tokens; the row says why
    capped = run("serve", "mistral-7b", "--prompt-tokens", "8192", "--set", "model.max_seq_len=16384").stdout
    row = next(line for line in capped.splitlines() if "KV cache per sequence" in line)
    assert "512 MiB" in row and row.rstrip().endswith("windows and recurrent states cap it")
    whole = run("serve", "llama2-7b").stdout
    assert not next(line for line in whole.splitlines() if "KV cache per sequence" in line).rstrip().endswith("it")


def test_a_cheaper_tensor_degree_than_the_automatic_one_is_said():
    # Llama 3 70B in bf16 on H100s: two GPUs hold the weights and a batch of 28; four hold a batch of 392, and
    # serve a request for less than half. The automatic degree stays the fewest GPUs; a warning says the rest.
    from click.testing import CliRunner

    from costplan.cli import cli
    result = CliRunner().invoke(cli, ["serve", "llama3-70b", "--gpu", "h100-sxm", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    (auto,) = json.loads(result.stdout)
    (wider,) = json.loads(CliRunner().invoke(cli, ["serve", "llama3-70b", "--gpu", "h100-sxm", "--tensor", "4",
                                                   "--format", "json"]).stdout)
    assert (auto["assumptions"]["tensor"], wider["assumptions"]["tensor"]) == (2, 4)

    def request(e):      # a request's cost from the two per-million prices the JSON gives
        return (e["cost"]["usd_per_million_input_tokens"] * e["assumptions"]["prompt_tokens"]
                + e["cost"]["usd_per_million_output_tokens"] * e["assumptions"]["output_tokens"]) / 1e6
    share = request(wider) / request(auto)
    # the README's figures for it
    assert (wider["throughput"]["batch"], auto["throughput"]["batch"], f"{share:.1%}") == (392, 28, "47.5%")
    (line,) = [line for line in result.stderr.splitlines() if "--tensor 4" in line]
    assert line.startswith(f"warning: llama3-70b: --tensor 4 serves a request for {100 * share:.1f}% of its cost "
                           "on 2 GPUs per replica, the fewest that hold the model and one sequence: batch "
                           f"{wider['throughput']['batch']:,} against {auto['throughput']['batch']:,}")
    # the other degrees are priced, not checked against a request rate (whose GPUs are this estimate's to count):
    # a rate this degree can be sized for is no error because a larger degree's count would pass the limit
    assert CliRunner().invoke(cli, ["serve", "llama3-70b", "--gpu", "h100-sxm", "--batch", "1", "--rate",
                                    "70000/s"]).exit_code == 0
    # no such warning where the degree is the user's, or where no larger one is cheaper
    for args in (["llama3-70b", "--gpu", "h100-sxm", "--tensor", "2"], ["llama3-8b", "--gpu", "h100-sxm"]):
        assert "--tensor" not in CliRunner().invoke(cli, ["serve", *args]).stderr
