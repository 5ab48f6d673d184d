"""The spec format: YAML → validated, frozen pydantic models. The only place user input is validated.

A spec has a required `model` section and optional `training` and `hardware` sections. Unknown keys are
errors. Defaults that depend on other fields (head_dim, n_kv_heads, d_ff, qkv_bias, training.seq_len) are
filled in before validation, so a loaded Spec states every number it stands for.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, field_validator, model_validator

from costplan import hardware, yamlio
from costplan.errors import CostplanError, SpecError, did_you_mean, printable, shown
from costplan.validation import (
    Amount, Count, CountOrAuto, FieldProblems, Flag, Fraction, Name, Positive, Price, Section, Tokens, Width,
    ZeroStage, canonical, error_messages, field_sections, kind_of, raise_if, valid_field_getter, whole_or_none,
    width_or_none,
)

# ---------------------------------------------------------------------------------------------- attention
class DenseAttention(Section):
    """Softmax attention that materialises the seq_len × seq_len score matrix."""

    type: Literal["dense"] = "dense"


class FlashAttention(Section):
    """Exact softmax attention with an IO-aware kernel (Dao et al. 2022): no score matrix is stored."""

    type: Literal["flash"] = "flash"


Kernel = Literal["flash", "materialized"]   # a fused kernel storing O(s), or probabilities stored per pair


class SlidingWindowAttention(Section):
    """Each query sees the `window` most recent keys, itself included (Longformer; Mistral 7B)."""

    type: Literal["sliding_window"] = "sliding_window"
    window: Width
    kernel: Kernel = "flash"             # FlashAttention-2's windowed kernel, as Mistral trains; or Longformer's


class SparseAttention(Section):
    """The factorized patterns of Child et al. 2019, half of the heads on each of the two parts."""

    type: Literal["sparse"] = "sparse"
    pattern: Literal["strided", "fixed"]
    block: Width                         # the stride l
    summary: Width | None = None         # fixed only: the c summary positions at the end of each block
    kernel: Kernel = "flash"             # block-sparse kernels recompute attention in backward (Child et al. §5)

    @model_validator(mode="after")
    def _check(self) -> SparseAttention:
        problems = []
        if self.pattern == "fixed" and self.summary is None:
            problems.append(("summary", "the fixed pattern needs `summary` (c, the summary positions per block)"))
        if self.pattern == "strided" and self.summary is not None:
            problems.append(("summary", "only the fixed pattern has summary positions; remove it or use "
                                        "pattern: fixed"))
        if self.summary is not None and self.summary > self.block:
            problems.append(("summary", f"{self.summary} is more than block ({self.block})"))
        raise_if(problems)
        return self


class LatentAttention(Section):
    """Multi-head latent attention of DeepSeek-V2 (§2.1) and V3: low-rank K/V (and Q) with a decoupled RoPE key."""

    type: Literal["mla"] = "mla"
    kv_lora_rank: Width                  # d_c, the cached latent
    q_lora_rank: Width | None = None     # d_c'; None: queries are projected directly from x
    qk_nope_head_dim: Width
    qk_rope_head_dim: Width
    v_head_dim: Width


class AFTFull(Section):
    """Attention-Free Transformer (Zhai et al. 2021, Eq. 2): a learned max_seq_len × max_seq_len position bias."""

    type: Literal["aft_full"] = "aft_full"


class AFTLocal(Section):
    """AFT-local: the position bias is kept inside a band of `window` keys, zero outside."""

    type: Literal["aft_local"] = "aft_local"
    window: Width


class AFTSimple(Section):
    """AFT-simple: no position bias; a global, softmax(K)-weighted pooling of V."""

    type: Literal["aft_simple"] = "aft_simple"


class AFTConv(Section):
    """AFT-conv: the position bias is a learned kernel of `window` taps per head."""

    type: Literal["aft_conv"] = "aft_conv"
    window: Width


ATTENTION_TYPES: dict[str, type[Section]] = {
    cls.model_fields["type"].default: cls
    for cls in (DenseAttention, FlashAttention, SlidingWindowAttention, SparseAttention, LatentAttention,
                AFTFull, AFTLocal, AFTSimple, AFTConv)
}
SOFTMAX_TYPES = ("dense", "flash", "sliding_window", "sparse")   # q·k attention with query and key/value heads
AFT_TYPES = ("aft_full", "aft_local", "aft_simple", "aft_conv")


def _attention_shorthand(value: Any) -> Any:
    """`attention: flash` means `attention: {type: flash}`; a mapping without a type is dense attention."""
    if isinstance(value, str):
        return {"type": canonical(value, ATTENTION_TYPES)}
    if isinstance(value, Mapping) and "type" not in value:
        return {"type": "dense", **value}
    if isinstance(value, Mapping):
        return {**value, "type": canonical(value["type"], ATTENTION_TYPES)}
    return value


AttentionSpec = Annotated[
    Union[tuple(ATTENTION_TYPES.values())],  # noqa: UP007 - a union built from the registry
    BeforeValidator(_attention_shorthand),
    Field(discriminator="type"),
]


# ---------------------------------------------------------------------------------------------- moe
class MoESpec(Section):
    """Mixture of experts replacing the MLP of some layers (Shazeer et al. 2017; Switch; Mixtral; DeepSeekMoE)."""

    n_experts: Count
    top_k: Count
    d_ff_expert: Width | None = None     # inner width of each routed expert; default model.d_ff
    n_shared_experts: Amount = 0
    d_ff_shared: Width | None = None     # total inner width of the shared expert(s); default n_shared × d_ff_expert
    shared_expert_gate: Flag = False     # a d_model × 1 sigmoid gate on the shared output (Qwen-MoE)
    first_dense_layers: Amount = 0
    every: Count = 1                     # after the dense layers, every n-th layer is MoE (Switch: 2)
    capacity_factor: Positive | None = None  # expert buffers of capacity_factor × tokens × top_k / n_experts

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        problems = []
        if self.top_k > self.n_experts:
            problems.append(("top_k", f"{self.top_k} is more than n_experts ({self.n_experts})"))
        if not self.n_shared_experts:
            if self.d_ff_shared is not None:
                problems.append(("d_ff_shared", "set without shared experts; set n_shared_experts"))
            if self.shared_expert_gate:
                problems.append(("shared_expert_gate", "set without shared experts; set n_shared_experts"))
        raise_if(problems)
        return self


# ---------------------------------------------------------------------------------------------- model
class ModelSpec(Section):
    """The architecture. Each layer: norm → attention → residual, norm → MLP → residual."""

    vocab_size: Width
    d_model: Width
    n_layers: Count
    n_heads: Count
    # These three are filled in from the others when left out (see _fill_defaults); never None once valid.
    n_kv_heads: Count | None = None      # default n_heads; fewer = grouped-query, 1 = multi-query
    head_dim: Width | None = None        # default d_model / n_heads
    d_ff: Width | None = None            # default 4 * d_model
    max_seq_len: Width
    # A field left out takes GPT-2's choice (Radford et al. 2019), so a minimal spec is Kaplan's standard shape.
    mlp: Literal["gelu", "relu", "swiglu", "geglu"] = "gelu"
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    position: Literal["rope", "learned", "alibi", "none"] = "learned"
    tie_embeddings: Flag = True
    bias: Flag = True
    qkv_bias: Flag | None = None         # default: bias
    qk_norm: Literal["none", "head", "full"] = "none"
    embedding_norm: Flag = False
    attention: AttentionSpec = DenseAttention()
    moe: MoESpec | None = None           # None: every layer has the dense MLP

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        # Derive only from values that are valid themselves, so one bad number gives one message.
        d_model, n_heads = width_or_none(data.get("d_model")), width_or_none(data.get("n_heads"))
        if data.get("n_kv_heads") is None and "n_heads" in data:
            data["n_kv_heads"] = data["n_heads"]
        if data.get("head_dim") is None and d_model and n_heads and d_model % n_heads == 0:
            data["head_dim"] = d_model // n_heads
        if data.get("d_ff") is None and d_model:
            data["d_ff"] = 4 * d_model
        if data.get("qkv_bias") is None and isinstance(data.get("bias", False), bool):
            data["qkv_bias"] = data.get("bias", cls.model_fields["bias"].default)
        moe = data.get("moe")
        if isinstance(moe, Mapping):
            moe = dict(moe)
            d_ff = width_or_none(data.get("d_ff"))
            if moe.get("d_ff_expert") is None and d_ff:
                moe["d_ff_expert"] = d_ff
            shared, expert = whole_or_none(moe.get("n_shared_experts", 0)), width_or_none(moe.get("d_ff_expert"))
            if moe.get("d_ff_shared") is None and shared and expert:
                moe["d_ff_shared"] = shared * expert
            data["moe"] = moe
        return data

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        raise_if(model_rules(self.__dict__.get))
        return self

    @property
    def gated(self) -> bool:
        """SwiGLU and GeGLU have three matrices (gate, up, down) instead of two."""
        return self.mlp in ("swiglu", "geglu")

    @property
    def q_width(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.n_kv_heads * self.head_dim


# ---------------------------------------------------------------------------------------------- training
class TrainingSpec(Section):
    tokens: Tokens | None = None         # None: 20 tokens per parameter (Hoffmann et al. 2022)
    seq_len: Width | None = None         # None: model.max_seq_len (filled in by Spec)
    global_batch_size: Count | None = None  # sequences per optimizer step; None: micro_batch_size × GPUs
    micro_batch_size: Count = 1
    precision: Literal["fp32", "tf32", "fp16", "bf16", "fp8"] = "bf16"
    optimizer: Literal["adamw", "adam", "sgd", "sgd_momentum", "adafactor", "lion"] = "adamw"
    recompute: Literal["none", "selective", "full"] = "none"


# ---------------------------------------------------------------------------------------------- hardware
class HardwareSpec(Section):
    gpu: str = "a100-80gb"               # a catalogue name or a path to a hardware YAML file
    count: Count = 1
    mfu: Fraction | None = None          # None: the catalogue's default for the GPU
    usd_per_gpu_hour: Price | None = None  # None: the catalogue's dated default price

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, value: str, info: ValidationInfo) -> str:
        base = (info.context or {}).get("base_dir")
        try:
            gpu = hardware.resolve(value, base_dir=base)
        except SpecError as exc:  # a bad hardware file: one line per problem in it
            raise FieldProblems([("", f"{exc.source}: {problem}") for problem in exc.problems]) from None
        except CostplanError as exc:
            raise FieldProblems([("", str(exc))]) from None
        return gpu.key if gpu.key in hardware.catalogue() else value   # `H100-SXM` is stored as h100-sxm


# ---------------------------------------------------------------------------------------------- parallelism
class ParallelismSpec(Section):
    """How hardware.count GPUs split one training step (Megatron-LM's tensor × pipeline × data grid,
    Narayanan et al. 2021; ZeRO stages, Rajbhandari et al. 2019; sequence parallelism, Korthikanti et al.
    2022; expert parallelism carved out of the data-parallel ranks, as in Megatron-Core and DeepSpeed-MoE)."""

    data: CountOrAuto = "auto"           # auto: hardware.count / (tensor × pipeline)
    tensor: Count = 1
    pipeline: Count = 1
    expert: Count = 1                    # splits the routed experts; divides the data-parallel degree
    zero: ZeroStage = 0                  # 1: optimizer states, 2: + gradients, 3: + weights (FSDP)
    sequence_parallel: Flag = False      # shard the d_model-wide activations over the tensor group too
    micro_batches: Count | None = None   # per step; None: global_batch_size / (micro_batch_size × data), or 1


# ---------------------------------------------------------------------------------------------- serving
DEFAULT_PROMPT_TOKENS, DEFAULT_OUTPUT_TOKENS = 1024, 256


class ServingSpec(Section):
    """How the model is served (costplan serve, costs/inference.py): requests, formats, the tensor-parallel
    replica and the GPUs serving; the GPU model and its price come from `hardware` (whose count is the
    training cluster's, not the serving fleet's)."""

    # Filled in by Spec when left out: 256 output tokens after a 1,024-token prompt, shortened to fit
    # model.max_seq_len (a quarter of it for the output, the rest for the prompt).
    prompt_tokens: Width | None = None
    output_tokens: Width | None = None
    batch: Count | None = None           # concurrent sequences; None: the most that fits and meets the targets
    tpot_ms: Positive | None = None      # latency target: time per output token
    ttft_ms: Positive | None = None      # latency target: time to first token
    rate: Positive | None = None         # requests per second to plan GPUs for
    weights: Literal["bf16", "fp8", "int8", "int4"] = "bf16"
    group_size: Width | None = 128       # int4: weights per 16-bit scale along the input; None: one per row
    kv_cache: Literal["bf16", "fp8"] = "bf16"
    tensor: CountOrAuto = "auto"         # GPUs per replica; auto: the fewest (up to a node) that hold the model
    gpus: Count | None = None            # GPUs serving in all (replicas × tensor); None: one replica
    reserve: Fraction = 0.1              # GPU memory kept for activations, CUDA graphs and the allocator


# ---------------------------------------------------------------------------------------------- spec
class Spec(Section):
    name: Name
    model: ModelSpec
    training: TrainingSpec = TrainingSpec()
    hardware: HardwareSpec = HardwareSpec()
    # None: every GPU holds the whole model and the time comes from the MFU alone (see costs/parallel.py).
    parallelism: ParallelismSpec | None = None
    serving: ServingSpec = ServingSpec()
    # Where relative hardware file paths are looked up (the spec file's folder); not part of the format.
    base_dir: str | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        ctx = info.context or {}
        if data.get("name") is None:
            data["name"] = ctx.get("default_name", "spec")
        data.setdefault("base_dir", ctx.get("base_dir"))
        model, training = data.get("model"), data.get("training")
        if training is None:
            training = {}
        if isinstance(model, Mapping) and isinstance(training, Mapping) and training.get("seq_len") is None:
            if width_or_none(model.get("max_seq_len")) is not None:
                data["training"] = {**training, "seq_len": model["max_seq_len"]}
        serving = data.get("serving", {})
        context = width_or_none(model.get("max_seq_len")) if isinstance(model, Mapping) else None
        if isinstance(serving, Mapping) and context:
            serving = dict(serving)
            if serving.get("output_tokens") is None:
                serving["output_tokens"] = max(1, min(DEFAULT_OUTPUT_TOKENS, context // 4))
            output = width_or_none(serving["output_tokens"])
            if serving.get("prompt_tokens") is None and output and output < context:
                serving["prompt_tokens"] = min(DEFAULT_PROMPT_TOKENS, context - output)
            data["serving"] = serving
        return data

    @model_validator(mode="after")
    def _check(self) -> Spec:
        t, h = self.training, self.hardware
        problems = spec_rules(self.model.max_seq_len, t.__dict__.get, h.__dict__.get, self.base_dir)
        if self.parallelism is not None:
            problems += parallel_rules(self.parallelism.__dict__.get, self.model.__dict__.get, t.__dict__.get,
                                       h.__dict__.get)
        problems += serving_rules(self.serving, self.model.__dict__.get)
        raise_if(problems)
        return self

    @property
    def seq_len(self) -> int:
        return self.training.seq_len  # always set: defaults to model.max_seq_len

    @property
    def gpu(self) -> hardware.GPU:
        return hardware.resolve(self.hardware.gpu, base_dir=self.base_dir)

    @property
    def parallel(self) -> ParallelismSpec:
        """The parallelism section, or the default (pure data parallelism over every GPU, no sharding)."""
        return self.parallelism or ParallelismSpec()

    @property
    def data_parallel(self) -> int:
        """The data-parallel degree: parallelism.data, or hardware.count / (tensor × pipeline)."""
        p = self.parallel
        return p.data if p.data != "auto" else self.hardware.count // (p.tensor * p.pipeline)

    @property
    def micro_batches(self) -> int:
        """Micro-batches per optimizer step on each pipeline (gradient-accumulation steps)."""
        p, t = self.parallel, self.training
        if p.micro_batches is not None:
            return p.micro_batches
        if t.global_batch_size is not None:
            return max(1, t.global_batch_size // (t.micro_batch_size * self.data_parallel))
        return 1

    @property
    def global_batch_size(self) -> int:
        t = self.training
        return t.global_batch_size or t.micro_batch_size * self.data_parallel * self.micro_batches


# ---------------------------------------------------------------------------------------------- cross-field rules
# Written once as plain functions of a getter that returns a field's value, or None when the field is invalid
# on its own: the validators call them with valid sections, and `validate` calls them on the raw mapping when
# other fields failed, so a file's problems are all reported at once.
Getter = Callable[[str], Any]


def model_rules(v: Getter) -> list[tuple[str, str]]:
    problems = []
    d_model, n_heads, n_kv_heads, head_dim = v("d_model"), v("n_heads"), v("n_kv_heads"), v("head_dim")
    if head_dim is None and d_model and n_heads and d_model % n_heads:
        problems.append(("n_heads", f"{n_heads} does not divide d_model ({d_model}); set head_dim explicitly"))
    if n_heads and n_kv_heads:
        if n_kv_heads > n_heads:
            problems.append(("n_kv_heads", f"{n_kv_heads} is more than n_heads ({n_heads})"))
        elif n_heads % n_kv_heads:
            problems.append(("n_kv_heads", f"{n_kv_heads} does not divide n_heads ({n_heads})"))
    attention, moe, max_seq_len, n_layers = v("attention"), v("moe"), v("max_seq_len"), v("n_layers")
    if v("position") == "rope" and head_dim and head_dim % 2 and getattr(attention, "type", "") in SOFTMAX_TYPES:
        problems.append(("head_dim", f"{head_dim} is odd; rotary position embeddings need an even head_dim"))
    if attention is not None and attention.type not in SOFTMAX_TYPES:
        if n_heads and n_kv_heads and n_kv_heads != n_heads:
            problems.append(("n_kv_heads", f"{attention.type} has no key/value heads to share; remove n_kv_heads"))
        if v("qk_norm") not in (None, "none"):
            problems.append(("qk_norm", f"{attention.type} has no per-head queries and keys to normalise"))
    if attention is not None and max_seq_len:
        if attention.type == "aft_conv" and attention.window > max_seq_len:
            problems.append(("attention.window", f"{attention.window} taps are more than max_seq_len "
                                                 f"({max_seq_len}); the extra taps never touch a token"))
        if attention.type == "sparse" and n_heads == 1:
            problems.append(("n_heads", "sparse attention gives half of the heads to each part of its pattern; "
                                        "it needs at least 2 heads"))
        if attention.type == "sparse" and attention.block > max_seq_len:
            problems.append(("attention.block", f"{attention.block} is longer than max_seq_len ({max_seq_len}); "
                                                "the pattern would be dense"))
    if attention is not None and attention.type == "mla" and v("position") == "rope" and attention.qk_rope_head_dim % 2:
        problems.append(("attention.qk_rope_head_dim", f"{attention.qk_rope_head_dim} is odd; rotary position "
                                                       "embeddings need an even width"))
    if moe is not None and n_layers and moe.first_dense_layers >= n_layers:
        problems.append(("moe.first_dense_layers", f"{moe.first_dense_layers} leaves no MoE layer among "
                                                   f"{n_layers} layers"))
    return problems


def spec_rules(max_seq_len: int | None, training: Getter, hw: Getter,
               base_dir: str | None) -> list[tuple[str, str]]:
    problems = []
    seq_len, micro, batch = training("seq_len"), training("micro_batch_size"), training("global_batch_size")
    if seq_len and max_seq_len and seq_len > max_seq_len:
        problems.append(("training.seq_len", f"{seq_len} is longer than model.max_seq_len ({max_seq_len})"))
    if batch and micro and batch % micro:
        problems.append(("training.global_batch_size",
                         f"{batch} is not a multiple of micro_batch_size ({micro})"))
    precision, gpu_name = training("precision"), hw("gpu")
    if precision and gpu_name:
        try:
            gpu = hardware.resolve(gpu_name, base_dir=base_dir)
        except CostplanError:
            return problems  # reported by the gpu field itself
        if gpu.peak_flops(precision) is None:
            problems.append(("training.precision",
                             f"{precision} has no peak FLOP/s on {gpu.name}; it has {', '.join(gpu.precisions)}"))
    return problems


def parallel_rules(par: Getter, model: Getter, training: Getter, hw: Getter) -> list[tuple[str, str]]:
    """The degrees must tile the GPUs and split the model into whole pieces."""
    problems: list[tuple[str, str]] = []
    count, tensor, pipeline, data = hw("count"), par("tensor"), par("pipeline"), par("data")
    if count and tensor and pipeline:
        if count % (tensor * pipeline):
            problems.append(("parallelism", f"tensor ({tensor}) × pipeline ({pipeline}) = {tensor * pipeline} "
                                            f"does not divide hardware.count ({count})"))
        elif data not in (None, "auto") and data * tensor * pipeline != count:
            problems.append(("parallelism.data", f"{data} × tensor ({tensor}) × pipeline ({pipeline}) = "
                                                 f"{data * tensor * pipeline} GPUs, but hardware.count is {count}"))
    if data == "auto" and count and tensor and pipeline and count % (tensor * pipeline) == 0:
        data = count // (tensor * pipeline)
    problems += split_rules(model, tensor, pipeline)
    problems += expert_rules(par("expert"), model("moe"), data if isinstance(data, int) else None)
    micro, batch, micro_batches = training("micro_batch_size"), training("global_batch_size"), par("micro_batches")
    if batch and micro and isinstance(data, int):
        per_step = micro * data
        if batch % per_step:
            problems.append(("training.global_batch_size",
                             f"{batch} is not a multiple of micro_batch_size ({micro}) × data-parallel degree "
                             f"({data}) = {per_step}"))
        elif micro_batches and micro_batches != batch // per_step:
            problems.append(("parallelism.micro_batches",
                             f"{micro_batches} does not match global_batch_size ({batch}) / (micro_batch_size "
                             f"({micro}) × data-parallel degree ({data})) = {batch // per_step}"))
    return problems


def split_rules(model: Getter, tensor: int | None, pipeline: int | None) -> list[tuple[str, str]]:
    """Tensor parallelism splits heads and MLP widths, pipeline parallelism the layers, into whole pieces
    (the one statement of this rule: validation and the planner's layout grid both use it)."""
    problems = []
    if tensor:
        moe = model("moe")
        sizes = [(field, model(field)) for field in ("n_heads", "n_kv_heads", "d_ff")]
        sizes += [(f"moe.{field}", getattr(moe, field, None)) for field in ("d_ff_expert", "d_ff_shared")]
        for field, size in sizes:
            if field == "n_kv_heads" and size == model("n_heads"):
                continue  # said once, for n_heads
            if size and size % tensor:
                problems.append(("parallelism.tensor", f"{tensor} does not divide model.{field} ({size})"))
    n_layers = model("n_layers")
    if pipeline and n_layers and n_layers % pipeline:
        problems.append(("parallelism.pipeline", f"{pipeline} does not divide model.n_layers ({n_layers})"))
    return problems


def serving_rules(serving: ServingSpec, model: Getter) -> list[tuple[str, str]]:
    """A served sequence fits the model's context; a replica splits heads and widths into whole pieces."""
    problems: list[tuple[str, str]] = []
    if serving.prompt_tokens is None or serving.output_tokens is None:
        return problems     # only when max_seq_len is invalid itself, reported there
    context, max_seq_len = serving.prompt_tokens + serving.output_tokens, model("max_seq_len")
    if max_seq_len and context > max_seq_len:
        problems.append(("serving", f"prompt_tokens ({serving.prompt_tokens}) + output_tokens "
                                    f"({serving.output_tokens}) = {context} is longer than model.max_seq_len "
                                    f"({max_seq_len}); raise model.max_seq_len if the model was trained for it"))
    if serving.tensor != "auto":
        problems += [("serving.tensor", msg) for _, msg in split_rules(model, serving.tensor, None)]
        if serving.gpus is not None and serving.gpus % serving.tensor:
            problems.append(("serving.tensor", f"{serving.tensor} does not divide serving.gpus ({serving.gpus})"))
    return problems


def expert_rules(expert: int | None, moe: Any, data: int | None) -> list[tuple[str, str]]:
    if not expert or expert == 1:
        return []
    if moe is None:
        return [("parallelism.expert", f"{expert} needs a mixture-of-experts model (model.moe)")]
    problems = []
    n_experts = getattr(moe, "n_experts", None)
    if n_experts and n_experts % expert:
        problems.append(("parallelism.expert", f"{expert} does not divide model.moe.n_experts ({n_experts})"))
    if data and data % expert:
        problems.append(("parallelism.expert", f"{expert} does not divide the data-parallel degree ({data})"))
    return problems


def _rules_on_raw(data: Mapping[str, Any], base_dir: str | None) -> list[str]:
    """The cross-field rules applied to a raw spec that failed validation, on its individually valid fields."""
    raw_model = data.get("model") if isinstance(data.get("model"), Mapping) else {}
    raw_model = ModelSpec._fill_defaults(raw_model)
    training = data.get("training") if isinstance(data.get("training"), Mapping) else {}
    hw = data.get("hardware") if isinstance(data.get("hardware"), Mapping) else {}
    model_value = valid_field_getter(ModelSpec, raw_model)
    seq_len = training.get("seq_len", raw_model.get("max_seq_len"))
    problems = [(f"model.{field}", msg) for field, msg in model_rules(model_value)]
    training_value = valid_field_getter(TrainingSpec, {**training, "seq_len": seq_len})
    hw_value = valid_field_getter(HardwareSpec, hw, context={"base_dir": base_dir})
    problems += spec_rules(model_value("max_seq_len"), training_value, hw_value, base_dir)
    if isinstance(data.get("parallelism"), Mapping):
        problems += parallel_rules(valid_field_getter(ParallelismSpec, data["parallelism"]), model_value,
                                   training_value, hw_value)
    return [f"{field}: {msg}" for field, msg in problems]


# ---------------------------------------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """`model.n_layers=48` → (['model', 'n_layers'], 48); the key is read by field_path, like --vary's (so
    `n_layers=48` works too), the value as YAML (numbers, booleans, null)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise CostplanError(f"--set {printable(text)}: expected KEY=VALUE with a dotted key, e.g. "
                            "model.n_layers=48")
    try:
        path = field_path(key)
    except CostplanError as exc:
        raise CostplanError(f"--set {printable(text)}: {exc}") from None
    return list(path), yamlio.value(raw)


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of a raw spec mapping with dotted-path overrides applied; validation happens afterwards."""
    result: dict[str, Any] = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            # `attention: flash` is shorthand for a mapping; expand it so `attention.window=…` can be set.
            if isinstance(child, str) and part == "attention":
                child = {"type": child}
            child = dict(child) if isinstance(child, Mapping) else {}
            node[part] = child
            node = child
        node[path[-1]] = value
    return result


# ---------------------------------------------------------------------------------------------- loading
def load_spec(source: str | os.PathLike | Mapping[str, Any], overrides: Iterable[str] = ()) -> Spec:
    """A validated Spec from a file path, a preset name or a mapping, with `--set`-style overrides applied."""
    return read_source(source).validate(overrides)


@dataclass(frozen=True)
class RawSpec:
    """A spec as read, before validation, with what validation needs to name and place it."""

    data: Any
    label: str
    default_name: str
    base_dir: str | None

    def validate(self, overrides: Iterable[str] = ()) -> Spec:
        return validate(self.data, overrides, label=self.label, default_name=self.default_name,
                        base_dir=self.base_dir)


def read_source(source: str | os.PathLike | Mapping[str, Any]) -> RawSpec:
    """The raw mapping of a file path, a preset name or a mapping; validation comes after."""
    from costplan import hf, presets, sources

    if isinstance(source, Mapping):
        return RawSpec(source, "<spec>", "spec", None)
    found = sources.find(source, presets.names())
    if found is None and hf.config_file(Path(source)) is not None:
        found = Path(source)     # a bare folder name that holds a Hugging Face config.json
    config = hf.config_file(found) if isinstance(found, Path) else None
    if config is not None:
        return RawSpec(hf.read(config).spec, printable(source, cut=False), hf.spec_name(config), str(config.parent))
    if found is None:
        raise SpecError(printable(source, cut=False), [
            f"no such file or preset{did_you_mean(str(source), presets.names())}; `costplan presets` lists "
            "the presets"])
    path = presets.path(found) if isinstance(found, str) else found
    label = found if isinstance(found, str) else printable(source, cut=False)
    return RawSpec(yamlio.read(path), label, path.stem, str(path.parent))


@functools.lru_cache(maxsize=1024)   # sweeps apply the same few keys at every point
def field_path(key: str) -> tuple[str, ...]:
    """A dotted field path as written in a spec, checked against the format: `model.n_layers`. The `model.`
    prefix may be left out (`moe.n_experts`, `n_layers`). An unknown field is a CostplanError."""
    parts = key.split(".")
    if any(not part for part in parts):
        raise CostplanError(f"{shown(key)} is not a dotted field path such as model.n_layers")
    top = [name for name, f in Spec.model_fields.items() if not f.exclude]
    # A first part that is not a section is a model field, unless it is a misspelt section (`trainng.tokens`).
    if parts[0] not in top and (parts[0] in ModelSpec.model_fields or len(parts) == 1
                                or not did_you_mean(parts[0], top)):
        parts = ["model", *parts]
    sections: list[type[Section]] = [Spec]
    for depth, part in enumerate(parts):
        names = {name for cls in sections for name, f in cls.model_fields.items() if not f.exclude}
        if part not in names:
            where = ".".join(parts[:depth]) or "a spec"
            raise CostplanError(f"{printable('.'.join(parts[:depth + 1]))}: unknown field"
                                f"{did_you_mean(part, names)}; "
                                f"{where} has {', '.join(sorted(names))}")
        sections = [inner for cls in sections if part in cls.model_fields
                    for inner in field_sections(cls.model_fields[part].annotation)]
        if not sections and depth < len(parts) - 1:
            raise CostplanError(f"{'.'.join(parts[:depth + 1])}: is a value, not a section with fields")
    return tuple(parts)


def validate(data: Any, overrides: Iterable[str], *, label: str, default_name: str,
             base_dir: str | None) -> Spec:
    """Validate a raw mapping, reporting every problem at once as a SpecError."""
    if data is None:
        raise SpecError(label, ["the file is empty; a spec needs at least a `model` section"])
    if not isinstance(data, Mapping):
        raise SpecError(label, [f"the top level must be a mapping with a `model` section, "
                                f"not {kind_of(data)}"])
    data = apply_overrides(data, overrides)
    context = {"default_name": default_name, "base_dir": base_dir}
    try:
        return Spec.model_validate(data, context=context)
    except ValidationError as exc:
        messages = error_messages(exc, Spec)
        messages += [m for m in _rules_on_raw(data, base_dir) if m not in messages]
        raise SpecError(label, messages) from None




def with_overrides(spec: Spec, overrides: Iterable[str]) -> Spec:
    """A validated copy of a spec with `--set`-style overrides applied (errors name the spec)."""
    data = spec.model_dump(exclude_none=True)
    return validate(data, overrides, label=spec.name, default_name=spec.name, base_dir=spec.base_dir)


def at_seq_len(spec: Spec, seq_len: int) -> Spec:
    """The spec trained at another context length; max_seq_len grows with it when needed (never shrinks, so
    position tables keep their size)."""
    return with_overrides(spec, [f"training.seq_len={seq_len}",
                                 f"model.max_seq_len={max(seq_len, spec.model.max_seq_len)}"])
