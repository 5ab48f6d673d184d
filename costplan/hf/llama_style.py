"""Llama-style decoders (Llama, Mistral, Mixtral, Qwen, OLMo, DeepSeek, Gemma, Llama 4, gpt-oss, Phi-3,
StarCoder2, Granite): spec field → config keys, checks and the defaults of each `transformers` configuration
class. The table itself: families.py."""
from __future__ import annotations

from costplan.hf.fields import (
    Check, Family, Field, LeftOut, deepseek_moe, every_nth_global, fixed, gated_mlp, key, layer_list, layer_step,
    llama4_attention, llama4_moe, mla, mla_qkv_bias, plain_mlp, qwen2_moe, qwen2_moe_attention, qwen_attention,
    moe_parts, qwen_moe, renormalized, window,
)


def llama_like(label: str, *, mlp_key: str = "intermediate_size", **overrides: Field) -> dict[str, Field]:
    """The fields every Llama-style decoder reads alike; `overrides` replace or add fields, in place."""
    fields = {
        "model.vocab_size": key("vocab_size"),
        "model.d_model": key("hidden_size"),
        "model.n_layers": key("num_hidden_layers"),
        "model.n_heads": key("num_attention_heads"),
        "model.n_kv_heads": key("num_key_value_heads", null=True),      # None: every head its own, as the classes
        "model.head_dim": key("head_dim"),
        "model.d_ff": key(mlp_key),
        "model.max_seq_len": key("max_position_embeddings"),
        "model.mlp": key("hidden_act", gated_mlp),
        "model.norm": fixed("rmsnorm", f"{label}: RMSNorm with a weight"),
        "model.position": fixed("rope", f"{label}: rotary position embeddings"),
        "model.tie_embeddings": key("tie_word_embeddings"),
        "model.bias": fixed(False, f"{label}: no biases"),
        "model.qkv_bias": None,          # placeholders keep the spec's field order when a family sets them
        "model.o_bias": None,
        "model.qk_norm": None,
        "model.attention": fixed(window(None), f"{label}: full causal attention (SDPA: no score matrix stored)"),
        "model.moe": None,
    }
    fields.update(overrides)
    return {name: f for name, f in fields.items() if f is not None}



def attention_bias(label: str) -> dict[str, Field]:
    """attention_bias on q, k, v and o, and no MLP biases."""
    return {"model.bias": fixed(False, f"{label}: no MLP biases"), "model.qkv_bias": key("attention_bias"),
            "model.o_bias": key("attention_bias")}


# Llama and Granite: attention_bias on q, k, v and o, mlp_bias on the MLP.
LLAMA_BIASES = {"model.bias": key("mlp_bias"), "model.qkv_bias": key("attention_bias"),
                "model.o_bias": key("attention_bias")}
LLAMA_DEFAULTS = {"vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
                  "num_attention_heads": 32, "num_key_value_heads": None, "head_dim": None, "hidden_act": "silu",
                  "max_position_embeddings": 2048, "tie_word_embeddings": False}
QWEN_WINDOW_KEYS = ("use_sliding_window", "sliding_window", "max_window_layers", "layer_types", "num_hidden_layers")
QWEN_WINDOW_NOTE = "from use_sliding_window, sliding_window, max_window_layers, layer_types"
MOE_IGNORED = frozenset({"norm_topk_prob", "router_aux_loss_coef", "output_router_logits", "router_jitter_noise"})

DEEPSEEK_MOE_KEYS = ("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "n_shared_experts",
                     "first_k_dense_replace")
DEEPSEEK_MOE_PARTS = moe_parts("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size",
                               ("n_shared_experts", "n_shared_experts"),
                               ("first_dense_layers", "first_k_dense_replace"))
MLA_KEYS = ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
DEEPSEEK_FIELDS = {
    "model.head_dim": None, "model.n_kv_heads": None,
    "model.bias": fixed(False, "deepseek: no MLP or expert biases"),
    "model.qkv_bias": Field(("attention_bias", "q_lora_rank"), mla_qkv_bias),
    "model.o_bias": key("attention_bias"),
    "model.attention": Field(MLA_KEYS, mla, parts=tuple(zip(MLA_KEYS, MLA_KEYS))),
}
DEEPSEEK_CHECKS = (
    Check(("moe_layer_freq",), lambda n: n == 1, "MoE every n-th layer is not built by the transformers class"),
)
# Group-limited routing and its scaling are elementwise. The multi-token-prediction module
# (num_nextn_predict_layers) is not built by the transformers class, so it is left out as there, and said
# (DEEPSEEK_LEFT_OUT). MLA reads no num_key_value_heads (every head has its own key and value); head_dim and
# qk_head_dim are derived by the class from the MLA widths.
DEEPSEEK_IGNORED = MOE_IGNORED | {"num_key_value_heads", "head_dim", "qk_head_dim", "routed_scaling_factor",
                                  "n_group", "topk_group", "topk_method", "scoring_func", "aux_loss_alpha",
                                  "seq_aux", "ep_size"}
DEEPSEEK_LEFT_OUT = (LeftOut("num_nextn_predict_layers", lambda n: bool(n),
                             "the multi-token prediction modules (DeepSeek-V3's: each a block, a projection and two "
                             "norms, sharing the embedding and head) are not built, as transformers' class leaves "
                             "them out: their parameters and training FLOPs are not counted"),)

# Gemma 2 / 3: RMSNorms scaling by (1 + weight), an embedding multiplied by sqrt(hidden_size), and scores
# scaled by query_pre_attn_scalar and soft-capped as c·tanh(x / c) (attention and final logits): elementwise, no
# parameters and no matmul FLOPs. Released files also carry hidden_act, which the classes do not read.
GEMMA2_DEFAULTS = {**{k: v for k, v in LLAMA_DEFAULTS.items() if k != "hidden_act"}, "vocab_size": 256000,
                   "hidden_size": 2304, "intermediate_size": 9216,
                   "num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                   "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192,
                   "tie_word_embeddings": True, "attention_bias": False, "query_pre_attn_scalar": 256,
                   "sliding_window": 4096, "layer_types": None, "final_logit_softcapping": 30.0,
                   "attn_logit_softcapping": 50.0, "use_bidirectional_attention": None}
GEMMA_CHECKS = (Check(("use_bidirectional_attention",), lambda v: not v,
                      "bidirectional attention (an encoder) is not modelled"),)
GEMMA_IGNORED = frozenset({"query_pre_attn_scalar", "final_logit_softcapping", "attn_logit_softcapping",
                           "hidden_act", "sliding_window_size"})   # the last: a duplicate the classes do not read


LLAMA_STYLE: dict[str, Family] = {
    "llama": Family("LlamaForCausalLM", llama_like(
        "llama",
        **LLAMA_BIASES),
        {**LLAMA_DEFAULTS, "attention_bias": False, "mlp_bias": False}),
    "mistral": Family("MistralForCausalLM", llama_like(
        "mistral", **{"model.attention": key("sliding_window", window)}),
        {**LLAMA_DEFAULTS, "intermediate_size": 14336, "num_key_value_heads": 8, "max_position_embeddings": 131072,
         "sliding_window": 4096}),
    "mixtral": Family("MixtralForCausalLM", llama_like(
        "mixtral", **{"model.attention": key("sliding_window", window),
                      "model.moe": Field(("num_local_experts", "num_experts_per_tok", "intermediate_size"),
                                         lambda n, k, f: {"n_experts": n, "top_k": k, "d_ff_expert": f},
                                         parts=moe_parts("num_local_experts", "num_experts_per_tok",
                                                         "intermediate_size"))}),
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
        "qwen3", **{**attention_bias("qwen3"),
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
                                            "norm_topk_prob", "shared_expert_intermediate_size"), qwen2_moe,
                                           parts=moe_parts("num_experts", "num_experts_per_tok",
                                                           "moe_intermediate_size",
                                                           ("d_ff_shared", "shared_expert_intermediate_size")))}),
        {**LLAMA_DEFAULTS, "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632,
         "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
         "max_position_embeddings": 32768, "use_sliding_window": False, "sliding_window": 4096,
         "max_window_layers": 28, "layer_types": None, "decoder_sparse_step": 1, "moe_intermediate_size": 1408,
         "shared_expert_intermediate_size": 5632, "num_experts_per_tok": 4, "num_experts": 60,
         "mlp_only_layers": None, "qkv_bias": True, "norm_topk_prob": False},
        checks=(layer_step("decoder_sparse_step"), layer_list("mlp_only_layers")), ignored=MOE_IGNORED),
    "qwen3_moe": Family("Qwen3MoeForCausalLM", llama_like(
        "qwen3_moe", **{**attention_bias("qwen3_moe"),
                        "model.qk_norm": fixed("head", "qwen3_moe: RMSNorm over head_dim on each query and key "
                                                       "head"),
                        # every layer takes sliding_window when use_sliding_window is set
                        "model.attention": Field(("use_sliding_window", "sliding_window"),
                                                 lambda use, w: window(w if use else None)),
                        "model.moe": Field(("num_experts", "num_experts_per_tok", "moe_intermediate_size",
                                            "decoder_sparse_step", "mlp_only_layers", "num_hidden_layers",
                                            "norm_topk_prob"), qwen_moe,
                                           parts=moe_parts("num_experts", "num_experts_per_tok",
                                                           "moe_intermediate_size"))}),
        {**LLAMA_DEFAULTS, "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144,
         "num_hidden_layers": 24, "num_attention_heads": 32, "num_key_value_heads": 4,
         "max_position_embeddings": 32768, "attention_bias": False, "use_sliding_window": False,
         "sliding_window": 4096, "decoder_sparse_step": 1, "moe_intermediate_size": 768,
         "num_experts_per_tok": 8, "num_experts": 128, "mlp_only_layers": None, "norm_topk_prob": False},
        # max_window_layers is read by nothing in the Qwen3-MoE class
        checks=(layer_step("decoder_sparse_step"), layer_list("mlp_only_layers")),
        ignored=MOE_IGNORED | {"max_window_layers"}),
    "olmoe": Family("OlmoeForCausalLM", llama_like(
        "olmoe", **{"model.head_dim": None,
                    **attention_bias("olmoe"),
                    "model.qk_norm": fixed("full", "olmoe: RMSNorm over the whole query and key widths"),
                    "model.clip_qkv": key("clip_qkv"),
                    "model.moe": Field(("num_experts", "num_experts_per_tok", "intermediate_size", "norm_topk_prob"),
                                       lambda n, k, f, norm: renormalized({"n_experts": n, "top_k": k,
                                                                           "d_ff_expert": f}, norm),
                                       parts=moe_parts("num_experts", "num_experts_per_tok", "intermediate_size"))}),
        {**LLAMA_DEFAULTS, "vocab_size": 50304, "hidden_size": 2048, "intermediate_size": 2048,
         "num_hidden_layers": 16, "num_attention_heads": 16, "max_position_embeddings": 4096,
         "attention_bias": False, "num_experts_per_tok": 8, "num_experts": 64, "clip_qkv": None,
         "norm_topk_prob": False},
        checks=(Check(("head_dim", "hidden_size", "num_attention_heads"), lambda h, d, n: h is None or h * n == d,
                      "the query norm stays hidden_size wide whatever head_dim is; not modelled"),),
        ignored=MOE_IGNORED),
    "olmo": Family("OlmoForCausalLM", llama_like(
        "olmo", **attention_bias("olmo"),
        **{"model.norm": fixed("nonparametric_layernorm", "olmo: LayerNorm without weight or bias (OlmoLayerNorm)"),
           "model.clip_qkv": key("clip_qkv")}),
        {**LLAMA_DEFAULTS, "vocab_size": 50304, "attention_bias": False, "clip_qkv": None}),
    "deepseek_v2": Family("DeepseekV2ForCausalLM", llama_like("deepseek_v2", **{
        **DEEPSEEK_FIELDS,
        # DeepseekV2TopkRouter scales its top-k weights and never renormalises them, norm_topk_prob or not
        "model.moe": Field(DEEPSEEK_MOE_KEYS, lambda *v: renormalized(deepseek_moe(*v), False),
                           parts=DEEPSEEK_MOE_PARTS)}),
        {**{k: v for k, v in LLAMA_DEFAULTS.items() if k != "head_dim"}, "vocab_size": 102400,
         "attention_bias": False, "mlp_bias": False, "kv_lora_rank": 512, "q_lora_rank": 1536,
         "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64,
         "num_experts_per_tok": None, "moe_intermediate_size": 1407, "n_shared_experts": 2,
         "first_k_dense_replace": 0, "moe_layer_freq": 1},
        checks=DEEPSEEK_CHECKS + (
            Check(("mlp_bias",), lambda v: not v, "biases on the dense and shared MLPs but not on the routed "
                                                  "experts are not modelled"),),
        ignored=DEEPSEEK_IGNORED, left_out=DEEPSEEK_LEFT_OUT),
    "deepseek_v3": Family("DeepseekV3ForCausalLM", llama_like("deepseek_v3", **{
        **DEEPSEEK_FIELDS,
        "model.moe": Field((*DEEPSEEK_MOE_KEYS, "norm_topk_prob"),
                           lambda *v: renormalized(deepseek_moe(*v[:-1]), v[-1]), parts=DEEPSEEK_MOE_PARTS)}),
        {**{k: v for k, v in LLAMA_DEFAULTS.items() if k != "head_dim"}, "vocab_size": 129280, "hidden_size": 7168,
         "intermediate_size": 18432,
         "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
         "max_position_embeddings": 4096, "attention_bias": False, "kv_lora_rank": 512, "q_lora_rank": 1536,
         "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256,
         "num_experts_per_tok": 8, "moe_intermediate_size": 2048, "n_shared_experts": 1,
         "first_k_dense_replace": 3, "moe_layer_freq": 1, "norm_topk_prob": True},
        checks=DEEPSEEK_CHECKS, ignored=DEEPSEEK_IGNORED, left_out=DEEPSEEK_LEFT_OUT),
    "gemma": Family("GemmaForCausalLM", llama_like(
        "gemma", **attention_bias("gemma")),
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
    "gemma2": Family("Gemma2ForCausalLM", llama_like(
        "gemma2", **attention_bias("gemma2"),
        **{"model.mlp": key("hidden_activation", gated_mlp),
           "model.attention": Field(("layer_types", "sliding_window", "num_hidden_layers"), every_nth_global(2),
                                    "from layer_types (default: every second layer global), sliding_window"),
           "model.block": fixed("sandwich", "gemma2: norms before and after attention and the MLP")}),
        GEMMA2_DEFAULTS, checks=GEMMA_CHECKS, ignored=GEMMA_IGNORED),
    "gemma3_text": Family("Gemma3ForCausalLM", llama_like(
        "gemma3_text", **attention_bias("gemma3_text"),
        **{"model.mlp": key("hidden_activation", gated_mlp),
           "model.qk_norm": fixed("head", "gemma3_text: RMSNorm over head_dim on each query and key head"),
           "model.attention": Field(("layer_types", "sliding_window", "num_hidden_layers", "sliding_window_pattern"),
                                    every_nth_global(), "from layer_types (default: every sliding_window_pattern-th "
                                                        "layer global), sliding_window"),
           "model.block": fixed("sandwich", "gemma3_text: norms before and after attention and the MLP")}),
        {**GEMMA2_DEFAULTS, "vocab_size": 262_208, "max_position_embeddings": 131_072,
         "final_logit_softcapping": None, "attn_logit_softcapping": None, "use_bidirectional_attention": False,
         "sliding_window_pattern": 6},
        checks=GEMMA_CHECKS, ignored=GEMMA_IGNORED | {"rope_local_base_freq"}),
    "llama4_text": Family("Llama4ForCausalLM", llama_like(
        "llama4_text", mlp_key="intermediate_size_mlp", **{
            **attention_bias("llama4_text"),
            "model.attention": Field(("layer_types", "no_rope_layers", "no_rope_layer_interval",
                                      "attention_chunk_size", "num_hidden_layers"), llama4_attention,
                                     "from no_rope_layers (default: every no_rope_layer_interval-th layer NoPE and "
                                     "global, the others chunked), attention_chunk_size, layer_types"),
            "model.moe": Field(("num_local_experts", "num_experts_per_tok", "intermediate_size", "moe_layers",
                                "interleave_moe_layer_step", "num_hidden_layers"), llama4_moe,
                               "from num_local_experts, num_experts_per_tok, intermediate_size (routed and shared "
                               "experts), moe_layers, interleave_moe_layer_step",
                               parts=moe_parts("num_local_experts", "num_experts_per_tok", "intermediate_size"))}),
        {"vocab_size": 202048, "hidden_size": 5120, "intermediate_size": 8192, "intermediate_size_mlp": 16384,
         "num_hidden_layers": 48, "num_attention_heads": 40, "num_key_value_heads": 8, "head_dim": 128,
         "hidden_act": "silu", "max_position_embeddings": 131072, "tie_word_embeddings": False,
         "num_experts_per_tok": 1, "num_local_experts": 16, "moe_layers": None, "interleave_moe_layer_step": 1,
         "no_rope_layers": None, "no_rope_layer_interval": 4, "attention_chunk_size": 8192, "layer_types": None,
         "attention_bias": False},
        # Elementwise, without parameters or matmul FLOPs: use_qk_norm's L2 norm of q and k on the RoPE layers
        # (Llama4TextL2Norm has no weight), the NoPE layers' query scaling by position (attn_temperature_tuning,
        # floor_scale, attn_scale), and the router's sigmoid of its top-k logits. What the qk norm and the
        # scaling save under training.implementation sdpa or eager is the llama4_text modules' (costs/
        # implementation/attention.py), as Scout's config turns them on. for_llm_compressor is carried by released files
        # and read by nothing in the class.
        checks=(layer_step("interleave_moe_layer_step"), layer_step("no_rope_layer_interval"),
                layer_list("moe_layers"), layer_list("no_rope_layers")),
        ignored=MOE_IGNORED | {"use_qk_norm", "attn_temperature_tuning", "floor_scale", "attn_scale",
                               "for_llm_compressor"}),
    "gpt_oss": Family("GptOssForCausalLM", llama_like(
        "gpt_oss", **{
            "model.d_ff": None,
            "model.mlp": fixed("swiglu", "gpt_oss: a clamped SwiGLU (swiglu_alpha, swiglu_limit: elementwise)"),
            "model.bias": fixed(True, "gpt_oss: biases on every expert's projections"),
            "model.qkv_bias": key("attention_bias"), "model.o_bias": key("attention_bias"),
            "model.attention_sinks": fixed(True, "gpt_oss: a learned sink logit per query head"),
            "model.attention": Field(("layer_types", "sliding_window", "num_hidden_layers"), every_nth_global(2),
                                     "from layer_types (default: every second layer global), sliding_window"),
            "model.moe": Field(("num_local_experts", "num_experts_per_tok", "intermediate_size"),
                               lambda n, k, f: {"n_experts": n, "top_k": k, "d_ff_expert": f,
                                                "router_bias": True},
                               parts=moe_parts("num_local_experts", "num_experts_per_tok", "intermediate_size"))}),
        {**{k: v for k, v in LLAMA_DEFAULTS.items() if k != "hidden_act"}, "num_hidden_layers": 36,
         "num_local_experts": 128, "vocab_size": 201088, "hidden_size": 2880, "intermediate_size": 2880,
         "head_dim": 64, "num_attention_heads": 64, "num_key_value_heads": 8, "sliding_window": 128,
         "max_position_embeddings": 131072, "num_experts_per_tok": 4, "layer_types": None,
         "attention_bias": True},
        # hidden_act is declared but not read (the experts' activation is their own); the SwiGLU's scale and
        # clamp are elementwise; released files carry experts_per_token and initial_context_length, which the
        # class does not read (num_experts_per_tok is read)
        ignored=MOE_IGNORED | {"hidden_act", "swiglu_alpha", "swiglu_limit", "experts_per_token",
                               "initial_context_length"}),
    "phi3": Family("Phi3ForCausalLM", llama_like(
        "phi3", **{"model.head_dim": None, "model.attention": key("sliding_window", window)}),
        {**LLAMA_DEFAULTS, "vocab_size": 32064, "hidden_size": 3072, "intermediate_size": 8192,
         "max_position_embeddings": 4096, "sliding_window": None, "attention_bias": False},
        # released Phi-3 files carry attention_bias: false; the class builds its projections without biases
        checks=(Check(("attention_bias",), lambda v: not v,
                      "the class builds its attention projections without biases whatever the key says; set it "
                      "false"),),
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
        "granite", **LLAMA_BIASES),
        {**LLAMA_DEFAULTS, "attention_bias": False, "mlp_bias": False},
        # Granite's scalings of the embedding, the residual branches, the attention scores and the logits are
        # elementwise multiplications
        ignored=frozenset({"embedding_multiplier", "residual_multiplier", "attention_multiplier",
                           "logits_scaling"})),
}
