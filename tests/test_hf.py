"""Hugging Face config.json files as specs, without transformers: hand-counted parameters, the import's YAML,
every refusal, and the commands that accept a config where they accept a spec. tests/test_hf_transformers.py
compares with the transformers classes themselves."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import costplan
from costplan import hf, yamlio
from costplan.errors import SpecError
from costplan.spec import MODULES

HF = Path(__file__).parents[1] / "specs" / "ci" / "hf"
TINY = sorted((HF / "tiny").glob("*.json"))
FULL = sorted(p.parent for p in HF.glob("*/config.json"))


def params(source) -> int:
    return costplan.estimate(costplan.load_spec(source)).params.total


def write_config(tmp_path: Path, name: str, **changes) -> Path:
    """A tiny config with keys changed (a None value removes the key)."""
    data = json.loads((HF / "tiny" / f"{name}.json").read_text())
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None or k not in changes}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    return path


def test_every_supported_model_type_has_a_tiny_config():
    types = {json.loads(p.read_text())["model_type"] for p in TINY}
    assert types == set(hf.FAMILIES)


def test_every_supported_model_type_names_its_modules():
    """training.modules, which a config import sets to its model_type, accepts every model type read."""
    assert set(MODULES) == set(hf.FAMILIES)


def test_the_readme_lists_the_supported_model_types():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    listed = re.search(r"Supported `model_type`s: (.*?)\. Each", readme, flags=re.S).group(1)
    assert re.findall(r"`(\w+)`", listed) == sorted(hf.FAMILIES)


def test_tiny_llama_by_hand():
    d, vocab, f, layers = 64, 256, 176, 2
    q_o, k_v = d * d, d * (2 * 16)             # 4 query heads and 2 key/value heads of 16
    per_layer = 2 * q_o + 2 * k_v + 3 * d * f + 2 * d
    assert params(HF / "tiny" / "llama.json") == 2 * vocab * d + layers * per_layer + d


def test_tiny_opt_by_hand():
    # OPT's learned position table has max_position_embeddings + 2 rows; biases everywhere, LayerNorms.
    d, vocab, f, layers, positions = 64, 256, 256, 2, 128
    per_layer = 4 * (d * d + d) + (d * f + f) + (f * d + d) + 2 * 2 * d
    assert params(HF / "tiny" / "opt.json") == vocab * d + (positions + 2) * d + layers * per_layer + 2 * d
    assert costplan.load_spec(HF / "tiny" / "opt.json").seq_len == positions


def test_tiny_bloom_by_hand():
    # Fused QKV and every projection with biases, LayerNorms with weight and bias, one on the embedding, ALiBi
    # (no position table), a 4 × d MLP, a tied head.
    d, vocab, layers = 64, 256, 2
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * 2 * d
    assert params(HF / "tiny" / "bloom.json") == vocab * d + 2 * d + layers * per_layer + 2 * d
    model = costplan.load_spec(HF / "tiny" / "bloom.json").model
    assert (model.position, model.embedding_norm, model.attention.type) == ("alibi", True, "dense")


def test_tiny_olmo_by_hand():
    # OLMo 1: no parameters in any norm, no biases, a tied head.
    d, vocab, f, layers = 64, 256, 96, 2
    assert params(HF / "tiny" / "olmo.json") == vocab * d + layers * (4 * d * d + 3 * d * f)


def test_tiny_qwen2_moe_layers_and_shared_expert():
    # decoder_sparse_step 2 over 4 layers: layers 1 and 3 are MoE, 0 and 2 dense.
    moe = costplan.load_spec(HF / "tiny" / "qwen2_moe.json").model.moe
    assert (moe.first_dense_layers, moe.every) == (1, 2)
    assert (moe.n_shared_experts, moe.d_ff_shared, moe.shared_expert_gate) == (1, 96, True)


def test_a_config_named_in_capitals_reads_as_json(tmp_path):
    # a .JSON file had been read as a YAML spec: 25 errors about fields a spec has and a config does not
    shouted = tmp_path / "tiny.JSON"
    shouted.write_text((HF / "tiny" / "llama.json").read_text())
    assert params(shouted) == params(HF / "tiny" / "llama.json")


def test_a_folder_reads_its_config_json_and_is_named_after_it():
    spec = costplan.load_spec(HF / "llama-2-7b")
    assert spec.name == "llama-2-7b"
    # the same model as the bundled preset written from the paper
    assert params(HF / "llama-2-7b") == params("llama2-7b")


@pytest.mark.parametrize("folder", ["123", "yes", "null", "[x]", "a: b", "x #y", "'q"])
def test_import_writes_a_name_that_reads_back_as_itself(folder, run, tmp_path):
    # the folder names the spec; YAML would read these unquoted as a number, a flag, nothing or a list
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "config.json").write_text((HF / "tiny" / "llama.json").read_text())
    assert run("import", str(tmp_path / folder), "-o", str(tmp_path / "spec.yaml")).exit_code == 0
    assert costplan.load_spec(str(tmp_path / "spec.yaml")).name == folder


def test_missing_keys_take_the_class_defaults(tmp_path):
    # Qwen3Config's head_dim defaults to 128, not hidden_size / num_attention_heads
    spec = costplan.load_spec(write_config(tmp_path, "qwen3", head_dim=None))
    assert spec.model.head_dim == 128


@pytest.mark.parametrize("config", TINY, ids=lambda p: p.stem)
def test_import_writes_the_same_spec(config, run, tmp_path):
    result = run("import", str(config))
    assert result.exit_code == 0, result.stderr
    spec = yamlio.loads(result.stdout)
    assert costplan.load_spec(spec) == costplan.load_spec(config).model_copy(update={"base_dir": None})
    for line in result.stdout.splitlines()[2:]:          # after the source line and the name
        if line.startswith("  ") and not line.startswith("    "):   # a field, not a section or a value in one
            assert "  # " in line, line


def test_import_says_which_keys_it_used_and_ignored(run):
    result = run("import", str(HF / "llama-2-7b"))
    used, defaulted, ignored = result.stderr.splitlines()
    assert used.startswith("used: ") and "hidden_size" in used and "model_type" in used
    # head_dim is absent too, but sets no field: the width over the heads, as the class derives it
    assert defaulted == "taken from the class defaults: attention_bias, mlp_bias"
    assert ignored.startswith("ignored (no cost): ") and "rms_norm_eps" in ignored and "hidden_size" not in ignored
    assert "d_model: 4096" in result.stdout and "# from hidden_size" in result.stdout


def test_keys_with_a_cost_no_spec_states_are_said_not_ignored(run, tmp_path):
    # DeepSeek-V3's multi-token prediction layer (num_nextn_predict_layers: 1 in the published file) has
    # parameters and FLOPs that neither transformers' class nor the spec builds; a published checkpoint's
    # quantization_config (DeepSeek-V3's fp8 blocks) describes how its weights are stored, which no training
    # estimate reads. Both are accepted, kept out of "ignored (no cost)", and said by import, estimate and serve.
    data = json.loads((HF / "tiny" / "deepseek_v3.json").read_text())
    assert data["num_nextn_predict_layers"] == 1
    quantized = tmp_path / "config.json"
    quantized.write_text(json.dumps({**data, "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                                                      "weight_block_size": [128, 128]}}))
    imported = run("import", str(quantized))
    assert imported.exit_code == 0, imported.stderr
    said = [line for line in imported.stderr.splitlines() if line.startswith("left out (not modelled): ")]
    assert [line.split(": ")[1] for line in said] == ["quantization_config", "num_nextn_predict_layers"]
    # and in the spec written, which estimates from it can no longer warn of (the spec has no config's keys)
    commented = [line for line in imported.stdout.splitlines() if line.startswith("# left out (not modelled): ")]
    assert [line.split(": ")[1] for line in commented] == ["quantization_config", "num_nextn_predict_layers"]
    ignored = next(line for line in imported.stderr.splitlines() if line.startswith("ignored (no cost): "))
    assert "num_nextn_predict_layers" not in ignored and "quantization_config" not in ignored
    assert params(quantized) == params(HF / "tiny" / "deepseek_v3.json")
    for command in (("estimate", str(quantized)), ("serve", str(quantized)), ("sweep", str(quantized), "--vary",
                                                                             "training.tokens=1e9")):
        out = run(*command)
        assert out.exit_code == 0, out.stderr
        warnings = out.stderr.splitlines()
        assert any(w.startswith(f"warning: {quantized.parent.name}: quantization_config: the checkpoint's own "
                                "quantization") for w in warnings), command
        assert any(": num_nextn_predict_layers: the multi-token prediction modules (DeepSeek-V3's" in w
                   for w in warnings), command
    [estimated] = json.loads(run("estimate", str(quantized), "--format", "json").stdout)
    assert [s.split(":")[0] for s in estimated["assumptions"]["config_left_out"]] == ["quantization_config",
                                                                                      "num_nextn_predict_layers"]
    # none of it where the file has no multi-token prediction layer
    plain = tmp_path / "plain" / "config.json"
    plain.parent.mkdir()
    plain.write_text(json.dumps({**data, "num_nextn_predict_layers": 0}))
    assert "left out" not in run("import", str(plain)).output
    assert json.loads(run("estimate", str(plain), "--format", "json").stdout)[0]["assumptions"]["config_left_out"] == []


def test_import_output_file_and_force(run, tmp_path):
    out = tmp_path / "spec.yaml"
    assert run("import", str(HF / "tiny" / "gpt2.json"), "-o", str(out)).exit_code == 0
    assert params(out) == params(HF / "tiny" / "gpt2.json")
    again = run("import", str(HF / "tiny" / "gpt2.json"), "-o", str(out))
    assert again.exit_code == 2 and "the file exists; pass --force" in again.stderr
    assert run("import", str(HF / "tiny" / "opt.json"), "-o", str(out), "--force").exit_code == 0
    assert params(out) == params(HF / "tiny" / "opt.json")


def test_import_never_writes_through_a_link_onto_a_json_file(run, tmp_path):
    # --force replaces what a link names: a link to the config imported had been overwritten with YAML
    config = tmp_path / "my.json"
    config.write_text((HF / "tiny" / "gpt2.json").read_text())
    (tmp_path / "spec.yaml").symlink_to(config.name)
    result = run("import", str(config), "-o", str(tmp_path / "spec.yaml"), "--force")
    assert result.exit_code == 2 and result.stderr == (
        f"Error: --output {tmp_path / 'spec.yaml'} (a link to my.json): a spec is written as YAML, and a .json file "
        "is read as a Hugging Face config; write it to a file of its own\n")
    assert config.read_text() == (HF / "tiny" / "gpt2.json").read_text()
    # a .json name linking to a YAML file: the name is what to change
    (tmp_path / "real.yaml").write_text("x: 1\n")
    (tmp_path / "spec.json").symlink_to("real.yaml")
    result = run("import", str(config), "-o", str(tmp_path / "spec.json"), "--force")
    assert result.stderr.rstrip().endswith("give the file a .yaml name") and "a link to" not in result.stderr


@pytest.mark.parametrize("args", [
    ["estimate", "{tiny}/llama.json", "{full}/mistral-7b"],
    ["compare", "{tiny}/mixtral.json", "{tiny}/qwen3.json"],
    ["sweep", "{tiny}/gpt2.json", "--vary", "n_layers=1,2"],
    ["plan", "{full}/qwen3-0.6b", "--deadline", "30d", "--gpu", "h100-sxm"],
])
def test_commands_accept_a_config(args, run):
    result = run(*(a.format(tiny=HF / "tiny", full=HF) for a in args))
    assert result.exit_code == 0, result.stderr


def refusal(run, path) -> str:
    result = run("estimate", str(path))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize("name, changes, named", [
    # a key costplan does not know may change the cost: never dropped silently
    ("llama", {"shiny_new_feature": True}, "shiny_new_feature: unknown to costplan for model_type llama"),
    # per-layer attention of a kind costplan does not model
    ("qwen2", {"layer_types": ["full_attention", "chunked_attention"], "use_sliding_window": True},
     "layer_types: layer types ['chunked_attention'] are not modelled"),
    ("gemma3_text", {"sliding_window_pattern": 0}, "sliding_window_pattern: 0: expected a whole number of layers"),
    # biases a spec's qkv_bias cannot split: a direct query projection without the key/value one's bias
    ("deepseek_v2", {"attention_bias": True}, "attention_bias: true without q_lora_rank"),
    # Falcon layers whose forward does not call the norms the class builds
    ("falcon", {"parallel_attn": False}, "parallel_attn: false with new_decoder_architecture"),
    ("falcon", {"new_decoder_architecture": False, "num_ln_in_parallel_attn": 2}, "num_ln_in_parallel_attn: 2: "),
    ("falcon", {"new_decoder_architecture": False, "multi_query": False}, "num_kv_heads: 2 without "),
    ("gpt_neox", {"hidden_act": "silu"}, "hidden_act: 'silu': an MLP with this activation"),
    ("gpt2", {"activation_function": False}, "activation_function: false: an MLP with this activation"),   # as written
    # MoE layers that are not "dense first, then every n-th"
    ("qwen3_moe", {"mlp_only_layers": [2]}, "mlp_only_layers: dense layers [2] among MoE ones are not"),
    ("qwen2_moe", {"shared_expert_intermediate_size": 0}, "shared_expert_intermediate_size: "),
    ("deepseek_v3", {"moe_layer_freq": 2}, "moe_layer_freq: 2: "),
    ("deepseek_v2", {"mlp_bias": True}, "mlp_bias: true: biases on the dense and shared MLPs"),
    ("opt", {"word_embed_proj_dim": 32}, "word_embed_proj_dim: 32: an embedding narrower than hidden_size"),
    ("opt", {"do_layer_norm_before": False}, "do_layer_norm_before: false: post-norm layers"),
    ("gpt2", {"activation_function": "silu"}, "activation_function: 'silu'"),
    ("gpt2", {"add_cross_attention": True}, "add_cross_attention: true: cross-attention"),
    ("gemma", {"use_bidirectional_attention": True}, "use_bidirectional_attention: true: bidirectional"),
    ("starcoder2", {"hidden_act": "silu"}, "hidden_act: 'silu': an MLP with this activation"),
    ("starcoder2", {"norm_type": "rms_norm"}, "norm_type: \"rms_norm\": only layer_norm"),
    ("phi3", {"attention_bias": True}, "attention_bias: true: "),
    ("bloom", {"apply_residual_connection_post_layernorm": True},
     "apply_residual_connection_post_layernorm: true: residual branches taken after the norm"),
    ("llama", {"pruned_heads": {"0": [1]}}, "pruned_heads: pruned attention heads"),
    ("llama", {"model_type": "olmo2"}, "model_type: 'olmo2' is not supported (its norms follow"),
    ("llama", {"model_type": None}, "model_type: missing"),
    ("llama", {"model_type": ["llama"]}, 'model_type: ["llama"]: expected a name'),
    # a reward model's or classifier's head is not the LM head the spec costs
    ("llama", {"architectures": ["LlamaForSequenceClassification"]},
     'architectures: ["LlamaForSequenceClassification"]: only the causal language model (LlamaForCausalLM)'),
    # a lone name had passed unchecked, a classifier's too
    ("llama", {"architectures": "LlamaForSequenceClassification"},
     'architectures: "LlamaForSequenceClassification": expected a list of class names, e.g. ["LlamaForCausalLM"]'),
    # a key or a value from the file is escaped and cut short, as a spec's are: one line, whatever it holds
    ("llama", {"a\nb\u202e": 1}, "a\\nb\\u202e: unknown to costplan for model_type llama"),
    ("llama", {"x" * 5000: 1}, "x" * 59 + "…: unknown to costplan for model_type llama"),
    ("llama", {"model_type": "q" * 3000}, "model_type: 'qqqqqqqqqqqqqqqqqqqqqqqqqqq...qqqqqqqqqqqqqqqqqqqqqqqqqqqq' is "
                                          "not supported; supported: "),
    ("llama", {"model_type": "gemma3"}, "model_type: 'gemma3' is not supported (a multimodal wrapper: its language "
                                        "model is the text_config inside it"),
    # the classes take one layer type per layer; a shorter list is no repeating pattern to them
    ("qwen2-layer-types", {"layer_types": ["full_attention"]}, "layer_types: 1 entries for 3 layers"),
    ("qwen2-layer-types", {"layer_types": "full_attention"}, "layer_types: expected a list of layer type names"),
    ("gemma2", {"layer_types": ["full_attention"] * 40}, "layer_types: 40 entries for "),
    # values of the wrong kind or a layer step of 0: the key, not a traceback from the pattern they feed
    ("qwen2_moe", {"decoder_sparse_step": 0}, "decoder_sparse_step: 0: a layer step must be 1 or more"),
    ("qwen2_moe", {"decoder_sparse_step": "2"}, 'decoder_sparse_step: "2": expected a number (the class\'s default'),
    ("qwen2_moe", {"mlp_only_layers": "0"}, 'mlp_only_layers: "0": expected a list of layer indices'),
    # a field of a MoE or MLA section read from one key names that key (it had named only the spec's field)
    ("mixtral", {"num_experts_per_tok": -1}, "model.moe.top_k: must be greater than 0, got -1 (config key "
                                             "num_experts_per_tok)"),
    ("qwen2_moe", {"shared_expert_intermediate_size": -5}, "model.moe.d_ff_shared: must be greater than 0, got -5 "
                                                           "(config key shared_expert_intermediate_size)"),
    ("deepseek_v2", {"first_k_dense_replace": -1}, "model.moe.first_dense_layers: must be at least 0, got -1 "
                                                   "(config key first_k_dense_replace)"),
    ("deepseek_v3", {"kv_lora_rank": -1}, "model.attention.kv_lora_rank: must be greater than 0, got -1 (config key "
                                          "kv_lora_rank)"),
    ("gpt_oss", {"num_local_experts": 0}, "model.moe.n_experts: must be greater than 0, got 0 (config key "
                                          "num_local_experts)"),
    # true is no layer index (Python's bool is an int: it had read as layer 1)
    ("qwen3_moe", {"mlp_only_layers": [True]}, "mlp_only_layers: expected a list of layer indices"),
    ("llama4_text", {"interleave_moe_layer_step": 0}, "interleave_moe_layer_step: 0: a layer step must be 1"),
    ("llama4_text", {"no_rope_layers": None, "no_rope_layer_interval": 0}, "no_rope_layer_interval: 0: a layer"),
    ("llama4_text", {"moe_layers": "1"}, 'moe_layers: "1": expected a list of layer indices'),
    ("gpt_neox", {"rotary_pct": "0.25"}, 'rotary_pct: "0.25": expected a number (the class\'s default is 0.25)'),
    # a flag must be true or false: a non-empty string (even "false") or a 1 would read as true, and transformers
    # refuses both; OPT's post-norm refusal would have let "false" through as pre-norm
    ("phi", {"qk_layernorm": "false"}, 'qk_layernorm: "false": expected true or false (the class\'s default is'),
    ("opt", {"do_layer_norm_before": "false"}, 'do_layer_norm_before: "false": expected true or false'),
    ("qwen2", {"use_sliding_window": 1}, "use_sliding_window: 1: expected true or false"),
    # a check that reads a mistyped value is not run on it (OLMoE's head_dim check multiplies the heads)
    ("olmoe", {"head_dim": "16", "num_attention_heads": "4"}, 'num_attention_heads: "4": expected a number'),
])
def test_refusals_name_the_key(name, changes, named, run, tmp_path):
    line = refusal(run, write_config(tmp_path, name, **changes))
    assert line.startswith(f"Error: {tmp_path / 'config.json'}: {named}"), line


@pytest.mark.parametrize("layers", [0, -1])
@pytest.mark.parametrize("config", TINY, ids=lambda p: p.stem)
def test_no_layers_is_refused_by_the_config_key(config, layers, run, tmp_path):
    # the layer patterns (layer_types, MoE steps) had been read from no layers first: a StopIteration traceback
    data = json.loads(config.read_text())
    (key,) = [k for k in ("num_hidden_layers", "n_layer", "num_layers") if k in data]
    line = refusal(run, write_config(tmp_path, config.stem, **{key: layers}))
    assert line.endswith(f"model.n_layers: must be greater than 0, got {layers} (config key {key})"), line


def test_a_layer_pattern_is_the_shortest_that_repeats():
    # against the definition tried period by period (what the reader did, in time quadratic in the layers)
    import random

    from costplan.hf.fields import _period, moe_layers

    rng = random.Random(0)
    for _ in range(2000):
        n = rng.randint(1, 24)
        unit = [rng.choice("ab") for _ in range(rng.randint(1, 6))]
        items = [unit[i % len(unit)] for i in range(n)] if rng.random() < 0.6 else [rng.choice("ab") for _ in range(n)]
        assert _period(items) == next(p for p in range(1, n + 1) if all(a == items[i % p] for i, a in enumerate(items)))
        flags = [x == "a" for x in items]
        if not any(flags):
            continue
        first = flags.index(True)
        steps = [e for e in range(1, n + 1) if [i >= first and (i - first) % e == 0 for i in range(n)] == flags]
        if steps:
            assert moe_layers(flags, "k") == {**({"first_dense_layers": first} if first else {}),
                                              **({"every": steps[0]} if steps[0] > 1 else {})}
        else:
            with pytest.raises(hf.fields.Unsupported):
                moe_layers(flags, "k")


def test_an_unsupported_model_type_lists_the_supported_ones(run, tmp_path):
    line = refusal(run, write_config(tmp_path, "llama", model_type="bert"))
    assert line.endswith("supported: " + ", ".join(sorted(hf.FAMILIES)))


def test_every_refusal_at_once(tmp_path):
    with pytest.raises(SpecError) as caught:
        costplan.load_spec(write_config(tmp_path, "qwen3", hidden_act="relu", extra_key=1, use_sliding_window=True,
                                        layer_types=["full_attention", "chunked_attention"]))
    assert [p.split(":")[0] for p in caught.value.problems] == ["extra_key", "hidden_act", "layer_types"]


def test_uniform_sliding_windows_are_a_spec_attention(tmp_path):
    # max_window_layers 0: every Qwen3 layer is windowed, which a spec states
    spec = costplan.load_spec(write_config(tmp_path, "qwen3", use_sliding_window=True, sliding_window=32,
                                           max_window_layers=0))
    assert spec.model.attention.type == "sliding_window" and spec.model.attention.window == 32
    assert costplan.load_spec(HF / "tiny" / "mistral.json").model.attention.window == 16


@pytest.mark.parametrize("content, problem", [
    ("{not json", "line 1, column 2: invalid JSON: Expecting property name enclosed in double quotes"),
    ("[1, 2]", "the top level must be a JSON object, as in a Hugging Face config.json"),
    ('{"name": "x", "model": {"n_layers": 2}}', "a JSON file is read as a Hugging Face config.json, and this one has "
                                                "a costplan spec's `model` section: write the spec as YAML (.yaml)"),
    ('{"model_type": "llama", "rope_scaling": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "invalid JSON: nested too deeply to read"),        # not the decoder's RecursionError traceback
    # not Python's ValueError past 4,300 digits; the YAML reader's limit
    ('{"model_type": "llama", "hidden_size": 1' + "0" * 5000 + "}", "hidden_size: an integer of more than 100 digits"),
    ('{"model_type": "llama", "vocab_size": -' + "9" * 101 + "}", "vocab_size: an integer of more than 100 digits"),
])
def test_bad_files(content, problem, run, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(content)
    assert refusal(run, path) == f"Error: {path}: {problem}"


@pytest.mark.parametrize("name, null, named", [
    ("llama", "tie_word_embeddings", "expected true or false (the class's default is false)"),
    ("llama", "intermediate_size", "expected a number (the class's default is 11008)"),
    ("gpt2", "n_embd", "expected a number (the class's default is 768)"),
])
def test_a_null_the_class_would_not_read_as_its_default_is_refused(name, null, named, run, tmp_path):
    # null is not the class's default to the class (LlamaConfig keeps None: an untied head, an MLP it cannot
    # build), and costplan's own default (tied, 4 x d_model) had stood in for it without a word
    data = {**json.loads((HF / "tiny" / f"{name}.json").read_text()), null: None}
    (tmp_path / "config.json").write_text(json.dumps(data))
    line = refusal(run, tmp_path / "config.json")
    assert line == f"Error: {tmp_path / 'config.json'}: {null}: null: {named}; give a value or leave the key out"


@pytest.mark.parametrize("null, named", [("n_shared_experts", "give the number of shared experts, 0 for none"),
                                         ("n_routed_experts", "give the number of routed experts")])
def test_a_null_expert_count_is_refused(null, named, run, tmp_path):
    # transformers refuses both; a null shared count had been read as no shared expert (`if n_shared`)
    data = {**json.loads((HF / "tiny" / "deepseek_v3.json").read_text()), null: None}
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert refusal(run, tmp_path / "config.json") == f"Error: {tmp_path / 'config.json'}: {null}: null: {named}"


@pytest.mark.parametrize("name", ["llama", "mistral", "qwen3", "mixtral", "qwen2", "gpt_oss", "llama4_text"])
def test_a_null_key_value_head_count_is_every_head_its_own(name, tmp_path):
    # their config classes turn num_key_value_heads None into num_attention_heads (Mistral's default is 8, so
    # the null is not the class's default), as the spec's own default does
    data = {**json.loads((HF / "tiny" / f"{name}.json").read_text()), "num_key_value_heads": None}
    (tmp_path / "config.json").write_text(json.dumps(data))
    spec = costplan.load_spec(tmp_path / "config.json")
    assert spec.model.n_kv_heads == spec.model.n_heads == data["num_attention_heads"]


def test_a_null_head_dim_is_the_width_over_the_heads_for_llama(tmp_path):
    # LlamaConfig: head_dim None is hidden_size / num_attention_heads
    data = {**json.loads((HF / "tiny" / "llama.json").read_text()), "head_dim": None}
    (tmp_path / "config.json").write_text(json.dumps(data))
    spec = costplan.load_spec(tmp_path / "config.json")
    assert spec.model.head_dim == data["hidden_size"] // data["num_attention_heads"]


def test_a_key_given_twice_is_refused(run, tmp_path):
    # json (and transformers) would keep the last value silently; a spec's YAML refuses a repeated key too
    path = tmp_path / "config.json"
    path.write_text((HF / "tiny" / "llama.json").read_text().rstrip().rstrip("}") + ', "num_hidden_layers": 40}')
    assert refusal(run, path) == (f"Error: {path}: num_hidden_layers: given twice (2, then 40); give it once")
    # true is not 1 to a reader of the file, though Python's == says so
    path.write_text((HF / "tiny" / "llama.json").read_text().rstrip().rstrip("}")
                    + ', "attention_bias": false, "attention_bias": 0}')
    assert refusal(run, path) == f"Error: {path}: attention_bias: given twice (false, then 0); give it once"
    # a nested setting given twice is read (or ignored) as transformers reads it: the last value
    data = {**json.loads((HF / "tiny" / "llama.json").read_text()), "rope_scaling": "NESTED"}
    path.write_text(json.dumps(data).replace('"NESTED"', '{"factor": 8, "factor": 16}'))
    assert costplan.load_spec(path).model.n_layers == data["num_hidden_layers"]


def test_a_missing_config_or_a_folder_without_one(run, tmp_path):
    assert refusal(run, tmp_path / "config.json") == f"Error: {tmp_path / 'config.json'}: no such file"
    assert refusal(run, tmp_path) == (f"Error: {tmp_path}: is a folder without a config.json; give a YAML spec, a "
                                      "Hugging Face config.json or a folder holding one")


def test_reading_configs_imports_neither_torch_nor_transformers():
    code = ("import sys, costplan; from pathlib import Path; "
            f"[costplan.estimate(costplan.load_spec(p)) for p in Path({str(HF)!r}).glob('*/*.json')]; "
            "print([m for m in ('torch', 'transformers') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("model_type", sorted(hf.FAMILIES))
def test_a_config_of_defaults_reads(model_type, tmp_path):
    # every key a table reads has a default, so a file naming only its model type is a spec; except
    # DeepseekV2Config's, whose default experts per token is None
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": model_type}))
    if model_type == "deepseek_v2":
        with pytest.raises(SpecError, match="num_experts_per_tok: missing or null"):
            costplan.load_spec(path)
    else:
        assert params(path) > 0


@pytest.mark.parametrize("name, changes, rope_dim", [
    ("gptj", {}, 8), ("gptj", {"rotary_dim": None}, None),                  # rotary_dim: features; None: all
    ("gpt_neox", {}, 4), ("gpt_neox", {"rotary_pct": 1.0}, None),             # rotary_pct 0.25 of 16
    ("phi", {}, 8), ("phi", {"partial_rotary_factor": 0.4}, 6),               # int(16 × 0.4), as the class
    # transformers 5 writes the fraction into rope_parameters, which wins over the old key
    ("phi", {"rope_parameters": {"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.25}}, 4),
    ("falcon", {}, None),
])
def test_import_reads_the_rotated_part_of_each_head(name, changes, rope_dim, tmp_path):
    data = {**json.loads((HF / "tiny" / f"{name}.json").read_text()), **changes}
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert costplan.load_spec(tmp_path / "config.json").model.rope_dim == rope_dim


@pytest.mark.parametrize("name, changes, renormalize", [
    ("qwen3_moe", {}, True), ("qwen3_moe", {"norm_topk_prob": None}, False),     # the class's default: off
    ("olmoe", {}, False), ("olmoe", {"norm_topk_prob": True}, True),
    ("qwen2_moe", {}, False), ("deepseek_v3", {}, True), ("deepseek_v3", {"norm_topk_prob": False}, False),
    ("deepseek_v2", {"norm_topk_prob": True}, False),       # DeepseekV2TopkRouter never renormalises
    ("mixtral", {}, True),                                   # MixtralTopKRouter always does
])
def test_import_reads_whether_the_router_renormalises(name, changes, renormalize, tmp_path):
    data = {**json.loads((HF / "tiny" / f"{name}.json").read_text()), **changes}
    data = {k: v for k, v in data.items() if v is not None}
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert costplan.load_spec(tmp_path / "config.json").model.moe.renormalize is renormalize


def test_stamps_no_class_reads_are_ignored(tmp_path):
    # SmolLM2's converter stamps, a loader's attention choice, a fine-tuning tool's version: no class reads them
    plain = costplan.estimate(costplan.load_spec(write_config(tmp_path, "llama"))).params.total
    stamped = write_config(tmp_path, "llama", is_llama_config=True, rope_interleaved=False, use_mrope=False,
                           _attn_implementation="sdpa", unsloth_version="2024.9", output_past=True, _num_labels=2)
    assert costplan.estimate(costplan.load_spec(stamped)).params.total == plain


def test_a_byte_order_mark_is_read(tmp_path):
    path = write_config(tmp_path, "llama")
    plain = costplan.estimate(costplan.load_spec(path)).params.total
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert costplan.estimate(costplan.load_spec(path)).params.total == plain


def test_estimate_names_the_sizes_a_config_leaves_to_its_class(run, tmp_path):
    # A config with no hidden_size or layer count is LlamaConfig's 4,096 × 32 layers: the estimate says so, as
    # import does, and the imported spec's notes say it too
    (tmp_path / "small").mkdir()
    config = tmp_path / "small" / "config.json"      # named after its folder
    config.write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000,
                                  "hidden_size": 2048, "intermediate_size": 5632, "num_attention_heads": 16,
                                  "num_key_value_heads": 4, "max_position_embeddings": 2048,
                                  "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
                                  "hidden_act": "silu"}))
    warned = [line for line in run("estimate", str(config)).stderr.splitlines() if "class's defaults" in line]
    assert warned == ["warning: small: not in the config, so its transformers class's defaults: num_hidden_layers "
                      "(`costplan import` shows the values)"]
    imported = run("import", str(config)).stdout
    assert "n_layers: 32" in imported and "# num_hidden_layers not in the file: the class's default" in imported
    assert not [line for line in run("estimate", str(HF / "llama-2-7b")).stderr.splitlines()
                if "class's defaults" in line and "num_" in line]


def test_a_hub_cache_snapshot_is_named_after_its_model(run, tmp_path):
    # models--ORG--NAME/snapshots/REVISION/config.json, as huggingface_hub caches a download: the columns of
    # compare and the title of estimate name the model, not the revision's hash
    snapshot = tmp_path / "models--meta-llama--Llama-2-7b-hf" / "snapshots" / ("01c7f73d" * 5)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text((HF / "tiny" / "llama.json").read_text())
    assert run("estimate", str(snapshot)).stdout.startswith("Llama-2-7b-hf: ")
    plain = tmp_path / "my-model"
    plain.mkdir()
    (plain / "config.json").write_text((HF / "tiny" / "llama.json").read_text())
    assert run("estimate", str(plain)).stdout.startswith("my-model: ")


def test_a_problem_with_a_class_default_says_the_file_left_the_key_out(run, tmp_path):
    # MistralConfig's num_key_value_heads defaults to 8: a 4-head config that leaves it out is refused, and the
    # message names the key and says the 8 is the class's, not a value the file wrote
    path = write_config(tmp_path, "mistral", num_attention_heads=4, num_key_value_heads=None)
    assert refusal(run, path) == (f"Error: {path}: model.n_kv_heads: 8 is more than n_heads (4) (config key "
                                  "num_key_value_heads, not in the file: the class's default)")


def test_a_problem_inside_a_section_one_key_wrote_names_that_key(run, tmp_path):
    # sliding_window writes model.attention whole; its window's problem had named no config key
    path = write_config(tmp_path, "mistral", sliding_window=0)
    assert refusal(run, path) == (f"Error: {path}: model.attention.window: must be greater than 0, got 0 (config key "
                                  "sliding_window)")
