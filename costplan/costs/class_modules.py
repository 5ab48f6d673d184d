"""What each transformers class's PyTorch modules do differently from the Llama family's, where that changes
what they save for backward (training.implementation sdpa / eager): one table, keyed on training.modules (the
config's model_type), that costs/norm.py and costs/implementation/ read. Each entry names the module code it
was derived from; tests/test_implementation.py measures every class against it."""
from __future__ import annotations

from costplan.costs import Shape
from costplan.records import Record


class ClassModules(Record):
    """What a transformers class's modules do differently from the Llama family's (the defaults) where that
    changes what they save; keyed on training.modules (the config's model_type)."""

    fused_qkv: bool = False          # one q/k/v projection: autocast casts its input once, not three times
    fused_gate_up: bool = False      # one gate/up projection: autocast casts its input once, not twice
    qkv_output_kept: bool = False    # q passed on as a view of the fused output, which stays allocated whole
    explicit_mask: bool = False      # SDPA always gets a materialised s × s mask in the activation dtype
    repeats_kv: bool = False         # K and V are expanded to n_heads before attention, SDPA included
    fp32_softmax: bool = True        # eager softmax in fp32 (dtype=torch.float32), not in the scores' dtype
    keeps_scores: bool = False       # eager raw scores held beside the masked ones until attention returns
    fp32_qk: bool = False            # eager scores from fp32 copies of q and k
    head_major_query: bool = False   # q reaches SDPA head-major (b, h, s, d) in memory
    rotary_per_call: bool = False    # cos and sin expanded again in every call of the rotary function
    rotary_per_layer_type: bool = False  # one (cos, sin) pair per attention type (local layers' own base)
    fp32_rotary: bool = False        # cos and sin left in fp32 rather than cast to the activation dtype
    half_rotary: bool = False        # tables head_dim / 2 wide (the two halves rotated by one table)
    python_gelu: bool = False        # the MLP's default GELU is NewGELUActivation (gelu_new), in Python
    softcapped_scores: bool = False  # eager scores soft-capped, c·tanh(x / c)
    softcapped_logits: bool = False  # logits soft-capped, c·tanh(x / c)
    topk_first: bool = False         # the router takes the top-k logits, then a softmax over those k
    cast_routing_weights: bool = False   # the top-k weights in the router logits' dtype, not fp32
    clamped_swiglu: bool = False     # experts' clamped gate and up, gate·sigmoid(α·gate)·(up + 1)
    every_expert: bool = False       # every expert runs on every token, scaled by its (zero or sigmoid) score
    complex_rotary: bool = False     # one complex64 table of rotations (torch.polar) instead of cos and sin
    l2_qk_norm: bool = False         # q and k L2-normed in fp32, without a weight, on the rotated layers
    temperature_tuning: bool = False  # q scaled by an fp32 factor per position on the NoPE layers
    fp32_normed: bool = False        # the RMSNorm multiplies its fp32 normalized value by the weight, then casts
    one_plus_weight: bool = False    # the RMSNorm's scale is 1 + weight, an fp32 tensor of its own


CLASS_MODULES = {
    # BloomAttention: one query_key_value, q a view of it; baddbmm's raw scores kept beside the masked ones.
    "bloom": ClassModules(fused_qkv=True, qkv_output_kept=True, keeps_scores=True),
    # FalconAttention (new_decoder_architecture): query_key_value is one FalconLinear; _split_heads broadcasts
    # each K/V group to its query heads and the reshape copies them; FalconModel builds its causal mask with
    # allow_is_causal_skip=False, and the eager branch takes softmax(..., dtype=hidden_states.dtype).
    "falcon": ClassModules(fused_qkv=True, explicit_mask=True, repeats_kv=True, fp32_softmax=False),
    # DeepseekV2's rotary embedding: complex frequencies (torch.polar), applied by complex multiplication.
    "deepseek_v2": ClassModules(complex_rotary=True),
    # GemmaRMSNorm (and Gemma 2's, Gemma 3's): (x · (1 + w.float())).type_as(input), in fp32.
    "gemma": ClassModules(fp32_normed=True, one_plus_weight=True),
    # Gemma2Config's attn_logit_softcapping (50) and final_logit_softcapping (30); Gemma 3 has neither.
    "gemma2": ClassModules(fp32_normed=True, one_plus_weight=True, softcapped_scores=True, softcapped_logits=True),
    # Gemma3TextModel: sliding layers rotate with their own base (rope_local_base_freq).
    "gemma3_text": ClassModules(fp32_normed=True, one_plus_weight=True, rotary_per_layer_type=True),
    # GPT-2's Conv1D c_attn, q a view of it; eager_attention_forward without dtype=float32; gelu_new. Its
    # Python GELU, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))): pow saves x, tanh its output, and the last
    # product both factors, 0.5·x and 1 + tanh: three d_ff-wide tensors more than a fused GELU's input.
    "gpt2": ClassModules(fused_qkv=True, qkv_output_kept=True, fp32_softmax=False, python_gelu=True),
    # GPTNeoXAttention: query_key_value, chunked after .transpose(1, 2), q rebuilt by torch.cat (head-major).
    "gpt_neox": ClassModules(fused_qkv=True, head_major_query=True),
    # GptOssRMSNorm ((w · x).to(input), in fp32), GptOssRotaryEmbedding (halves rotated), GptOssTopKRouter,
    # GptOssExperts._apply_gate.
    "gpt_oss": ClassModules(fp32_normed=True, half_rotary=True, topk_first=True, cast_routing_weights=True,
                            clamped_swiglu=True),
    # GPTJAttention: q_proj, k_proj, v_proj; eager_attention_forward multiplies query.to(float32) by
    # key.to(float32); apply_rotary_pos_emb repeat_interleaves sin and cos for q and for k in every layer.
    "gptj": ClassModules(fp32_qk=True, rotary_per_call=True, python_gelu=True),
    # Llama4TextMoe, Llama4TextRotaryEmbedding (freqs_cis), Llama4TextL2Norm (use_qk_norm), the NoPE layers'
    # attn_temperature_tuning; its eager_attention_forward takes the softmax without dtype=float32. The qk norm
    # and the temperature are counted as Scout's config turns them on: a spec states neither.
    "llama4_text": ClassModules(fp32_softmax=False, every_expert=True, complex_rotary=True, l2_qk_norm=True,
                                temperature_tuning=True),
    # OlmoRotaryEmbedding returns cos and sin in fp32: q · cos promotes, `.to(q_type)` casts back.
    "olmo": ClassModules(fp32_rotary=True),
    # OlmoeTopKRouter, Qwen2MoeTopKRouter, Qwen3MoeTopKRouter: router_top_value.to(router_logits.dtype).
    "olmoe": ClassModules(cast_routing_weights=True),
    # PhiAttention: q, k transposed to heads first, then (qk_layernorm) normed and rebuilt by torch.cat.
    "phi": ClassModules(head_major_query=True, python_gelu=True),
    # Phi3Attention's qkv_proj and Phi3MLP's gate_up_proj; apply_rotary_pos_emb concatenates q (head-major).
    "phi3": ClassModules(fused_qkv=True, fused_gate_up=True, head_major_query=True),
    "qwen2_moe": ClassModules(cast_routing_weights=True),
    "qwen3_moe": ClassModules(cast_routing_weights=True),
}


# d_ff-wide tensors transformers' Python GELUs (activations.py) save for backward beyond the input a fused GELU
# saves, counted from their expressions (a product with a Python number saves nothing, one of two tensors saves
# both, tanh and erf their output and input):
# - gelu_new and gelu_accurate, 0.5·x·(1 + tanh(c·(x + 0.044715·x³))): tanh's output, 0.5·x and 1 + tanh;
# - gelu_fast, 0.5·x·(1 + tanh(0.7978845608·x·(1 + 0.044715·x·x))): 0.044715·x (its product with x), 0.798·x and
#   1 + 0.044715·x² (their product), tanh's output, 0.5·x and 1 + tanh;
# - gelu_python, x·0.5·(1 + erf(x/√2)): x/√2 (erf's input), x·0.5 and 1 + erf, and no op keeps x itself: two
#   more than the fused GELU's one.
# gelu (F.gelu), gelu_pytorch_tanh (F.gelu, tanh), relu and silu are one kernel saving its input. Counted against
# torch's saved-tensor hooks on each function and against the classes (tests/test_against_transformers.py).
PYTHON_GELU_SAVES = {"gelu_new": 3, "gelu_accurate": 3, "gelu_fast": 6, "gelu_python": 2}


def activation_saves(shape: Shape) -> int:
    """d_ff-wide tensors the modules' activation saves beyond a fused one's input: the spec's (training.activation)
    or the class's default."""
    name = shape.activation or ("gelu_new" if class_modules(shape).python_gelu else None)
    return PYTHON_GELU_SAVES.get(name, 0)


def class_modules(shape: Shape) -> ClassModules:
    """The modules of training.modules (modules_of)."""
    return modules_of(shape.modules)


def modules_of(model_type: str | None) -> ClassModules:
    """The modules of a model_type; the Llama family's for every class not listed."""
    return CLASS_MODULES.get(model_type, ClassModules())
