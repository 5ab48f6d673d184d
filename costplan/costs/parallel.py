"""One training step split over GPUs: memory per GPU of each pipeline stage.

Kept apart from the architecture formulas: this module takes the component costs of each pipeline stage
(`costs.estimate.components`) and the spec's `parallelism` section, and divides.

Degrees (Narayanan et al. 2021, §2): tensor t × context c × pipeline p × data d = hardware.count. Context
parallelism splits each sequence over c ranks (ring attention), so each holds 1/c of every activation. Expert
parallelism e splits the routed experts as Megatron-Core's MoE parallel folding does: the t·c·d ranks of a
stage are regrouped for the routed experts into et × e × t·c·d/(et·e), et being the expert tensor degree
(parallelism.expert_tensor, by default t). Each GPU keeps n_experts/e of them, each split by et, and their states
are replicated, and ZeRO-sharded, over the t·c·d/(et·e) ranks holding the same pieces. Ranks are ordered as
Megatron's default: tensor ranks adjacent, then context, then data, then pipeline; so a tensor group spans t
consecutive GPUs, a context group t·c, a data group t·c·d and a pipeline group all of them; for the experts,
expert tensor ranks adjacent, then expert ranks (an expert group spans et·e GPUs), then their data ranks
(costs/step.py times their traffic by that span).

Memory per GPU (bytes), for the pipeline stage that needs the most:
- Model states (Rajbhandari et al. 2019, ZeRO §5): the stage's attention and MLP matrices and the
  vocabulary-parallel embedding and head are divided by t, with the biases of the column-parallel layers; what
  Megatron copies on every tensor rank is copied (Cost.tensor_whole): norm weights, the biases of the row-parallel
  layers (added after the reduction), the learned position table (AFT's pairwise bias too), MLA's
  down-projections with their norms. With tied embeddings and p > 1 the last stage keeps its own copy of the token
  embedding for the head (Megatron's shared word embeddings). Routed experts are divided by et·e instead (their
  row-parallel biases too, which Megatron keeps whole on each expert tensor rank: at most d_model per expert
  more). ZeRO-1 then divides the optimizer states by the data-parallel group with the context ranks, which hold
  the same weights (d·c, or t·c·d/(et·e) for routed experts: Megatron-Core's data-parallel group with context
  parallelism, torchtitan's dp_shard_cp mesh), ZeRO-2 the gradients too, ZeRO-3 the weights too.
- Activations (Korthikanti et al. 2022, §4.2 and Table 2): the d_model-wide tensors (`Cost.act_d_model`) stay
  whole on every tensor rank unless sequence parallelism splits them; a routed row's tensors (its gathered input
  and output, `Cost.act_routed_rows`) are held by the expert tensor group that gathers the row, et/t of a
  sequence's rows on each GPU; everything else is divided by t. Under
  1F1B stage i holds min(m, p − i) micro-batches in flight (Narayanan §2.2.1), so the first stage holds
  p micro-batches of its layers (L/p, or its own share of an uneven split: layers.pipeline_stages); interleaved
  1F1B holds p + (p − 1)/v of them (micro_batches_in_flight).
- Transformer Engine's fp8 copies of the layers' GEMM weights, held between steps beside the weights where
  training.fp8_weight_cache says the framework keeps them (costs/fp8_weights.py).
- The peak (StageMemory.total) is the largest of three moments, each the model states with its transients. Backward:
  every saved activation with the loss's gradients as it starts, or where more the head's gradients (head_backward)
  or a recomputed layer's activations (recomputed_layer); under ZeRO-3 with the weights FSDP2 holds gathered
  (the root's and gathered_layers). Backward ending (the root still gathered), with a tied embedding on one stage:
  autograd holds the head's gradient of the shared matrix until the lookup's dense gradient arrives, and adds the
  two into a third tensor before adding that to the accumulated gradient, all three in the weights' dtype (split by
  t), when every activation is freed. The optimizer step: the update's transients (costs/memory.py update_bytes) for
  the token embedding, the first tensor stepped (first in the parameter order of the reference model and of the
  transformers classes) while every gradient is live. A later tensor's moment comes after the gradients before it
  are freed, so only one larger than the embedding and half of those gradients together would top it; a stage
  without the embedding counts its head's vocabulary matrix (an upper bound: the head is stepped last), and one with
  neither none (its first tensor is a block's matrix).

Communication and step time: costs/step.py.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from costplan.costs import STAT_BYTES, Cost, fp8_weights, memo
from costplan.costs.components import shape_of
from costplan.costs.embedding import loss_bytes
from costplan.costs.layers import Layer, kept, layer_cost, pipeline_stages, stage_depth, stage_layers
from costplan.costs.memory import FP32, element_bytes, gradient_bytes, optimizer_bytes, update_bytes, weight_bytes
from costplan.records import Record
from costplan.spec import Spec

TENSOR_REPLICATED = ("norms",)   # components whose weights every tensor rank keeps whole


# The moments a step's memory may peak at (StageMemory.moments), as the tables and plots name them.
BACKWARD, END_OF_BACKWARD, OPTIMIZER_STEP = "backward", "end of backward", "optimizer step"


class StageMemory(Record):
    """Bytes on one GPU of one pipeline stage."""

    stage: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    workspace: int            # with the activations: the loss's gradients, an eager softmax's, or the head's
    params: float             # parameters held per GPU before ZeRO sharding, routed experts excluded
    routed_params: float      # routed-expert parameters held per GPU before ZeRO sharding
    update: int = 0           # transient at the optimizer step: a gradient's fp32 copy, the update's temporaries
    tied_gradients: int = 0   # transient as backward ends: a tied embedding's two gradients and their sum
    # ZeRO-3's weights held gathered (FSDP2): the root module's (embedding and head) from forward until backward
    # reaches the embedding, and gathered_layers while backward runs
    gathered_root: int = 0
    gathered_layers: int = 0
    fp8_weights: int = 0      # Transformer Engine's fp8 copies of the weights, held between steps (fp8_weights.py)

    def moments(self) -> dict[str, int]:
        """Bytes live at each moment a step may peak at, the first of equals first."""
        states = self.weights + self.fp8_weights + self.gradients + self.optimizer
        return {BACKWARD: states + self.activations + self.workspace + self.gathered_root + self.gathered_layers,
                END_OF_BACKWARD: states + self.tied_gradients + self.gathered_root,
                OPTIMIZER_STEP: states + self.update}

    @property
    def peak_at(self) -> str:
        moments = self.moments()
        return max(moments, key=moments.__getitem__)

    @functools.cached_property   # read several times per layout: the search, the estimate
    def total(self) -> int:
        """The peak: the largest of the moments."""
        return max(self.moments().values())


@dataclass(frozen=True, slots=True)
class _Sums:
    """What a stage's memory reads of its component costs, summed once over them (a layout search reads the
    same stage under several layouts)."""

    replicated: int           # parameters every tensor rank keeps whole (TENSOR_REPLICATED)
    sharded: int              # the other parameters but the routed experts'
    routed: int               # routed-expert parameters
    factored: int
    factors: int              # of them, the matrices' row and column factors (Cost.factors)
    activations: int
    wide: int                 # the d_model-wide part of the activations
    routed_rows: int          # the part held per routed row of a mixture of experts
    shared: int               # activations saved once per micro-batch, not per sequence
    workspace: int


def _sums(parts: dict[str, Cost]) -> _Sums:
    replicated = sum(parts[k].params for k in TENSOR_REPLICATED)
    sharded = routed = factored = factors = whole = wide = rows = shared = workspace = 0
    for key, c in parts.items():    # in the parts' order, as sum() over them would add
        if key not in TENSOR_REPLICATED:
            sharded += c.params - c.routed_params - c.tensor_whole
            replicated += c.tensor_whole
        routed += c.routed_params
        factored += c.factored
        factors += c.factors
        whole += c.activations
        wide += c.act_d_model
        rows += c.act_routed_rows
        shared += c.shared_activations
        workspace += c.workspace
    return _Sums(replicated, sharded, routed, factored, factors, whole, wide, rows, shared, workspace)


def _params_per_gpu(sums: _Sums, t: int, extra: int = 0) -> float:
    """Parameters of a stage on one tensor rank, routed experts left out: norms whole, the rest divided by t."""
    return sums.replicated + (sums.sharded + extra) / t


def _activations_per_gpu(sums: _Sums, t: int, sequence_parallel: bool, micro_batch: int, routed_share: float,
                         context: int = 1) -> float:
    """Bytes saved for backward by one micro-batch on one tensor rank. A routed row's tensors are held whole by
    the expert tensor group that gathers the row (Megatron-Core's all-to-all dispatcher gathers its tokens over
    it, and requires sequence parallelism with tensor parallelism): et/t of a sequence's rows on each GPU. The
    context ranks split a sequence's tensors, not those made from the weights once a micro-batch (autocast's
    16-bit copies), which each holds whole."""
    whole, wide, rows = sums.activations, sums.wide, sums.routed_rows
    return ((whole - wide - rows) / t + wide / (t if sequence_parallel else 1) + rows * routed_share
            ) * micro_batch / context + sums.shared / t


def recomputed_layer(spec: Spec, stage: int) -> float:
    """Bytes on one GPU beyond the stage's saved activations at the worst moment a recomputed layer's forward
    reruns for one micro-batch while its backward runs (the loss's transients freed by then): what the rerun saves
    again, less what the layers after it in the stage saved for that micro-batch, whose backward ran first and
    freed it (with training.recompute_layers, the layers that saved everything); split as saved activations are
    (_activations_per_gpu). A fully recomputed layer saves all of its activations again; one under per-op
    checkpointing (selective_op) those its policy did not keep, which torch's checkpoint reruns together when
    the layer's backward starts."""
    shape, par, model = shape_of(spec), spec.parallel, spec.model
    micro, plain = spec.training.micro_batch_size, kept(shape)
    costs: dict[tuple[int, bool], float] = {}     # layers repeat (the same objects): each summed once

    def per_gpu(layer: Layer, redone: bool) -> float:
        """What the layer saves as it runs (redone: at the stage's recomputation), or keeping everything."""
        key = (id(layer), redone)
        if key not in costs:
            costs[key] = _activations_per_gpu(_sums(layer_cost(layer, model, shape if redone else plain)),
                                              par.tensor, par.sequence_parallel, micro, par.routed_row_share,
                                              par.context)
        return costs[key]

    run = stage_layers(model, stage, pipeline_stages(spec))
    # the first n layers recompute, the rest keep everything; a stage of n layers or fewer recomputes all of them
    # (recompute_groups)
    n = shape.recompute_layers if shape.recompute == "full" and shape.recompute_layers is not None else len(run)
    worst = freed = 0.0
    for index in reversed(range(len(run))):      # backward's order
        layer, redone = run[index], index < n and shape.recompute in ("full", "selective_op")
        saved = per_gpu(layer, redone)
        if redone:
            whole = per_gpu(layer, False)
            worst = max(worst, (whole if shape.recompute == "full" else whole - saved) - freed)
        freed += saved
    return worst


def head_backward(spec: Spec, t: int) -> float:
    """Bytes beyond the saved activations when the head's backward makes its weight gradient, for the micro-batch
    whose backward runs (the loss's nodes have run: its fp32 gradients and what it saved are freed, embedding.py
    loss_bytes). In the head's matmul: the logits' gradient in the activations' dtype (what Liger's loss saved),
    the head input's gradient and the weight gradient in the weights' dtype. Under autocast the 16-bit weight
    gradient is cast to fp32 after the matmul's node has freed the logits' gradient, its saved input and the
    16-bit weight copy: the two weight gradients, less that copy, and the input's gradient for its input. A
    vocabulary-parallel head splits the vocabulary over t. Short sequences and a large vocabulary make this more
    than the loss's gradients when backward starts (measured on the reference model and the transformers
    classes)."""
    model, training = spec.model, spec.training
    e, vocabulary = element_bytes(training.precision), model.vocab_size / t
    rows = training.micro_batch_size * spec.seq_len / spec.parallel.context
    if training.autocast:
        return -rows * vocabulary * STAT_BYTES + vocabulary * model.d_model * FP32
    w, (per_logit, _) = weight_bytes(training.precision), loss_bytes(shape_of(spec))
    return rows * (vocabulary * (e - per_logit) + model.d_model * e) + vocabulary * model.d_model * w


def zero_groups(spec: Spec) -> tuple[int, int]:
    """The ranks that reduce gradients together and that ZeRO shards over: the data ranks with the context ranks,
    which hold the same weights (Megatron-Core's data-parallel group with context parallelism, torchtitan's
    dp_shard_cp mesh); and of the stage's t·c·d ranks, those holding the same pieces of routed experts."""
    d, par = spec.data_parallel, spec.parallel
    return d * par.context, max(1, par.tensor * par.context * d // par.expert_group)


def unsharded_optimizer(spec: Spec, factors: int) -> float:
    """Bytes of optimizer state every data rank holds whole, of a stage whose matrices have Adafactor `factors`
    (Cost.factors): all of those under FSDP2 (parallelism.per_parameter_sharding), where torch's Adafactor
    allocates them with new_zeros, a replicated DTensor; none where ZeRO shards flat buffers of the states."""
    if spec.training.optimizer != "adafactor" or not spec.parallel.per_parameter_sharding:
        return 0.0
    return factors / spec.parallel.tensor * FP32


def micro_batches_in_flight(p: int, v: int, m: int, stage: int) -> float:
    """Micro-batches whose activations pipeline stage `stage` holds at its peak, in units of its whole
    micro-batch. 1F1B: p − stage (Narayanan et al. 2021 §2.2.1), at most m. Interleaved 1F1B runs 2(p − stage − 1)
    + (v − 1)·p chunk forwards before its first backward and one more in its first steady step, at most all m·v
    (Megatron-Core's forward_backward_pipelining_with_interleaving; torch's Interleaved1F1B alike), a chunk holding
    1/v of the stage's layers: on the first stage p + (p − 1)/v, Korthikanti et al. 2022's 1 + (p − 1)/(p·v) of
    the model's activations. Taken as equal chunks (the embedding's and the head's work is in one chunk only)."""
    if v == 1:
        return min(m, p - stage)
    return min(m * v, 2 * (p - stage - 1) + (v - 1) * p + 1) / v


def stage_memory(spec: Spec, parts: dict[str, Cost], stage: int) -> StageMemory:
    """Model states and activations on one GPU of pipeline stage `stage`."""
    return _stage_memory(spec, _degrees(spec), parts, stage)


def _degrees(spec: Spec) -> tuple:
    """What every stage of a layout reads of it, looked up once for all of them."""
    training = spec.training
    return (spec.parallel, zero_groups(spec), spec.micro_batches, weight_bytes(training.precision, training.autocast),
            gradient_bytes(training.precision, training.autocast, training.fp32_gradients),
            optimizer_bytes(training.precision, training.optimizer, training.autocast))


def _stage_memory(spec: Spec, degrees: tuple, parts: dict[str, Cost], stage: int) -> StageMemory:
    par, (shards, routed_shards), m, w, g, o = degrees
    t, p = par.tensor, par.pipeline
    model, training = spec.model, spec.training
    shared_head = model.vocab_size * model.d_model if model.tie_embeddings and p > 1 and stage == p - 1 else 0
    sums = memo.of_object("sums", parts, lambda: _sums(parts))   # a search reads a stage under several layouts
    dense = _params_per_gpu(sums, t, shared_head)
    routed = sums.routed / par.expert_group
    extra_optimizer = 0.0
    if training.optimizer == "adafactor":
        whole = unsharded_optimizer(spec, sums.factors)
        extra_optimizer = (sums.factored / t * FP32 - whole) / (shards if par.zero >= 1 else 1) + whole
    in_flight = micro_batches_in_flight(p, par.virtual_stages, m, stage)
    activations = _activations_per_gpu(sums, t, par.sequence_parallel, training.micro_batch_size,
                                       par.routed_row_share, par.context) * in_flight
    # Only the micro-batch whose backward runs has loss gradients; a vocabulary-parallel loss splits them over t.
    workspace = sums.workspace * training.micro_batch_size / t / par.context
    if stage == p - 1:
        workspace = max(workspace, head_backward(spec, t))
    if training.recompute in ("full", "selective_op"):
        workspace = max(workspace, recomputed_layer(spec, stage))

    # The vocabulary matrix this stage steps (the embedding, or the last stage's head or shared copy of it),
    # vocabulary-parallel over t, as much of it as its optimizer shard holds.
    vocabulary = model.vocab_size * model.d_model / t / (shards if par.zero >= 1 else 1) if stage in (0, p - 1) else 0

    def sharded(per_param: int, from_stage: int) -> int:
        """Bytes of one kind of state: dense over d·c ranks, routed experts over t·c·d/(et·e), once ZeRO reaches
        it."""
        over, over_routed = (shards, routed_shards) if par.zero >= from_stage else (1, 1)
        return math.ceil(per_param * (dense / over + routed / over_routed))

    root = layers = 0.0
    if par.zero == 3:   # what ZeRO-3 sharded: the dense weights over `shards`, the routed experts' over their own
        edge = (sum(parts[k].params for k in ("embedding", "head") if k in parts) + shared_head) / t
        root = w * edge if shards > 1 else 0.0
        layers = gathered_layers(w, (dense - edge if shards > 1 else 0) + (routed if routed_shards > 1 else 0),
                                 stage_depth(model, stage, pipeline_stages(spec)))
    return StageMemory(
        stage=stage,
        weights=sharded(w, 3),
        gradients=sharded(g, 2),
        optimizer=sharded(o, 1) + math.ceil(extra_optimizer),
        activations=math.ceil(activations),
        workspace=math.ceil(workspace),
        params=dense,
        routed_params=routed,
        update=math.ceil(update_bytes(training.precision, training.optimizer, training.autocast, vocabulary,
                                      training.fp32_gradients)),
        tied_gradients=3 * w * model.vocab_size * model.d_model // t if model.tie_embeddings and p == 1 else 0,
        gathered_root=math.ceil(root),
        gathered_layers=math.ceil(layers),
        fp8_weights=math.ceil(fp8_weights.cached_bytes(spec, stage)),
    )


def gathered_layers(w: int, params: float, layers: int) -> float:
    """Bytes of a stage's layers ZeRO-3 holds gathered while backward runs, as FSDP2 does: the layer whose
    backward runs (the last one is not resharded after forward, torchtitan's setting) and the next, whose
    all-gather FSDP2 prefetches; `params` the stage's layers' per GPU before sharding, taken as equal layers. The
    root module's (embedding and head) stay gathered beside them: FSDP2 reshards the root only once backward
    reaches the embedding."""
    return w * min(2, layers) * params / max(layers, 1)


def fullest(memories: list[StageMemory]) -> StageMemory:
    """The stage that peaks highest: the one an estimate reports and a layout must fit (the first of equals)."""
    return max(memories, key=lambda memory: memory.total)


def stage_memories(spec: Spec, stages: list[dict[str, Cost]]) -> list[StageMemory]:
    """Memory on one GPU of each pipeline stage; `stages` are the component costs of each for one sequence."""
    degrees = _degrees(spec)
    return [_stage_memory(spec, degrees, parts, i) for i, parts in enumerate(stages)]
