"""The spec format: YAML → validated, frozen sections (costplan/sections.py). The only place user input is
validated.

A spec has a required `model` section and optional `training` and `hardware` sections. Unknown keys are
errors. Defaults that depend on other fields (head_dim, n_kv_heads, d_ff, qkv_bias, o_bias, training.seq_len) are
filled in before validation, so a loaded Spec states every number it stands for.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

from costplan import hardware
from costplan.errors import CostplanError, SpecError
from costplan.kinds import TEXT, FieldProblems, Kind, Place, Then, raise_if
from costplan.records import set_private
from costplan.sections import Section, field
from costplan.spec_attention import AttentionPattern, AttentionSpec, DenseAttention, ModelAttention, pattern_of
from costplan.spec_rules import (
    fp8_cache_rules, fp8_input_rules, implementation_rules, model_parallel, model_rules, parallel_rules,
    recompute_rules, serving_rules, spec_rules,
)
from costplan.validation import (
    Amount, Count, CountOrAuto, Flag, Fraction, Name, PerSecond, Positive, Price, Tokens, Width, ZeroStage,
    whole_or_none, width_or_none,
)


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
    router_bias: Flag = False            # a bias of n_experts on the router's logits (gpt-oss)
    # The top-k weights divided by their sum (Mixtral; a config's norm_topk_prob). No parameters or matmul
    # FLOPs: only what transformers' modules save for it differs (training.implementation sdpa / eager).
    renormalize: Flag = True

    def _after(self) -> None:
        problems = []
        if self.top_k > self.n_experts:
            problems.append(("top_k", f"{self.top_k} is more than n_experts ({self.n_experts})"))
        if not self.n_shared_experts:
            if self.d_ff_shared is not None:
                problems.append(("d_ff_shared", "set without shared experts; set n_shared_experts"))
            if self.shared_expert_gate:
                problems.append(("shared_expert_gate", "set without shared experts; set n_shared_experts"))
        raise_if(problems)


# ---------------------------------------------------------------------------------------------- model
class ModelSpec(Section):
    """The architecture. Each layer, by `block`:
    - sequential (GPT-2, Llama): h = x + attention(norm(x)), then h + mlp(norm(h));
    - sandwich (Gemma 2 and 3; Gemma Team 2024): each block's output is normed too, x + norm(attention(norm(x)));
    - parallel (GPT-NeoX-20B, Black et al. 2022; Falcon-40B): x + attention(norm_a(x)) + mlp(norm_m(x));
    - parallel_shared_norm (GPT-J, Wang & Komatsuzaki 2021; PaLM, Chowdhery et al. 2022 §2; Phi-2; Falcon-7B):
      x + attention(n(x)) + mlp(n(x)), one norm per layer.
    """

    vocab_size: Width
    d_model: Width
    n_layers: Count
    n_heads: Count
    # These three, qkv_bias and o_bias are filled in from others when left out (_fill_defaults); never None once
    # valid.
    n_kv_heads: Count | None = None      # default n_heads; fewer = grouped-query, 1 = multi-query
    head_dim: Width | None = None        # default d_model / n_heads
    d_ff: Width | None = None            # default 4 * d_model
    max_seq_len: Width
    # A field left out takes GPT-2's choice (Radford et al. 2019), so a minimal spec is Kaplan's standard shape.
    mlp: Literal["gelu", "relu", "swiglu", "geglu"] = "gelu"
    norm: Literal["layernorm", "rmsnorm", "nonparametric_layernorm"] = "layernorm"  # the last: no weight, bias
    block: Literal["sequential", "sandwich", "parallel", "parallel_shared_norm"] = "sequential"
    position: Literal["rope", "learned", "alibi", "none"] = "learned"
    # Features of each head that rotary embeddings rotate (GPT-J rotary_dim, GPT-NeoX rotary_pct, Phi
    # partial_rotary_factor); None: all of head_dim. No parameters and no matmuls: only the rotary tables.
    rope_dim: Width | None = None
    tie_embeddings: Flag = True
    bias: Flag = True
    qkv_bias: Flag | None = None         # default: bias
    o_bias: Flag | None = None           # the attention output projection's; default: bias
    head_bias: Flag = False              # a bias on the LM head (GPT-J, Phi), tied or not
    qk_norm: Literal["none", "head", "full"] = "none"
    embedding_norm: Flag = False
    attention_sinks: Flag = False        # a learned logit per query head in each softmax's denominator (gpt-oss)
    clip_qkv: Positive | None = None     # q, k and v clamped to ±clip_qkv after their projections (OLMo)
    attention: ModelAttention = DenseAttention()   # one for every layer, or a list repeated over the layers
    moe: MoESpec | None = None           # None: every layer has the dense MLP

    @classmethod
    def _before(cls, data: Any, context: Mapping[str, Any]) -> Any:
        return super()._before(cls._fill_defaults(data), context)

    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        # Derive only from values that are valid themselves, so one bad number gives one message.
        d_model, n_heads = width_or_none(data.get("d_model")), width_or_none(data.get("n_heads"))
        if data.get("n_kv_heads") is None and n_heads:
            data["n_kv_heads"] = n_heads
        if data.get("head_dim") is None and d_model and n_heads and d_model % n_heads == 0:
            data["head_dim"] = d_model // n_heads
        if data.get("d_ff") is None and d_model:
            data["d_ff"] = 4 * d_model
        for override in ("qkv_bias", "o_bias"):
            if data.get(override) is None and isinstance(data.get("bias", False), bool):
                data[override] = data.get("bias", cls.model_fields["bias"].default)
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

    def _after(self) -> None:
        raise_if(model_rules(self.__dict__.get))

    @property
    def gated(self) -> bool:
        """SwiGLU and GeGLU have three matrices (gate, up, down) instead of two."""
        return self.mlp in ("swiglu", "geglu")

    @property
    def attention_pattern(self) -> AttentionPattern:
        """The attention of each layer in turn, repeated over the layers (one entry: every layer alike)."""
        return pattern_of(self.attention)

    def layer_attention(self, index: int) -> AttentionSpec:
        """The attention of layer `index` (0-based)."""
        pattern = self.attention_pattern
        return pattern[index % len(pattern)]

    @property
    def attention_types(self) -> frozenset[str]:
        return frozenset(a.type for a in self.attention_pattern)

    @property
    def rotary_dim(self) -> int:
        """Features of each head the rotary embeddings rotate."""
        return self.rope_dim or self.head_dim

    @property
    def q_width(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        return self.n_kv_heads * self.head_dim


# ---------------------------------------------------------------------------------------------- training
# The transformers model types whose modules training.modules may name (every type a config import reads).
# transformers' ACT2FN names of the activations costplan's MLPs take (costs/class_modules.py PYTHON_GELU_SAVES)
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu_python", "gelu_accurate", "relu", "silu",
               "swish")
MODULES = ("bloom", "deepseek_v2", "deepseek_v3", "falcon", "gemma", "gemma2", "gemma3_text", "gpt2", "gpt_neox",
           "gpt_oss", "gptj", "granite", "llama", "llama4_text", "mistral", "mixtral", "olmo", "olmoe", "opt", "phi",
           "phi3", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "starcoder2")

FUSABLE = ("norm", "rotary", "activation", "loss")   # training.fused_kernels
LOSS_KERNELS = ("fused", "eager", "vocab_parallel", "transformer_engine")   # training.loss_kernel


class TrainingSpec(Section):
    tokens: Tokens | None = None         # None: 20 tokens per parameter (Hoffmann et al. 2022)
    seq_len: Width | None = None         # None: model.max_seq_len (filled in by Spec)
    global_batch_size: Count | None = None  # sequences per optimizer step; None: micro_batch_size × GPUs
    micro_batch_size: Count = 1
    precision: Literal["fp32", "tf32", "fp16", "bf16", "fp8"] = "bf16"
    optimizer: Literal["adamw", "adam", "sgd", "sgd_momentum", "adafactor", "lion"] = "adamw"
    # Gradients accumulated, held and reduced in fp32 under 16-bit training: Megatron-Core's grad_reduce_in_fp32
    # (its fp32 main_grad buffer, the default with --bf16), FSDP2's reduce_dtype float32 (torchtitan's default).
    # No effect where gradients are fp32 already (precision fp32 or tf32, autocast).
    fp32_gradients: Flag = False
    # selective: Megatron's (the attention core reruns); selective_op: torchtitan's per-op checkpointing (every
    # second matmul's output and the attention's kept, the rest rerun: costs/selective_op.py); full: every layer.
    recompute: Literal["none", "selective", "selective_op", "full"] = "none"
    # With recompute full: only the first N layers of each pipeline stage recompute, the rest keep their
    # activations (Megatron's --recompute-method block --recompute-num-layers N); None: every layer.
    # Set only with recompute full (spec_rules.recompute_rules), so readers need not check both.
    recompute_layers: Count | None = None
    # The attention kernel the framework runs: the fastest the device has tables for (FlashAttention-3 on
    # Hopper, -2 on Ampere), or one by name: FlashAttention-2 (PyTorch's SDPA flash backend), -3, -1, or the
    # Triton FlashAttention of flash-attn 1.x (flash1_triton).
    attention_kernel: Literal["fastest", "flash1", "flash1_triton", "flash2", "flash3"] = "fastest"
    # Whose modules save the activations: fused kernels (a fused norm, FlashAttention: Megatron, torchtitan), or
    # the PyTorch modules of `transformers` with SDPA or eager attention (costs/implementation/).
    implementation: Literal["fused", "sdpa", "eager"] = "fused"
    # fp32 weights cast to `precision` per matmul by torch.autocast (the common trainer default), instead of
    # 16-bit weights with an fp32 master copy; modelled for transformers' modules (sdpa, eager).
    autocast: Flag = False
    # Whose transformers modules sdpa and eager describe, by model_type (a config import sets it): the modules
    # differ between classes for the same architecture (a Python GELU, fp32 norms, an explicit mask).
    modules: Literal[MODULES] = "llama"
    # The activation the modules run, by its transformers name (the config's hidden_act or activation_function),
    # where it saves more than a fused kernel's input: the Python GELUs (gelu_new, gelu_fast, ...). None: the
    # class's default (a config import sets it). Memory under implementation sdpa / eager only.
    activation: Literal[ACTIVATIONS] | None = None
    # How the step model prices memory-bound work (norms, activations, rotary, residual adds, the loss): as
    # fused kernels (torch.compile, Transformer Engine, Megatron), or as the kernels eager PyTorch runs one op
    # at a time (torchtitan without torch.compile; costs/eager.py), or `blocks`: each transformer block
    # compiled on its own and the rest (the final norm, the head's loss) eager (torchtitan's torch.compile).
    # Memory follows two of them: an eager gated activation also saves its output (costs/mlp.py saved_inner),
    # and an eager loss is torch's cross-entropy (costs/embedding.py loss_bytes).
    fusion: Literal["fused", "eager", "blocks"] = "fused"
    # Ops that run as one fused kernel each way in an otherwise eager step (fusion eager, or the eager edges of
    # fusion blocks): torchtitan's fused_rmsnorm, Liger's RMSNorm, RoPE, SwiGLU and cross-entropy kernels.
    fused_kernels: tuple[Literal[FUSABLE], ...] = ()
    # How the loss over the vocabulary runs, where it differs from what `fusion` makes of it: one fused kernel
    # each way (Megatron-Core's fused cross-entropy, Liger's), Transformer Engine's fused kernel (Megatron-Core's
    # cross_entropy_fusion_impl te, Megatron-Bridge's recipes), torch's cross_entropy on fp32 logits (eager), or
    # Megatron-Core's unfused vocab-parallel cross-entropy (its default without cross_entropy_loss_fusion:
    # costs/eager.py). None: fused, or eager under fusion eager and blocks. Memory: fused and vocab_parallel as
    # Megatron-Core's kernels hold it, eager as torch's, transformer_engine and `loss` in fused_kernels (with this
    # None) as Liger's kernel (costs/embedding.py loss_bytes).
    loss_kernel: Literal[LOSS_KERNELS] | None = None
    # How a step's micro-batches add up their weight gradients: in the weight-gradient GEMM itself (Megatron-Core's
    # gradient_accumulation_fusion, on by default), or by a separate add after each backward (PyTorch's autograd
    # adding into .grad from the second micro-batch on; into an fp32 buffer every micro-batch with fp32_gradients:
    # Megatron without the fusion, DeepSpeed's bf16 optimizer), a memory-bound pass over the gradients a GPU holds.
    grad_accumulation: Literal["fused", "add"] = "fused"
    # Whether fp8 linears save the fp8 copy of their input for the weight gradient, 1 byte an element where the
    # 16-bit input took 2: Transformer Engine's (Megatron-Core, NeMo, Megatron-Bridge); torchao's Float8Linear
    # (torchtitan) saves the 16-bit input (false). Memory only (costs/fp8_inputs.py); with precision fp8.
    fp8_saved_inputs: Flag = False
    # Whether fp8 linears keep an fp8 copy of their weight between steps (with its transposed copy where the
    # device's fp8 GEMMs take only the TN layout: Hopper, Ada): Transformer Engine under Megatron-Core, which
    # passes is_first_microbatch (the copy refreshed once a step; off with disable_parameter_transpose_cache, and
    # under FSDP2, and replaced by the weights themselves with fp8_param). Memory only (costs/fp8_weights.py);
    # with fp8_saved_inputs (Transformer Engine's linears); a layout search leaves ZeRO-3 out for it.
    fp8_weight_cache: Flag = False


# ---------------------------------------------------------------------------------------------- hardware
def _known_gpu(value: str, context: Mapping[str, Any]) -> str:
    try:
        gpu = hardware.resolve(value, base_dir=context.get("base_dir"))
    except SpecError as exc:  # a bad hardware file: one line per problem in it
        raise FieldProblems([("", f"{exc.source}: {problem}") for problem in exc.problems]) from None
    except CostplanError as exc:
        raise FieldProblems([("", str(exc))]) from None
    return gpu.key if gpu.key in hardware.catalogue() else value   # `H100-SXM` is stored as h100-sxm


# a catalogue name or a path to a hardware YAML file (relative to the spec's folder)
GpuName: Kind = Then(TEXT, _known_gpu, name="GpuName")


class HardwareSpec(Section):
    gpu: GpuName = "a100-80gb"           # a catalogue name or a path to a hardware YAML file
    count: Count = 1
    mfu: Fraction | None = None          # None: the step model times each step; a figure overrides it
    usd_per_gpu_hour: Price | None = None  # None: the catalogue's dated default price
    # Between nodes, per GPU, both directions together (the catalogue's unit): a cluster's own network, as
    # 4 × 100 Gb/s per node of 8 is 12.5. None: the GPU's (its catalogue entry or hardware file).
    network_gbs: Positive | None = None


# ---------------------------------------------------------------------------------------------- parallelism
class ParallelismSpec(Section):
    """How hardware.count GPUs split one training step (Megatron-LM's tensor × pipeline × data grid,
    Narayanan et al. 2021; ZeRO stages, Rajbhandari et al. 2019; sequence parallelism, Korthikanti et al.
    2022; expert parallelism over the tensor, context and data-parallel ranks, as Megatron-Core's MoE parallel
    folding, Liu et al. 2025)."""

    data: CountOrAuto = "auto"           # auto: hardware.count / (tensor × context × pipeline)
    tensor: Count = 1
    pipeline: Count = 1
    context: Count = 1                   # splits each sequence; attention passes K and V around a ring
    virtual_stages: Count = 1            # interleaved 1F1B: model chunks per pipeline rank (Narayanan §2.2.2)
    tensor_overlap: Flag = False         # tensor-parallel traffic hidden behind GEMMs (Megatron tp-comm-overlap)
    # interleaved 1F1B's point-to-point sends and receives hidden behind the model chunks' compute (Megatron's
    # overlap_p2p_comm, on with virtual stages in NeMo's and Megatron-Bridge's configs); needs virtual_stages > 1
    pipeline_overlap: Flag = False
    expert: Count = 1                    # splits the routed experts over ranks; see expert_tensor
    # a MoE layer's all-to-alls hidden behind another micro-batch's compute of the layer (Megatron-Core's
    # overlap_moe_expert_parallel_comm, DeepSeek-V3's DualPipe); needs expert > 1 and 2+ micro-batches a step
    expert_overlap: Flag = False
    # Splits each routed expert's matrices, as Megatron-Core's expert_tensor_parallel_size; None: tensor (its
    # default). Expert × expert_tensor ranks fold into the tensor × context × data ranks (MoE parallel folding).
    expert_tensor: Count | None = None
    zero: ZeroStage = 0                  # 1: optimizer states, 2: + gradients, 3: + weights (FSDP)
    # FSDP2's per-parameter sharding: each all-gather lands in a staging buffer that is copied into the
    # parameters on the compute stream (FSDP1, DeepSpeed and Megatron gather into the parameters' own buffer)
    per_parameter_sharding: Flag = False
    sequence_parallel: Flag = False      # shard the d_model-wide activations over the tensor group too
    micro_batches: Count | None = None   # per step; None: global_batch_size / (micro_batch_size × data), or 1
    # Uneven stages, as Megatron-Core's num_layers_in_first/last_pipeline_stage: the rest split evenly over the
    # middle stages. Or account_for_embedding/loss: the embedding (loss) counts as one layer of the first (last)
    # stage (spec_rules.stage_depths).
    first_stage_layers: Count | None = None
    last_stage_layers: Count | None = None
    account_for_embedding: Flag = False
    account_for_loss: Flag = False
    # Or each stage's layers, first to last, as torchtitan's or DeepSpeed's splits give them (no Megatron-Core
    # rule on them): they sum to model.n_layers and each holds at least virtual_stages layers.
    stage_layers: tuple[Count, ...] | None = None

    @property
    def expert_tensor_degree(self) -> int:
        """Tensor ranks splitting each routed expert: expert_tensor, or tensor when it is not given."""
        return self.expert_tensor or self.tensor

    @property
    def expert_group(self) -> int:
        """GPUs holding one copy of a layer's routed experts: expert_tensor × expert (parallel folding)."""
        return self.expert_tensor_degree * self.expert

    @property
    def routed_row_share(self) -> float:
        """Each GPU's share of a sequence's routed rows: et/t, its expert tensor group gathering them from the
        tensor ranks' sequence-parallel slices (Megatron-Core's all-to-all dispatcher)."""
        return self.expert_tensor_degree / self.tensor


# Without a parallelism section every GPU holds the whole model; built once (the section is frozen), as the
# cost model asks for it many times per estimate.
NO_PARALLELISM = ParallelismSpec()


def data_ranks(par: ParallelismSpec, count: int) -> int:
    """The data-parallel degree of a layout on `count` GPUs (Spec.data_parallel)."""
    return par.data if par.data != "auto" else count // model_parallel(par.tensor, par.context, par.pipeline)


def step_micro_batches(par: ParallelismSpec, training: TrainingSpec, count: int) -> int:
    """Micro-batches per optimizer step on each pipeline of a layout on `count` GPUs (Spec.micro_batches): a
    layout search bounds layouts before it builds their specs."""
    if par.micro_batches is not None:
        return par.micro_batches
    if training.global_batch_size is not None:
        return max(1, training.global_batch_size // (training.micro_batch_size * data_ranks(par, count)))
    return 1


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
    rate: PerSecond | None = None        # requests per second to plan GPUs for (50, or 50/s)
    weights: Literal["bf16", "fp8", "int8", "int4"] = "bf16"
    group_size: Width | None = 128       # int4: weights per 16-bit scale along the input; None: one per row
    kv_cache: Literal["bf16", "fp8"] = "bf16"
    tensor: CountOrAuto = "auto"         # GPUs per replica; auto: the fewest (up to a node) that hold the model
    gpus: Count | None = None            # GPUs serving in all (replicas × tensor); None: one replica
    reserve: Fraction = 0.1              # GPU memory kept for activations, CUDA graphs and the allocator
    # Prompt tokens one prefill pass takes together when the replica is busy (an engine's max_num_tokens or
    # max_num_batched_tokens; TensorRT-LLM's BuildConfig default is 8192): throughput and the input price
    # charge each prompt its share of such a pass. The time to first token stays one prompt alone.
    prefill_tokens: Count = 8192


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
    base_dir: str | None = field(None, exclude=True)
    # The mapping it was validated from, overrides applied (set by model_validate; not a field, so equality
    # ignores it): a copy with more overrides (loading.with_overrides) derives its defaults again from it, as
    # --set does (head_dim from a new d_model). model_copy drops it, as the copy's updates are not in it.
    _raw: Any = None

    def __init__(self, **data: Any) -> None:
        # keyword construction keeps the mapping (_raw): a copy, so that the caller's later edits reach nothing
        super().__init__(**copy.deepcopy(data))

    @classmethod
    def model_validate(cls, data: Any, context: Mapping[str, Any] | None = None) -> Spec:
        spec = super().model_validate(data, context)
        # the mapping, so that a copy with more overrides derives its defaults again (loading.with_overrides) and
        # seq_len_defaulted can read it; a copy (model_copy) drops it, its sections being the caller's
        set_private(spec, "_raw", data)
        return spec

    @classmethod
    def _before(cls, data: Any, context: Mapping[str, Any]) -> Any:
        return super()._before(cls._fill_defaults(data, context), context)

    @classmethod
    def _validate_at(cls, data: Any, at: Place, siblings: Mapping[str, type[Section]] | None = None) -> Any:
        if isinstance(data, Mapping) and "base_dir" in data:
            # not a field of the format: a file setting it would look its hardware file up in another folder
            # than the one validation checked
            at.at("base_dir").add("unknown field")
        return super()._validate_at(data, at, siblings)

    @classmethod
    def _fill_defaults(cls, data: Any, ctx: Mapping[str, Any]) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if data.get("name") is None:
            data["name"] = ctx.get("default_name", "spec")
        data["base_dir"] = ctx.get("base_dir")     # the folder the spec was read from, never the file's to set
        for section in ("training", "hardware", "serving"):    # `hardware:` with nothing under it: the defaults
            if section in data and data[section] is None:
                del data[section]
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

    def _after(self) -> None:
        t, h = self.training, self.hardware
        problems = spec_rules(self.model.max_seq_len, t.__dict__.get)
        problems += implementation_rules(self.model.__dict__.get, t.__dict__.get)
        problems += recompute_rules(self.model.__dict__.get, t.__dict__.get)
        problems += fp8_input_rules(self.model.__dict__.get, t.__dict__.get)
        problems += fp8_cache_rules(t.__dict__.get, None if self.parallelism is None else self.parallelism.zero)
        if self.parallelism is not None:
            problems += parallel_rules(self.parallelism.__dict__.get, self.model.__dict__.get, t.__dict__.get,
                                       h.__dict__.get)
        problems += serving_rules(self.serving, self.model.__dict__.get)
        raise_if(problems)

    @property
    def seq_len(self) -> int:
        return self.training.seq_len  # always set: defaults to model.max_seq_len

    @property
    def config_defaults(self) -> tuple[str, ...]:
        """The keys a Hugging Face config's class read that its file lacks, so the class's defaults (none for a
        spec file)."""
        return getattr(self, "_config_defaults", ())

    @property
    def label(self) -> str:
        """What an error about the spec names: the file (or preset) it was read from, else its name."""
        return getattr(self, "_label", None) or self.name

    def with_config_notes(self, copy: Spec) -> Spec:
        """The copy (another layout, length or setting of this spec) with what this spec's config said nothing of,
        or left out, and the file it was read from: still so of the copy."""
        for name in ("_config_defaults", "_config_left_out", "_label"):
            if getattr(self, name, ()):
                set_private(copy, name, getattr(self, name))
        return copy

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Spec:
        return self.with_config_notes(super().model_copy(update=update))

    @property
    def config_left_out(self) -> tuple[str, ...]:
        """A Hugging Face config's keys with a cost no spec states, each "key: why" (hf.Imported.left_out)."""
        return getattr(self, "_config_left_out", ())

    @property
    def seq_len_defaulted(self) -> bool:
        """Whether training.seq_len came from model.max_seq_len, the mapping validated having none (a copy made
        without that mapping, as a search's, is taken as given)."""
        raw = self._raw
        training = raw.get("training") if isinstance(raw, Mapping) else None
        return raw is not None and (not isinstance(training, Mapping) or training.get("seq_len") is None)

    @property
    def gpu(self) -> hardware.GPU:
        return hardware.resolve(self.hardware.gpu, base_dir=self.base_dir, network_gbs=self.hardware.network_gbs)

    @property
    def parallel(self) -> ParallelismSpec:
        """The parallelism section, or the default (pure data parallelism over every GPU, no sharding)."""
        return self.parallelism or NO_PARALLELISM

    @property
    def data_parallel(self) -> int:
        """The data-parallel degree: parallelism.data, or hardware.count / (tensor × context × pipeline)."""
        return data_ranks(self.parallel, self.hardware.count)

    @property
    def micro_batches(self) -> int:
        """Micro-batches per optimizer step on each pipeline (gradient-accumulation steps)."""
        return step_micro_batches(self.parallel, self.training, self.hardware.count)

    @property
    def global_batch_size(self) -> int:
        t = self.training
        return t.global_batch_size or t.micro_batch_size * self.data_parallel * self.micro_batches
