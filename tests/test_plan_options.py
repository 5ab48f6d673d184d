"""`costplan plan` and `costplan sweep` options: GPUs without bf16 or a price, budgets below the smallest model,
options that would be ignored, --write, and fields varied twice."""
from __future__ import annotations

import json

import pytest

import costplan
from test_cli import TINY, errors, write


# ---------------------------------------------------------------------------------------------- plan
@pytest.mark.parametrize("unit", ["flops", "gpu-hours", "usd"])
def test_plan_on_a_gpu_without_bf16(run, unit):
    assert errors(run("plan", "--budget", "1e20" if unit == "flops" else "1e6", "--unit", unit, "--gpu", "v100")) == [
        "Error: --gpu v100: NVIDIA V100 SXM2 32GB has no bf16 peak FLOP/s (it has fp32, fp16), and the proposal "
        "trains in bf16; choose a GPU with bf16"]


def test_plan_in_dollars_on_a_free_gpu(run, tmp_path):
    gpu = write(tmp_path, "name: free\npeak_tflops: {bf16: 100}\nmemory_gib: 8\nmemory_bandwidth_gbs: 100\n"
                          "interconnect_gbs: 10\nmfu: 0.4\nusd_per_gpu_hour: 0\n", "free.yaml")
    (line,) = errors(run("plan", "--budget", "10", "--unit", "usd", "--gpu", gpu))
    assert line.startswith(f"Error: --gpu {gpu}: free has no price (usd_per_gpu_hour is 0)")


def test_plan_gpus_limit_units_and_a_gpu_without_kernel_tables(run, tmp_path):
    # --gpus had taken up to 16,777,216 and the spec then refused past 1,048,576 as <spec>'s hardware.count
    assert errors(run("plan", "--budget", "1e20", "--gpus", "2000000")) == [
        "Error: --gpus: 2000000 is too large (costplan accepts up to 1,048,576)"]
    # a unit in capitals, as --law takes a name in any case
    assert run("plan", "--budget", "1e6", "--unit", "USD", "--gpu", "h100-sxm").stdout.startswith("Budget $1 M")
    # the step model cannot time a proposal on a file without kernel tables: --gpu named, not <spec>
    gpu = write(tmp_path, "name: lab\npeak_tflops: {bf16: 100}\nmemory_gib: 80\nmemory_bandwidth_gbs: 2000\n"
                          "interconnect_gbs: 600\nmfu: 0.4\nusd_per_gpu_hour: 1\n", "lab.yaml")
    assert errors(run("plan", "--budget", "1e20", "--gpu", gpu)) == [
        f"Error: --gpu {gpu}: no kernel efficiency tables to time the proposal with (kernels: in the hardware file); "
        "run `costplan calibrate` on the device, or give --mfu"]
    assert run("plan", "--budget", "1e20", "--gpu", gpu, "--mfu", "0.4").exit_code == 0


def test_plan_refuses_a_budget_below_one_token_of_the_smallest_model(run):
    # The smallest shape (1 layer, d_model 128, d_ff 512, SwiGLU, vocabulary 32000, context 2048, untied):
    # per token 6 × (matmul parameters 128·384 + 128·128 + 3·128·512 + 128·32000) plus attention
    # 3 × 2 × 2·2048·128 (scores and values, forward and backward).
    per_token = 6 * (128 * 3 * 128 + 128 * 128 + 3 * 128 * 512 + 128 * 32000) + 3 * 2 * 2 * 2048 * 128
    (line,) = errors(run("plan", "--budget", "1"))
    assert line == ("Error: --budget 1 flops: less than the smallest budget the shape rule can serve, "
                    f"{per_token:.4g} flops (one token of its smallest model, 1 layer × d_model 128, vocabulary "
                    "32000, context 2048)")
    assert run("plan", "--budget", f"{per_token}").exit_code == 0


def test_a_law_whose_optimum_is_past_the_layers_costplan_takes_is_the_budget_s_error(run, tmp_path):
    # A = 1e30 with alpha 0.05 puts the optimum at ~1e100 parameters: the error had named a spec "<spec>" and its
    # model.n_layers, which the user never wrote
    law = tmp_path / "odd.yaml"
    law.write_text("E: 1.0\nA: 1.0e+30\nB: 1.0\nalpha: 0.05\nbeta: 0.3\n")
    (line,) = errors(run("plan", "--budget", "1e21", "--law", str(law)))
    assert line.startswith("Error: --budget 1e+21 flops: the odd law's optimum for 1e+21 FLOPs has ")
    assert line.endswith(" parameters, more layers in the shape rule than costplan accepts (1,048,576)")


def test_plan_budget_with_options_it_would_ignore(run):
    assert errors(run("plan", "--budget", "1e20", "--deadline", "3d", "--set", "n_layers=2")) == [
        "Error: --deadline: only with SPEC (--budget plans on --gpus GPUs; give SPEC and --deadline to find the "
        "GPUs a deadline needs)",
        "Error: --set: only with SPEC (--budget plans on --gpus GPUs; give SPEC and --deadline to find the GPUs a "
        "deadline needs)"]
    assert errors(run("plan", TINY, "--deadline", "3d", "--gpus", "8", "--vocab", "100")) == [
        "Error: --gpus: only with --budget", "Error: --vocab: only with --budget"]
    # a deadline's table predicts no loss: a law given there would be ignored (and went unchecked)
    assert errors(run("plan", TINY, "--deadline", "3d", "--law", "nope")) == ["Error: --law: only with --budget"]


def test_plan_write_checks_the_path_first_and_never_replaces_silently(run, tmp_path):
    missing = tmp_path / "no" / "s.yaml"
    result = run("plan", "--budget", "1e20", "--write", str(missing))
    assert result.exit_code == 2 and result.stdout == ""
    assert errors(result) == [f"Error: --write {missing}: the folder {missing.parent} does not exist"]
    target = tmp_path / "s.yaml"
    result = run("plan", "--budget", "1e20", "--write", str(target))
    assert result.exit_code == 0 and result.stderr == f"wrote {target}\n" and "proposal" in result.stdout
    first = target.read_text()
    assert costplan.load_spec(target).model.n_layers >= 1
    assert errors(run("plan", "--budget", "1e21", "--write", str(target))) == [
        f"Error: --write {target}: the file exists; pass --force to replace it"]
    assert target.read_text() == first
    assert run("plan", "--budget", "1e21", "--write", str(target), "--force").exit_code == 0
    assert target.read_text() != first
    # YAML under a .json name would be read back as a Hugging Face config
    json_name = tmp_path / "s.json"
    assert errors(run("plan", "--budget", "1e21", "--write", str(json_name))) == [
        f"Error: --write {json_name}: a spec is written as YAML, and a .json file is read as a Hugging Face config; "
        "give the file a .yaml name"]
    assert not json_name.exists()


# ---------------------------------------------------------------------------------------------- sweep
def test_a_field_varied_twice_is_an_error(run):
    assert errors(run("sweep", TINY, "--vary", "n_layers=1,2", "--vary", "model.n_layers=3,4")) == [
        "Error: --vary model.n_layers: varied twice (1, 2 and 3, 4); give all its values in one --vary"]


def test_a_serving_field_varied_without_serving_is_an_error(run):
    # the training columns do not read serving fields: every row would be the same
    assert errors(run("sweep", TINY, "--vary", "serving.batch=1,2")) == [
        "Error: --vary serving.batch: moves only the serving columns; add --serving"]
    assert run("sweep", TINY, "--vary", "serving.batch=1,2", "--serving").exit_code == 0


def test_a_section_varied_with_a_field_inside_it_is_an_error(run):
    # the section's values replace it whole: the field varied inside it would be dropped in half the points
    assert errors(run("sweep", "mixtral-8x7b", "--vary", "moe.top_k=1,2", "--vary",
                      "moe={n_experts: 4, top_k: 1}")) == [
        "Error: --vary model.moe: its values replace the whole section, and --vary model.moe.top_k varies a field "
        "inside it; vary the fields, or the section alone"]


def test_a_varied_section_would_drop_a_field_set_in_it(run):
    # --gpus 64 sets hardware.count, which each {gpu: ...} value would replace with the default of one GPU
    assert errors(run("sweep", TINY, "--gpus", "64", "--vary", "hardware={gpu: h100-sxm},{gpu: a100-80gb}")) == [
        "Error: --vary hardware: its values replace the whole section, dropping hardware.count (set to 64 by "
        "--set or its shortcut option); vary the section's fields instead"]


def test_a_set_section_holding_a_varied_field_is_an_error_one_without_it_is_not(run):
    assert errors(run("sweep", "mixtral-8x7b", "--vary", "moe.top_k=1,2", "--set",
                      "model.moe={n_experts: 8, top_k: 2}")) == [
        "Error: --vary model.moe.top_k: also set by --set model.moe={n_experts: 8, top_k: 2}; vary it or set it, "
        "not both"]
    result = run("sweep", "mixtral-8x7b", "--vary", "moe.top_k=1,2", "--set", "model.moe={n_experts: 8}",
                 "--format", "json")
    assert result.exit_code == 0
    assert [row["model.moe.top_k"] for row in json.loads(result.stdout)] == [1, 2]


@pytest.mark.parametrize("args", [["--set", "n_layers=3"], ["--set", "model.n_layers=3"]])
def test_a_field_varied_and_set_is_an_error(run, args):
    assert errors(run("sweep", TINY, "--vary", "n_layers=1,2", *args)) == [
        "Error: --vary model.n_layers: also set to 3 (by --set or its shortcut option); vary it or set it, "
        "not both"]
