"""Cross-field rules of a spec, written once as plain functions of a getter (see below), so that validators and
the report of a file that failed validation share them."""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from costplan.spec_attention import SOFTMAX_TYPES, pattern_of

if TYPE_CHECKING:
    from costplan.spec import ServingSpec


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
    problems += _rope_dim_rules(v("rope_dim"), v("position"), head_dim)
    attention, moe, max_seq_len, n_layers = v("attention"), v("moe"), v("max_seq_len"), v("n_layers")
    if attention is not None:
        pattern = pattern_of(attention)
        if len(pattern) > 1:
            problems += _pattern_rules(pattern, n_layers)
        for i, a in enumerate(pattern):
            where = "attention" if len(pattern) == 1 else f"attention[{i}]"
            for field, msg in _attention_rules(a, v, head_dim, n_heads, n_kv_heads, max_seq_len):
                problem = (f"{where}{field}" if field.startswith(".") else field, msg)
                if problem not in problems:   # a model-wide rule broken by several entries is said once
                    problems.append(problem)
    if moe is not None and n_layers and moe.first_dense_layers >= n_layers:
        problems.append(("moe.first_dense_layers", f"{moe.first_dense_layers} leaves no MoE layer among "
                                                   f"{n_layers} layers"))
    return problems


def _rope_dim_rules(rope_dim: int | None, position: str | None, head_dim: int | None) -> list[tuple[str, str]]:
    """A partial rotary rotates pairs of a head's features, with rotary embeddings."""
    if rope_dim is None:
        return []
    if position != "rope":
        return [("rope_dim", f"set with position {position}; it is the rotated part of each head under rope")]
    if rope_dim % 2:
        return [("rope_dim", f"{rope_dim} is odd; rotary embeddings rotate pairs of features")]
    if head_dim and rope_dim > head_dim:
        return [("rope_dim", f"{rope_dim} is more than head_dim ({head_dim})")]
    return []


def _pattern_rules(pattern: tuple, n_layers: int | None) -> list[tuple[str, str]]:
    """A per-layer pattern mixes softmax attentions only: they share the query/key/value heads, the rotary
    tables and the KV-cache layout that a layer of another kind (MLA, AFT) would replace."""
    problems = [(f"attention[{i}].type", f"{a.type} cannot be part of a per-layer pattern; a pattern mixes "
                                         f"{', '.join(SOFTMAX_TYPES)}")
                for i, a in enumerate(pattern) if a.type not in SOFTMAX_TYPES]
    if n_layers and len(pattern) > n_layers:
        problems.append(("attention", f"a pattern of {len(pattern)} layers is longer than n_layers ({n_layers})"))
    return problems


def _attention_rules(a: Any, v: Getter, head_dim: int | None, n_heads: int | None, n_kv_heads: int | None,
                     max_seq_len: int | None) -> list[tuple[str, str]]:
    """The rules of one attention (of every layer, or of one entry of a pattern); a field starting with `.`
    belongs to the attention itself."""
    problems = []
    if v("position") == "rope" and head_dim and head_dim % 2 and a.type in SOFTMAX_TYPES:
        problems.append(("head_dim", f"{head_dim} is odd; rotary position embeddings need an even head_dim"))
    if a.type not in SOFTMAX_TYPES:
        if n_heads and n_kv_heads and n_kv_heads != n_heads:
            problems.append(("n_kv_heads", f"{a.type} has no key/value heads to share; remove n_kv_heads"))
        if v("qk_norm") not in (None, "none"):
            problems.append(("qk_norm", f"{a.type} has no per-head queries and keys to normalise"))
        if v("attention_sinks"):
            problems.append(("attention_sinks", f"{a.type} attention takes no sinks: only "
                                                f"{', '.join(SOFTMAX_TYPES)} do; remove attention_sinks"))
    if max_seq_len:
        if a.type == "aft_conv" and a.window > max_seq_len:
            problems.append((".window", f"{a.window} taps are more than max_seq_len ({max_seq_len}); the extra "
                                        "taps never touch a token"))
        if a.type == "sparse" and n_heads == 1:
            problems.append(("n_heads", "sparse attention gives half of the heads to each part of its pattern; "
                                        "it needs at least 2 heads"))
        if a.type == "sparse" and a.block > max_seq_len:
            problems.append((".block", f"{a.block} is longer than max_seq_len ({max_seq_len}); the pattern would "
                                       "be dense"))
    if a.type == "mla" and v("position") == "rope" and a.qk_rope_head_dim % 2:
        problems.append((".qk_rope_head_dim", f"{a.qk_rope_head_dim} is odd; rotary position embeddings need an "
                                              "even width"))
    return problems


# The transformers classes whose parallel layers are modelled (costs/class_modules.py), with the blocks they
# build: Falcon's new_decoder_architecture (two norms; the old multi-query layer is not modelled).
PARALLEL_CLASSES = {"falcon": ("parallel",), "gpt_neox": ("parallel", "sequential"), "gptj": ("parallel_shared_norm",),
                    "phi": ("parallel_shared_norm",)}


def block_rules(block: str, modules: str, implementation: str) -> list[tuple[str, str]]:
    """transformers' modules are modelled for sequential and sandwich layers and for the parallel layers of the
    classes in PARALLEL_CLASSES, each with the blocks it builds."""
    where = "training.implementation"
    if modules in PARALLEL_CLASSES and block not in PARALLEL_CLASSES[modules]:
        return [(where, f"{implementation}: the {modules} modules are modelled for block "
                        f"{' or '.join(PARALLEL_CLASSES[modules])}, not {block}; use fused")]
    if block not in ("sequential", "sandwich") and modules not in PARALLEL_CLASSES:
        return [(where, f"{implementation}: transformers' parallel layers are modelled for the "
                        f"{', '.join(sorted(PARALLEL_CLASSES))} modules; training.modules {modules} is not one "
                        "of them; use fused")]
    return []


def implementation_rules(model: Getter, training: Getter) -> list[tuple[str, str]]:
    """transformers' modules (costs/implementation/) are modelled for softmax-attention and MLA decoders of
    sequential or sandwich layers trained without recomputation; anything else would be the fused figure under
    another name."""
    implementation, problems = training("implementation"), []
    if training("autocast"):
        if implementation in (None, "fused"):
            problems.append(("training.autocast", "modelled for transformers' modules: set training.implementation "
                                                  "to sdpa or eager"))
        if training("precision") not in (None, "bf16", "fp16"):
            problems.append(("training.autocast", f"casts fp32 weights to 16 bits; precision "
                                                  f"{training('precision')} is not bf16 or fp16"))
    if implementation in (None, "fused"):
        return problems
    where = "training.implementation"
    attention = model("attention")
    modelled = (*SOFTMAX_TYPES, "mla")
    others = sorted({a.type for a in pattern_of(attention)} - set(modelled)) if attention is not None else []
    if others:
        problems.append((where, f"{implementation}: the modules of {', '.join(others)} attention are not modelled "
                                f"({', '.join(modelled[:-1])} and {modelled[-1]} are); use fused"))
    problems += block_rules(model("block") or "sequential", training("modules") or "llama", implementation)
    if implementation == "sdpa" and model("attention_sinks"):
        problems.append((where, "sdpa: transformers' sdpa attention takes no sinks (GptOssForCausalLM has no sdpa "
                                "attention); use eager or fused"))
    if model("moe") is not None and model("moe").capacity_factor is not None:
        problems.append((where, f"{implementation}: transformers' mixture-of-experts modules drop no tokens; "
                                "remove moe.capacity_factor or use fused"))
    if training("recompute") not in (None, "none"):
        problems.append((where, f"{implementation}: with recompute {training('recompute')} (gradient "
                                "checkpointing of the modules) is not modelled; use recompute none or fused"))
    return problems


def fp8_input_rules(model: Getter, training: Getter) -> list[tuple[str, str]]:
    """Linears saving fp8 inputs (costs/fp8_inputs.py) are modelled for fp8 training of the fused layers with
    softmax or latent attention in sequential or sandwich blocks, recomputed as Megatron recomputes."""
    if not training("fp8_saved_inputs"):
        return []
    where, problems = "training.fp8_saved_inputs", []
    if training("precision") != "fp8":
        problems.append((where, f"saves fp8 copies of the linears' inputs; precision {training('precision')} "
                                "is not fp8"))
    if training("implementation") not in (None, "fused"):
        problems.append((where, f"Transformer Engine's linears, not transformers' modules: implementation "
                                f"{training('implementation')}; use fused"))
    attention = model("attention")
    modelled = (*SOFTMAX_TYPES, "mla")
    others = sorted({a.type for a in pattern_of(attention)} - set(modelled)) if attention is not None else []
    if others:
        problems.append((where, f"modelled for softmax attention ({', '.join(modelled)}), not "
                                f"{', '.join(others)}"))
    if (model("block") or "sequential") not in ("sequential", "sandwich"):
        problems.append((where, f"modelled for sequential and sandwich blocks, not {model('block')}"))
    if training("recompute") == "selective_op":
        problems.append((where, "torchtitan's per-op checkpointing runs torchao's fp8 linears, which save 16-bit "
                                "inputs: set fp8_saved_inputs false"))
    return problems


def fp8_cache_rules(training: Getter, zero: int | None) -> list[tuple[str, str]]:
    """Transformer Engine's cache of its fp8 weights (training.fp8_weight_cache): its linears', which save fp8
    inputs, and never of weights FSDP gathers (TE keeps no cache under FSDP2)."""
    if not training("fp8_weight_cache"):
        return []
    where, problems = "training.fp8_weight_cache", []
    if not training("fp8_saved_inputs"):
        problems.append((where, "is Transformer Engine's, whose linears save fp8 copies of their inputs: set "
                                "training.fp8_saved_inputs true"))
    if zero == 3:
        problems.append((where, "Transformer Engine keeps no fp8 copy of weights FSDP gathers (parallelism.zero "
                                "3)"))
    return problems


def recompute_rules(model: Getter, training: Getter) -> list[tuple[str, str]]:
    """Recomputing some layers (training.recompute_layers) recomputes them whole: full recomputation. torchtitan's
    per-op checkpointing (selective_op) is modelled for the layers it was written for (costs/selective_op.py)."""
    problems = selective_op_rules(model) if training("recompute") == "selective_op" else []
    layers, n_layers = training("recompute_layers"), model("n_layers")
    if layers is None:
        return problems
    if training("recompute") not in (None, "full"):
        return [("training.recompute_layers", f"recomputes the first {layers} of each stage's layers whole: set "
                                              f"training.recompute to full (it is {training('recompute')})")]
    if n_layers and layers > n_layers:
        return [("training.recompute_layers", f"{layers} is more than model.n_layers ({n_layers})")]
    return problems


def tensor_parallel_modelled(recompute: str | None) -> bool:
    """Whether a recomputation is modelled with tensor parallelism: selective_op is not (a row-parallel matmul's
    kept output is its partial sum, whole on every rank)."""
    return recompute != "selective_op"


def selective_op_rules(model: Getter) -> list[tuple[str, str]]:
    """selective_op keeps every second matmul's output by position: modelled for FlashAttention layers with a
    dense MLP and no biases, as torchtitan's Llama (biased projections run as addmm, which its policy does not
    keep; other attention types and MoE run other matmuls)."""
    where, problems = "training.recompute", []
    attention = model("attention")
    others = sorted({a.type for a in pattern_of(attention)} - {"flash"}) if attention is not None else []
    if others:
        problems.append((where, f"selective_op is modelled for flash attention layers, not {', '.join(others)}"))
    if model("moe") is not None:
        problems.append((where, "selective_op is modelled for a dense MLP; this model has moe"))
    biased = [f for f in ("bias", "qkv_bias", "o_bias") if model(f)]
    if biased:
        problems.append((where, f"selective_op is modelled for matmuls without biases; set model.{biased[0]} false"))
    if model("attention_sinks"):
        problems.append((where, "selective_op is modelled for torch's flash kernel, which takes no attention sinks"))
    if model("position") == "alibi":
        problems.append((where, "selective_op is modelled for torch's flash kernel, which takes no ALiBi bias"))
    return problems


def spec_rules(max_seq_len: int | None, training: Getter) -> list[tuple[str, str]]:
    problems = []
    seq_len, micro, batch = training("seq_len"), training("micro_batch_size"), training("global_batch_size")
    if seq_len and max_seq_len and seq_len > max_seq_len:
        problems.append(("training.seq_len", f"{seq_len} is longer than model.max_seq_len ({max_seq_len})"))
    if batch and micro and batch % micro:
        problems.append(("training.global_batch_size",
                         f"{batch} is not a multiple of micro_batch_size ({micro})"))
    if training("fused_kernels") and training("fusion") == "fused":
        problems.append(("training.fused_kernels", "names ops fused in an eager step; training.fusion fused runs "
                                                   "every op as one fused kernel already: set fusion eager or blocks"))
    if training("loss_kernel") is not None and "loss" in (training("fused_kernels") or ()):
        problems.append(("training.loss_kernel", f"{training('loss_kernel')}, but training.fused_kernels names the "
                                                 "loss too: say how the loss runs in one of them"))
    return problems     # training.precision against the GPU's peaks: where a run is trained (costs/run.py)


def model_parallel(tensor: int, context: int, pipeline: int) -> int:
    """GPUs one data-parallel replica spans: tensor × context × pipeline."""
    return tensor * context * pipeline


def zero_under_pipeline(zero: int, pipeline: int) -> bool:
    """ZeRO 2-3 with pipeline parallelism: no framework shards gradients (or weights) over the data ranks between
    a pipeline's micro-batches (the refusal below says who does what)."""
    return zero >= 2 and pipeline > 1


def overlap_refuses(expert_overlap: bool, recompute: str | None) -> bool:
    """Megatron-Core refuses full recomputation with its all-to-all overlap (parallelism.expert_overlap)."""
    return expert_overlap and recompute == "full"


def interleaves(pipeline: int, virtual_stages: int, micro_batches: int) -> bool:
    """Whether a step's micro-batches can run interleaved 1F1B: p of them to a round (Megatron-Core refuses other
    counts); any count runs plain 1F1B (one virtual stage)."""
    return virtual_stages == 1 or micro_batches % pipeline == 0


def parallel_rules(par: Getter, model: Getter, training: Getter, hw: Getter) -> list[tuple[str, str]]:
    """The degrees must tile the GPUs and split the model into whole pieces."""
    problems: list[tuple[str, str]] = []
    count, tensor, pipeline, data = hw("count"), par("tensor"), par("pipeline"), par("data")
    context, virtual = par("context") or 1, par("virtual_stages") or 1
    if count and tensor and pipeline:
        replica = model_parallel(tensor, context, pipeline)
        degrees = f"tensor ({tensor}) × pipeline ({pipeline})" + (f" × context ({context})" if context > 1 else "")
        if count % replica:
            problems.append(("parallelism", f"{degrees} = {replica} does not divide hardware.count ({count})"))
        elif data not in (None, "auto") and data * replica != count:
            problems.append(("parallelism.data", f"{data} × {degrees} = {data * replica} GPUs, but "
                                                 f"hardware.count is {count}"))
        elif data == "auto":
            data = count // replica
    if par("stage_layers") == ():      # not the same as leaving it out, which an empty list would read as
        problems.append(("parallelism.stage_layers", "is empty: give one depth per pipeline stage, or leave it out"))
    uneven = uneven_split(par)
    problems += split_rules(model, tensor, None if uneven else pipeline, par("expert_tensor"))
    if uneven:
        problems += uneven_rules(par, model("n_layers"))
    problems += expert_rules(par, model("moe"), data if isinstance(data, int) else None)
    micro, batch, micro_batches = training("micro_batch_size"), training("global_batch_size"), par("micro_batches")
    # the micro-batches of a step where the batch rules leave them sound (Spec.micro_batches: one without a batch
    # or a count); None where those rules already fail or cannot be read
    steps = None if batch else micro_batches or 1
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
        else:
            steps = batch // per_step
    if pipeline and steps is not None and not interleaves(pipeline, virtual, steps):
        hint = "" if batch or micro_batches else ": set parallelism.micro_batches or training.global_batch_size"
        problems.append(("parallelism.virtual_stages",
                         f"interleaving needs micro-batches ({steps}) in multiples of pipeline ({pipeline}){hint}"))
    seq_len = training("seq_len") or model("max_seq_len")
    if context > 1 and seq_len and seq_len % (2 * context):
        problems.append(("parallelism.context", f"{context} needs training.seq_len ({seq_len}) divisible by "
                                                f"2 × context = {2 * context} (two chunks per rank)"))
    if not tensor_parallel_modelled(training("recompute")) and (par("tensor") or 1) > 1:
        # tensor_parallel_modelled says why
        problems.append(("parallelism.tensor", f"{par('tensor')}: training.recompute selective_op is modelled "
                                               "without tensor parallelism (torchtitan's 8B configuration)"))
    if zero_under_pipeline(par("zero") or 0, pipeline or 1):
        problems.append(("parallelism.zero", f"{par('zero')} with pipeline {pipeline}: no framework shards the "
                                             "gradients (or weights) over the data ranks between a pipeline's "
                                             "micro-batches: DeepSpeed refuses ZeRO-2 and 3 with pipeline "
                                             "parallelism, Megatron-Core's distributed optimizer is ZeRO 1, and "
                                             "torchtitan's FSDP2 keeps a pipelined stage's weights gathered and "
                                             "its gradients whole until the step's last backward: set zero 1"))
    if par("per_parameter_sharding") and not par("zero"):
        problems.append(("parallelism.per_parameter_sharding", "shards the weights over the data ranks as FSDP2 "
                                                               "does; set zero 1-3 (zero is 0)"))
    if par("expert_overlap") and not (model("moe") and (par("expert") or 1) > 1):
        problems.append(("parallelism.expert_overlap", "hides a MoE layer's all-to-alls behind another "
                                                       "micro-batch's compute; it needs experts split over ranks "
                                                       "(a model.moe section and expert > 1)"))
    elif par("expert_overlap") and (pipeline or 1) > 1 and virtual == 1:
        problems.append(("parallelism.expert_overlap", "pairs micro-batches as Megatron-Core's interleaved "
                                                       "schedule does, which it needs with a pipeline: set "
                                                       "virtual_stages > 1 (DualPipe's schedule is not modelled)"))
    elif overlap_refuses(bool(par("expert_overlap")), training("recompute")):
        problems.append(("parallelism.expert_overlap", "with training.recompute full: Megatron-Core refuses full "
                                                       "recomputation with its all-to-all overlap; set recompute "
                                                       "none or selective"))
    if par("pipeline_overlap") and virtual == 1:
        problems.append(("parallelism.pipeline_overlap", "hides interleaved 1F1B's sends behind the next model "
                                                         "chunk, as Megatron's overlap_p2p_comm; set virtual_stages "
                                                         "> 1 (it is 1)"))
    n_layers = model("n_layers")
    if virtual > 1 and pipeline == 1:
        problems.append(("parallelism.virtual_stages", f"{virtual} needs pipeline parallelism (pipeline > 1)"))
    elif virtual > 1 and n_layers and pipeline and not uneven and n_layers % pipeline == 0 and \
            n_layers % (pipeline * virtual):
        # (a pipeline that does not divide the layers is said once, by split_rules)
        problems.append(("parallelism.virtual_stages", f"pipeline ({pipeline}) × virtual_stages ({virtual}) "
                                                       f"does not divide model.n_layers ({n_layers})"))
    return problems


def split_rules(model: Getter, tensor: int | None, pipeline: int | None,
                expert_tensor: int | None = None, replicate_kv: bool = False) -> list[tuple[str, str]]:
    """Tensor parallelism splits heads and MLP widths (routed experts' by expert_tensor where given), pipeline
    parallelism the layers, into whole pieces (the one statement of this rule: validation and the planner's
    layout grid both use it). With `replicate_kv` (serving), a degree that is a multiple of the key/value heads
    copies them instead, each rank keeping one, as vLLM does (QKVParallelLinear)."""
    problems = []
    if tensor:
        moe = model("moe")
        by_tensor = ("tensor", tensor)
        by_experts = ("expert_tensor", expert_tensor) if expert_tensor else by_tensor
        sizes = [(field, model(field), by_tensor) for field in ("n_heads", "n_kv_heads", "d_ff")]
        sizes += [("moe.d_ff_expert", getattr(moe, "d_ff_expert", None), by_experts),
                  ("moe.d_ff_shared", getattr(moe, "d_ff_shared", None), by_tensor)]
        for field, size, (name, degree) in sizes:
            if field == "n_kv_heads" and (size == model("n_heads") or
                                          (replicate_kv and size and degree % size == 0)):
                continue  # said once, for n_heads; or replicated
            if size and size % degree:
                copies = " nor is a multiple of it" if replicate_kv and field == "n_kv_heads" else ""
                problems.append((f"parallelism.{name}", f"{degree} does not divide model.{field} ({size}){copies}"))
    n_layers = model("n_layers")
    if pipeline and n_layers and n_layers % pipeline:
        problems.append(("parallelism.pipeline", f"{pipeline} does not divide model.n_layers ({n_layers})"))
    return problems


# ---------------------------------------------------------------------------------------------- uneven stages
# Megatron-Core's uneven pipeline split (TransformerConfig: num_layers_in_first_pipeline_stage and
# num_layers_in_last_pipeline_stage, or account_for_embedding_in_pipeline_split and
# account_for_loss_in_pipeline_split; transformer_block.get_num_layers_to_build): the first and last stages take
# the layers given and the rest split evenly over the middle stages; or the embedding and the loss each count as
# one layer of the first and last stages, whose share is then one layer less.
UNEVEN_FIELDS = ("first_stage_layers", "last_stage_layers", "account_for_embedding", "account_for_loss",
                 "stage_layers")


def uneven_split(par: Getter) -> bool:
    """Whether a parallelism section asks for an uneven split of the layers over its pipeline stages."""
    return any(par(field) for field in UNEVEN_FIELDS)


def stage_depths(n_layers: int, pipeline: int, first: int | None = None, last: int | None = None,
                 embedding: bool = False, loss: bool = False, given: tuple[int, ...] | None = None
                 ) -> tuple[int, ...]:
    """Layers of each pipeline stage, first to last (the one statement of the split; uneven_rules makes the
    numbers whole and positive): `given` (parallelism.stage_layers) as it is, or Megatron-Core's split."""
    if given:
        return tuple(given)
    if first is not None or last is not None:
        middle_stages = pipeline - (first is not None) - (last is not None)
        rest = n_layers - (first or 0) - (last or 0)
        middle = rest // middle_stages if middle_stages else 0
        depths = [middle] * pipeline
        if first is not None:
            depths[0] = first
        if last is not None:
            depths[-1] = last
        return tuple(depths)
    per_stage = (n_layers + embedding + loss) // pipeline
    depths = [per_stage] * pipeline
    depths[0] -= embedding
    depths[-1] -= loss
    return tuple(depths)


def _given_rules(given: tuple[int, ...], named: list[str], pipeline: int, virtual: int, n_layers: int
                 ) -> list[tuple[str, str]]:
    """parallelism.stage_layers: one depth per stage, summing to the layers, each at least one per chunk."""
    where = "parallelism.stage_layers"
    others = [field for field in named if field != "stage_layers"]
    if others:
        return [(where, f"set with {others[0]}; give the stages' layers one way")]
    if len(given) != pipeline:
        return [(where, f"{len(given)} stages given for pipeline {pipeline}")]
    if sum(given) != n_layers:
        return [(where, f"{' + '.join(map(str, given))} = {sum(given)} layers, not model.n_layers ({n_layers})")]
    short = [i for i, depth in enumerate(given) if depth < virtual]
    if short:
        depth = given[short[0]]
        return [(where, f"stage {short[0]} holds {depth} layer{'s' * (depth != 1)}, fewer than virtual_stages "
                        f"({virtual}): a model chunk needs a layer")]
    return []


def uneven_rules(par: Getter, n_layers: int | None) -> list[tuple[str, str]]:
    """Megatron-Core's checks of an uneven split (TransformerConfig.__post_init__), one line per broken rule."""
    pipeline, virtual = par("pipeline"), par("virtual_stages") or 1
    first, last = par("first_stage_layers"), par("last_stage_layers")
    embedding, loss = bool(par("account_for_embedding")), bool(par("account_for_loss"))
    named = [field for field in UNEVEN_FIELDS if par(field)]
    if pipeline == 1:
        return [(f"parallelism.{named[0]}", "set with pipeline 1; it splits the layers over pipeline stages")]
    if not pipeline or not n_layers:
        return []     # reported by those fields themselves
    given = par("stage_layers")
    if given:
        return _given_rules(given, named, pipeline, virtual, n_layers)
    if (first or last) and (embedding or loss):
        counted = "account_for_embedding" if embedding else "account_for_loss"
        given = "first_stage_layers" if first else "last_stage_layers"
        return [(f"parallelism.{counted}", f"set with {given}; give the stages' layers one way (Megatron-Core "
                                           "allows one or the other)")]
    problems: list[tuple[str, str]] = []
    if first or last:
        for field, value in (("first_stage_layers", first), ("last_stage_layers", last)):
            if value and virtual > 1 and value % virtual:
                problems.append((f"parallelism.{field}", f"{value} is not a multiple of virtual_stages ({virtual})"))
        middle_stages = pipeline - bool(first) - bool(last)
        rest = n_layers - (first or 0) - (last or 0)
        given = " + ".join(f"{f} ({v})" for f, v in (("first_stage_layers", first), ("last_stage_layers", last))
                           if v)
        field = "parallelism.first_stage_layers" if first else "parallelism.last_stage_layers"
        if rest < 0:
            problems.append((field, f"{given} = {n_layers - rest} is more than model.n_layers ({n_layers})"))
        elif rest == 0 and middle_stages:
            problems.append((field, f"{given} leaves no layer of model.n_layers ({n_layers}) for "
                                    f"{middle_stages} middle stage{'s' if middle_stages > 1 else ''}"))
        elif middle_stages == 0 and rest:
            problems.append((field, f"{given} = {n_layers - rest}, not model.n_layers ({n_layers}), with no "
                                    "middle stage"))
        elif middle_stages and rest % middle_stages:
            problems.append(("parallelism.pipeline", f"the {rest} layers left by {given} do not divide over "
                                                     f"{middle_stages} middle stages"))
        elif middle_stages and virtual > 1 and (rest // middle_stages) % virtual:
            problems.append(("parallelism.virtual_stages", f"{virtual} does not divide each middle stage's layers "
                                                           f"({rest // middle_stages})"))
        return problems
    counted = n_layers + embedding + loss
    what = " + ".join(["model.n_layers", *(["the embedding"] if embedding else []), *(["the loss"] if loss else [])])
    if counted % pipeline:
        return [("parallelism.pipeline", f"{pipeline} does not divide {what} ({counted})")]
    per_stage = counted // pipeline
    if virtual > 1 and per_stage % virtual:
        return [("parallelism.virtual_stages", f"{virtual} does not divide each stage's layers ({what} over "
                                               f"{pipeline} stages: {per_stage})")]
    if per_stage - max(embedding, loss) < 1:
        return [("parallelism.pipeline", f"{pipeline} stages of {what} ({counted}) leave the "
                                         f"{'first' if embedding else 'last'} stage no layer")]
    return problems


def serving_rules(serving: ServingSpec, model: Getter) -> list[tuple[str, str]]:
    """A served sequence fits the model's context; a replica splits heads and widths into whole pieces."""
    problems: list[tuple[str, str]] = []
    max_seq_len = model("max_seq_len")
    if serving.group_size is not None and serving.group_size & (serving.group_size - 1):
        problems.append(("serving.group_size", f"{serving.group_size} is not a power of two, as int4 kernels' "
                                               "groups are (GPTQ and AWQ use 32, 64 or 128 weights)"))
    if serving.reserve >= 1:
        problems.append(("serving.reserve", f"{serving.reserve:g} keeps every byte of the GPU; give a fraction "
                                            "below 1"))
    if serving.prompt_tokens is None or serving.output_tokens is None:
        # max_seq_len invalid itself (reported there), or too short for a default prompt: an error only where the
        # spec is served (costs/inference.py), since a spec that trains at one token is sound
        return problems
    context = serving.prompt_tokens + serving.output_tokens
    if max_seq_len and context > max_seq_len:
        problems.append(("serving", f"prompt_tokens ({serving.prompt_tokens}) + output_tokens "
                                    f"({serving.output_tokens}) = {context} is longer than model.max_seq_len "
                                    f"({max_seq_len}); raise model.max_seq_len if the model was trained for it"))
    if serving.tensor != "auto":
        problems += [("serving.tensor", msg) for _, msg in split_rules(model, serving.tensor, None,
                                                                        replicate_kv=True)]
        if serving.gpus is not None and serving.gpus % serving.tensor:
            problems.append(("serving.tensor", f"{serving.tensor} does not divide serving.gpus ({serving.gpus})"))
    return problems


def expert_data_step(tensor: int, context: int, expert: int, expert_tensor: int | None) -> int:
    """The data-parallel degrees whose t·c·d ranks a layer of routed experts' expert × expert_tensor ranks fold
    into (expert_tensor None: tensor) are the multiples of this."""
    folded = expert * (expert_tensor or tensor)
    return folded // math.gcd(folded, tensor * context)


def expert_rules(par: Getter, moe: Any, data: int | None) -> list[tuple[str, str]]:
    """Megatron-Core's MoE parallel folding: the expert × expert_tensor ranks of a routed-expert layer are a
    subgroup of the tensor × context × data ranks of the attention (its parallel-folding documentation)."""
    expert, expert_tensor = par("expert") or 1, par("expert_tensor")
    if moe is None:
        given = [(f"parallelism.{name}", value)
                 for name, value in (("expert", expert), ("expert_tensor", expert_tensor)) if value and value > 1]
        return [(field, f"{value} needs a mixture-of-experts model (model.moe)") for field, value in given]
    problems = []
    n_experts = getattr(moe, "n_experts", None)
    if n_experts and n_experts % expert:
        problems.append(("parallelism.expert", f"{expert} does not divide model.moe.n_experts ({n_experts})"))
    tensor, context = par("tensor") or 1, par("context") or 1
    if tensor > 1 and par("sequence_parallel") is False:
        # Megatron-LM's arguments refuse it ("When using MoE and tensor parallelism, sequence parallelism must be
        # used"), and the routed rows' share of a GPU (ParallelismSpec.routed_row_share) is sequence-parallel's
        problems.append(("parallelism.sequence_parallel", f"false with tensor {tensor} on a mixture of experts: "
                                                          "Megatron requires sequence parallelism there"))
    folds = not data or data % expert_data_step(tensor, context, expert, expert_tensor) == 0
    if not folds and expert_tensor is None:
        ranks = f"data × context ({data} × {context})" if context > 1 else f"the data-parallel degree ({data})"
        problems.append(("parallelism.expert", f"{expert} does not divide {ranks}"))
    elif not folds:
        problems.append(("parallelism.expert_tensor",
                         f"expert ({expert}) × expert_tensor ({expert_tensor}) = {expert * expert_tensor} does not "
                         f"divide tensor × context × data ({tensor} × {context} × {data} = "
                         f"{tensor * context * data})"))
    return problems
