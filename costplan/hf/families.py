"""One table per supported `model_type`: spec field → config keys, checks, defaults of its `transformers`
configuration class; and the model types refused, with why."""
from __future__ import annotations



from costplan.hf.fields import (
    Check, Family, Field, deepseek_moe, fixed, gated_mlp, key, llama_bias, mla, no_o_bias, plain_mlp,
    qwen2_moe, qwen2_moe_attention, qwen_attention, qwen_moe, window,
)



# ---------------------------------------------------------------------------------------------- families
# BLOOM trained on sequences of 2048 tokens (its model card, bigscience/bloom, "sequence length of 2048 tokens";
# Le Scao et al. 2022, arXiv:2211.05100); its files carry no context length, and with ALiBi none changes what
# the class builds.
BLOOM_CONTEXT = 2048


def given_or(value: object, alias: object) -> object:
    """The value of a key, or of its other name where the file gives that (as the class reads them)."""
    return value if alias is None else alias


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
    "olmo": Family("OlmoForCausalLM", llama_like(
        "olmo", **{"model.norm": fixed("nonparametric_layernorm", "olmo: LayerNorm without weight or bias "
                                                                  "(OlmoLayerNorm)"),
                   "model.bias": key("attention_bias", no_o_bias("attention_bias")),
                   "model.qkv_bias": key("attention_bias")}),
        {**LLAMA_DEFAULTS, "vocab_size": 50304, "attention_bias": False},
        # clip_qkv clamps q, k and v elementwise
        ignored=frozenset({"clip_qkv"})),
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
    "bloom": Family("BloomForCausalLM", {
        "model.vocab_size": key("vocab_size"),
        # __post_init__ takes n_embed, the name of older files, over hidden_size; attribute_map reads
        # num_hidden_layers and num_attention_heads as n_layer and n_head
        "model.d_model": Field(("hidden_size", "n_embed"), given_or, "from hidden_size (n_embed where given)"),
        "model.n_layers": Field(("n_layer", "num_hidden_layers"), given_or,
                                "from n_layer (num_hidden_layers where given)"),
        "model.n_heads": Field(("n_head", "num_attention_heads"), given_or,
                               "from n_head (num_attention_heads where given)"),
        "model.d_ff": Field(("hidden_size", "n_embed"), lambda h, e: 4 * given_or(h, e),
                            "bloom: 4 × hidden_size (BloomMLP)"),
        # ALiBi has no position table, so the class reads no context length
        "model.max_seq_len": Field(("seq_length",), lambda n: BLOOM_CONTEXT if n is None else n,
                                   f"from seq_length; without it {BLOOM_CONTEXT}, BLOOM's training context"),
        "model.mlp": fixed("gelu", "bloom: GELU (tanh approximation) MLP"),
        "model.norm": fixed("layernorm", "bloom: LayerNorm with weight and bias"),
        "model.position": fixed("alibi", "bloom: ALiBi biases on the attention scores, no position table"),
        "model.tie_embeddings": key("tie_word_embeddings"),
        "model.bias": fixed(True, "bloom: biases on every projection"),
        "model.embedding_norm": fixed(True, "bloom: a LayerNorm on the word embeddings"),
        "model.attention": fixed({"type": "dense"}, "bloom: eager attention (baddbmm with the ALiBi bias), its "
                                                   "probabilities stored"),
    }, {"vocab_size": 250880, "hidden_size": 64, "n_embed": None, "n_layer": 2, "num_hidden_layers": None,
        "n_head": 8, "num_attention_heads": None, "seq_length": None, "tie_word_embeddings": True,
        "apply_residual_connection_post_layernorm": False},
        checks=(Check(("apply_residual_connection_post_layernorm",), lambda v: not v,
                      "residual branches taken after the norm are not modelled"),),
        # slow_but_exact computes the output projections as pretraining_tp slices summed (the same matmul FLOPs,
        # the same weights); the rest are Megatron-DeepSpeed training switches read by nothing in the class
        # (n_inner among them: BloomMLP is always 4 × hidden_size wide)
        ignored=frozenset({"slow_but_exact", "n_inner", "attention_softmax_in_fp32", "masked_softmax_fusion",
                           "bias_dropout_fusion", "skip_bias_add", "skip_bias_add_qkv", "offset_alibi",
                           "unk_token_id"})),
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
    "olmo2": "its norms follow the attention and MLP blocks (post-norm); not modelled yet",
    "phi": "parallel attention and MLP blocks sharing one norm, and an LM-head bias, are not modelled yet",
    "gptj": "parallel attention and MLP blocks sharing one norm, and an LM-head bias, are not modelled yet",
    "gpt_neox": "parallel attention and MLP blocks (use_parallel_residual) are not modelled yet",
    "falcon": "parallel attention and MLP blocks are not modelled yet",
    "gemma2": "per-layer sliding-window patterns, logit soft-capping and four norms per layer are not "
              "modelled yet",
    "gemma3_text": "per-layer sliding-window patterns and four norms per layer are not modelled yet",
    "gpt_oss": "alternating sliding-window and full-attention layers are not modelled yet",
}
