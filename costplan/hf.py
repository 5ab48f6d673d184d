"""Hugging Face `config.json` files as specs: each supported `model_type` is a table from spec fields to the
config keys they are read from. Local files only; nothing here imports torch or transformers or reaches the
network.

A config is read only when the spec it gives costs exactly what the `transformers` class of that model type
builds (tests/test_hf_transformers.py builds each class on the meta device and compares the parameter count).
So every key of the file must be accounted for: read into a field, consulted by a check that refuses values a
spec cannot state (a per-layer sliding-window pattern, biases on some projections only, quantized weights), or
on an explicit list of keys that do not change cost (dropout, token ids, RoPE frequencies, norm epsilons). Any
other key is an error: a key costplan does not know may change the cost, and it must not be dropped silently.

A key absent from the file takes the default of the `transformers` configuration class of its model type
(`configuration_<model_type>.py`), as `from_pretrained` would; the import says which defaults it took.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from costplan.errors import SpecError

CONFIG_NAME = "config.json"


class Unsupported(Exception):
    """A config value describing something a spec cannot state; `key` is the key to name."""

    def __init__(self, key: str, why: str):
        super().__init__(why)
        self.key, self.why = key, why


# ---------------------------------------------------------------------------------------------- fields
@dataclass(frozen=True)
class Field:
    """One spec field: computed from the values of `keys` (defaults filled in); None leaves it out, for the
    spec's own default, which is the same as the class's (e.g. n_kv_heads = n_heads)."""

    keys: tuple[str, ...]
    compute: Callable[..., Any] = lambda value: value
    note: str = ""                       # the comment in `costplan import`; default "from <keys>"


def key(name: str, compute: Callable[..., Any] = lambda value: value) -> Field:
    return Field((name,), compute)


def fixed(value: Any, note: str) -> Field:
    """A field the model type fixes: its modelling code builds it so whatever the config says."""
    return Field((), lambda: value, note)


@dataclass(frozen=True)
class Check:
    """Keys whose values a spec can state only when `ok(*values)`; otherwise an error naming the first key."""

    keys: tuple[str, ...]
    ok: Callable[..., bool]
    why: str


@dataclass(frozen=True)
class Family:
    """How one model_type reads: spec fields, checks, the class defaults, and keys without cost."""

    label: str                           # the transformers class, for comments and errors
    fields: dict[str, Field]
    defaults: dict[str, Any]
    checks: tuple[Check, ...] = ()
    ignored: frozenset[str] = frozenset()

    def known(self) -> set[str]:
        return ({k for f in self.fields.values() for k in f.keys} | {k for c in self.checks for k in c.keys}
                | set(self.ignored) | IGNORED)


# Keys with no cost in any model type: bookkeeping, token ids, initialisation, numerics of elementwise ops,
# RoPE frequencies (no parameters, no matmuls), generation settings, and regularisers costplan's convention
# leaves out (dropout: activations are counted without dropout masks, costs/__init__.py convention 7).
IGNORED = frozenset({
    "model_type", "architectures", "transformers_version", "_name_or_path", "name_or_path", "torch_dtype",
    "dtype", "use_cache", "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id",
    "decoder_start_token_id", "initializer_range", "init_std", "id2label", "label2id", "num_labels",
    "problem_type", "finetuning_task", "prefix", "task_specific_params", "tokenizer_class", "return_dict",
    "output_hidden_states", "output_attentions", "torchscript", "chunk_size_feed_forward", "auto_map",
    "rope_theta", "rope_scaling", "rope_parameters", "rope_interleave", "partial_rotary_factor",
    "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon", "norm_epsilon", "attention_dropout",
    "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout", "activation_dropout",
    "classifier_dropout", "pretraining_tp", "max_length", "min_length", "do_sample", "temperature", "top_k",
    "top_p", "num_beams", "repetition_penalty", "length_penalty", "no_repeat_ngram_size",
    "bad_words_ids", "num_return_sequences", "early_stopping", "use_bfloat16", "tie_encoder_decoder",
    "is_decoder", "cross_attention_hidden_size", "output_scores", "_attn_implementation_autoset",
    "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values",
    "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens", "typical_p",
    "diversity_penalty", "num_beam_groups", "encoder_no_repeat_ngram_size", "tf_legacy_loss",
})
# Keys no supported config may carry with a value other than these: they change what the class builds.
COMMON_CHECKS = (
    Check(("quantization_config",), lambda value: value is None,
          "quantized weights (and their scales) are not modelled; remove the key to estimate the model at "
          "training.precision"),
    Check(("is_encoder_decoder",), lambda value: not value, "encoder-decoder models are not modelled"),
    Check(("add_cross_attention",), lambda value: not value, "cross-attention layers are not modelled"),
    Check(("pruned_heads",), lambda value: not value, "pruned attention heads are not modelled"),
)
COMMON_DEFAULTS = {"quantization_config": None, "is_encoder_decoder": False, "add_cross_attention": False,
                   "pruned_heads": None}


# ---------------------------------------------------------------------------------------------- transforms
GELU = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_python", "gelu_accurate")


def gated_mlp(act: str) -> str:
    """The MLP of Llama-style blocks: down(act(gate(x)) * up(x))."""
    if act in ("silu", "swish"):
        return "swiglu"
    if act in GELU:
        return "geglu"
    raise Unsupported("hidden_act", f"{act!r}: a gated MLP with this activation is not modelled (silu or gelu)")


def plain_mlp(name: str) -> Callable[[str], str]:
    def compute(act: str) -> str:
        """The MLP of GPT-style blocks: down(act(up(x)))."""
        if act in GELU:
            return "gelu"
        if act == "relu":
            return "relu"
        raise Unsupported(name, f"{act!r}: an MLP with this activation is not modelled (gelu or relu)")
    return compute


def no_o_bias(key_name: str) -> Callable[[bool], bool]:
    def compute(attention_bias: bool) -> bool:
        """Biases on q, k, v and o but not in the MLP: a spec's `bias` covers W_o and the MLP together."""
        if attention_bias:
            raise Unsupported(key_name, "true puts a bias on the output projection but none in the MLP; a spec's "
                                        "`bias` covers both")
        return False
    return compute


def llama_bias(attention_bias: bool, mlp_bias: bool) -> bool:
    if attention_bias != mlp_bias:
        raise Unsupported("attention_bias" if attention_bias else "mlp_bias",
                          f"attention_bias {attention_bias} with mlp_bias {mlp_bias}: a spec's `bias` covers the "
                          "output projection and the MLP together")
    return attention_bias


def window(sliding_window: int | None) -> dict[str, Any]:
    """Every layer attends to the `sliding_window` most recent keys, itself included (masking_utils), or to
    all of them; transformers' default SDPA attention stores no score matrix, as `flash` describes."""
    if sliding_window is None:
        return {"type": "flash"}
    return {"type": "sliding_window", "window": sliding_window}


def layer_pattern(types: list[str], sliding_window: int | None, key_name: str) -> dict[str, Any]:
    """The attention of layers typed full_attention / sliding_attention, when every layer has the same."""
    kinds = set(types)
    if kinds == {"full_attention"}:
        return window(None)
    if kinds == {"sliding_attention"} and sliding_window:
        return window(sliding_window)
    raise Unsupported(key_name, f"layer types {sorted(kinds)}: a spec has one attention type for every layer "
                                "(per-layer attention patterns are not modelled yet)")


def qwen_attention(use: bool, sliding_window: int | None, max_window_layers: int, layer_types: list | None,
                   n_layers: int) -> dict[str, Any]:
    """Qwen2/Qwen3: with use_sliding_window, layers from max_window_layers on are windowed (the config's
    __post_init__), unless layer_types lists them."""
    if layer_types is not None:
        return layer_pattern(layer_types, sliding_window if use else None, "layer_types")
    windowed = use and sliding_window is not None
    types = ["sliding_attention" if windowed and i >= max_window_layers else "full_attention"
             for i in range(n_layers)]
    return layer_pattern(types, sliding_window, "use_sliding_window")


def qwen2_moe_attention(use: bool, sliding_window: int | None, max_window_layers: int, layer_types: list | None,
                        n_layers: int) -> dict[str, Any]:
    """Qwen2-MoE: with use_sliding_window, the even-indexed layers below max_window_layers are windowed."""
    if layer_types is None:
        layer_types = ["sliding_attention" if use and (i + 1) % 2 and i < max_window_layers else "full_attention"
                       for i in range(n_layers)]
        return layer_pattern(layer_types, sliding_window, "use_sliding_window")
    return layer_pattern(layer_types, sliding_window if use else None, "layer_types")


def moe_layers(is_moe: list[bool], key_name: str) -> dict[str, int]:
    """first_dense_layers and every for a list of which layers are MoE, when a spec can say it that way."""
    if not any(is_moe):
        raise Unsupported(key_name, "leaves no mixture-of-experts layer; not modelled as a MoE model")
    first = is_moe.index(True)
    for every in range(1, len(is_moe) + 1):
        if [i >= first and (i - first) % every == 0 for i in range(len(is_moe))] == is_moe:
            return {"first_dense_layers": first, "every": every}
    moe = [i for i, flag in enumerate(is_moe) if flag]
    raise Unsupported(key_name, f"MoE layers {moe} are not some dense layers followed by every n-th layer, "
                                "the patterns a spec can state")


def qwen_moe(n_experts: int, top_k: int, d_ff_expert: int, step: int, mlp_only: list | None,
             n_layers: int) -> dict[str, Any]:
    """Layer i is MoE unless listed in mlp_only_layers, when (i + 1) % decoder_sparse_step == 0."""
    mlp_only = mlp_only or []
    is_moe = [i not in mlp_only and n_experts > 0 and (i + 1) % step == 0 for i in range(n_layers)]
    layout = moe_layers(is_moe, "mlp_only_layers" if mlp_only else "decoder_sparse_step")
    moe = {"n_experts": n_experts, "top_k": top_k, "d_ff_expert": d_ff_expert}
    if layout["first_dense_layers"]:
        moe["first_dense_layers"] = layout["first_dense_layers"]
    if layout["every"] > 1:
        moe["every"] = layout["every"]
    return moe


def qwen2_moe(n_experts: int, top_k: int, d_ff_expert: int, step: int, mlp_only: list | None, n_layers: int,
              shared: int) -> dict[str, Any]:
    """Qwen2-MoE adds one shared expert of shared_expert_intermediate_size behind a sigmoid gate."""
    if not shared:
        raise Unsupported("shared_expert_intermediate_size", "0 keeps the shared expert's gate without the "
                                                             "expert; not modelled")
    return {**qwen_moe(n_experts, top_k, d_ff_expert, step, mlp_only, n_layers),
            "n_shared_experts": 1, "d_ff_shared": shared, "shared_expert_gate": True}


def deepseek_moe(n_experts: int, top_k: int | None, d_ff_expert: int, n_shared: int,
                 first_dense: int) -> dict[str, Any]:
    """Layers from first_k_dense_replace on are MoE; n_shared_experts form one MLP of n × the expert width
    (the spec's default d_ff_shared). The router's score-correction bias is a buffer, not a parameter."""
    if top_k is None:  # DeepseekV2Config's default
        raise Unsupported("num_experts_per_tok", "missing or null: the experts each token is routed to are not set")
    moe = {"n_experts": n_experts, "top_k": top_k, "d_ff_expert": d_ff_expert}
    if n_shared:
        moe["n_shared_experts"] = n_shared
    if first_dense:
        moe["first_dense_layers"] = first_dense
    return moe


def mla(kv_lora_rank: int, q_lora_rank: int | None, nope: int, rope: int, v: int) -> dict[str, Any]:
    attention = {"type": "mla", "kv_lora_rank": kv_lora_rank, "q_lora_rank": q_lora_rank,
                 "qk_nope_head_dim": nope, "qk_rope_head_dim": rope, "v_head_dim": v}
    return {k: value for k, value in attention.items() if value is not None}


# ---------------------------------------------------------------------------------------------- families
def llama_like(label: str, *, mlp_key: str = "intermediate_size", **overrides: Field) -> dict[str, Field]:
    """The fields every Llama-style decoder reads alike; `overrides` replace or add fields, in place."""
    fields = {
        "model.vocab_size": key("vocab_size"),
        "model.d_model": key("hidden_size"),
        "model.n_layers": key("num_hidden_layers"),
        "model.n_heads": key("num_attention_heads"),
        "model.n_kv_heads": key("num_key_value_heads"),
        "model.head_dim": key("head_dim"),
        "model.d_ff": key(mlp_key),
        "model.max_seq_len": key("max_position_embeddings"),
        "model.mlp": key("hidden_act", gated_mlp),
        "model.norm": fixed("rmsnorm", f"{label}: RMSNorm with a weight"),
        "model.position": fixed("rope", f"{label}: rotary position embeddings"),
        "model.tie_embeddings": key("tie_word_embeddings"),
        "model.bias": fixed(False, f"{label}: no biases"),
        "model.qkv_bias": None,          # placeholders keep the spec's field order when a family sets them
        "model.qk_norm": None,
        "model.attention": fixed(window(None), f"{label}: full causal attention (SDPA: no score matrix stored)"),
        "model.moe": None,
    }
    fields.update(overrides)
    return {name: f for name, f in fields.items() if f is not None}


LLAMA_DEFAULTS = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": None, "head_dim": None, "hidden_act": "silu",
                  "max_position_embeddings": 2048, "tie_word_embeddings": False}
QWEN_WINDOW_KEYS = ("use_sliding_window", "sliding_window", "max_window_layers", "layer_types", "num_hidden_layers")
QWEN_WINDOW_NOTE = "from use_sliding_window, sliding_window, max_window_layers, layer_types"
MOE_IGNORED = frozenset({"norm_topk_prob", "router_aux_loss_coef", "output_router_logits", "router_jitter_noise"})

DEEPSEEK_FIELDS = {
    "model.head_dim": None, "model.n_kv_heads": None,
    "model.bias": key("attention_bias", no_o_bias("attention_bias")),
    "model.qkv_bias": key("attention_bias"),
    "model.attention": Field(("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"),
                             mla),
    "model.moe": Field(("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "n_shared_experts",
                        "first_k_dense_replace"), deepseek_moe),
}
DEEPSEEK_CHECKS = (
    Check(("moe_layer_freq",), lambda n: n == 1, "MoE every n-th layer is not built by the transformers class"),
)
# Group-limited routing and its scaling are elementwise. The multi-token-prediction module
# (num_nextn_predict_layers) is not built by the transformers class, so it is left out as there. MLA reads no
# num_key_value_heads (every head has its own key and value); head_dim and qk_head_dim are derived by the class
# from the MLA widths.
DEEPSEEK_IGNORED = MOE_IGNORED | {"num_key_value_heads", "head_dim", "qk_head_dim", "routed_scaling_factor",
                                  "n_group", "topk_group", "topk_method", "scoring_func", "aux_loss_alpha",
                                  "seq_aux", "ep_size", "num_nextn_predict_layers"}

FAMILIES: dict[str, Family] = {
    "llama": Family("LlamaForCausalLM", llama_like(
        "llama",
        **{"model.bias": Field(("attention_bias", "mlp_bias"), llama_bias),
           "model.qkv_bias": key("attention_bias")}),
        {**LLAMA_DEFAULTS, "attention_bias": False, "mlp_bias": False}),
    "mistral": Family("MistralForCausalLM", llama_like(
        "mistral", **{"model.attention": key("sliding_window", window)}),
        {**LLAMA_DEFAULTS, "intermediate_size": 14336, "num_key_value_heads": 8, "max_position_embeddings": 131072,
         "sliding_window": 4096}),
    "mixtral": Family("MixtralForCausalLM", llama_like(
        "mixtral", **{"model.attention": key("sliding_window", window),
                      "model.moe": Field(("num_local_experts", "num_experts_per_tok", "intermediate_size"),
                                         lambda n, k, f: {"n_experts": n, "top_k": k, "d_ff_expert": f})}),
        {**LLAMA_DEFAULTS, "intermediate_size": 14336, "num_key_value_heads": 8, "max_position_embeddings": 131072,
         "sliding_window": None, "num_local_experts": 8, "num_experts_per_tok": 2},
        ignored=MOE_IGNORED),
    "qwen2": Family("Qwen2ForCausalLM", llama_like(
        "qwen2", **{"model.qkv_bias": fixed(True, "qwen2: biases on q, k and v only"),
                    "model.attention": Field(QWEN_WINDOW_KEYS, qwen_attention, QWEN_WINDOW_NOTE)}),
        {**LLAMA_DEFAULTS, "vocab_size": 151936, "intermediate_size": 22016, "num_key_value_heads": 32,
         "max_position_embeddings": 32768, "use_sliding_window": False, "sliding_window": 4096,
         "max_window_layers": 28, "layer_types": None}),
    "qwen3": Family("Qwen3ForCausalLM", llama_like(
        "qwen3", **{"model.bias": key("attention_bias", no_o_bias("attention_bias")),
                    "model.qkv_bias": key("attention_bias"),
                    "model.qk_norm": fixed("head", "qwen3: RMSNorm over head_dim on each query and key head"),
                    "model.attention": Field(QWEN_WINDOW_KEYS, qwen_attention, QWEN_WINDOW_NOTE)}),
        {**LLAMA_DEFAULTS, "vocab_size": 151936, "intermediate_size": 22016, "num_key_value_heads": 32,
         "head_dim": 128, "max_position_embeddings": 32768, "attention_bias": False, "use_sliding_window": False,
         "sliding_window": 4096, "max_window_layers": 28, "layer_types": None}),
    "qwen2_moe": Family("Qwen2MoeForCausalLM", llama_like(
        "qwen2_moe", **{"model.qkv_bias": key("qkv_bias"),
                        "model.attention": Field(QWEN_WINDOW_KEYS, qwen2_moe_attention, QWEN_WINDOW_NOTE),
                        "model.moe": Field(("num_experts", "num_experts_per_tok", "moe_intermediate_size",
                                            "decoder_sparse_step", "mlp_only_layers", "num_hidden_layers",
                                            "shared_expert_intermediate_size"), qwen2_moe)}),
        {**LLAMA_DEFAULTS, "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632,
         "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
         "max_position_embeddings": 32768, "use_sliding_window": False, "sliding_window": 4096,
         "max_window_layers": 28, "layer_types": None, "decoder_sparse_step": 1, "moe_intermediate_size": 1408,
         "shared_expert_intermediate_size": 5632, "num_experts_per_tok": 4, "num_experts": 60,
         "mlp_only_layers": None, "qkv_bias": True},
        ignored=MOE_IGNORED),
    "qwen3_moe": Family("Qwen3MoeForCausalLM", llama_like(
        "qwen3_moe", **{"model.bias": key("attention_bias", no_o_bias("attention_bias")),
                        "model.qkv_bias": key("attention_bias"),
                        "model.qk_norm": fixed("head", "qwen3_moe: RMSNorm over head_dim on each query and key "
                                                       "head"),
                        # every layer takes sliding_window when use_sliding_window is set
                        "model.attention": Field(("use_sliding_window", "sliding_window"),
                                                 lambda use, w: window(w if use else None)),
                        "model.moe": Field(("num_experts", "num_experts_per_tok", "moe_intermediate_size",
                                            "decoder_sparse_step", "mlp_only_layers", "num_hidden_layers"),
                                           qwen_moe)}),
        {**LLAMA_DEFAULTS, "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144,
         "num_hidden_layers": 24, "num_attention_heads": 32, "num_key_value_heads": 4,
         "max_position_embeddings": 32768, "attention_bias": False, "use_sliding_window": False,
         "sliding_window": 4096, "decoder_sparse_step": 1, "moe_intermediate_size": 768,
         "num_experts_per_tok": 8, "num_experts": 128, "mlp_only_layers": None},
        # max_window_layers is read by nothing in the Qwen3-MoE class
        ignored=MOE_IGNORED | {"max_window_layers"}),
    "olmoe": Family("OlmoeForCausalLM", llama_like(
        "olmoe", **{"model.head_dim": None,
                    "model.bias": key("attention_bias", no_o_bias("attention_bias")),
                    "model.qkv_bias": key("attention_bias"),
                    "model.qk_norm": fixed("full", "olmoe: RMSNorm over the whole query and key widths"),
                    "model.moe": Field(("num_experts", "num_experts_per_tok", "intermediate_size"),
                                       lambda n, k, f: {"n_experts": n, "top_k": k, "d_ff_expert": f})}),
        {**LLAMA_DEFAULTS, "vocab_size": 50304, "hidden_size": 2048, "intermediate_size": 2048,
         "num_hidden_layers": 16, "num_attention_heads": 16, "max_position_embeddings": 4096,
         "attention_bias": False, "num_experts_per_tok": 8, "num_experts": 64},
        checks=(Check(("head_dim", "hidden_size", "num_attention_heads"), lambda h, d, n: h is None or h * n == d,
                      "the query norm stays hidden_size wide whatever head_dim is; not modelled"),),
        # clip_qkv clamps q, k and v elementwise
        ignored=MOE_IGNORED | {"clip_qkv"}),
    "deepseek_v2": Family("DeepseekV2ForCausalLM", llama_like("deepseek_v2", **DEEPSEEK_FIELDS),
        {**{k: v for k, v in LLAMA_DEFAULTS.items() if k != "head_dim"}, "vocab_size": 102400,
         "attention_bias": False, "mlp_bias": False, "kv_lora_rank": 512, "q_lora_rank": 1536,
         "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64,
         "num_experts_per_tok": None, "moe_intermediate_size": 1407, "n_shared_experts": 2,
         "first_k_dense_replace": 0, "moe_layer_freq": 1},
        checks=DEEPSEEK_CHECKS + (
            Check(("mlp_bias",), lambda v: not v, "biases on the dense and shared MLPs but not on the routed "
                                                  "experts or the attention output are not modelled"),),
        ignored=DEEPSEEK_IGNORED),
    "deepseek_v3": Family("DeepseekV3ForCausalLM", llama_like("deepseek_v3", **DEEPSEEK_FIELDS),
        {**{k: v for k, v in LLAMA_DEFAULTS.items() if k != "head_dim"}, "vocab_size": 129280, "hidden_size": 7168,
         "intermediate_size": 18432,
         "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
         "max_position_embeddings": 4096, "attention_bias": False, "kv_lora_rank": 512, "q_lora_rank": 1536,
         "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
         "num_experts_per_tok": 8, "moe_intermediate_size": 2048, "n_shared_experts": 1,
         "first_k_dense_replace": 3, "moe_layer_freq": 1},
        checks=DEEPSEEK_CHECKS, ignored=DEEPSEEK_IGNORED),
    "gemma": Family("GemmaForCausalLM", llama_like(
        "gemma", **{"model.bias": key("attention_bias", no_o_bias("attention_bias")),
                    "model.qkv_bias": key("attention_bias")}),
        # Gemma's RMSNorm scales by (1 + weight): one weight per feature all the same; the embedding is
        # multiplied by sqrt(hidden_size), elementwise.
        {**LLAMA_DEFAULTS, "vocab_size": 256000, "hidden_size": 3072, "intermediate_size": 24576,
         "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 256,
         "hidden_act": "gelu_pytorch_tanh", "max_position_embeddings": 8192, "tie_word_embeddings": True,
         "attention_bias": False, "use_bidirectional_attention": None},
        checks=(Check(("use_bidirectional_attention",), lambda v: not v,
                      "bidirectional attention (an encoder) is not modelled"),),
        # the activation of older files, read by nothing in the class (hidden_act is)
        ignored=frozenset({"hidden_activation"})),
    "phi3": Family("Phi3ForCausalLM", llama_like(
        "phi3", **{"model.head_dim": None, "model.attention": key("sliding_window", window)}),
        {**LLAMA_DEFAULTS, "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192,
         "max_position_embeddings": 4096, "sliding_window": None, "attention_bias": False},
        # released Phi-3 files carry attention_bias: false; the class builds its projections without biases
        checks=(Check(("attention_bias",), lambda v: not v, "true is not built by the transformers class"),),
        # long-context RoPE rescaling (original_max_position_embeddings) has no parameters
        ignored=frozenset({"original_max_position_embeddings"})),
    "starcoder2": Family("Starcoder2ForCausalLM", llama_like(
        "starcoder2", **{"model.head_dim": None,
                         "model.mlp": key("hidden_act", plain_mlp("hidden_act")),
                         "model.norm": fixed("layernorm", "starcoder2: LayerNorm with weight and bias"),
                         "model.bias": key("use_bias"),
                         "model.attention": key("sliding_window", window)}),
        {**LLAMA_DEFAULTS, "vocab_size": 49152, "hidden_size": 3072, "intermediate_size": 12288,
         "num_hidden_layers": 30, "num_attention_heads": 24, "num_key_value_heads": 2,
         "hidden_act": "gelu_pytorch_tanh", "max_position_embeddings": 4096, "sliding_window": None,
         "use_bias": True, "tie_word_embeddings": True, "norm_type": "layer_norm", "mlp_type": "default"},
        # released StarCoder2 files name the only norm and MLP the class builds
        checks=(Check(("norm_type",), lambda v: v == "layer_norm", "only layer_norm is built by the class"),
                Check(("mlp_type",), lambda v: v == "default", "only the default MLP is built by the class")),
        ignored=frozenset({"residual_dropout", "embedding_dropout"})),
    "granite": Family("GraniteForCausalLM", llama_like(
        "granite", **{"model.bias": Field(("attention_bias", "mlp_bias"), llama_bias),
                      "model.qkv_bias": key("attention_bias")}),
        {**LLAMA_DEFAULTS, "attention_bias": False, "mlp_bias": False},
        # Granite's scalings of the embedding, the residual branches, the attention scores and the logits are
        # elementwise multiplications
        ignored=frozenset({"embedding_multiplier", "residual_multiplier", "attention_multiplier",
                           "logits_scaling"})),
    "gpt2": Family("GPT2LMHeadModel", {
        "model.vocab_size": key("vocab_size"),
        "model.d_model": key("n_embd"),
        "model.n_layers": key("n_layer"),
        "model.n_heads": key("n_head"),
        "model.d_ff": key("n_inner"),    # None: 4 × n_embd, the spec's default too
        "model.max_seq_len": key("n_positions"),
        "model.mlp": key("activation_function", plain_mlp("activation_function")),
        "model.norm": fixed("layernorm", "gpt2: LayerNorm with weight and bias"),
        "model.position": fixed("learned", "gpt2: a learned position table of n_positions rows"),
        "model.tie_embeddings": key("tie_word_embeddings"),
        "model.bias": fixed(True, "gpt2: biases on every projection"),
        "model.attention": fixed(window(None), "gpt2: full causal attention (SDPA: no score matrix stored)"),
    }, {"vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None, "n_positions": 1024,
        "activation_function": "gelu_new", "tie_word_embeddings": True},
        # n_ctx is read by nothing in the class; summary_* configure the double-heads model's classifier;
        # the attention scalings and the fp32 upcast of scores are elementwise
        ignored=frozenset({"n_ctx", "summary_type", "summary_use_proj", "summary_activation",
                           "summary_proj_to_labels", "summary_first_dropout", "scale_attn_weights",
                           "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"})),
    "opt": Family("OPTForCausalLM", {
        "model.vocab_size": key("vocab_size"),
        "model.d_model": key("hidden_size"),
        "model.n_layers": key("num_hidden_layers"),
        "model.n_heads": key("num_attention_heads"),
        "model.d_ff": key("ffn_dim"),
        # OPT's learned position table has 2 rows more than positions (a padding offset), which a spec
        # states as a max_seq_len 2 longer, trained at max_position_embeddings.
        "model.max_seq_len": Field(("max_position_embeddings",), lambda n: n + 2,
                                   "from max_position_embeddings + 2: OPT's position table has 2 extra rows"),
        "model.mlp": key("activation_function", plain_mlp("activation_function")),
        "model.norm": fixed("layernorm", "opt: LayerNorm with weight and bias"),
        "model.position": fixed("learned", "opt: a learned position table"),
        "model.tie_embeddings": key("tie_word_embeddings"),
        "model.bias": key("enable_bias"),
        "model.attention": fixed(window(None), "opt: full causal attention (SDPA: no score matrix stored)"),
        "training.seq_len": key("max_position_embeddings"),
    }, {"vocab_size": 50272, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
        "ffn_dim": 3072, "max_position_embeddings": 2048, "activation_function": "relu", "tie_word_embeddings": True,
        "enable_bias": True, "do_layer_norm_before": True, "_remove_final_layer_norm": False,
        "word_embed_proj_dim": None, "layer_norm_elementwise_affine": True, "layerdrop": 0.0},
        checks=(
            Check(("do_layer_norm_before",), lambda v: v, "post-norm layers without a final norm (OPT-350m) "
                                                          "are not modelled"),
            Check(("_remove_final_layer_norm",), lambda v: not v, "a model without its final norm is not "
                                                                  "modelled"),
            Check(("word_embed_proj_dim", "hidden_size"), lambda w, d: w is None or w == d,
                  "an embedding narrower than hidden_size, with projections in and out, is not modelled"),
            Check(("layer_norm_elementwise_affine",), lambda v: v, "norms without weights are not modelled"),
            Check(("layerdrop",), lambda v: not v, "skipping layers at random in training is not modelled"),
        )),
}

# Model types costplan knows it cannot state exactly, with the reason, so the error says more than "no".
UNSUPPORTED = {
    "olmo": "its LayerNorms have no weight or bias, which a spec cannot state",
    "olmo2": "its norms follow the attention and MLP blocks (post-norm); not modelled yet",
    "phi": "parallel attention and MLP blocks sharing one norm, and an LM-head bias, are not modelled yet",
    "gptj": "parallel attention and MLP blocks sharing one norm, and an LM-head bias, are not modelled yet",
    "gpt_neox": "parallel attention and MLP blocks (use_parallel_residual) are not modelled yet",
    "falcon": "parallel attention and MLP blocks are not modelled yet",
    "gemma2": "per-layer sliding-window patterns, logit soft-capping and four norms per layer are not "
              "modelled yet",
    "gemma3_text": "per-layer sliding-window patterns and four norms per layer are not modelled yet",
    "gpt_oss": "alternating sliding-window layers, attention sinks and a biased router are not modelled yet",
}


# ---------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Imported:
    """A config read as a spec mapping, with where each field came from."""

    model_type: str
    spec: dict[str, Any]
    notes: dict[str, str]                # spec path → the comment saying where it came from
    used: list[str] = field(default_factory=list)        # keys of the file read into fields or checks
    defaulted: list[str] = field(default_factory=list)   # keys absent from the file: the class's default
    ignored: list[str] = field(default_factory=list)     # keys of the file without cost


def config_file(path: Path) -> Path | None:
    """The config.json a spec argument names: a .json file, or a folder's config.json; None for others (a
    folder without one is then reported as a folder, not a YAML file)."""
    if path.is_dir():
        return path / CONFIG_NAME if (path / CONFIG_NAME).is_file() else None
    return path if path.suffix == ".json" else None


def spec_name(config: Path) -> str:
    """A folder's name for its config.json (as checkpoints are laid out), otherwise the file's stem."""
    return config.parent.resolve().name if config.name == CONFIG_NAME else config.stem


def load_json(config: Path) -> dict[str, Any]:
    label = str(config)
    if not config.exists():
        raise SpecError(label, ["no such file"])
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(label, [f"cannot be read: {exc}"]) from None
    except json.JSONDecodeError as exc:
        raise SpecError(label, [f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"]) from None
    if not isinstance(data, dict):
        raise SpecError(label, ["the top level must be a JSON object, as in a Hugging Face config.json"])
    return data


def read(config: Path) -> Imported:
    """The spec mapping of a Hugging Face config.json; every problem at once as a SpecError."""
    data = load_json(config)
    label, model_type = str(config), data.get("model_type")
    if model_type not in FAMILIES:
        supported = ", ".join(sorted(FAMILIES))
        if model_type is None:
            raise SpecError(label, [f"model_type: missing; a Hugging Face config names its model type "
                                    f"(supported: {supported})"])
        why = f" ({UNSUPPORTED[model_type]})" if model_type in UNSUPPORTED else ""
        raise SpecError(label, [f"model_type: {model_type!r} is not supported{why}; supported: {supported}"])
    family = FAMILIES[model_type]
    known = family.known() | {k for c in COMMON_CHECKS for k in c.keys}
    problems = [f"{k}: unknown to costplan for model_type {model_type}; it may change the cost, so it is not "
                "ignored" for k in data if k not in known]
    values = {**COMMON_DEFAULTS, **family.defaults, **data}
    for check in (*COMMON_CHECKS, *family.checks):
        if not check.ok(*(values.get(k) for k in check.keys)):
            value = values.get(check.keys[0])
            shown = "" if isinstance(value, (dict, list)) else f"{json.dumps(value)}: "
            problems.append(f"{check.keys[0]}: {shown}{check.why}")
    spec: dict[str, Any] = {"name": spec_name(config)}
    notes: dict[str, str] = {}
    for path, f in family.fields.items():
        missing = [k for k in f.keys if k not in values]
        if missing:  # a key the table reads has no default: the table is incomplete
            raise KeyError(f"{model_type}: no default for {missing}")
        try:
            value = f.compute(*(values[k] for k in f.keys))
        except Unsupported as exc:
            problems.append(f"{exc.key}: {exc.why}")
            continue
        if value is None:
            continue
        section, _, name = path.partition(".")
        spec.setdefault(section, {})[name] = value
        notes[path] = f.note or f"from {', '.join(f.keys)}"
    if problems:
        raise SpecError(label, problems)
    read_keys = {k for f in family.fields.values() for k in f.keys} | {k for c in family.checks for k in c.keys}
    return Imported(
        model_type=model_type, spec=spec, notes=notes,
        used=sorted(k for k in data if k in read_keys | {"model_type"}),
        defaulted=sorted(k for k in read_keys if k not in data),
        ignored=sorted(k for k in data if k not in read_keys | {"model_type"}),
    )


# ---------------------------------------------------------------------------------------------- writing
def to_yaml(imported: Imported, source: str) -> str:
    """The spec as YAML with a comment per field saying which config key it came from."""
    label = FAMILIES[imported.model_type].label
    lines = [f"# source: {source} (model_type {imported.model_type}, {label}), imported by costplan import",
             f"name: {imported.spec['name']}"]
    for section, values in imported.spec.items():
        if section == "name":
            continue
        lines.append(f"{section}:")
        for name, value in values.items():
            note = imported.notes[f"{section}.{name}"]
            if isinstance(value, dict):  # a section read from several keys: one comment for them all
                lines.append(f"  {name + ':':<38} # {note}")
                lines += [f"    {_scalar(sub, v)}" for sub, v in value.items()]
            else:
                lines.append(f"  {_scalar(name, value):<38} # {note}")
    return "\n".join(lines) + "\n"


def _scalar(name: str, value: Any) -> str:
    """`name: value` as YAML writes it (quoting strings that would read as something else)."""
    return yaml.safe_dump({name: value}, default_flow_style=True, width=1000).strip()[1:-1]
