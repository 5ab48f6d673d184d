"""The pieces a model type's table is made of: fields read from config keys, checks that refuse what a spec
cannot state, the keys without cost, and the transforms from config values to spec values."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from costplan.errors import shown


class Unsupported(Exception):
    """A config value describing something a spec cannot state; `key` is the key to name."""

    def __init__(self, key: str, why: str):
        super().__init__(why)
        self.key, self.why = key, why


# ---------------------------------------------------------------------------------------------- fields
def same(value: Any) -> Any:
    """A config value that is the spec's value as it is."""
    return value


@dataclass(frozen=True)
class Field:
    """One spec field: computed from the values of `keys` (defaults filled in); None leaves it out, for the
    spec's own default, which is the same as the class's (e.g. n_kv_heads = n_heads)."""

    keys: tuple[str, ...]
    compute: Callable[..., Any] = same
    note: str = ""                       # the comment in `costplan import`; default "from <keys>"
    null: bool = False                   # null is a setting of the class's own, which the spec's default states
    # (name, key) of the fields of a section the value is (model.moe, MLA's model.attention) that take one key's
    # value as it is: what an error about such a field names
    parts: tuple[tuple[str, str], ...] = ()


def moe_parts(experts: str, top_k: str, width: str, *more: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    """Field.parts of a MoE section: the keys its experts, their top-k and their width are read from."""
    return (("n_experts", experts), ("top_k", top_k), ("d_ff_expert", width), *more)


def given_or(value: object, alias: object) -> object:
    """The value of a key, or of its other name where the file gives that (as the class reads them)."""
    return value if alias is None else alias


def read_key(f: Field, values: dict[str, Any]) -> str | None:
    """The one key a field's value is read from, for an error about the field to name: its only key, or of a
    key and its other name (given_or) the one whose value it took; None where it combines several."""
    if f.compute is given_or:
        return f.keys[0] if values[f.keys[1]] is None else f.keys[1]
    return f.keys[0] if len(f.keys) == 1 else None


def key(name: str, compute: Callable[..., Any] = same, null: bool = False) -> Field:
    return Field((name,), compute, null=null)


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
class LeftOut:
    """A key with a cost no spec states: accepted, and said (by `import` and as an estimate's warning) where
    `applies(value)`; elsewhere it has no cost."""

    key: str
    applies: Callable[[Any], bool]
    why: str


@dataclass(frozen=True)
class Family:
    """How one model_type reads: spec fields, checks, the class defaults, and keys without cost."""

    label: str                           # the transformers class, for comments and errors
    fields: dict[str, Field]
    defaults: dict[str, Any]
    checks: tuple[Check, ...] = ()
    ignored: frozenset[str] = frozenset()
    left_out: tuple[LeftOut, ...] = ()

    def known(self) -> set[str]:
        return ({k for f in self.fields.values() for k in f.keys} | {k for c in self.checks for k in c.keys}
                | set(self.ignored) | {o.key for o in self.left_out} | IGNORED)


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
    "diversity_penalty", "num_beam_groups", "encoder_no_repeat_ngram_size", "tf_legacy_loss", "cache_implementation",
    # read by no causal-LM class: the attention implementation a loader chose, fine-tuning tools' and converters'
    # stamps (SmolLM2's is_llama_config and rope_interleaved, DeepSeek-R1-Distill-Qwen's use_mrope)
    "_attn_implementation", "unsloth_version", "output_past", "_num_labels", "is_llama_config", "rope_interleaved",
    "use_mrope",
})
# Keys no supported config may carry with a value other than these: they change what the class builds.
COMMON_CHECKS = (
    Check(("is_encoder_decoder",), lambda value: not value, "encoder-decoder models are not modelled"),
    Check(("add_cross_attention",), lambda value: not value, "cross-attention layers are not modelled"),
    Check(("pruned_heads",), lambda value: not value, "pruned attention heads are not modelled"),
)
def layer_step(name: str) -> Check:
    """A key giving every n-th layer something: n of 1 or more (0 divides by zero in the class's own pattern)."""
    return Check((name,), lambda n: not isinstance(n, int) or isinstance(n, bool) or n >= 1,
                 "a layer step must be 1 or more")


def layer_list(name: str) -> Check:
    """A key listing layers: a list of layer indices (or null)."""
    return Check((name,), lambda v: v is None or isinstance(v, list) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in v), "expected a list of layer indices")


# Keys with a cost in any model type that no spec states (published checkpoints carry them: DeepSeek-V3's fp8
# and gpt-oss's mxfp4 files).
COMMON_LEFT_OUT = (
    LeftOut("quantization_config", lambda value: value is not None,
            "the checkpoint's own quantization (its formats and scale layouts) is not read: the model is estimated "
            "at training.precision, and served at serving.weights (`costplan serve --weights fp8|int8|int4`)"),
)
COMMON_DEFAULTS = {"quantization_config": None, "is_encoder_decoder": False, "add_cross_attention": False,
                   "pruned_heads": None}


# ---------------------------------------------------------------------------------------------- transforms
def rotated_part(fraction: float, rope_parameters: dict | None, d_model: int, n_heads: int) -> int | None:
    """model.rope_dim from a partial rotary's fraction of each head (GPT-NeoX rotary_pct, Phi
    partial_rotary_factor; transformers 5 files keep it in rope_parameters), as the classes take it:
    int(head_dim × fraction). None when the whole head rotates, the spec's default."""
    fraction = (rope_parameters or {}).get("partial_rotary_factor", fraction)
    head_dim = d_model // n_heads
    rotated = int(head_dim * fraction)
    return None if rotated == head_dim else rotated


GELU = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_python", "gelu_accurate")


def gated_mlp(act: str) -> str:
    """The MLP of Llama-style blocks: down(act(gate(x)) * up(x))."""
    if act in ("silu", "swish"):
        return "swiglu"
    if act in GELU:
        return "geglu"
    raise Unsupported("hidden_act", f"{shown(act)}: a gated MLP with this activation is not modelled (silu or gelu)")


def plain_mlp(name: str) -> Callable[[str], str]:
    def compute(act: str) -> str:
        """The MLP of GPT-style blocks: down(act(up(x)))."""
        if act in GELU:
            return "gelu"
        if act == "relu":
            return "relu"
        raise Unsupported(name, f"{shown(act)}: an MLP with this activation is not modelled (gelu or relu)")
    return compute


def mla_qkv_bias(attention_bias: bool, q_lora_rank: int | None) -> bool:
    """DeepSeek's MLA puts attention_bias on the down projections (and W_O) but builds a direct query projection
    (no q_lora_rank) without one; a spec's qkv_bias covers the query and key/value projections together."""
    if attention_bias and q_lora_rank is None:
        raise Unsupported("attention_bias", "true without q_lora_rank biases the key/value down projection but "
                                            "not the query projection; a spec's `qkv_bias` covers both")
    return attention_bias


def falcon_kv_heads(new_architecture: bool, multi_query: bool, kv_heads: int | None, heads: int) -> int:
    """Falcon's K/V heads: num_kv_heads in the new (40B) decoder, one under multi_query, else one per head."""
    if new_architecture:
        return heads if kv_heads is None else kv_heads
    if multi_query:
        return 1
    if kv_heads not in (None, heads):
        raise Unsupported("num_kv_heads", f"{kv_heads} without new_decoder_architecture or multi_query: the class "
                                          "projects a key and a value per head, then reshapes them to "
                                          "num_kv_heads heads")
    return heads


def falcon_block(new_architecture: bool, parallel_attn: bool, norms: int | None) -> str:
    """Falcon's layer: attention and MLP in parallel with num_ln_in_parallel_attn norms (default 2 in the new
    decoder, 1 in the old), or in sequence without parallel_attn (old decoder only). Other combinations build
    norms the forward does not call, or call norms not built."""
    if not parallel_attn:
        if new_architecture:
            raise Unsupported("parallel_attn", "false with new_decoder_architecture: the class builds norms its "
                                               "forward does not use")
        return "sequential"
    norms = norms if norms is not None else (2 if new_architecture else 1)
    if norms == 2 and new_architecture:
        return "parallel"
    if norms == 1 or (norms != 2 and not new_architecture):
        return "parallel_shared_norm"
    raise Unsupported("num_ln_in_parallel_attn", f"{norms}: the class's forward does not use the norms it builds "
                                                 "(1 or 2 with new_decoder_architecture, not 2 without)")


def window(sliding_window: int | None) -> dict[str, Any]:
    """Every layer attends to the `sliding_window` most recent keys, itself included (masking_utils), or to
    all of them; transformers' default SDPA attention stores no score matrix, as `flash` describes."""
    if sliding_window is None:
        return {"type": "flash"}
    return {"type": "sliding_window", "window": sliding_window}


LAYER_TYPES = ("full_attention", "sliding_attention")


def listed(layer_types: Any, n_layers: int) -> list[str]:
    """A file's layer_types as the classes take it: one type name per layer (they refuse another length)."""
    if not isinstance(layer_types, list) or not all(isinstance(t, str) for t in layer_types):
        raise Unsupported("layer_types", "expected a list of layer type names, one per layer")
    if n_layers < 1:
        return []       # no layers to type: the spec refuses the count, by its config key
    if len(layer_types) != n_layers:
        raise Unsupported("layer_types", f"{len(layer_types)} entries for {n_layers} layers (num_hidden_layers); "
                                         "the class takes one per layer")
    return layer_types


def layer_pattern(types: list[str], sliding_window: int | None, key_name: str) -> Any:
    """The attention of layers typed full_attention / sliding_attention (transformers' layer_types): one
    attention when every layer has the same, else the shortest pattern that repeats over the layers in order
    (a spec's per-layer pattern), written as the layers read in the file."""
    unknown = sorted(set(types) - set(LAYER_TYPES))
    if unknown:
        raise Unsupported(key_name, f"layer types {unknown} are not modelled (full_attention, sliding_attention)")
    if "sliding_attention" in types and not sliding_window:
        raise Unsupported(key_name, "sliding_attention layers without a sliding_window")
    return repeating([window(sliding_window if t == "sliding_attention" else None) for t in types])


def repeating(layers: list[dict[str, Any]]) -> Any:
    """The attention of each layer as a spec writes it: one attention when every layer has the same, else the
    shortest pattern that repeats over the layers in order, an entry of a type alone written as its name. None
    for no layers (a layer count below 1, which the spec refuses by its config key)."""
    if not layers:
        return None
    period = _period(layers)
    return layers[0] if period == 1 else [a["type"] if len(a) == 1 else a for a in layers[:period]]


def _period(items: list) -> int:
    """The least p with items[i] == items[i % p] for every i: the length less the longest proper prefix that is
    also a suffix (Knuth-Morris-Pratt's failure function), in time linear in the layers (a config may have
    thousands: trying each p had taken 46 s for 20,000)."""
    border = [0] * len(items)
    k = 0
    for i in range(1, len(items)):
        while k and items[i] != items[k]:
            k = border[k - 1]
        if items[i] == items[k]:
            k += 1
        border[i] = k
    return len(items) - border[-1]


def every_nth_global(every: int | None = None) -> Callable[..., Any]:
    def compute(layer_types: list | None, sliding_window: int | None, n_layers: int, pattern: int = 0) -> Any:
        """Gemma 2 / 3: without layer_types, every `every`-th layer (Gemma 3: sliding_window_pattern) is global
        and the others windowed (the configuration classes' __post_init__)."""
        if layer_types is None:
            n = every or pattern
            if not isinstance(n, int) or n < 1:
                raise Unsupported("sliding_window_pattern", f"{n!r}: expected a whole number of layers, 1 or more")
            layer_types = ["sliding_attention" if (i + 1) % n else "full_attention" for i in range(n_layers)]
        return layer_pattern(listed(layer_types, n_layers), sliding_window, "layer_types")
    return compute


def qwen_attention(use: bool, sliding_window: int | None, max_window_layers: int, layer_types: list | None,
                   n_layers: int) -> dict[str, Any]:
    """Qwen2/Qwen3: with use_sliding_window, layers from max_window_layers on are windowed (the config's
    __post_init__), unless layer_types lists them."""
    if layer_types is not None:
        return layer_pattern(listed(layer_types, n_layers), sliding_window if use else None, "layer_types")
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
    return layer_pattern(listed(layer_types, n_layers), sliding_window if use else None, "layer_types")


def moe_layers(is_moe: list[bool], key_name: str) -> dict[str, int]:
    """first_dense_layers and every for a list of which layers are MoE, when a spec can say it that way; each
    written only where it is not the spec's default. Nothing for no layers (a layer count below 1, which the spec
    refuses by its config key)."""
    if not is_moe:
        return {}
    if not any(is_moe):
        raise Unsupported(key_name, "leaves no mixture-of-experts layer; not modelled as a MoE model")
    moe = [i for i, flag in enumerate(is_moe) if flag]
    first = moe[0]
    # the one step that can state it: the first two MoE layers' distance, or past the last layer for one
    every = moe[1] - first if len(moe) > 1 else len(is_moe) - first
    if [i >= first and (i - first) % every == 0 for i in range(len(is_moe))] == is_moe:
        return {**({"first_dense_layers": first} if first else {}), **({"every": every} if every > 1 else {})}
    dense = [i for i, flag in enumerate(is_moe) if not flag]
    # the shorter list says it: Qwen3-MoE's mlp_only_layers [5] leaves 47 MoE layers and one dense
    which = f"MoE layers {moe}" if len(moe) <= len(dense) else f"dense layers {dense} among MoE ones"
    raise Unsupported(key_name, f"{which} are not some dense layers followed by every n-th layer, the patterns a "
                                "spec can state")


def renormalized(moe: dict[str, Any], norm_topk_prob: bool) -> dict[str, Any]:
    """moe.renormalize from norm_topk_prob, written only when off (the spec's default is on, as Mixtral)."""
    return moe if norm_topk_prob else {**moe, "renormalize": False}


def qwen_moe(n_experts: int, top_k: int, d_ff_expert: int, step: int, mlp_only: list | None,
             n_layers: int, norm_topk_prob: bool) -> dict[str, Any]:
    """Layer i is MoE unless listed in mlp_only_layers, when (i + 1) % decoder_sparse_step == 0."""
    mlp_only = mlp_only or []
    is_moe = [i not in mlp_only and n_experts > 0 and (i + 1) % step == 0 for i in range(n_layers)]
    layout = moe_layers(is_moe, "mlp_only_layers" if mlp_only else "decoder_sparse_step")
    return renormalized({"n_experts": n_experts, "top_k": top_k, "d_ff_expert": d_ff_expert, **layout},
                        norm_topk_prob)


def qwen2_moe(n_experts: int, top_k: int, d_ff_expert: int, step: int, mlp_only: list | None, n_layers: int,
              norm_topk_prob: bool, shared: int) -> dict[str, Any]:
    """Qwen2-MoE adds one shared expert of shared_expert_intermediate_size behind a sigmoid gate."""
    if not shared:
        raise Unsupported("shared_expert_intermediate_size", "0 keeps the shared expert's gate without the "
                                                             "expert; not modelled")
    return {**qwen_moe(n_experts, top_k, d_ff_expert, step, mlp_only, n_layers, norm_topk_prob),
            "n_shared_experts": 1, "d_ff_shared": shared, "shared_expert_gate": True}


def deepseek_moe(n_experts: int, top_k: int | None, d_ff_expert: int, n_shared: int,
                 first_dense: int) -> dict[str, Any]:
    """Layers from first_k_dense_replace on are MoE; n_shared_experts form one MLP of n × the expert width
    (the spec's default d_ff_shared). The router's score-correction bias is a buffer, not a parameter."""
    if top_k is None:  # DeepseekV2Config's default
        raise Unsupported("num_experts_per_tok", "missing or null: the experts each token is routed to are not set")
    # null where the class has a number: transformers refuses it, and `if n_shared` would read it as none
    for name, value, wanted in (("n_routed_experts", n_experts, "the number of routed experts"),
                                ("n_shared_experts", n_shared, "the number of shared experts, 0 for none")):
        if value is None:
            raise Unsupported(name, f"null: give {wanted}")
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


LLAMA4_LAYER_TYPES = ("full_attention", "chunked_attention")


def llama4_attention(layer_types: list | None, no_rope: list | None, interval: int, chunk: int | None,
                     n_layers: int) -> Any:
    """Llama 4: a layer rotates q and k where no_rope_layers says 1 (default: all but every
    no_rope_layer_interval-th), and is chunked_attention where it rotates and attention_chunk_size is set, else
    global (Llama4TextConfig.__post_init__, unless layer_types lists them). The NoPE layers are `rope: false`."""
    no_rope = no_rope or [int((i + 1) % interval != 0) for i in range(n_layers)]
    if len(no_rope) < n_layers:
        raise Unsupported("no_rope_layers", f"{len(no_rope)} entries for {n_layers} layers; the class reads one "
                                            "per layer")
    if layer_types is None:
        layer_types = ["chunked_attention" if rope and chunk is not None else "full_attention"
                       for rope in no_rope[:n_layers]]
    else:
        layer_types = listed(layer_types, n_layers)
    unknown = sorted(set(layer_types) - set(LLAMA4_LAYER_TYPES))
    if unknown:
        raise Unsupported("layer_types", f"layer types {unknown} are not modelled (full_attention, "
                                         "chunked_attention)")
    if "chunked_attention" in layer_types and not chunk:
        raise Unsupported("layer_types", "chunked_attention layers without an attention_chunk_size")
    layers = [{"type": "chunked", "chunk": chunk} if t == "chunked_attention" else {"type": "flash"}
              for t in layer_types[:n_layers]]
    return repeating([a if rope else {**a, "rope": False} for a, rope in zip(layers, no_rope)])


def llama4_moe(n_experts: int, top_k: int, d_ff_expert: int, moe: list | None, step: int,
               n_layers: int) -> dict[str, Any]:
    """Llama 4: the layers in moe_layers (default every interleave_moe_layer_step-th, from step − 1) are MoE,
    with one shared expert as wide as a routed one (intermediate_size); the others keep a dense MLP of
    intermediate_size_mlp."""
    listed = moe if moe is not None else list(range(step - 1, n_layers, step))
    layout = moe_layers([i in listed for i in range(n_layers)],
                        "moe_layers" if moe is not None else "interleave_moe_layer_step")
    # Llama4Router takes the sigmoid of each top-k logit: the weights are not renormalised to sum to 1.
    return renormalized({"n_experts": n_experts, "top_k": top_k, "d_ff_expert": d_ff_expert, "n_shared_experts": 1,
                         **layout}, False)
