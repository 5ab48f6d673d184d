"""The independent check of costplan's Hugging Face configs: build each model with its real `transformers` class
on the meta device (no memory, no weights) and compare parameter counts, exactly. Needs the `hf` extra."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

import costplan  # noqa: E402
from costplan import hf  # noqa: E402

HF = Path(__file__).parents[1] / "specs" / "ci" / "hf"
TINY = sorted((HF / "tiny").glob("*.json"))
FULL = sorted(p for p in HF.glob("*/config.json") if p.parent.name != "tiny")


def transformers_params(config: Path) -> int:
    """Unique parameters of the transformers causal-LM class built from the file (a tied head counted once)."""
    data = json.loads(config.read_text())
    cfg = transformers.AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    return sum(p.numel() for p in model.parameters())   # parameters() yields a shared tensor once


def transformers_windows(config: Path) -> list[int | None]:
    """The window each layer's attention module of the transformers class applies (None: every key)."""
    data = json.loads(config.read_text())
    cfg = transformers.AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    # Qwen2-MoE sets the attribute on windowed layers only
    return [getattr(layer.self_attn, "sliding_window", None) for layer in model.model.layers]


def costplan_windows(config: Path) -> list[int | None]:
    model = costplan.load_spec(config).model
    return [getattr(model.layer_attention(i), "window", None) for i in range(model.n_layers)]


def costplan_params(config: Path) -> int:
    return costplan.estimate(costplan.load_spec(config)).params.total


@pytest.mark.parametrize("config", TINY, ids=lambda p: p.stem)
def test_tiny_configs_match_transformers(config):
    assert costplan_params(config) == transformers_params(config)


@pytest.mark.parametrize("config", FULL, ids=lambda p: p.parent.name)
def test_full_size_configs_match_transformers(config):
    assert costplan_params(config) == transformers_params(config)


# Published totals, as a check on the configs themselves: Llama 2 (Touvron et al. 2023) reports "7B"; these
# are the counts of the released checkpoints' safetensors index files.
@pytest.mark.parametrize("name, total", [
    ("llama-2-7b", 6_738_415_616),
    ("mistral-7b", 7_241_732_096),
    ("mixtral-8x7b", 46_702_792_704),
    # Gemma Team 2024, Gemma 2, Table 2: 917,504,000 embedding and 8,324,201,984 non-embedding parameters
    ("gemma-2-9b", 917_504_000 + 8_324_201_984),
])
def test_full_size_totals(name, total):
    assert costplan_params(HF / name / "config.json") == total


# Published rounded: each figure within half a unit of its last digit.
@pytest.mark.parametrize("name, total, active, unit, table_left_out", [
    ("qwen3-30b-a3b", 30.5e9, None, 0.1e9, False),      # Qwen3 Technical Report: 30.5B total (see below)
    ("gpt-oss-120b", 116.83e9, 5.13e9, 0.01e9, True),   # gpt-oss model card: 116.83B, 5.13B active without
])                                                      # the unembedding table (costplan's active counts it)
def test_published_rounded_totals(name, total, active, unit, table_left_out):
    params = costplan.estimate(costplan.load_spec(HF / name / "config.json")).params
    assert abs(params.total - total) <= unit / 2
    if active is not None:
        assert abs(params.active - (params.embedding if table_left_out else 0) - active) <= unit / 2


def test_gemma_3_27b_against_its_report():
    """Gemma 3 report (arXiv:2503.19786), Table 1, 27B: 25,600M non-embedding parameters, 1,416M embedding, 417M
    vision encoder. The language model's layers match to the rounding. Its table is 262,208 × 5,376 =
    1,409,630,208 (the text config's vocab_size, Gemma3TextConfig's default); the report's 1,416M is 6.2M
    more, the size of the multimodal projector into the text embedding (1,152 × 5,376 weights and a norm of
    1,152, Gemma3MultiModalProjector), which a text-only spec does not build, nor the vision encoder."""
    params = costplan.estimate(costplan.load_spec(HF / "gemma-3-27b" / "config.json")).params
    assert abs(params.total - params.embedding - 25_600e6) <= 0.5e6
    assert params.embedding == 262_208 * 5376
    assert abs(params.embedding + 1152 * 5376 + 1152 - 1_416e6) <= 0.5e6


def test_llama_4_scout_against_its_card():
    """Llama 4 model card (meta-llama/Llama-4-Scout-17B-16E): 17B activated, 109B total parameters. The text model
    is 107.77B (equal to Llama4ForCausalLM above); the card's total includes the vision encoder and its projector.
    Active: per layer attention, the router, one routed expert and the shared one (three 5,120 × 8,192 matrices
    each), both norms; plus both 202,048-row embedding tables and the final norm."""
    params = costplan.estimate(costplan.load_spec(HF / "llama-4-scout" / "config.json")).params
    d, f, vocab = 5120, 8192, 202_048
    attention = d * 40 * 128 * 2 + d * 8 * 128 * 2
    layer = attention + d * 16 + 2 * 3 * d * f + 2 * d
    assert params.active == 48 * layer + 2 * vocab * d + d
    assert abs(params.active - 17e9) <= 0.5e9
    experts = 48 * 16 * 3 * d * f
    assert params.total == params.active + experts - 48 * 3 * d * f
    assert 107e9 < params.total < 109e9


def test_qwen3_30b_a3b_active():
    """The report's "3.3B activated" is 3,353,032,704 cut to one decimal (rounding would give 3.4B): 48 layers of
    attention, router and 8 of 128 experts, plus both embedding tables."""
    params = costplan.estimate(costplan.load_spec(HF / "qwen3-30b-a3b" / "config.json")).params
    layer = (2048 * 4096 * 2 + 2048 * 512 * 2 + 2 * 128) + 2048 * 128 + 8 * 3 * 2048 * 768 + 2 * 2048
    assert params.active == 48 * layer + 2 * 151936 * 2048 + 2048
    assert 3.3e9 <= params.active < 3.4e9


@pytest.mark.parametrize("model_type", sorted(hf.FAMILIES))
def test_defaults_are_the_configuration_class_defaults(model_type):
    """A key left out of a file takes the default of transformers' configuration class, as from_pretrained
    does. The few keys a class does not declare have the defaults in UNDECLARED."""
    cls = transformers.CONFIG_MAPPING[model_type]
    declared = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    defaults = hf.FAMILIES[model_type].defaults
    assert {k: v for k, v in defaults.items() if k in declared} == {k: declared[k] for k in defaults if k in declared}
    assert {k: v for k, v in defaults.items() if k not in declared}.items() <= UNDECLARED.items()


UNDECLARED = {
    "sliding_window_pattern": 6,   # Gemma 3: read from the file's keys in __post_init__ when layer_types is absent
    "head_dim": None,          # read with getattr(config, "head_dim", hidden_size // num_attention_heads)
    "moe_layer_freq": 1,       # DeepSeek's own modelling code; its released files all say 1
    "attention_bias": False,   # carried by released Phi-3 files; the class builds no biases
    "norm_type": "layer_norm", "mlp_type": "default",   # carried by released StarCoder2 files
    # BLOOM: older files' name of hidden_size, taken by __post_init__; the attribute_map names of n_layer and
    # n_head; a context length, read by nothing in the class (ALiBi has no position table)
    "n_embed": None, "num_hidden_layers": None, "num_attention_heads": None, "seq_length": None,
    # GPT-NeoX's and Phi's partial rotary under their older keys, moved into rope_parameters by __post_init__
    "rotary_pct": 0.25, "partial_rotary_factor": 0.5,
}


@pytest.mark.parametrize("name, changes", [
    ("qwen2", {"head_dim": 32}),                              # read with getattr by the attention
    ("qwen3", {"use_sliding_window": True, "sliding_window": 8, "max_window_layers": 0}),
    ("qwen3_moe", {"mlp_only_layers": [1]}),                  # MoE layers 0 and 2: every second layer
    ("qwen2_moe", {"decoder_sparse_step": 1, "mlp_only_layers": [0, 1]}),
    ("deepseek_v3", {"q_lora_rank": None, "n_shared_experts": 0, "first_k_dense_replace": 0}),
    ("opt", {"enable_bias": False, "tie_word_embeddings": False}),
    ("gpt2", {"n_inner": 96, "tie_word_embeddings": False, "activation_function": "relu"}),
    # biases on attention (q, k, v and o) and on the MLP, apart
    ("llama", {"attention_bias": True}),
    ("llama", {"mlp_bias": True}),
    ("granite", {"attention_bias": True, "mlp_bias": False}),
    ("qwen3", {"attention_bias": True}),
    ("qwen3_moe", {"attention_bias": True}),
    ("olmoe", {"attention_bias": True}),
    ("gemma", {"attention_bias": True}),
    ("deepseek_v3", {"attention_bias": True}),                # low-rank queries: every down projection biased
    # parallel and sequential layers, their norms and K/V heads
    ("gpt_neox", {"use_parallel_residual": False, "attention_bias": False}),
    ("gptj", {"rotary_dim": 16, "n_inner": 96, "tie_word_embeddings": True}),   # a tied head keeps its bias
    ("phi", {"qk_layernorm": False, "num_key_value_heads": 2, "tie_word_embeddings": True}),
    ("falcon", {"num_ln_in_parallel_attn": 1}),               # the new decoder with one norm
    ("falcon", {"new_decoder_architecture": False}),          # Falcon-7B: multi-query, one shared norm
    ("falcon", {"new_decoder_architecture": False, "multi_query": False, "num_kv_heads": None, "bias": True,
                "ffn_hidden_size": 96, "tie_word_embeddings": False}),
    ("falcon", {"new_decoder_architecture": False, "multi_query": False, "num_kv_heads": None,
                "parallel_attn": False, "alibi": True, "bias": True}),      # sequential layers, ALiBi
    ("bloom", {"n_embed": 96, "tie_word_embeddings": False}),  # n_embed wins over hidden_size
    ("bloom", {"num_hidden_layers": 3, "num_attention_heads": 8}),   # the attribute_map names win
    ("bloom", {"slow_but_exact": True, "pretraining_tp": 2}),        # the same weights, sliced
    ("olmo", {"num_key_value_heads": 2, "tie_word_embeddings": False, "clip_qkv": None}),
    ("olmo", {"attention_bias": True}),                        # q, k, v and o biased, the MLP not
])
def test_variants_match_transformers(name, changes, tmp_path):
    data = {**json.loads((HF / "tiny" / f"{name}.json").read_text()), **changes}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(data))
    assert costplan_params(config) == transformers_params(config)


# Per-layer attention patterns: layer_types, or the switches each configuration class derives them from.
@pytest.mark.parametrize("name, changes", [
    ("qwen3", {"use_sliding_window": True, "sliding_window": 32, "max_window_layers": 1}),
    ("qwen2", {"layer_types": ["full_attention", "sliding_attention", "sliding_attention"],
               "use_sliding_window": True, "sliding_window": 16, "num_hidden_layers": 3}),
    ("qwen2", {"layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
               "use_sliding_window": True, "sliding_window": 16, "num_hidden_layers": 3}),
    ("qwen2_moe", {"use_sliding_window": True, "max_window_layers": 4, "sliding_window": 8}),
    ("gemma2", {}),                                            # every second layer global
    ("gpt_oss", {"layer_types": None}),                        # every second layer global
    ("gemma3_text", {}),                                       # every sixth, over 7 layers
    ("gemma3_text", {"sliding_window_pattern": 2, "num_hidden_layers": 5}),
    ("gemma3_text", {"layer_types": ["full_attention", "sliding_attention", "sliding_attention"],
                     "num_hidden_layers": 3}),
])
def test_layer_patterns_match_transformers(name, changes, tmp_path):
    data = {**json.loads((HF / "tiny" / f"{name}.json").read_text()), **changes}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(data))
    windows = transformers_windows(config)
    assert len(set(windows)) > 1                       # a real pattern, not one attention for every layer
    assert costplan_windows(config) == windows
    assert costplan_params(config) == transformers_params(config)


def transformers_llama4_layers(config: Path) -> list[tuple[str, bool]]:
    """Each layer of the Llama 4 class: its mask (the config's layer_types after __post_init__) and whether its
    attention rotates q and k (Llama4TextAttention.use_rope)."""
    data = json.loads(config.read_text())
    cfg = transformers.AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    return [(cfg.layer_types[i], bool(layer.self_attn.use_rope)) for i, layer in enumerate(model.model.layers)]


def costplan_llama4_layers(config: Path) -> list[tuple[str, bool]]:
    model = costplan.load_spec(config).model
    kinds = {"chunked": "chunked_attention", "flash": "full_attention"}
    return [(kinds[model.layer_attention(i).type], model.layer_attention(i).rope) for i in range(model.n_layers)]


@pytest.mark.parametrize("changes", [
    {},                                                        # every 4th layer NoPE and global, chunks of 48
    {"attention_chunk_size": None, "attention_bias": True},    # no chunks: every layer global, NoPE kept
    {"no_rope_layers": [1, 0, 1, 1], "moe_layers": [0, 1, 2, 3]},
    {"no_rope_layer_interval": 2, "interleave_moe_layer_step": 1, "num_hidden_layers": 6},
    {"layer_types": ["full_attention", "chunked_attention", "chunked_attention", "full_attention"]},
    {"moe_layers": [2, 3]},                                    # two dense layers first
])
def test_llama4_layers_match_transformers(changes, tmp_path):
    data = {**json.loads((HF / "tiny" / "llama4_text.json").read_text()), **changes}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(data))
    assert costplan_llama4_layers(config) == transformers_llama4_layers(config)
    assert costplan_params(config) == transformers_params(config)


def test_llama4_refuses_what_a_spec_cannot_state(tmp_path):
    data = {**json.loads((HF / "tiny" / "llama4_text.json").read_text()), "moe_layers": [0, 1, 3]}
    config = tmp_path / "config.json"
    config.write_text(json.dumps(data))
    with pytest.raises(costplan.errors.SpecError, match="moe_layers"):
        costplan.load_spec(config)


@pytest.mark.parametrize("model_type", sorted(set(hf.FAMILIES) - {"deepseek_v2"}))   # its default top-k is None
def test_the_class_defaults_match_transformers(model_type, tmp_path):
    # a file naming only its model type: every size and switch is the configuration class's default
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": model_type}))
    assert costplan_params(config) == transformers_params(config)


def test_gpt_oss_parameters_are_stated_by_sinks_a_router_bias_and_biased_experts():
    # transformers' GptOss: a sink logit per query head (GptOssAttention.sinks), a router with a bias
    # (GptOssTopKRouter), experts with biases on the fused gate_up (2 × d_ff wide) and down projections, and
    # q, k, v, o biases (attention_bias): the spec fields below, parameter for parameter.
    cfg = transformers.GptOssConfig(vocab_size=300, hidden_size=64, intermediate_size=48, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4,
                                    num_experts_per_tok=2, tie_word_embeddings=False, attention_bias=True)
    with torch.device("meta"):
        expected = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_config(cfg).parameters())
    spec = costplan.load_spec({"model": {
        "vocab_size": 300, "d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16,
        "max_seq_len": 128, "mlp": "swiglu", "norm": "rmsnorm", "position": "rope", "tie_embeddings": False,
        "bias": True, "attention_sinks": True, "attention": "flash",
        "moe": {"n_experts": 4, "top_k": 2, "d_ff_expert": 48, "router_bias": True}}})
    assert costplan.estimate(spec).params.total == expected


@pytest.mark.parametrize("config", TINY, ids=lambda p: p.stem)
def test_a_config_as_this_transformers_saves_it_reads_the_same(config, tmp_path):
    """The tiny config loaded by the transformers class and saved again (transformers 5.x renames keys: Qwen3-MoE's
    num_experts is saved as num_local_experts, Gemma 3's window pattern as _sliding_window_pattern) costs the
    same."""
    data = json.loads(config.read_text())
    saved = tmp_path / "saved"
    transformers.AutoConfig.for_model(data.pop("model_type"), **data).save_pretrained(saved)
    assert costplan_params(saved / "config.json") == costplan_params(config) == transformers_params(config)


def test_the_aliases_are_the_transformers_classes_attribute_maps():
    from costplan.hf.families import ALIASES, FAMILIES

    for model_type in FAMILIES:
        mapped = getattr(type(transformers.AutoConfig.for_model(model_type)), "attribute_map", {})
        known = FAMILIES[model_type].known()
        expected = {a if b in known else b: b if b in known else a for a, b in mapped.items()
                    if (a in known) != (b in known)}
        assert {k: v for k, v in ALIASES.get(model_type, {}).items() if not k.startswith("_")} == expected


def test_two_names_of_one_setting_must_agree(tmp_path):
    data = json.loads((HF / "tiny" / "qwen3_moe.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**data, "num_local_experts": data["num_experts"] + 1}))
    with pytest.raises(costplan.SpecError, match="num_local_experts: .*, and num_experts: .*: the two name one "
                                                 "setting; give one"):
        costplan.load_spec(path)
