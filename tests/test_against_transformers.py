"""`costplan check CONFIG --against transformers`: the estimate of a Hugging Face config against the
transformers class built from the same file (parameters and eager FLOPs exactly). Needs the `hf` extra; CI runs
the check on every config of specs/ci/hf/tiny/."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import costplan  # noqa: E402

TINY = Path(__file__).parents[1] / "specs" / "ci" / "hf" / "tiny"


@pytest.mark.parametrize("name", ["llama", "mixtral", "deepseek_v3", "qwen2-layer-types", "gpt2", "gemma2",
                                  "gpt_oss", "falcon", "olmo", "llama4_text"])
def test_parameters_and_flops_equal_the_transformers_class(name, run):
    result = run("check", str(TINY / f"{name}.json"), "--against", "transformers", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {row["item"]: row for row in json.loads(result.stdout)[0]["checks"]}
    for item in ("parameters (total)", "forward FLOPs (FlopCounterMode)", "training FLOPs (forward + backward)"):
        assert rows[item]["status"] == "ok" and rows[item]["measured"] > 0, rows[item]
    saved = rows["activations saved for backward (eager class)"]        # fused kernels: shown, not compared
    assert saved["status"] == "skip" and saved["measured"] > saved["estimate"] > 0   # eager saves more


def test_llama4_flops_are_the_class_s_every_expert_on_every_token(run):
    # Llama4TextMoe runs each of the 4 experts on all 128 tokens: the estimate's top-1 FLOPs, with the 3 unrouted
    # experts' SwiGLU (3 matmuls of 64 × 48) on the 2 MoE layers added, is what the class executes.
    result = run("check", str(TINY / "llama4_text.json"), "--against", "transformers", "--format", "json",
                 "--set", "training.modules=llama")
    rows = {row["item"]: row for row in json.loads(result.stdout)[0]["checks"]}
    forward = rows["forward FLOPs (FlopCounterMode)"]
    assert forward["measured"] - forward["estimate"] == 2 * 3 * 128 * 3 * 2 * 64 * 48


def test_a_spec_that_differs_from_the_class_fails():
    # the CLI refuses model overrides here (the class is built from the file); a spec that differs from the
    # class, as an estimate with a wrong count would, fails its parameters
    from costplan.profiling import against
    from costplan.profiling.compare import parse_tolerances

    spec = costplan.load_spec(str(TINY / "llama.json"), ["model.d_ff=200"])
    rows = against.record(against.config_path(str(TINY / "llama.json")), spec, parse_tolerances(()),
                          lambda line: None)["checks"]
    (total,) = [row for row in rows if row.item == "parameters (total)"]
    assert total.status == "FAIL"


@pytest.mark.parametrize("name, key, activation", [
    ("gpt_neox", "hidden_act", "gelu_fast"), ("gpt_neox", "hidden_act", "gelu_python"),
    ("gpt2", "activation_function", "gelu"), ("phi", "hidden_act", "gelu_fast"),
    ("gemma", "hidden_activation", "gelu_new"),
])
def test_the_configs_activation_sets_what_the_modules_save(name, key, activation, run, tmp_path):
    # a Python GELU saves more than a fused one's input (GPT-NeoX-20B's config runs gelu_fast); the class's default
    # is not the config's
    data = json.loads((TINY / f"{name}.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**data, key: activation, **({"hidden_act": activation} if name == "gemma" else {})}))
    result = run("check", str(path), "--against", "transformers", "--no-time", "--set",
                 "training.implementation=sdpa", "--format", "json")
    rows = {row["item"]: row for row in json.loads(result.stdout)[0]["checks"]}
    saved = rows["activations saved for backward"]
    assert saved["status"] == "ok" and abs(saved["relative_error"]) < 0.02, saved


def test_python_gelus_save_what_the_table_says():
    """PYTHON_GELU_SAVES against torch's saved-tensor hooks on transformers' own activation functions: tensors
    saved other than the input, less the input's own place where a function does not keep it."""
    from transformers.activations import ACT2FN

    from costplan.costs.class_modules import PYTHON_GELU_SAVES

    for name in ("gelu", "gelu_new", "gelu_fast", "gelu_python", "gelu_accurate", "gelu_pytorch_tanh"):
        x = torch.randn(8, 16, requires_grad=True)
        saved = set()
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.add(t.untyped_storage().data_ptr()) or t,
                                                      lambda t: t):
            ACT2FN[name](x)
        kept = x.untyped_storage().data_ptr() in saved
        assert len(saved) - 1 == PYTHON_GELU_SAVES.get(name, 0), (name, len(saved), kept)


def test_a_config_transformers_refuses_is_one_line(run, tmp_path):
    # costplan does not read token ids; the class builds an embedding whose padding row must exist
    data = json.loads((TINY / "llama.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**data, "pad_token_id": data["vocab_size"] + 10}))
    result = run("check", str(path), "--against", "transformers")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (f"Error: {path}: transformers cannot build the class: AssertionError: "
                                              "Padding_idx must be within num_embeddings")


def test_only_a_config_has_a_transformers_class(run):
    result = run("check", "llama2-7b", "--against", "transformers")
    assert result.exit_code == 2
    assert "llama2-7b: --against transformers compares a Hugging Face config.json" in result.stderr


def test_against_measures_one_training_step(run):
    result = run("check", str(TINY / "llama.json"), "--against", "transformers", "--serve")
    assert result.exit_code == 2 and "cannot be combined with --nproc or --serve" in result.stderr


@pytest.mark.parametrize("args, said", [
    # the class is built from the file: a model override would change the estimate alone
    (["--set", "model.n_layers=3"], "Error: --set model.n_layers=3: --against transformers builds the class from "
                                    "the config file as it is; change the config.json instead"),
    (["--set", "n_layers=3"], "Error: --set n_layers=3: --against transformers builds the class from"),
    # it is counted on the CPU, untimed: the options of a timed run would go unused
    (["--detail"], "Error: --against transformers counts the class's parameters, FLOPs and memory on the CPU, "
                   "untimed; --detail cannot be combined with it"),
    (["--no-time", "--time-set", "n_layers=1"], "Error: --time-set shrinks the copy that is timed; it cannot be "
                                               "combined with --no-time"),
])
def test_against_refuses_what_it_would_leave_unused(run, args, said):
    result = run("check", str(TINY / "llama.json"), "--against", "transformers", *args)
    assert result.exit_code == 2 and said in result.stderr, result.stderr


def test_against_takes_a_longer_context_only_where_the_class_does_not_size_it(run):
    # GPT-2's learned position table is max_position_embeddings long: a longer context is another class
    result = run("check", str(TINY / "gpt2.json"), "--against", "transformers", "--set", "model.max_seq_len=4096")
    assert result.exit_code == 2 and "--set model.max_seq_len=4096: --against transformers builds" in result.stderr


def test_against_checks_counts_and_memory_whatever_the_hardware_s_peaks(run):
    # The class is counted untimed: hardware without an fp8 peak (an A100, a calibration) does not stop an fp8
    # spec's check, nor do several GPUs make its estimate another layout's (the class is one process).
    rows = {}
    for args in ([], ["--set", "training.precision=fp8", "--gpu", "a100-80gb"], ["--gpus", "8"]):
        result = run("check", str(TINY / "llama.json"), "--against", "transformers", "--format", "json", *args)
        assert result.exit_code == 0, result.stderr
        rows[len(rows)] = {c["metric"]: c["estimate"] for c in json.loads(result.stdout)[0]["checks"]}
    assert rows[0]["params"] == rows[1]["params"] == rows[2]["params"]
    assert rows[2] == rows[0]


def test_serve_refuses_the_training_shortcuts(run):
    result = run("check", str(TINY.parents[1] / "dense.yaml"), "--serve", "--batch", "4")
    assert result.exit_code == 2 and "--batch and --seq-len do not apply" in result.stderr


@pytest.mark.parametrize("config, seq_len, at", [("llama", 2, "optimizer step"), ("llama", 128, "backward"),
                                                 ("qwen2", 2, "end of backward")])
def test_the_peak_and_where_it_is_against_the_class(config, seq_len, at, run):
    # Two tokens: the update's moment (every 16-bit gradient, and the embedding's fp32 copy for its master
    # weight) tops backward's by 0.9%; a tied embedding's gradients (the head's, the lookup's and their sum) top
    # the update's by 1.8% as backward ends; 128 tokens: backward's activations top the others by half.
    result = run("check", str(TINY / f"{config}.json"), "--against", "transformers", "--format", "json",
                 "--set", "training.implementation=sdpa", "--set", f"training.seq_len={seq_len}")
    assert result.exit_code == 0, result.output
    peak = {row["item"]: row for row in json.loads(result.stdout)[0]["checks"]}["peak memory of a training step"]
    assert peak["note"].startswith(f"estimated at {at};")
    assert abs(peak["measured"] - peak["estimate"]) <= 0.001 * peak["measured"]
