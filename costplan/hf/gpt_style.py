"""GPT-2-style and other older decoders (GPT-2, BLOOM, OPT, GPT-J, GPT-NeoX, Falcon, Phi): spec field →
config keys, checks and the defaults of each `transformers` configuration class. The table itself: families.py."""
from __future__ import annotations

from costplan.hf.fields import (
    Check, Family, Field, falcon_block, falcon_kv_heads, fixed, given_or, key, plain_mlp, rotated_part, window,
)

# BLOOM trained on sequences of 2048 tokens (its model card, bigscience/bloom, "sequence length of 2048 tokens";
# Le Scao et al. 2022, arXiv:2211.05100); its files carry no context length, and with ALiBi none changes what
# the class builds.
BLOOM_CONTEXT = 2048


def gpt2_like(label: str, **overrides: Field) -> dict[str, Field]:
    """The fields GPT-2-style files (n_embd, n_layer, n_head, n_inner, n_positions) read alike; `overrides`
    replace or add fields, in place."""
    fields = {
        "model.vocab_size": key("vocab_size"),
        "model.d_model": key("n_embd"),
        "model.n_layers": key("n_layer"),
        "model.n_heads": key("n_head"),
        "model.d_ff": key("n_inner"),    # None: 4 × n_embd, the spec's default too
        "model.max_seq_len": key("n_positions"),
        "model.mlp": key("activation_function", plain_mlp("activation_function")),
        "model.norm": fixed("layernorm", f"{label}: LayerNorm with weight and bias"),
        "model.block": None,             # placeholders keep the spec's field order when a family sets them
        "model.position": None,
        "model.tie_embeddings": key("tie_word_embeddings"),
        "model.bias": None, "model.qkv_bias": None, "model.o_bias": None, "model.head_bias": None,
        "model.attention": fixed(window(None), f"{label}: full causal attention (SDPA: no score matrix stored)"),
    }
    fields.update(overrides)
    return {name: f for name, f in fields.items() if f is not None}



GPT_STYLE: dict[str, Family] = {
    "gpt2": Family("GPT2LMHeadModel", gpt2_like(
        "gpt2", **{"model.position": fixed("learned", "gpt2: a learned position table of n_positions rows"),
                   "model.bias": fixed(True, "gpt2: biases on every projection")}),
        {"vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_inner": None, "n_positions": 1024,
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
    # GPT-J, GPT-NeoX and Phi rotate only part of each head (rotary_dim, rotary_pct, partial_rotary_factor):
    # model.rope_dim, which only the modules' rotary tables depend on (no parameters, no matmuls).
    "gptj": Family("GPTJForCausalLM", gpt2_like(
        "gptj", **{
            "model.block": fixed("parallel_shared_norm", "gptj: attention and MLP in parallel from one LayerNorm"),
            "model.position": fixed("rope", "gptj: rotary embeddings on the first rotary_dim features of each head"),
            "model.rope_dim": key("rotary_dim", null=True),      # None: the whole head, as GPTJAttention
            "model.bias": fixed(True, "gptj: biases in the MLP"),
            "model.qkv_bias": fixed(False, "gptj: no biases on q, k, v"),
            "model.o_bias": fixed(False, "gptj: no bias on the output projection"),
            "model.head_bias": fixed(True, "gptj: the LM head has a bias")}),
        {"vocab_size": 50400, "n_embd": 4096, "n_layer": 28, "n_head": 16, "n_inner": None, "n_positions": 2048,
        "activation_function": "gelu_new", "tie_word_embeddings": False, "rotary_dim": 64},
        # released GPT-J files carry GPT-2's keys, which the class reads nothing of: `rotary` (always on),
        # scale_attn_weights, the double-heads classifier's summary_*, gradient_checkpointing
        ignored=frozenset({"rotary", "scale_attn_weights", "gradient_checkpointing", "summary_type",
                           "summary_use_proj", "summary_activation", "summary_proj_to_labels",
                           "summary_first_dropout"})),
    "gpt_neox": Family("GPTNeoXForCausalLM", {
        "model.vocab_size": key("vocab_size"),
        "model.d_model": key("hidden_size"),
        "model.n_layers": key("num_hidden_layers"),
        "model.n_heads": key("num_attention_heads"),
        "model.d_ff": key("intermediate_size"),
        "model.max_seq_len": key("max_position_embeddings"),
        "model.mlp": key("hidden_act", plain_mlp("hidden_act")),
        "model.norm": fixed("layernorm", "gpt_neox: LayerNorm with weight and bias"),
        "model.block": key("use_parallel_residual", lambda parallel: "parallel" if parallel else "sequential"),
        "model.position": fixed("rope", "gpt_neox: rotary embeddings on rotary_pct of each head"),
        "model.rope_dim": Field(("rotary_pct", "rope_parameters", "hidden_size", "num_attention_heads"), rotated_part),
        "model.tie_embeddings": key("tie_word_embeddings"),
        "model.bias": fixed(True, "gpt_neox: biases in the MLP"),
        "model.qkv_bias": key("attention_bias"),
        "model.o_bias": key("attention_bias"),
        "model.attention": fixed(window(None), "gpt_neox: full causal attention (SDPA: no score matrix stored)"),
    }, {"vocab_size": 50432, "hidden_size": 6144, "num_hidden_layers": 44, "num_attention_heads": 64,
        "intermediate_size": 24576, "hidden_act": "gelu", "max_position_embeddings": 2048,
        "tie_word_embeddings": False, "use_parallel_residual": True, "attention_bias": True, "rotary_pct": 0.25,
        "rope_parameters": None},
        # rotary_emb_base is RoPE's frequency base under its old name
        ignored=frozenset({"rotary_emb_base"})),
    "falcon": Family("FalconForCausalLM", {
        "model.vocab_size": key("vocab_size"),
        "model.d_model": key("hidden_size"),
        "model.n_layers": key("num_hidden_layers"),
        "model.n_heads": key("num_attention_heads"),
        "model.n_kv_heads": Field(("new_decoder_architecture", "multi_query", "num_kv_heads", "num_attention_heads"),
                                  falcon_kv_heads),
        "model.d_ff": key("ffn_hidden_size"),     # None: 4 × hidden_size, the spec's default too
        "model.max_seq_len": key("max_position_embeddings"),
        "model.mlp": key("activation", plain_mlp("activation")),
        "model.norm": fixed("layernorm", "falcon: LayerNorm with weight and bias"),
        "model.block": Field(("new_decoder_architecture", "parallel_attn", "num_ln_in_parallel_attn"),
                             falcon_block),
        "model.position": key("alibi", lambda alibi: "alibi" if alibi else "rope"),
        "model.tie_embeddings": key("tie_word_embeddings"),
        "model.bias": key("bias"),
        "model.attention": fixed(window(None), "falcon: full causal attention"),
    }, {"vocab_size": 65024, "hidden_size": 4544, "num_hidden_layers": 32, "num_attention_heads": 71,
        "num_kv_heads": None, "ffn_hidden_size": None, "max_position_embeddings": 2048, "activation": "gelu",
        "tie_word_embeddings": True, "new_decoder_architecture": False, "multi_query": True, "parallel_attn": True,
        "num_ln_in_parallel_attn": None, "alibi": False, "bias": False},
        # released Falcon files carry a key of the original code that the class reads nothing of: the
        # residual is the layer input either way
        ignored=frozenset({"apply_residual_connection_post_layernorm"})),
    "phi": Family("PhiForCausalLM", {
        "model.vocab_size": key("vocab_size"),
        "model.d_model": key("hidden_size"),
        "model.n_layers": key("num_hidden_layers"),
        "model.n_heads": key("num_attention_heads"),
        "model.n_kv_heads": key("num_key_value_heads", null=True),      # None: every head its own, as the classes
        "model.d_ff": key("intermediate_size"),
        "model.max_seq_len": key("max_position_embeddings"),
        "model.mlp": key("hidden_act", plain_mlp("hidden_act")),
        "model.norm": fixed("layernorm", "phi: LayerNorm with weight and bias"),
        "model.block": fixed("parallel_shared_norm", "phi: attention and MLP in parallel from one LayerNorm"),
        "model.position": fixed("rope", "phi: rotary embeddings on partial_rotary_factor of each head"),
        "model.rope_dim": Field(("partial_rotary_factor", "rope_parameters", "hidden_size", "num_attention_heads"),
                                rotated_part),
        "model.tie_embeddings": key("tie_word_embeddings"),
        "model.bias": fixed(True, "phi: biases on every projection"),
        "model.head_bias": fixed(True, "phi: the LM head has a bias"),
        # LayerNorms of hidden_size / num_attention_heads (head_dim: phi reads no head_dim key) on each head
        "model.qk_norm": key("qk_layernorm", lambda on: "head" if on else "none"),
        "model.attention": fixed(window(None), "phi: full causal attention (SDPA: no score matrix stored)"),
    }, {"vocab_size": 51200, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
        "num_attention_heads": 32, "num_key_value_heads": None, "hidden_act": "gelu_new",
        "max_position_embeddings": 2048, "tie_word_embeddings": False, "qk_layernorm": False,
        "partial_rotary_factor": 0.5, "rope_parameters": None}),
}

