"""One training step's time, from its operations timed on the device (a roofline with kernel efficiencies),
its communication with the overlap each kind gets, and the pipeline schedule.

Each operation (costs/ops.py) of each layer of a pipeline stage, for one micro-batch on one GPU:
- GEMM: max(FLOPs / (peak × gemm efficiency at its size), bytes / (bandwidth × memory efficiency)), its size
  (m·k·n)^(1/3) after tensor parallelism (one of n or k divided by t), m = the micro-batch's rows on this GPU
  (divided by the context degree; a routed expert's rows gathered from its expert group; a layer's experts are
  one grouped kernel, read at its whole size, its weights' loads added: ops.gemm_time; with training.fusion eager
  the reference model's loop, one GEMM an expert at its own size). Backward is two GEMMs
  of the same three sizes (dgrad, wgrad): twice the forward's time. fp8 training runs the blocks' GEMMs at the
  fp8 peak and curve and adds their casts as memory-bound work (reading 16-bit inputs and weights and writing
  fp8 ones forward, the output gradient backward, with a transposed copy where the device's fp8 GEMMs take only
  the TN layout: kernels.fp8_cast_bytes); the LM head, the router and attention stay in 16 bits (Transformer
  Engine's and torchtitan's defaults). Not modelled: Transformer Engine's weight casts kept across micro-batches,
  casts fused into the norm before a linear, torchao's casts again in backward, current scaling's amax pass.
- Attention core: a FlashAttention kernel at its forward and backward curves (by keys per query and head
  dimension, FLOPs as executed); a materialising core as batched GEMMs plus its softmax's bytes. With
  training.fusion eager, a core the reference runs as a Python loop over blocks (ops.Core.block_rows) runs its
  matmuls one block at a time: at the GEMM curve's efficiency for its average block's rows × keys × head_dim.
- Memory-bound work: bytes / (bandwidth × memory efficiency), backward twice the forward's bytes (or, with
  training.fusion eager, what eager PyTorch's backward kernels move: costs/eager.py; with blocks, only outside the
  layers: the final norm and the loss, edge_shape); on a device whose tables
  measure the memory-bound kernels' own rate (kernels.memory_bound, calibrate), at that rate.
- Recomputation: full reruns each layer's forward in backward; selective is in the core's own backward FLOPs;
  selective_op reruns the matmuls it does not keep and every memory-bound op (rerun_ops).

Communication (a collective's time: bytes on the wire / (per-direction link bandwidth × bus efficiency at its
message size, latency included as nccl-tests measures it), the link inside a node or the network across nodes
by the group's span, where ring collectives pool a node's NICs and all-to-alls and point-to-point sends go
through each GPU's own (traffic.collective_seconds); ranks ordered tensor, context, data, pipeline, as
Megatron's):
- tensor: per layer and micro-batch 2 all-reduces forward, 2 backward (2 more with full recomputation) of the
  layer's s·b·h activation (Megatron §3.2; one each way for a parallel layer, which sums attention's and the
  MLP's partial outputs first: layers.tensor_reductions), one for a MoE block only with shared experts;
  exposed, or with `tensor_overlap` hidden behind the layer's GEMMs (exposed only beyond them).
- context: ring attention passes each rank's K and V chunk (its tensor rank's heads) around the ring, cp − 1
  transfers forward and twice that backward (the K/V chunks and their gradients), hidden behind the attention
  core's compute.
- expert: 4 all-to-alls per MoE layer and micro-batch (6 with full recomputation), and with an expert tensor
  degree et > 1 its group's all-gather of the routed rows and reduce-scatter of their outputs, forward and
  backward; on the critical path, or with `expert_overlap` behind another micro-batch's forward and backward of
  the layer in the passes the schedule pairs (traffic.expert_paired), the rest exposed.
- pipeline: per micro-batch and model chunk one activation forward and its gradient backward, exposed, timed (as
  a ring-attention transfer) at its slowest hop's link.
- data (the data ranks with the context ranks, which hold the same weights): ZeRO 0 all-reduces the gradients
  once per step in 25 MiB buckets (torch DDP's default) during the last
  micro-batch's backward, and only what exceeds it is exposed; ZeRO 1-2 reduce-scatter them there and gather
  the updated weights during the next step's first forward (Megatron's distributed optimizer with
  overlap-param-gather); ZeRO-3 gathers each layer's weights forward and
  backward and reduce-scatters its gradients for every micro-batch, prefetched behind the neighbouring layers'
  compute (exposed only beyond it). Gradients travel in their own dtype: twice the bytes of 16-bit weights
  with training.fp32_gradients. FSDP2 (per_parameter_sharding) also copies each gather's buffer into the
  parameters on the compute stream: memory-bound work (gather_copies).
Hidden traffic still slows the compute it hides behind: NCCL runs a collective as a kernel of one CTA per channel,
and the SMs those hold are not the compute's while it runs. With the device's `overlap_sm_share` f (its kernel
tables: NCCL's channels over its SMs), compute C beside a collective of T seconds goes at (1 − f) of its rate for
T, so the pair ends at max(T, C + f·T) rather than max(T, C); the breakdown shows the excess beyond the compute,
max(0, T − C), as communication.<kind> and the rest, f·T at most, as overlap.<kind>. Not modelled: the
collective's own slowdown from sharing HBM, a GEMM's extra wave when the SMs left do not divide its tiles.
Pipeline (Narayanan et al. 2021 §2.2): 1F1B runs m micro-batches and a bubble of (p − 1) micro-batch times;
interleaving v model chunks per rank cuts the bubble to (p − 1)/v and multiplies the pipeline transfers by v.
The micro-batch time is the slowest stage's: each stage has its own layers (layers.pipeline_stages, uneven under
Megatron's first/last stage layers), and the others wait for it; with uneven stages the bubble is then an upper
bound (a faster stage fills and drains sooner).
Optimizer: one pass over the GPU's (ZeRO-sharded) states, reading and writing each state and weight and reading
the gradient, memory-bound. Gradient accumulation costs nothing where the weight-gradient GEMMs add into the held
gradients (Megatron's gradient_accumulation_fusion); with training.grad_accumulation add, a memory-bound add over
the gradients the GPU holds per micro-batch (memory.accumulation_adds), counted with the memory-bound ops.
First touch (kernels.FirstTouch, a CPU's measured figure; none on a GPU, whose caching allocator reuses blocks):
each new tensor of at least the threshold that a micro-batch allocates (ops.py) costs its bytes at the measured
seconds per byte, forward, backward and rerun, and so does the optimizer step's fp32 copy of each large 16-bit
gradient (update_fresh); a part of its own, `first_touch`, beside the rooflines.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from costplan.costs import Shape, memo, selective_op
from costplan.costs.attention import aft
from costplan.costs.components import edge_params
from costplan.costs.device import Device, device  # noqa: F401 - step.device, as before
from costplan.costs.fp8_weights import cast_bytes
from costplan.costs.layers import (Layer, Stages, block_width, pipeline_stages, recompute_groups, stage_count,
                                   stage_layers, tensor_reductions)
from costplan.costs.memory import (FP32, UNFUSED_UPDATE_BYTES, accumulation_adds, gradient_bytes, optimizer_bytes,
                                   weight_bytes)
from costplan.costs.parallel import zero_groups
from costplan.costs.ops import (
    Core, Gemm, Op, Stream, embedding_ops, gemm_size, gemm_time, head_ops, layer_ops, priced, tensors, tied_sum_ops,
)
from costplan.costs.ops import dispatched as dispatched_ops   # stage_counts sums a local `dispatched`
from costplan.costs.traffic import (
    ALLREDUCE, ALLTOALL, BUCKET_BYTES, POINT, RING, Traffic, collective_seconds, expert_paired, overlaps, sm_share,
)
from costplan.hardware import GPU
from costplan.kernels import FirstTouch
from costplan.records import Record
from costplan.spec import ModelSpec, ParallelismSpec, Spec, step_micro_batches

SIXTEEN_BIT = ("bf16", "fp16")
PARTS = ("matmul", "attention", "memory_bound", "optimizer", "bubble")
# What a micro-batch's operations add up, forward and backward: the compute parts, and the first touch of fresh
# memory (kernels.FirstTouch; a part of its own only on a device that has the figure)
TALLIED = (*PARTS[:3], "first_touch")


@dataclass
class Tally:
    """Seconds of one micro-batch on one GPU, by part, forward and backward apart."""

    forward: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TALLIED, 0.0))
    backward: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TALLIED, 0.0))
    gemm: float = 0.0          # forward + backward GEMM seconds (what tensor_overlap hides traffic behind)
    core: float = 0.0          # forward + backward attention-core seconds (what context traffic hides behind)

    @property
    def total(self) -> float:
        return sum(self.forward.values()) + sum(self.backward.values())


class StepTime(Record):
    """Where one step's seconds go."""

    seconds: float
    breakdown: dict[str, float]              # seconds per part: PARTS and exposed communication by kind
    communication_bytes: dict[str, float]    # sent per GPU per step, by kind
    communication_seconds: dict[str, float]  # each kind's traffic, hidden or not
    overlaps: str


class Timer:
    """Times the operations of one layout on one device."""

    def __init__(self, spec: Spec, dev: Device, shape: Shape):
        par = spec.parallel
        self.dev, self.shape = dev, shape
        self.t, self.cp, self.ep, self.et = par.tensor, par.context, par.expert, par.expert_tensor_degree
        self.routed_share = par.routed_row_share
        self.sp = par.sequence_parallel
        self.b = spec.training.micro_batch_size
        self.rows = self.b / self.cp            # sequences' worth of rows per GPU
        self.e = shape.act_bytes
        self.bandwidth = dev.bandwidth          # read once: every operation divides by it
        self.streaming = streaming_rate(dev)
        self._gemm_rates: dict[str, tuple] = {}
        self.fp8 = dev.precision == "fp8"
        self.cast_bytes = cast_bytes(dev.curves)     # with the transposed copy where fp8 GEMMs take only TN
        self.sixteen = "bf16" if self.fp8 else dev.precision     # what GEMMs kept out of fp8 run in
        self.touch = dev.curves.first_touch     # None: allocations cost nothing

    def gemm_rate(self, precision: str) -> tuple:
        """The peak and the GEMM curve at a precision (looked up once per timer)."""
        rate = self._gemm_rates.get(precision)
        if rate is None:
            rate = self._gemm_rates[precision] = (self.dev.gpu.peak_flops(precision), self.dev.gemm_curve(precision))
        return rate

    def dims(self, g: Gemm) -> tuple[float, float, int]:
        """A GEMM's rows on this GPU, its products there and the tensor split of its matrices."""
        if g.expert:
            # a GPU's n/e experts take their rows from e ranks, each sending what its et expert tensor ranks
            # gathered (et/t of a sequence's rows, sequence parallelism splitting them over t); their matrices
            # are split by et (parallel folding)
            return g.rows * self.rows * self.ep * self.routed_share, g.count / self.ep, self.et
        if g.replicated and self.t > 1:
            # MLA's down-projections (Megatron-Core's TE spec duplicates them) and a MoE router are whole on every
            # tensor rank: each runs on its own tokens under sequence parallelism, and on every token without
            return g.rows * self.rows / (self.t if self.sp else 1), g.count, 1
        return g.rows * self.rows, g.count, self.t if g.split else 1

    def gemm(self, g: Gemm) -> tuple[float, float, float]:
        """Forward seconds of a GEMM, and the bytes of its fp8 casts: forward its input and weight, backward the
        output's gradient (the dgrad and wgrad GEMMs' other operands are the forward's casts)."""
        m, count, ts = self.dims(g)
        fp8 = self.fp8 and g.fp8
        flops = 2 * m * g.d_in * g.d_out / ts * count
        if not flops:
            return 0.0, 0.0, 0.0
        # a layer's experts are one grouped kernel, but the reference model (training.fusion eager, as profile and
        # check run it) loops over them, one GEMM each (profiling/moe.py)
        grouped = g.expert and self.shape.fusion != "eager"
        size = gemm_size(m, g.d_in, g.d_out / ts, count if grouped else 1)
        peak, curve = self.gemm_rate("fp8" if fp8 else self.sixteen)
        element = (1 if fp8 else self.e) * count / self.bandwidth
        seconds = gemm_time(flops / (peak * curve.at(size)), g.d_in * g.d_out / ts * element,
                            (m * g.d_in + m * g.d_out / ts) * element, grouped)
        if not fp8:
            return seconds, 0.0, 0.0
        return (seconds, self.cast_bytes * (m * g.d_in + g.d_in * g.d_out / ts) * count,
                self.cast_bytes * m * g.d_out / ts * count)

    def core(self, c: Core) -> tuple[float, float]:
        """Forward and backward seconds of an attention core."""
        scale = self.b / self.cp / self.t       # query rows split by context, heads by tensor parallelism
        if not c.flops:
            return 0.0, 0.0
        precision, peak = self.dev.attention_peak()
        curves = self.dev.curves
        if c.block_rows and curves.block_gemm and c.block_calls[0]:
            # the reference's loop, each block's matmuls at the rate of one call's FLOPs
            ahead, behind = c.flops * scale, c.backward * scale
            forward = ahead / (peak * curves.block_gemm.at(ahead / c.block_calls[0]))
            backward = behind / (peak * curves.block_gemm.at(behind / c.block_calls[1]))
        elif c.block_rows:        # the reference's loop on the GEMM curve, one call's matmul at a time
            rate = self.batched_rate(precision, peak, c.flops * scale / max(c.block_calls[0], 1))
            forward, backward = c.flops * scale / rate, c.backward * scale / rate
        elif c.conv and curves.depthwise_conv_forward and curves.depthwise_conv_backward:
            call = c.flops * scale / aft.PRODUCTS      # one convolution over the micro-batch: the curves' x
            forward = c.flops * scale / (peak * curves.depthwise_conv_forward.at(call))
            backward = c.backward * scale / (peak * curves.depthwise_conv_backward.at(call))
        elif c.flash:
            forward = c.flops * scale / (peak * self.dev.attention_curve(False, c.head_dim).at(c.keys))
            backward = c.backward * scale / (peak * self.dev.attention_curve(True, c.head_dim).at(c.keys))
        else:                     # a materialising core: two batched matmuls, the scores and then the values
            rate = self.batched_rate(precision, peak, c.flops * scale / 2)
            forward, backward = c.flops * scale / rate, c.backward * scale / rate
        return forward, backward

    def batched_rate(self, precision: str, peak: float, call_flops: float) -> float:
        """FLOP/s of an attention core's batched matmul of `call_flops` on this GPU, batched over its sequences
        and heads: on the GEMM curve at its b·m·n·k, as the curves place a batched GEMM (2 FLOPs a product)."""
        return peak * self.dev.gemm_curve(precision).at((call_flops / 2) ** (1 / 3))

    def scale(self, s: Stream) -> float:
        """What multiplies a stream's bytes on this GPU: its sequences and its share of them."""
        if not s.batched:       # a weight-sized tensor: split by tensor ranks or whole
            return 1 / self.t if s.split else 1
        return self.rows * (self.routed_share if s.routed else 1 / self.t if s.split or self.sp else 1)

    def stream(self, s: Stream, moved: float | None = None) -> float:
        return (s.bytes if moved is None else moved) * self.scale(s) / self.streaming

    def fresh(self, sizes: tuple[float, ...], scale: float = 1.0) -> float:
        """Seconds the first touch of these new tensors (bytes each, times `scale`) takes: those of at least the
        device's threshold (kernels.FirstTouch)."""
        touch = self.touch
        return touch.seconds_per_byte * sum(b * scale for b in sizes if b * scale >= touch.from_bytes)

    def gemm_fresh(self, g: Gemm) -> tuple[float, float]:
        """First-touch seconds of a GEMM's new tensors: its output forward, the input's and the weight's
        gradients backward (in the activations' dtype)."""
        m, count, ts = self.dims(g)
        e = self.e
        return (count * self.fresh((m * g.d_out / ts * e,)),
                count * self.fresh((m * g.d_in * e, g.d_in * g.d_out / ts * e)))

    def tally(self, ops: list[Op], tally: Tally, recompute: bool) -> None:
        """Add these forward operations, their backward and any recomputation (summed in local variables, in
        the order of the operations: this loop is most of an estimate's time)."""
        again = 1 if recompute else 0
        forward, backward = tally.forward, tally.backward
        f_mm, b_mm, f_at, b_at = forward["matmul"], backward["matmul"], forward["attention"], backward["attention"]
        f_mb, b_mb, gemm, core = forward["memory_bound"], backward["memory_bound"], tally.gemm, tally.core
        touch = self.touch is not None
        f_ft, b_ft = forward["first_touch"], backward["first_touch"]
        for op in ops:
            if isinstance(op, Gemm):
                seconds, casts, gradient_casts = self.gemm(op)
                cast = casts / self.bandwidth
                f_mm += seconds
                b_mm += (2 + again) * seconds
                gemm += (3 + again) * seconds
                f_mb += cast
                b_mb += gradient_casts / self.bandwidth + again * cast
                if touch:
                    ahead, behind = self.gemm_fresh(op)
                    f_ft += ahead
                    b_ft += behind + again * ahead
            elif isinstance(op, Core):
                ahead, behind = self.core(op)
                f_at += ahead
                b_at += behind + again * ahead
                core += ahead + behind + again * ahead
            else:
                seconds = self.stream(op)
                behind = 2 * seconds if op.backward is None else self.stream(op, op.backward)
                f_mb += seconds
                b_mb += behind + again * seconds
                if touch and op.fresh != ((), ()):
                    scale = self.scale(op)
                    ahead = self.fresh(op.fresh[0], scale)
                    f_ft += ahead
                    b_ft += self.fresh(op.fresh[1], scale) + again * ahead
        forward["matmul"], backward["matmul"], forward["attention"], backward["attention"] = f_mm, b_mm, f_at, b_at
        forward["memory_bound"], backward["memory_bound"], tally.gemm, tally.core = f_mb, b_mb, gemm, core
        forward["first_touch"], backward["first_touch"] = f_ft, b_ft

    def again(self, ops: list[Op], tally: Tally) -> None:
        """Add these operations' forward to the backward: what per-op checkpointing reruns (selective_op)."""
        for op in ops:
            if isinstance(op, Gemm):
                seconds, casts, _ = self.gemm(op)
                tally.backward["matmul"] += seconds
                tally.backward["memory_bound"] += casts / self.bandwidth
                tally.gemm += seconds
                if self.touch is not None:
                    tally.backward["first_touch"] += self.gemm_fresh(op)[0]
            elif isinstance(op, Stream):
                tally.backward["memory_bound"] += self.stream(op)
                if self.touch is not None:
                    tally.backward["first_touch"] += self.fresh(op.fresh[0], self.scale(op))


def stage_time(spec: Spec, dev: Device, shape: Shape, stage: int) -> tuple[Tally, dict[str, Traffic]]:
    """One micro-batch on one GPU of a pipeline stage: compute, and the traffic of each kind inside layers.
    Layers repeat, so each distinct layer is timed once."""
    return _stage_time(spec, dev, shape, stage, _layout_key(spec, dev, shape))


def _layout_key(spec: Spec, dev: Device, shape: Shape) -> tuple:
    return layout_key(spec.model, spec.parallel, spec.training.micro_batch_size, dev, shape)


def layout_key(model: ModelSpec, par: ParallelismSpec, micro_batch_size: int, dev: Device, shape: Shape) -> tuple:
    """What a layer's time depends on besides the layer, in memo keys: its widths, the shape, the layout and the
    device (the GPU and its curves are resolved once per name, so their identities name them)."""
    return (memo.token(block_width(model)), memo.token(shape), par.tensor, par.context, par.expert,
            par.expert_tensor_degree, par.sequence_parallel, par.tensor_overlap, par.expert_overlap, micro_batch_size,
            id(dev.gpu), id(dev.curves), dev.precision, dev.attention_kernel)


def _stage_time(spec: Spec, dev: Device, shape: Shape, stage: int, layout: tuple, stages: Stages | None = None,
                paired: float | None = None) -> tuple[Tally, dict[str, Traffic]]:
    """`stages` (default: the spec's pipeline) splits the layers; `paired` (default: the schedule's,
    traffic.expert_paired) is the share of passes whose all-to-alls expert_overlap hides."""
    model = spec.model
    stages = pipeline_stages(spec) if stages is None else stages
    first, last = stage == 0, stage == stage_count(stages) - 1
    made: list[Timer] = []      # the edges and the layers at the stage's shape share one timer, made if needed

    def timer(at: Shape) -> Timer:
        if at is not shape:
            return Timer(spec, dev, at)
        if not made:
            made.append(Timer(spec, dev, shape))
        return made[0]

    # The embedding's and the head's operations, timed once per widths and layout (shared inside memo.shared()
    # like the layers' times); the stage's tally starts from a copy of theirs.
    edges = memo.cached(("stage edges", first, last, *layout),
                        lambda: _edges_time(model, shape, timer(shape), first, last))
    forward, backward, gemm, core = dict(edges.forward), dict(edges.backward), edges.gemm, edges.core
    share = sm_share(dev)
    traffic = {kind: Traffic(share) for kind in ("tensor", "context", "expert")}
    paired = expert_paired(spec, stage) if paired is None else paired
    for layer, count, layer_shape in recompute_groups(model, shape, stage, stages):
        # a layer kept among recomputed ones (training.recompute_layers) is timed at its own shape
        key = layout if layer_shape is shape else _layout_key(spec, dev, layer_shape)
        own, wire, seconds, behind = memo.cached(("layer time", memo.token(layer), *key),
                                                 lambda: _time_layer(spec, dev, layer_shape, timer(layer_shape),
                                                                     layer))
        for kind, each in traffic.items():
            if kind == "expert" and paired < 1:     # the schedule's unpaired passes: nothing beside them
                each.add(count * (1 - paired), wire[kind], seconds[kind], 0.0)
                each.add(count * paired, wire[kind], seconds[kind], behind[kind])
            else:
                each.add(count, wire[kind], seconds[kind], behind[kind])
        for part, value in own.forward.items():
            forward[part] += count * value
        for part, value in own.backward.items():
            backward[part] += count * value
        gemm += count * own.gemm
        core += count * own.core
    return Tally(forward, backward, gemm, core), traffic


def _edges_time(model: ModelSpec, shape: Shape, timer: Timer, first: bool, last: bool) -> Tally:
    tally = Tally()
    if first:
        timer.tally(embedding_ops(model, shape), tally, recompute=False)
    if last:
        timer.tally(head_ops(model, edge_shape(shape)), tally, recompute=False)
    if first and last:
        timer.tally(tied_sum_ops(model, edge_shape(shape)), tally, recompute=False)
    return tally


def edge_shape(shape: Shape) -> Shape:
    """The shape the embedding, the final norm and the head's loss run at: eager outside compiled blocks
    (training.fusion blocks), as the layers otherwise."""
    return replace(shape, fusion="eager") if shape.fusion == "blocks" else shape


def _time_layer(spec: Spec, dev: Device, shape: Shape, timer: Timer, layer: Layer) -> tuple:
    par, model, moe = spec.parallel, spec.model, layer.moe
    t, cp, ep, et = par.tensor, par.context, par.expert, par.expert_tensor_degree
    full = shape.recompute == "full"
    passes = 6 if full else 4
    rounds = passes // 2            # forward, backward (and the rerun forward): one collective a block each
    hidden = timer.rows * shape.seq_len * model.d_model * timer.e       # one s·b·h activation on this GPU
    own = Tally()
    timer.tally([op for ops in layer_ops(layer, model, shape).values() for op in ops], own, full)
    if shape.recompute == "selective_op":
        timer.again(rerun_ops(layer, model, shape), own)
    wire = dict.fromkeys(("tensor", "context", "expert"), 0.0)
    seconds = dict.fromkeys(("tensor", "context", "expert"), 0.0)
    # the routed rows a GPU sends its expert group, and receives back: its (sequence-parallel) rows, top_k each
    rows = (_routed_per_token(layer) * timer.rows * shape.seq_len / (t if par.sequence_parallel else 1)
            if moe is not None else 0.0)
    if t > 1:
        # the all-reduce (or reduce-scatter and all-gather) of attention's output, and of the MLP's: a dense one or
        # a MoE block's shared experts; its routed experts take their tokens by all-to-all instead
        blocks = tensor_reductions(model, moe)
        per = 2 * (t - 1) / t * hidden
        wire["tensor"] = rounds * blocks * per
        kind = RING if par.sequence_parallel else ALLREDUCE     # reduce-scatter and all-gather, or all-reduce
        seconds["tensor"] = rounds * blocks * collective_seconds(dev, per, hidden, t, pattern=kind)
    if moe is not None and et > 1:
        # an expert tensor group gathers its ranks' routed rows after the all-to-all and reduce-scatters their
        # outputs before the way back, backward the reverse (Megatron-Core's all-to-all dispatcher): expert
        # traffic, exposed as the all-to-alls are (tensor_overlap hides the linears' traffic, not the dispatcher's)
        gathered = et * rows * model.d_model * timer.e
        per = 2 * (et - 1) / et * gathered
        wire["expert"] += rounds * per
        seconds["expert"] += rounds * collective_seconds(dev, per, gathered, et)
    if cp > 1 and layer.attention.type != "aft_simple":
        chunk = 2 * timer.rows * shape.seq_len * _kv_width(layer, model, t) * timer.e
        transfers = (3 + (1 if full else 0)) * (cp - 1)
        wire["context"] = transfers * chunk
        seconds["context"] = transfers * collective_seconds(dev, chunk, chunk, t * cp, stride=t, pattern=POINT)
    if moe is not None and ep > 1:
        message = rows * model.d_model * timer.e
        wire["expert"] += passes * (ep - 1) / ep * message
        # the expert group: e ranks et apart (parallel folding)
        seconds["expert"] += passes * collective_seconds(dev, (ep - 1) / ep * message, message, par.expert_group,
                                                        stride=par.expert_tensor_degree, pattern=ALLTOALL)
    # with expert_overlap a layer's all-to-alls run beside another micro-batch's pass through the layer (one's
    # forward beside the other's backward: Megatron-Core's combined 1F1B, DualPipe), which they can hide behind
    partner = sum(own.forward.values()) + sum(own.backward.values()) if par.expert_overlap else 0.0
    behind = {"tensor": own.gemm if par.tensor_overlap else 0.0, "context": own.core, "expert": partner}
    return own, wire, seconds, behind


def _sharded(dev: Device, shards: int, routed_shards: int, dense: float, routed: float, per_param: int,
             span: int, stride: int, routed_stride: int, layers: int | None = None,
             pattern: str = RING) -> tuple[float, float]:
    """Bytes on each GPU's link and seconds of one pass over the data-parallel groups (a reduce-scatter or an
    all-gather, or half of an all-reduce): the dense parameters over their group, the routed experts' over
    theirs (both spanning the stage's data ranks), in torch DDP's buckets, or a layer's parameters at a time where
    `layers` (FSDP)."""
    def message(params: float) -> float:        # a bucket holds at most the gradients there are
        return min(BUCKET_BYTES, params * per_param) if layers is None else params * per_param / layers

    wire = (shards - 1) / shards * dense * per_param
    seconds = collective_seconds(dev, wire, message(dense), span, stride, pattern) if shards > 1 else 0.0
    if routed and routed_shards > 1:
        routed_wire = (routed_shards - 1) / routed_shards * routed * per_param
        wire += routed_wire
        seconds += collective_seconds(dev, routed_wire, message(routed), span, routed_stride, pattern)
    return wire, seconds


def rerun_ops(layer: Layer, model: ModelSpec, shape: Shape) -> list[Op]:
    """What torchtitan's per-op checkpointing runs again in a layer's backward (costs/selective_op.py): the
    matmuls whose outputs it does not keep, and every memory-bound op."""
    products = selective_op.recomputed_products(model, layer.d_ff)
    return ([Gemm(shape.seq_len, d_in, d_out) for each in products.values() for d_in, d_out in each]
            + [op for ops in layer_ops(layer, model, shape).values() for op in ops if isinstance(op, Stream)])


def _kv_width(layer: Layer, model, t: int) -> float:  # noqa: ANN001 - ModelSpec
    """The width of the K (and V) chunk a tensor rank passes around its context ring: its own heads' (Megatron's
    ring attention runs inside each tensor rank). MLA's ring carries the core's per-head keys and values, the
    latent already expanded (Transformer Engine's ring attention receives the K and V Megatron-Core's
    MLASelfAttention gives its core), as the mean of their widths."""
    a = layer.attention
    if a.type == "mla":
        return model.n_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim) / 2 / t
    return model.kv_width / t


def _routed_per_token(layer: Layer) -> float:
    moe = layer.moe
    return moe.top_k if not moe.capacity_factor else moe.capacity_factor * moe.top_k


def sequence_bound(spec: Spec, dev: Device, shape: Shape) -> float:
    """A lower bound of step_time(...).seconds per sequence the step runs, for a layout search to skip layouts
    that cannot be the fastest. A step spends m + (p − 1)/v micro-batch times on its slowest stage, which takes
    at least the mean of the p stages, and the stages together run each layer, the embedding and the head once:
    step ≥ (m + (p − 1)/v) · whole / p over m · b · d sequences, d = GPUs / (t·c·p), i.e. whole · t·c / (b ·
    GPUs) · (1 + (p − 1)/(v·m)); the optimizer, the pipeline and the data traffic only add. `whole`, one
    micro-batch through every layer on one GPU with its exposed layer traffic, is the same for every layout of the
    model whose layers are timed alike (_layout_key), whatever its pipeline and ZeRO stage: it is kept inside
    memo.shared(). Recomputing the first layers of each stage (training.recompute_layers) only adds to a deeper
    pipeline."""
    return layout_bound(spec, spec.parallel, spec.hardware.count, dev, shape, lambda: spec)


def layout_bound(spec: Spec, par: ParallelismSpec, count: int, dev: Device, shape: Shape,
                 laid_out: Callable[[], Spec]) -> float:
    """sequence_bound of the spec laid out on `par` over `count` GPUs (the same model and training), which
    `laid_out()` builds only where no layout of its layers' timing has been bounded yet: a search bounds many
    layouts whose layers are timed alike, and builds specs for few."""
    training = spec.training
    with memo.shared():
        layout = layout_key(spec.model, par, training.micro_batch_size, dev, shape)
        whole = memo.cached(("whole micro-batch", memo.token(spec.model), *layout),
                            lambda: _whole_micro_batch(laid_out(), dev, shape, layout))
    per_sequence = whole * par.tensor * par.context / (training.micro_batch_size * count)
    return per_sequence * (1 + (par.pipeline - 1) / (par.virtual_stages * step_micro_batches(par, training, count)))


def _whole_micro_batch(spec: Spec, dev: Device, shape: Shape, layout: tuple) -> float:
    # every pass paired (expert_overlap): the least exposed, as a bound needs, whatever the schedule
    tally, traffic = _stage_time(spec, dev, shape, 0, layout, stages=1, paired=1.0)
    return tally.total + sum(k.exposed for k in traffic.values())


def step_time(spec: Spec, dev: Device, shape: Shape, stage_params: list[tuple[float, float]]) -> StepTime:
    """The step of the spec's layout; `stage_params` are each stage's (dense, routed) parameters per GPU
    before ZeRO sharding (costs/parallel.py)."""
    par = spec.parallel
    t, p, cp, v = par.tensor, par.pipeline, par.context, par.virtual_stages
    d, m = spec.data_parallel, spec.micro_batches
    with memo.shared():     # the stages share their layers' times
        layout = _layout_key(spec, dev, shape)
        stages = [_stage_time(spec, dev, shape, i, layout) for i in range(p)]
    slowest = 0 if p == 1 else max(range(p), key=lambda i: stages[i][0].total
                                   + sum(k.exposed for k in stages[i][1].values()))
    tally, traffic = stages[slowest]
    copied = gather_copies(spec, shape, slowest, stage_params[slowest])
    if copied is not None:      # read and written on the compute stream, in the weights' dtype
        per_element = 2 * weight_bytes(spec.training.precision, spec.training.autocast) / streaming_rate(dev)
        tally.forward["memory_bound"] += copied[0] * per_element
        tally.backward["memory_bound"] += copied[1] * per_element
    # fixed costs where the device's tables measure them: a micro-batch's kernels, the step's updates
    curves = dev.curves
    fixed = any(f is not None for f in (curves.kernel_seconds, curves.update_seconds, curves.loop_kernel_seconds,
                                        curves.checkpoint_op_seconds))
    counts = stage_counts(spec, shape, slowest) if fixed else Counts(0.0, 0.0)
    launches = fixed_seconds(dev, counts.launched, 0.0, counts.looped, counts.dispatched)
    work = tally.total + sum(k.exposed for k in traffic.values())     # the device's, per micro-batch
    micro = host_and_device(dev.gpu, work, launches)
    bubble = (p - 1) / v * micro

    training = spec.training
    w = weight_bytes(training.precision, training.autocast)
    g = gradient_bytes(training.precision, training.autocast, training.fp32_gradients)
    # pipeline: each micro-batch crosses v chunk boundaries forward and backward
    hidden = spec.training.micro_batch_size * shape.seq_len / cp * spec.model.d_model * shape.act_bytes
    hidden /= t if par.sequence_parallel else 1
    pipe = traffic["pipeline"] = Traffic(sm_share(dev))    # none on one stage: every kind is reported
    if p > 1:
        point = collective_seconds(dev, hidden, hidden, t * cp * d * p, stride=t * cp * d, pattern=POINT)
        # each send and receive exposed, or behind a model chunk's forward or backward (pipeline_overlap)
        hide = 1 / v if par.pipeline_overlap else 0.0
        pipe.add(v * m, hidden, point, hide * sum(tally.forward.values()))
        pipe.add(v * m, hidden, point, hide * sum(tally.backward.values()))
    dense, routed = stage_params[slowest]
    shards, routed_d = zero_groups(spec)
    data_span = t * cp * d          # the group's GPUs lie t·c·d apart, tensor ranks between them
    data = traffic["data"] = Traffic(sm_share(dev))
    routed_stride = par.expert_group        # expert data ranks lie et·e apart
    if par.zero == 3 and (shards > 1 or routed_d > 1):
        # each layer's weights gathered, its gradients reduce-scattered, a layer at a time
        layers = max(1, len(stage_layers(spec.model, slowest, pipeline_stages(spec))))
        wire, gather = _sharded(dev, shards, routed_d, dense, routed, w, data_span, t, routed_stride, layers)
        scatter, scattered = _sharded(dev, shards, routed_d, dense, routed, g, data_span, t, routed_stride, layers)
        data.add(m, wire, gather, sum(tally.forward.values()))                # forward gathers
        # backward gathers again and reduce-scatters the gradients, in their own dtype
        data.add(m, wire + scatter, gather + scattered, sum(tally.backward.values()))
    elif shards > 1 or routed_d > 1:
        # A reduce-scatter of the gradients, then an all-gather: of the gradients too (ZeRO 0: an all-reduce), or
        # of the updated weights (ZeRO 1-2); each moves (n − 1)/n of its bytes over the n ranks of its group.
        kind = ALLREDUCE if par.zero == 0 else RING     # DDP's buckets are all-reduced
        halves = [_sharded(dev, shards, routed_d, dense, routed, per_param, data_span, t, routed_stride,
                           pattern=kind)
                  for per_param in (g, g if par.zero == 0 else w)]
        backward = sum(tally.backward.values())
        if par.zero == 0:
            (reduced, reduce_s), (gathered, gather_s) = halves
            data.add(1, reduced + gathered, reduce_s + gather_s, backward)    # during the last backward
        else:
            # the updated shards gathered during the next forward; the gradients reduce-scattered during the last
            # backward (ZeRO 1: they accumulate whole), or during every micro-batch's (ZeRO 2: only a shard is
            # held, so each micro-batch's gradients are reduced into it, as DeepSpeed's stage 2 hooks and FSDP's
            # SHARD_GRAD_OP do)
            data.add(m if par.zero == 2 else 1, *halves[0], backward)
            data.add(1, *halves[1], sum(tally.forward.values()))

    per_param = 2 * (optimizer_bytes(training.precision, training.optimizer, training.autocast) + w) + g
    sharded = dense / (shards if par.zero >= 1 else 1) + routed / (routed_d if par.zero >= 1 else 1)
    optimizer = per_param * sharded / dev.bandwidth
    if shape.fusion != "fused":     # an unfused update's passes beyond one, at the memory-bound kernels' rate
        optimizer += UNFUSED_UPDATE_BYTES[training.optimizer] * sharded / streaming_rate(dev)

    breakdown = {part: m * (tally.forward[part] + tally.backward[part]) for part in PARTS[:3]}
    breakdown |= {"optimizer": optimizer, "bubble": bubble}
    if curves.first_touch is not None:
        breakdown["first_touch"] = (m * (tally.forward["first_touch"] + tally.backward["first_touch"])
                                    + update_fresh(spec, shape, slowest, curves.first_touch))
    adds = 0
    if training.grad_accumulation == "add":     # over the gradients this GPU holds: its shard under ZeRO-2 and 3
        held = dense + routed if par.zero < 2 else dense / shards + routed / routed_d
        adds, moved = accumulation_adds(training.precision, training.autocast, training.fp32_gradients, m)
        breakdown["memory_bound"] += adds * moved * held / streaming_rate(dev)
    if fixed:       # the fixed costs beyond the device's work they overlap (all of them on a CPU)
        update = fixed_seconds(dev, adds * counts.held, counts.held)     # an add a parameter tensor each
        breakdown["overhead"] = m * (micro - work) + host_and_device(dev.gpu, optimizer, update) - optimizer
    per_step = {kind: m for kind in ("tensor", "context", "expert")}   # the others are counted per step
    breakdown |= {f"communication.{kind}": per_step.get(kind, 1) * (k.exposed - k.slowed)
                  for kind, k in traffic.items()}
    breakdown |= {f"overlap.{kind}": per_step.get(kind, 1) * k.slowed for kind, k in traffic.items() if k.slowed}
    return StepTime(
        seconds=sum(breakdown.values()), breakdown=breakdown,
        communication_bytes={kind: per_step.get(kind, 1) * k.bytes for kind, k in traffic.items()},
        communication_seconds={kind: per_step.get(kind, 1) * k.seconds for kind, k in traffic.items()},
        overlaps=overlaps(spec))


def update_fresh(spec: Spec, shape: Shape, stage: int, touch: FirstTouch) -> float:
    """First-touch seconds of the optimizer step's new tensors on a GPU of `stage`: with 16-bit weights and an fp32
    master copy, each parameter's gradient copied to fp32 before its update (profiling/step.py Trainer.update),
    one tensor at a time; the matrices split as the layout splits them, sharded by ZeRO, the norms' vectors left
    out. Nothing where weights are fp32 or gradients kept in fp32 buffers (training.fp32_gradients)."""
    training, par, model = spec.training, spec.parallel, spec.model
    if weight_bytes(training.precision, training.autocast) >= FP32 or training.fp32_gradients:
        return 0.0
    shards, routed_shards = zero_groups(spec) if par.zero >= 1 else (1, 1)
    tensors: list[tuple[float, float]] = []        # (elements, how many)
    if stage == 0:
        tensors.append((model.vocab_size * model.d_model / par.tensor / shards, 1))
        if model.position == "learned":
            tensors.append((model.max_seq_len * model.d_model / shards, 1))
    for ops, count, _, _ in stage_ops(spec, shape, stage):
        for op in ops:
            if not isinstance(op, Gemm) or op.tied:
                continue
            if op.expert:
                tensors.append((op.d_in * op.d_out / par.expert_tensor_degree / routed_shards,
                                count * op.count / par.expert))
            else:
                whole = not op.split or op.replicated   # whole on every tensor rank
                tensors.append((op.d_in * op.d_out / (1 if whole else par.tensor) / shards, count * op.count))
    return touch.seconds_per_byte * sum(how_many * FP32 * n for n, how_many in tensors
                                        if FP32 * n >= touch.from_bytes)


def gather_copies(spec: Spec, shape: Shape, stage: int, params: tuple[float, float]) -> tuple[float, float] | None:
    """Parameters one GPU of `stage` copies out of all-gathers per micro-batch, forward and backward, under
    FSDP2's per-parameter sharding (parallelism.per_parameter_sharding; None without it or without sharded
    weights to gather): each all-gather lands in one buffer that foreach_all_gather_copy_out splits into the
    parameters, on the compute stream. Under ZeRO 3 a layer's weights are gathered in its forward and again in
    its backward; the stage's other parameters (the embedding, the head, the final norm: the root module's) in
    the forward only, kept to the end of backward. Under ZeRO 1-2 (weights kept gathered, as torchtitan's FSDP
    under pipeline parallelism) once a step, spread over its micro-batches. `params`: the stage's (dense,
    routed) parameters on one GPU before ZeRO sharding."""
    par = spec.parallel
    if not (par.per_parameter_sharding and any(n > 1 for n in zero_groups(spec))):   # zero ≥ 1: spec_rules
        return None
    gathered = sum(params)
    if par.zero < 3:
        return gathered / spec.micro_batches, 0.0
    vocabulary, norms = edge_params(spec.model, shape, stage, pipeline_stages(spec))
    return gathered, gathered - (vocabulary / par.tensor + norms)


def host_and_device(gpu: GPU, device_seconds: float, host_seconds: float) -> float:
    """Seconds of work that takes `device_seconds` on the device and `host_seconds` of fixed costs on the host:
    the longer of the two where the host queues kernels and goes on (a GPU: hardware.GPU.queues_kernels), their
    sum where each op runs to its end before the next is issued (a CPU). On an H200 GPT-2 small's step at batch 8
    took 64.9 ms, where the step model calibrated there gives its kernels 40.6 ms and the host's fixed costs 57 ms
    (bench/gpu_results.md): not their sum."""
    if gpu.queues_kernels:
        return max(device_seconds, host_seconds)
    return device_seconds + host_seconds


def streaming_rate(dev: Device) -> float:
    """Bytes/s of the memory-bound kernels: the bandwidth, at their own measured rate where calibrate measured
    one (kernels.memory_bound)."""
    measured = dev.curves.memory_bound
    return dev.bandwidth * (measured.value if measured is not None else 1.0)


def fixed_seconds(dev: Device, launched: float, held: float, looped: float = 0.0, dispatched: float = 0.0) -> float:
    """The fixed cost of `launched` kernels, of updating `held` parameter tensors, of `looped` kernels priced as
    the block loop's and the extra of `dispatched` ops handled by per-op checkpointing's dispatch mode, beyond
    their rooflines, at the device's measured figures (none: nothing). On a CPU they are counted beside the
    roofline, not hidden by it: it runs one operation at a time, and its framework's work between kernels is part
    of each operation's time; a GPU's host works while the device does (host_and_device). A GEMM at a shape its
    library has not met costs more once (kernels.new_shape_seconds, which older calibrations measured); a long run
    meets a dropless expert's row counts again, so its steady state, which the estimate is of, pays nothing for
    them."""
    c = dev.curves
    return sum(count * figure.value for count, figure in ((launched, c.kernel_seconds), (held, c.update_seconds),
                                                           (looped, c.loop_kernel_seconds),
                                                           (dispatched, c.checkpoint_op_seconds))
               if figure is not None)


class Counts(NamedTuple):
    """What one micro-batch launches on a GPU, for the fixed costs (stage_counts)."""

    launched: float     # kernels (ops.kernels)
    held: float         # parameter tensors updated (ops.tensors)
    looped: float = 0.0  # kernels at the block loop's cost: inside the reference's autograd Functions
    #                      (ops.looped) or its plain tensor code (ops.Stream.plain)
    dispatched: float = 0.0  # ops per-op checkpointing's dispatch mode handles, views included (ops.dispatched)


def stage_ops(spec: Spec, shape: Shape, stage: int):  # noqa: ANN201 - a generator of (ops, count, layer, shape)
    """The operations one micro-batch runs on a GPU of pipeline stage `stage`, as (ops, times, layer, its shape):
    the embedding's on the first stage, the head's on the last, the tied table's gradient sum where both are one
    (layer None, the edges' shape), and each group of layers alike (recompute_groups)."""
    stages = pipeline_stages(spec)
    first, last, edges = stage == 0, stage == stage_count(stages) - 1, edge_shape(shape)
    if first:
        yield embedding_ops(spec.model, shape), 1, None, shape
    if last:
        yield head_ops(spec.model, edges), 1, None, edges
    if first and last:
        yield tied_sum_ops(spec.model, edges), 1, None, edges
    for layer, count, layer_shape in recompute_groups(spec.model, shape, stage, stages):
        ops = [op for each in layer_ops(layer, spec.model, layer_shape).values() for op in each]
        yield ops, count, layer, layer_shape


def stage_counts(spec: Spec, shape: Shape, stage: int = 0) -> Counts:
    """Kernels one micro-batch launches on a GPU of pipeline stage `stage` (forward, backward and recomputation),
    the parameter tensors that GPU updates, the kernels priced as the block loop's (ops.looped, ops.Stream.plain),
    and the ops per-op checkpointing's dispatch mode handles (ops.dispatched): over the stage's operations, a routed
    expert's divided by the expert degree. Only walked for a device that has fixed costs."""
    model, ep = spec.model, spec.parallel.expert
    launched = held = loop = dispatched = 0.0

    def add(ops: list[Op], times: int, recompute: bool) -> None:
        nonlocal launched, held, loop
        again = 2 if recompute else 1
        for op in ops:
            (forward, backward), (ahead, behind) = priced(op)
            share = ep if isinstance(op, Gemm) and op.expert else 1
            launched += times * (again * forward + backward) / share
            held += times * tensors(op) / share
            loop += times * (again * ahead + behind)

    for ops, count, layer, layer_shape in stage_ops(spec, shape, stage):
        add(ops, count, layer is not None and layer_shape.recompute == "full")     # the edges are never rerun
        if layer is not None and layer_shape.recompute == "selective_op":
            rerun = rerun_ops(layer, model, layer_shape)
            launched += count * sum(priced(op)[0][0] for op in rerun)
            loop += count * sum(priced(op)[1][0] for op in rerun)
            # torch's selective checkpointing passes every op of the layer's forward through a Python dispatch
            # mode (its policy), views included; its rerun's mode is in the measured cost per op
            ops = [op for each in layer_ops(layer, model, layer_shape).values() for op in each]
            dispatched += count * sum(dispatched_ops(op) / (ep if isinstance(op, Gemm) and op.expert else 1)
                                      for op in ops)
    return Counts(launched, held, loop, dispatched)
