"""The operations of one serving forward pass, each kernel on its own roofline.

The kernels of a forward pass run one after another, so a pass takes the sum of their times, each
max(compute, memory) of its own: a GEMM bounded by its FLOPs while the attention kernel after it is bounded by
its cache reads takes both times, not the larger of the two totals. The operations are the step model's
(costs/ops.py: every weight GEMM with its shape, the norms, activations, rotary and routing as bytes moved),
for `tokens` rows through the model, on one GPU of the tensor-parallel replica:

- a GEMM of m rows by a d_in × d_out weight: FLOPs / (peak × efficiency at its size) against its weights'
  bytes at their kernels' HBM efficiency plus its activations' (m·d_in + m·d_out/t 16-bit elements) at the
  streaming one. The efficiency falls steeply as a GEMM shrinks (the `gemm` curves of data/kernels.yaml,
  measured on square GEMMs against (m·n·k)^(1/3), read at the size the step model reads them at): a 128-token
  prefill runs its GEMMs far below a large GEMM's efficiency. A device without a curve at the compute
  precision keeps one figure for every GEMM (the `matmul` efficiency);
- memory-bound work (norms, residual adds, activations, rotary, MoE routing, the embedding lookup): bytes at
  the streaming efficiency. The training loss is not a serving operation.

Routed experts: `tokens` tokens pick top_k of E experts each (serving engines drop none), touching
E·(1 − (1 − k/E)^tokens) of them in expectation; each touched expert multiplies tokens·k / touched rows and
its weights are read once. Engines run a projection's touched experts as one grouped kernel: its FLOPs and bytes
are all the experts', its efficiency read at the whole kernel's size, its weights' loads added to its compute
(ops.gemm_size, ops.gemm_time). The LM head computes `head_rows`
rows: each prompt's last token in prefill, every sequence's token in decode. Quantized formats store the weights
of the GEMMs fp8 training would run in fp8 (attention, MLP and expert matrices; not the LM head or a router), at
`quantized_bytes` per weight.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from costplan.costs import Shape
from costplan.costs.layers import distinct_layers
from costplan.costs.ops import Core, Gemm, Stream, embedding_ops, gemm_size, gemm_time, head_ops, kernels, layer_ops
from costplan.kernels import Curve, Curves
from costplan.spec import ModelSpec

ACTIVATION_BYTES = 2        # 16-bit activations
# Not the training loss, nor a materialised core's softmax: the step model sizes it for one sequence of `tokens`
# tokens, which a decode step's batch is not (left out, a materialising model's prefill is a little too fast).
SERVING_STREAMS = ("norm", "residual", "activation", "rotary", "routing", "router", "embedding")


@dataclass(frozen=True)
class Kernels:
    """One GPU of the replica: peak and HBM bandwidth with what its kernels reach of them."""

    peak: float                  # FLOP/s at the compute precision
    curve: Curve | None          # GEMM efficiency by size; None: `flat` for every size
    flat: float
    bandwidth: float             # bytes/s, catalogue peak
    memory: float                # HBM efficiency of streaming kernels
    weight_memory: float         # ... of the kernels reading quantized weights
    quantized_bytes: float       # bytes per quantized weight, its scales included
    tensor: int
    kv_tensor: int               # GPUs the key/value heads split over (fewer than tensor where they are copied)


@dataclass
class Pass:
    """Seconds of a pass's GEMMs and memory-bound work on one GPU, and what bounded them."""

    seconds: float = 0.0
    compute: float = 0.0         # the compute side of the kernels that compute bounds
    memory: float = 0.0          # the memory side of the others


def expected_experts(n_experts: int, top_k: int, tokens: float) -> float:
    """Routed experts that `tokens` tokens touch in expectation when each picks top_k of n_experts uniformly:
    each expert is missed by a token with probability 1 − k/E."""
    return n_experts * (1 - (1 - top_k / n_experts) ** tokens)


def operations(model: ModelSpec, tokens: int, head_rows: int,
               cores: bool = False) -> list[tuple[Gemm | Stream | Core, int]]:
    """Every GEMM and memory-bound operation of one forward pass of `tokens` tokens (and with `cores` the
    attention cores), with how many layers repeat it; routed experts as the touched ones with their rows (module
    docstring)."""
    shape = Shape(seq_len=tokens, act_bytes=ACTIVATION_BYTES)
    found: list[tuple[Gemm | Stream | Core, int]] = [(op, 1) for op in embedding_ops(model, shape)]
    for layer, repeats in distinct_layers(model):
        for ops in layer_ops(layer, model, shape).values():
            for op in ops:
                if isinstance(op, Gemm) and op.expert:
                    moe = layer.moe
                    touched = expected_experts(moe.n_experts, moe.top_k, tokens)
                    op = replace(op, rows=tokens * moe.top_k / touched, count=op.count * touched / moe.n_experts)
                if isinstance(op, Gemm) or (isinstance(op, Stream) and op.kind in SERVING_STREAMS) or (
                        cores and isinstance(op, Core)):
                    found.append((op, repeats))
    head = head_ops(model, Shape(seq_len=head_rows, act_bytes=ACTIVATION_BYTES))
    found += [(op, 1) for op in head if isinstance(op, Gemm) or op.kind in SERVING_STREAMS]
    return found


class GemmTime(NamedTuple):
    seconds: float       # what the kernel takes (ops.gemm_time)
    compute: float       # its FLOPs at the curve
    memory: float        # its weights' and activations' bytes at their memory rates


def gemm_seconds(g: Gemm, k: Kernels) -> GemmTime:
    """Time of `g.count` GEMMs of g.rows × d_in by d_in × d_out on one GPU, at the compute precision's peak and
    curve (an fp8 model's 16-bit LM head and router too: a simplification); tensor parallelism splits it, the
    key/value projections over the KV heads at most, and MLA's down-projections not at all (vLLM's
    ReplicatedLinear). Routed experts are one grouped kernel (ops.gemm_size, ops.gemm_time)."""
    if g.count <= 0:
        return GemmTime(0.0, 0.0, 0.0)
    ts = (k.kv_tensor if g.kv else k.tensor) if g.split and not g.replicated else 1
    weights = g.d_in * g.d_out / ts * g.count
    per_weight, efficiency = (k.quantized_bytes, k.weight_memory) if g.fp8 else (ACTIVATION_BYTES, k.memory)
    activations = (g.rows * g.d_in + g.rows * g.d_out / ts) * g.count * ACTIVATION_BYTES / k.memory / k.bandwidth
    loads = weights * per_weight / efficiency / k.bandwidth
    size = gemm_size(g.rows, g.d_in, g.d_out / ts, g.count if g.expert else 1)
    compute = 2 * g.rows * weights / (k.peak * (k.flat if k.curve is None else k.curve.at(size)))
    return GemmTime(gemm_time(compute, loads, activations, g.expert), compute, loads + activations)


def forward(model: ModelSpec, tokens: int, head_rows: int, k: Kernels) -> Pass:
    """The GEMMs and memory-bound work of one forward pass on one GPU of the replica."""
    total = Pass()
    for op, repeats in operations(model, tokens, head_rows):
        if isinstance(op, Gemm):
            seconds, compute, memory = gemm_seconds(op, k)
        else:
            compute, memory = 0.0, op.bytes / (k.tensor if op.split else 1) / (k.bandwidth * k.memory)
            seconds = memory
        total.seconds += repeats * seconds
        if compute >= memory:
            total.compute += repeats * seconds
        else:
            total.memory += repeats * seconds
    return total


def forward_kernels(model: ModelSpec, tokens: int, head_rows: int) -> float:
    """Kernels one forward pass launches as the reference model runs it in eager PyTorch (ops.kernels): what a
    device pays its fixed cost per kernel on where nothing (a CUDA graph) hides it."""
    return sum(repeats * kernels(op)[0] for op, repeats in operations(model, tokens, head_rows, cores=True))


def gemm_weights(model: ModelSpec) -> tuple[int, int]:
    """Weights of every GEMM of the model (all experts), and of those a serving format quantizes."""
    every = quantized = 0
    for op, repeats in operations(model, 1, 1):
        if isinstance(op, Gemm):
            n = op.d_in * op.d_out * (op.count if not op.expert else op.count * model.moe.n_experts / model.moe.top_k)
            every += repeats * n
            quantized += repeats * n if op.fp8 else 0
    return round(every), round(quantized)


def quantized_widths(model: ModelSpec, tensor: int = 1) -> list[float]:
    """The input widths of the matrices a serving format quantizes, each once, ascending, as one GPU of a replica
    of `tensor` GPUs holds them: a row-parallel matrix (an output or down projection, a routed expert's too)
    split along its input, the others whole along it."""
    return sorted({op.d_in / tensor if op.row_parallel and op.split and not op.replicated else op.d_in
                   for op, _ in operations(model, 1, 1) if isinstance(op, Gemm) and op.fp8})


def row_parallel_whole(model: ModelSpec) -> tuple[int, int]:
    """Of the row-parallel GEMMs (output and down projections, routed experts' included), what every tensor rank
    of a serving replica holds whole beyond what training keeps whole (Cost.tensor_whole): the routed experts'
    biases (vLLM's FusedMoE keeps w2_bias whole under tensor parallelism, where training splits them with the
    experts), and the output rows of the matrices a serving format quantizes, each row a scale where the format
    keeps one per row."""
    biases = rows = 0
    shape = Shape(seq_len=1, act_bytes=ACTIVATION_BYTES)
    for layer, repeats in distinct_layers(model):
        for ops in layer_ops(layer, model, shape).values():
            for op in ops:
                if isinstance(op, Gemm) and op.row_parallel:
                    biases += repeats * op.d_out * op.count if op.bias and op.expert else 0
                    rows += repeats * op.d_out * op.count if op.fp8 else 0
    return biases, rows


def copied_weights(model: ModelSpec, kind: str) -> tuple[int, int]:
    """Elements of the projections a serving GPU copies rather than splits, those a serving format quantizes and
    those it keeps in 16 bits (the other matrices and the biases): the key/value ones (`kv`, beyond n_kv_heads
    GPUs), or those whole on every GPU (`replicated`: MLA's down-projections, a MoE router and shared-expert
    gate, vLLM's ReplicatedLinear)."""
    projections = [(op, repeats) for op, repeats in operations(model, 1, 1)
                   if isinstance(op, Gemm) and getattr(op, kind)]
    return (sum(repeats * op.d_in * op.d_out * op.count for op, repeats in projections if op.fp8),
            sum(repeats * op.d_in * op.d_out * op.count for op, repeats in projections if not op.fp8)
            + sum(repeats * op.d_out * op.count for op, repeats in projections if op.bias))


def gemm_flops(model: ModelSpec, tokens: int, head_rows: int) -> float:
    """FLOPs of the pass's weight GEMMs over the whole replica: what the cost model's forward FLOPs hold beyond
    the attention cores."""
    return sum(repeats * op.flops for op, repeats in operations(model, tokens, head_rows) if isinstance(op, Gemm))


def prefill_attention_efficiency(model: ModelSpec, prompt: int, curves: Curves | None, flat: float) -> float:
    """What a prompt's attention kernels reach of the peak, over its layers weighted by their FLOPs: a
    FlashAttention core at the device's forward curve for its head dimension at its keys per query (doubled for
    a causal kernel, the curves' x, as the step model reads them), any other core, or a device without curves,
    at `flat` (the `attention` figure)."""
    flops = seconds = 0.0
    for layer, repeats in distinct_layers(model):
        for op in layer_ops(layer, model, Shape(seq_len=prompt, act_bytes=ACTIVATION_BYTES))["attention"]:
            if isinstance(op, Core) and op.flops > 0:
                curve = curves.attention(False, op.head_dim) if curves is not None and op.flash else None
                flops += repeats * op.flops
                seconds += repeats * op.flops / (curve.at(op.keys) if curve is not None else flat)
    return flops / seconds if seconds else flat
