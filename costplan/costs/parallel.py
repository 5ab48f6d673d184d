"""One training step split over GPUs: memory per GPU, communication, pipeline bubble and step time.

Kept apart from the architecture formulas: this module takes the component costs of each pipeline stage
(`costs.estimate.components`) and the spec's `parallelism` section, and divides.

Degrees (Narayanan et al. 2021, §2): tensor t × pipeline p × data d = hardware.count. Expert parallelism e
splits the routed experts over e of the d data-parallel ranks (Megatron-Core, DeepSpeed-MoE): each GPU keeps
n_experts/e of them (also split by t, Megatron-Core's default expert tensor parallelism), and their states are
replicated, and ZeRO-sharded, over the d/e ranks holding the same experts. Ranks are
ordered as Megatron's default: tensor ranks adjacent, then data, then pipeline; so a tensor group spans t
consecutive GPUs, an expert group t·e, a data group t·d and a pipeline group all of them. A group whose span
fits in a node (hardware `node_size`) talks over the interconnect, a larger one over the network, each at half
the catalogue's bidirectional figure per direction.

Memory per GPU (bytes), for the pipeline stage that needs the most:
- Model states (Rajbhandari et al. 2019, ZeRO §5): the stage's attention and MLP matrices and the
  vocabulary-parallel embedding and head are divided by t (Megatron also divides the biases of its
  column-parallel layers and copies those of its row-parallel ones; here every bias in a block is divided, an
  error of at most 2·d_model parameters per layer); norm weights are copied on every tensor rank. With tied
  embeddings and p > 1 the last stage keeps its own copy of the token embedding for the head (Megatron's
  shared word embeddings). Routed experts are further divided by e. ZeRO-1 then divides the optimizer states
  by the data-parallel group (d, or d/e for routed experts), ZeRO-2 the gradients too, ZeRO-3 the weights too.
- Activations (Korthikanti et al. 2022, §4.2 and Table 2): the d_model-wide tensors (`Cost.act_d_model`) stay
  whole on every tensor rank unless sequence parallelism splits them; everything else is divided by t. Under
  1F1B stage i holds min(m, p − i) micro-batches in flight (Narayanan §2.2.1), so the first stage holds
  p micro-batches of its L/p layers.

Communication per GPU per step (bytes sent; a ring sends and receives as much at once, so its time is the
bytes over one direction's bandwidth, the nccl-tests "bus bandwidth"):
- data: ZeRO 0–2 reduce the gradients once per step, all-reduce or reduce-scatter + all-gather, 2·(d−1)/d·Ψ
  elements; ZeRO-3 gathers the weights for forward and again for backward and reduce-scatters the gradients,
  for every micro-batch: 3·m·(d−1)/d·Ψ (ZeRO §7). Ψ = the stage's parameters per tensor rank; element bytes
  as the weights.
- tensor: per layer and micro-batch 4 all-reduces of s·b·h activations, 2 forward and 2 backward (Megatron
  §3.2), 2 more with full recomputation, each 2·(t−1)/t; sequence parallelism replaces each by an
  all-gather and a reduce-scatter of the same total volume (Korthikanti §4.2.2).
- pipeline: per micro-batch one s·b·h activation forward and its gradient backward across each stage
  boundary, divided by t with sequence parallelism (Narayanan §4.1's scatter/gather).
- expert: per MoE layer and micro-batch 4 all-to-alls (dispatch and combine, forward and backward; 2 more
  with full recomputation) of the routed rows (s·top_k per sequence, or the padded capacity buffers) × d_model,
  of which (e−1)/e leave the GPU under uniform routing (reference notes §4; nccl-tests AlltoAll factor); the
  tokens are split over the tensor group first with sequence parallelism.

Step time = compute / MFU × (m + p − 1)/m + exposed communication, where compute is the slowest stage's model
FLOPs per step divided by t and the pipeline bubble is (p − 1)/m of it (1F1B, Narayanan §2.2.1). Assumed
overlaps: tensor and pipeline traffic is on the critical path; data-parallel traffic hides behind the compute
of the last micro-batch (ZeRO 0–2: gradients are bucketed and reduced during its backward, parameter gathers
run during the next forward) or of every micro-batch (ZeRO-3 prefetches), and only what exceeds it is exposed.
The MFU is read as the utilisation while computing, so catalogue defaults taken from whole runs (which already
contain their exposed communication) make this model slightly pessimistic for those runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from costplan.costs import Cost, Shape
from costplan.costs.layers import stage_layers
from costplan.costs.memory import FP32, element_bytes, optimizer_bytes
from costplan.costs.moe import routed_rows
from costplan.spec import Spec

TENSOR_REPLICATED = ("norms",)   # components whose weights every tensor rank keeps whole
STEP_OVERLAPS = ("tensor, pipeline and expert traffic on the critical path; data-parallel traffic overlapped "
                 "with the last micro-batch's compute (ZeRO 0-2) or every micro-batch's (ZeRO-3)")


@dataclass(frozen=True)
class StageMemory:
    """Bytes on one GPU of one pipeline stage."""

    stage: int
    weights: int
    gradients: int
    optimizer: int
    activations: int
    workspace: int            # the loss's fp32 gradients, live at the peak (last stage)
    params: float             # parameters held per GPU before ZeRO sharding, routed experts excluded
    routed_params: float      # routed-expert parameters held per GPU before ZeRO sharding

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.workspace


@dataclass(frozen=True)
class Split:
    """How one step is split: memory of the fullest stage, communication, bubble and time."""

    memory: StageMemory
    communication: dict[str, float]          # bytes sent per GPU per step, by kind
    communication_seconds: dict[str, float]
    bandwidth: dict[str, float]              # bytes/s per direction each kind runs at
    compute_seconds: float                   # the slowest stage's compute per step, at the MFU
    bubble_seconds: float
    exposed_seconds: float
    step_seconds: float


def _params_per_gpu(parts: dict[str, Cost], t: int, extra: int = 0) -> float:
    """Parameters of a stage on one tensor rank, routed experts left out: norms whole, the rest divided by t."""
    replicated = sum(parts[k].params for k in TENSOR_REPLICATED)
    sharded = sum(c.params - c.routed_params for k, c in parts.items() if k not in TENSOR_REPLICATED) + extra
    return replicated + sharded / t


def _activations_per_gpu(parts: dict[str, Cost], t: int, sequence_parallel: bool, micro_batch: int) -> float:
    """Bytes saved for backward by one micro-batch on one tensor rank."""
    whole = sum(c.activations for c in parts.values())
    wide = sum(c.act_d_model for c in parts.values())
    shared = sum(c.shared_activations for c in parts.values())   # once per micro-batch, not per sequence
    return ((whole - wide) / t + wide / (t if sequence_parallel else 1)) * micro_batch + shared / t


def stage_memory(spec: Spec, parts: dict[str, Cost], stage: int) -> StageMemory:
    """Model states and activations on one GPU of pipeline stage `stage`."""
    par, t = spec.parallel, spec.parallel.tensor
    p, d, m = par.pipeline, spec.data_parallel, spec.micro_batches
    model, training = spec.model, spec.training
    shared_head = model.vocab_size * model.d_model if model.tie_embeddings and p > 1 and stage == p - 1 else 0
    dense = _params_per_gpu(parts, t, shared_head)
    routed = sum(c.routed_params for c in parts.values()) / (t * par.expert)
    w, o = element_bytes(training.precision), optimizer_bytes(training.precision, training.optimizer)
    extra_optimizer = 0.0
    if training.optimizer == "adafactor":
        extra_optimizer = sum(c.factored for c in parts.values()) / t * FP32 / (d if par.zero >= 1 else 1)
    in_flight = min(m, p - stage)
    activations = _activations_per_gpu(parts, t, par.sequence_parallel, training.micro_batch_size) * in_flight
    # Only the micro-batch whose backward runs has loss gradients; a vocabulary-parallel loss splits them over t.
    workspace = sum(c.workspace for c in parts.values()) * training.micro_batch_size / t

    def sharded(per_param: int, from_stage: int) -> int:
        """Bytes of one kind of state: dense over d ranks, routed experts over d/e, once ZeRO reaches it."""
        over, over_routed = (d, d // par.expert) if par.zero >= from_stage else (1, 1)
        return math.ceil(per_param * (dense / over + routed / over_routed))

    return StageMemory(
        stage=stage,
        weights=sharded(w, 3),
        gradients=sharded(w, 2),
        optimizer=sharded(o, 1) + math.ceil(extra_optimizer),
        activations=math.ceil(activations),
        workspace=math.ceil(workspace),
        params=dense,
        routed_params=routed,
    )


def split(spec: Spec, shape: Shape, stages: list[dict[str, Cost]], peak_flops: float, mfu: float) -> Split:
    """Memory, communication and step time of the spec's parallel layout; `stages` are the component costs
    of each pipeline stage for one sequence."""
    par, gpu, model = spec.parallel, spec.gpu, spec.model
    t, p, d, m = par.tensor, par.pipeline, spec.data_parallel, spec.micro_batches
    memories = [stage_memory(spec, parts, i) for i, parts in enumerate(stages)]
    fullest = max(memories, key=lambda mem: mem.total)

    # bytes of one s·b·h activation tensor of a micro-batch
    hidden = spec.training.micro_batch_size * shape.seq_len * model.d_model * shape.act_bytes
    layers_per_stage = len(stage_layers(model, 0, p))
    w = element_bytes(spec.training.precision)
    ring = (d - 1) / d
    e = par.expert
    routed_ring = (d // e - 1) / (d // e)
    data_elements = max(mem.params * ring + mem.routed_params * routed_ring for mem in memories)
    passes = 6 if shape.recompute == "full" else 4   # collectives per layer: 2 forward, 2 backward, 2 recomputed
    tokens = spec.training.micro_batch_size * shape.seq_len / (t if par.sequence_parallel else 1)
    volume = {
        "data": (3 * m if par.zero == 3 else 2) * data_elements * w,
        "tensor": passes * 2 * (t - 1) / t * hidden * layers_per_stage * m,
        # a middle stage sends its output forward and its input's gradient backward
        "pipeline": (2 if p > 1 else 0) * hidden / (t if par.sequence_parallel else 1) * m,
        "expert": passes * (e - 1) / e * _routed_rows_per_stage(spec, shape, tokens) * model.d_model
        * shape.act_bytes * m,
    }
    bandwidth = {"data": gpu.link_bytes_per_s(t * d), "tensor": gpu.link_bytes_per_s(t),
                 "pipeline": gpu.link_bytes_per_s(t * d * p), "expert": gpu.link_bytes_per_s(t * e)}
    seconds = {kind: volume[kind] / bandwidth[kind] for kind in volume}

    micro = spec.training.micro_batch_size
    compute = max(3 * sum(c.flops for c in parts.values()) for parts in stages) * micro * m / t / (peak_flops * mfu)
    window = compute if par.zero == 3 else compute / m
    exposed = seconds["tensor"] + seconds["pipeline"] + seconds["expert"] + max(0.0, seconds["data"] - window)
    bubble = compute * (p - 1) / m
    return Split(memory=fullest, communication=volume, communication_seconds=seconds, bandwidth=bandwidth,
                 compute_seconds=compute, bubble_seconds=bubble, exposed_seconds=exposed,
                 step_seconds=compute + bubble + exposed)


def _routed_rows_per_stage(spec: Spec, shape: Shape, tokens: float) -> float:
    """Rows the MoE layers of the fullest stage dispatch for `tokens` tokens: top_k each, or the capacity
    buffers (routed_rows per sequence, scaled)."""
    model = spec.model
    if model.moe is None:
        return 0.0
    p = spec.parallel.pipeline
    moe_layers = max(sum(layer.moe is not None for layer in stage_layers(model, i, p)) for i in range(p))
    return moe_layers * routed_rows(model.moe, shape.seq_len) / shape.seq_len * tokens
