"""The operations of a forward pass, for the step-time model (costs/step.py): each weight matmul as a GEMM
with its shape, each attention core as one kernel, and the memory-bound work (norms, activations, rotary,
residual adds, routing, the loss) as bytes moved. All for one sequence of seq_len tokens, like `Cost`s; the
step model scales them by the micro-batch and divides them by the parallel degrees.

The GEMMs repeat the shapes the component formulas pass to `linear()` (costs/attention, mlp.py, moe.py,
embedding.py); a test keeps their FLOPs equal to the components' model FLOPs for every attention type, so the
two cannot drift. The attention core's FLOPs are the component's executed forward FLOPs less its
projections, so every attention variant's own pattern (windows, blocks, causal tiles) carries over.

Bytes of memory-bound work count each element read and written once at the activation precision (e), the
fused-kernel reading (an unfused framework moves more: training.fusion eager, below):
- a norm reads its input and writes its output (2·s·d·e), with or without its weight (a vector, negligible
  next to the rows); a residual add reads two and writes one (3·s·d·e), a parallel layer's reads three
  (4·s·d·e; layers.STRUCTURES);
- an activation reads the gate and up projections and writes their product (3·s·f·e; GELU/ReLU 2·s·f·e);
- rotary embedding reads and writes q and k; a materialised softmax reads and writes its scores;
- MoE dispatch gathers each routed row and its combine scatters it back (4 · rows · d · e), the router's
  softmax reads and writes fp32 scores;
- the loss reads the logits and writes fp32 log-probabilities (s · V · (e + 4)), unless training.loss_kernel
  says it runs as torch's eager cross-entropy or Megatron-Core's unfused one (costs/eager.py);
- the embedding lookup reads the rows and writes them (2·s·d·e); its backward zero-fills a dense gradient of each
  table's size before adding the rows into it (V·d·e a micro-batch, whatever its rows: Stream.batched);
Backward moves twice the forward's bytes (a kernel reading the gradient and its saved input, writing one).

On a device whose allocator takes large blocks fresh from the operating system (a CPU: kernels.FirstTouch), the
step model also prices the first touch of each new tensor of at least its threshold: a GEMM's output and its
input's and weight's gradients (costs/step.py Timer.gemm_fresh), and the tensors a Stream lists in `fresh`, which
only the vocabulary-wide ones do: the loss's, the tables' dense gradients and the tied table's gradient sum.
d_model- and d_ff-wide elementwise outputs reach a CPU's 32 MiB only at rows · width · e of it (4,096 tokens of
4,096 in bf16), past what a CPU times.

With training.fusion: eager, norms, activations, rotary, residual adds and the loss move what eager PyTorch's
kernels move forward and backward instead (costs/eager.py), and grouped-query attention's repeat_kv copy and
the sums of gradients where a tensor fans out are added (an MoE layer's experts' and shared expert's too);
training.fused_kernels keeps the ops it names (norm, rotary, activation, loss) as one fused kernel each way in that
eager step (torchtitan's fused_rmsnorm, Liger's kernels), at the fused reading's bytes. Softmax and the embedding
are single kernels either way, and the routing the reference's (eager.routing_kernels), run as plain tensor code
(Stream.plain). A core the reference runs as a Python loop over blocks (windows, chunks,
sparse patterns, MLA, flash attention with sinks: costs/attention/blocks.py) then counts that loop's kernels
(Core.looped), of them its batched matmuls (Core.block_calls), and the bytes its elementwise kernels move over its
score tiles (eager.loop_tiles, in place of the softmax's); AFT-local's band its tiles'.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from costplan.costs import STAT_BYTES, Shape, eager, memo
from costplan.costs.attention.blocks import aft_local_tiles, block_parts, block_rows
from costplan.costs.layers import STRUCTURES, Layer, attention_cost, block_width
from costplan.costs.moe import routed_rows
from costplan.spec import ModelSpec

FLASH_TYPES = ("flash", "mla")              # attention types whose core is a FlashAttention kernel
MATERIALISED_TYPES = ("dense",)             # ... or whose core materialises its scores
# sliding_window, sparse and chunked say which in `kernel`; the AFT variants have no softmax core.


@dataclass(frozen=True, slots=True)
class Gemm:
    """`count` forward products (rows × d_in)·(d_in × d_out) for one sequence."""

    rows: float
    d_in: int
    d_out: int
    count: int = 1
    split: bool = True         # tensor parallelism divides it
    fp8: bool = True           # fp8 training runs it in fp8 (the LM head and the router stay in 16 bits)
    expert: bool = False       # a routed expert's GEMM: expert parallelism gathers its rows from other ranks
    bias: bool = False         # each product adds a bias vector (a parameter tensor of its own)
    tied: bool = False         # its weight is another op's (the LM head tied to the embedding)
    kv: bool = False           # its outputs are the key/value heads (serving copies them beyond n_kv_heads GPUs)
    # whole on every tensor rank (MLA's down-projections: vLLM's serving, Megatron-Core's TE spec in training; a
    # MoE router and shared-expert gate), so split by tokens under sequence parallelism or not at all
    replicated: bool = False
    # tensor parallelism splits its input (an output or down projection: RowParallelLinear), so every rank holds
    # its whole bias and, quantized, a scale per output row
    row_parallel: bool = False

    @property
    def flops(self) -> float:
        return 2 * self.rows * self.d_in * self.d_out * self.count


@dataclass(frozen=True, slots=True)
class Core:
    """An attention core: `flops` executed forward for one sequence, `backward` its backward as executed."""

    flops: float
    backward: float
    keys: float                # keys each query computes, doubled for a causal kernel: the kernel curves' x
    head_dim: int
    flash: bool                # a FlashAttention kernel; otherwise batched matmuls (and a softmax stream)
    conv: bool = False         # AFT-conv's depthwise convolution, not a matmul
    calls: int = 1             # times its kernels run (AFT-local's band: once a tile)
    rerun: bool = False        # selective recomputation reruns its forward kernels in backward (a materialising core)
    looped: tuple[float, float] = (0, 0)   # with training.fusion eager, kernels the reference launches in its
    # Python loop over blocks forward and backward (costs/eager.py loop_kernels), instead of kernels()'s
    block_rows: float = 0.0    # ... and the query rows of its average block, whose matmuls the loop runs one by one
    block_calls: tuple[float, float] = (0, 0)   # ... those matmuls, forward and backward (eager.loop_gemms)


@dataclass(frozen=True, slots=True)
class Stream:
    """Memory-bound work moving `bytes` in the forward pass of one sequence."""

    kind: str
    bytes: float
    split: bool = True         # tensor parallelism divides it; d_model-wide tensors only with sequence parallelism
    backward: float | None = None  # bytes its backward moves; None: twice the forward's (the fused reading)
    kernels: tuple[float, float] = (1, 1)   # kernels it launches forward and backward
    tensors: int = 0           # parameter tensors it holds (a norm's weight and bias)
    looped: tuple[float, float] = (0, 0)    # kernels launched inside an autograd Function, unrecorded (Core.looped)
    views: float = 0           # views its forward dispatches beside its kernels in the reference (ops.dispatched)
    # its kernels are plain tensor code in one function, no module call around each (the reference's MoE
    # routing): priced at the block loop's fixed cost per kernel, not a module kernel's (step.stage_counts)
    plain: bool = False
    # it moves a routed expert row's d_model-wide values, which the expert tensor group that gathers the row holds
    # whole: et/t of a sequence's rows on each GPU, not 1/t (costs/parallel.py)
    routed: bool = False
    # bytes of each tensor it allocates, forward and backward, for the first touch of fresh memory
    # (kernels.FirstTouch); only the vocabulary-wide tensors are listed (the loss's, the tables' gradients)
    fresh: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    batched: bool = True       # its bytes are per sequence; False: per micro-batch (a weight-sized tensor's)


def _eager(kind: str, elements: float, pair: eager.Pair, split: bool = True, kernels: tuple[float, float] = (1, 1),
           tensors: int = 0, looped: tuple[float, float] = (0, 0), views: float = 0,
           allocations: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())) -> Stream:
    """Memory-bound work as eager PyTorch's kernels move it: `pair` per element, forward and backward, and the
    tensors it allocates, `allocations` bytes per element each."""
    fresh = (tuple(elements * b for b in allocations[0]), tuple(elements * b for b in allocations[1]))
    return Stream(kind, elements * pair[0], split, elements * pair[1], kernels, tensors, looped, views, fresh=fresh)


def _norms(kind: str, count: int, width: float, model: ModelSpec, shape: Shape, split: bool = False) -> Stream:
    """`count` norms of the model's kind over `width` features of every position, with their weights, replicated
    on every tensor rank (or, `split`, per head: divided by t): one kernel each way fused, or as
    eager.norm_kernels says."""
    rows, e, held = shape.seq_len * width, shape.act_bytes, count * norm_tensors(model)
    if not shape.eager("norm"):
        return Stream(kind, count * 2 * rows * e, split, None, (count, count), held)
    launched, inside = eager.norm_kernels(model.norm, e), eager.norm_function_kernels(model.norm, e)
    return _eager(kind, count * rows, eager.norm(model.norm, e), split, (count * launched[0], count * launched[1]),
                  held, (count * inside[0], count * inside[1]), count * eager.norm_views(model.norm))


def _fan_out(consumers: int, shape: Shape, model: ModelSpec) -> list[Op]:
    """Eager autograd sums the gradients of a d_model-wide tensor read by several GEMMs, one add per extra one."""
    if shape.fusion != "eager" or consumers < 2:
        return []
    wide = shape.seq_len * model.d_model * shape.act_bytes
    return [Stream("gradient_sum", 0.0, False, (consumers - 1) * eager.ADD * wide, (0, consumers - 1))]


Op = Gemm | Core | Stream


def kernels(op: Op) -> tuple[float, float]:
    """Kernels an operation launches forward and backward, as the reference model runs it in eager PyTorch: a
    GEMM one per product forward (its bias added inside) and two backward (dgrad, wgrad; a loop over experts
    launches one per expert), and a third summing a bias's gradient; a
    FlashAttention core one each way, a materialising core its two batched GEMMs forward and four backward; a
    stream what it says (one each way unless its constructor counts more)."""
    if isinstance(op, Gemm):
        return op.count, (3 if op.bias else 2) * op.count
    if isinstance(op, Core):   # a depthwise convolution's backward is one call for both gradients
        if not op.flops or op.looped != (0, 0):
            return 0, 0
        return (1, 1) if op.flash else (2, 2) if op.conv else (2 * op.calls, (4 + 2 * op.rerun) * op.calls)
    return op.kernels


def looped(op: Op) -> tuple[float, float]:
    """Kernels an operation launches inside one of the reference's autograd Functions, forward and backward: its
    Python loop over attention blocks, its RMSNorm on a device without a fused kernel (eager.py)."""
    return (0, 0) if isinstance(op, Gemm) else op.looped


def priced(op: Op) -> tuple[tuple[float, float], tuple[float, float]]:
    """An operation's kernels forward and backward by the fixed cost they take: a module kernel's, and the block
    loop's (those inside an autograd Function, and all of a plain tensor code's: Stream.plain)."""
    if isinstance(op, Stream) and op.plain:
        (forward, backward), (ahead, behind) = op.kernels, op.looped
        return (0, 0), (forward + ahead, backward + behind)
    return kernels(op), looped(op)


def dispatched(op: Op) -> float:
    """Ops an operation's forward dispatches in the reference, views included: what a dispatch mode handles (per-op
    checkpointing's, step.stage_counts). A linear adds its weight's transpose and its input's and output's
    reshapes to its product; SDPA the reshapes and transposes of q, k, v and the output (eager.py)."""
    if isinstance(op, Gemm):
        return op.count * (1 + eager.LINEAR_VIEWS)
    if isinstance(op, Core) and op.flash and op.looped == (0, 0):
        return 1 + eager.SDPA_VIEWS
    if looped(op) != (0, 0):   # an autograd Function: its node is no op; the kernels inside it are
        return looped(op)[0] + (op.views if isinstance(op, Stream) else 0)
    return kernels(op)[0] + (op.views if isinstance(op, Stream) else 0)


def tensors(op: Op) -> int:
    """Parameter tensors an operation holds: the optimizer updates each one on its own (profiling/step.py)."""
    if isinstance(op, Gemm):
        return op.count * ((0 if op.tied else 1) + (1 if op.bias else 0))
    return op.tensors if isinstance(op, Stream) else 0


def norm_tensors(model: ModelSpec) -> int:
    """A norm's parameter tensors: LayerNorm's weight and bias, RMSNorm's weight, none for the parameter-free one."""
    return {"layernorm": 2, "rmsnorm": 1}.get(model.norm, 0)


def gemm_size(rows: float, d_in: int, d_out: float, groups: float = 1) -> float:
    """Where a GEMM's efficiency is read on the `gemm` curves: (m·k·n)^(1/3). A layer's routed experts run as one
    grouped kernel per projection (vLLM's fused_moe, DeepGEMM, Megatron's GroupedMLP, torch._grouped_mm), read as
    the curves place a batched GEMM, at the whole kernel's (groups·m·k·n)^(1/3): its groups fill the GPU together,
    as one GEMM of that volume would (gemm_time adds what they do not share)."""
    return (rows * d_in * d_out * groups) ** (1 / 3)


def gemm_time(compute: float, weights: float, activations: float, grouped: bool) -> float:
    """A GEMM's seconds from its compute and from streaming its weights and its activations at their memory rates.
    One GEMM: the roofline, max(compute, weights + activations). A grouped kernel loads each group's weights before
    that group's few rows compute on them, and the loads do not hide behind the compute: weights + max(compute,
    activations). Against published grouped-kernel timings (bench/grouped_gemm_results.md), measured over
    predicted: vLLM's bf16 fused_moe 0.85-1.37 (32-384 rows an expert, A100, H100, H200), CUTLASS and
    torch._grouped_mm bf16 0.94-1.16; DeepGEMM's fp8 0.63-1.03, it hides more of its loads. Reading each group at
    its own size with the roofline (as before) put those at 0.37-1.39: a single small GEMM's curve point is mostly
    its launch and fill, which a grouped kernel pays once."""
    if grouped:
        return weights + max(compute, activations)
    return max(compute, weights + activations)


def _projections(layer: Layer, model: ModelSpec, s: int) -> list[Gemm]:
    """The attention block's weight matmuls, as the attention modules pass them to linear()."""
    d, a = model.d_model, layer.attention
    if a.type == "mla":
        d_qk, latent = a.qk_nope_head_dim + a.qk_rope_head_dim, a.kv_lora_rank + a.qk_rope_head_dim
        heads = model.n_heads
        queries = ([Gemm(s, d, a.q_lora_rank, replicated=True), Gemm(s, a.q_lora_rank, heads * d_qk)] if a.q_lora_rank
                   else [Gemm(s, d, heads * d_qk)])
        return queries + [Gemm(s, d, latent, replicated=True),
                          Gemm(s, a.kv_lora_rank, heads * (a.qk_nope_head_dim + a.v_head_dim)),
                          Gemm(s, heads * a.v_head_dim, d, row_parallel=True)]
    qkv, o = bool(model.qkv_bias), bool(model.o_bias)
    if a.type.startswith("aft"):
        return [Gemm(s, d, model.q_width, count=3, bias=qkv), Gemm(s, model.q_width, d, bias=o, row_parallel=True)]
    return [Gemm(s, d, model.q_width, bias=qkv), Gemm(s, d, model.kv_width, count=2, bias=qkv, kv=True),
            Gemm(s, model.q_width, d, bias=o, row_parallel=True)]


def _is_flash(layer: Layer) -> bool:
    a = layer.attention
    return a.type in FLASH_TYPES or getattr(a, "kernel", None) == "flash"


class Loop(NamedTuple):
    """The reference's block loop of one layer, as the step model times it (none: all zero)."""

    kernels: tuple[float, float] = (0, 0)   # forward and backward, its forward again where it reruns
    rows: float = 0.0                       # query rows of its average block
    gemms: tuple[float, float] = (0, 0)     # of its kernels, the batched matmuls
    tiles: tuple[float, float] = (0, 0)     # bytes per score element its elementwise kernels move


def _block_loop(layer: Layer, model: ModelSpec, shape: Shape, rerun: bool) -> Loop:
    """The reference's block loop, its forward again where `rerun` (selective recomputation of a materialising
    core); none unless training.fusion is eager: a fused kernel is one."""
    a = layer.attention
    parts = block_parts(a, model, shape.seq_len) if shape.fusion == "eager" else None
    if not parts:
        return Loop()
    materialize = getattr(a, "materializes", False)     # MLA's core is a flash kernel
    mla = a.type == "mla"           # its core takes neither ALiBi nor sinks, and has a K/V head per query head
    alibi, sinks = model.position == "alibi" and not mla, model.attention_sinks and not mla
    grouped = model.n_kv_heads != model.n_heads and not mla
    forward, backward = eager.loop_kernels(parts, materialize, alibi, sinks, grouped)
    gemms = eager.loop_gemms(parts, materialize)
    tiles = eager.loop_tiles(materialize, alibi, sinks, shape.act_bytes)
    again = 1 if rerun else 0
    return Loop((forward, backward + again * forward), block_rows(parts, shape.seq_len),
                (gemms[0], gemms[1] + again * gemms[0]), (tiles[0], tiles[1] + again * tiles[0]))


def _latent_norms(a, model: ModelSpec, shape: Shape) -> Stream:  # noqa: ANN001 - LatentAttention
    """MLA's norms of its compressed query (with q_lora_rank) and key-value latents (DeepSeek-V2 §2.1), the
    model's norm kind, on the down projections' replicated outputs."""
    widths = [w for w in (a.q_lora_rank, a.kv_lora_rank) if w]
    return _norms("latent_norm", len(widths), sum(widths) / len(widths), model, shape)


def _eager_attention(a, model: ModelSpec, shape: Shape, scores: float, band: tuple[int, int],  # noqa: ANN001
                     rerun: bool) -> list[Op]:
    """What eager PyTorch runs beside an attention block's GEMMs and core: grouped-query attention's repeat_kv,
    AFT's elementwise work (`band`: AFT-local's tiles and whole slices), the explicit core's scale, mask and
    layout copies (`scores`: pairs over all heads)."""
    s, e = shape.seq_len, shape.act_bytes
    ops: list[Op] = []
    if a.type not in ("mla", "dense") and not a.type.startswith("aft"):   # the explicit core folds groups
        # torchtitan's copies of k and v (bytes); the reference launches none (eager.py: kernels are its own)
        ops.append(_eager("repeat_kv", s, eager.repeat_kv(model.q_width, model.kv_width, e), kernels=(0, 0)))
    if a.type.startswith("aft"):
        mixing = eager.aft_kernels(a.type)
        if a.type == "aft_local":
            extra = eager.aft_local_kernels(*band)
            mixing = (mixing[0] + extra[0], mixing[1] + extra[1])
        ops += [_eager("aft_input", s * model.d_model, eager.aft_input(e), split=False, kernels=(1, 0)),
                _eager("aft_mixing", s * model.q_width, eager.aft(a.type, e), kernels=mixing)]
    if a.type == "dense":
        alibi, grouped = model.position == "alibi", model.q_width != model.kv_width
        sinks = model.attention_sinks

        def again(pair: eager.Pair) -> eager.Pair:    # selective recomputation reruns the forward's in backward
            return (pair[0], pair[1] + pair[0]) if rerun else pair
        ops += [_eager("scores", scores, again(eager.explicit_scores(alibi, sinks, e)),
                       kernels=eager.explicit_scores_kernels(alibi, sinks, rerun)),
                _eager("layout", s, again(eager.explicit_layout(model.q_width, model.kv_width, model.n_kv_heads, e)),
                       kernels=eager.explicit_layout_kernels(grouped, model.n_kv_heads, rerun))]
    return ops


def attention_ops(layer: Layer, model: ModelSpec, shape: Shape) -> list[Op]:
    s, e, a = shape.seq_len, shape.act_bytes, layer.attention
    gemms = _projections(layer, model, s)
    cost = attention_cost(a, model, shape)
    core_fwd = cost.hw_fwd - sum(g.flops for g in gemms)
    core_bwd = cost.hw_flops - core_fwd - 3 * sum(g.flops for g in gemms)   # with its own recomputation
    head_dim = getattr(a, "qk_nope_head_dim", 0) + getattr(a, "qk_rope_head_dim", 0) or model.head_dim
    d_v = getattr(a, "v_head_dim", model.head_dim)
    heads = model.n_heads
    pairs = core_fwd / (2 * heads * (head_dim + d_v)) if core_fwd else 0
    flash = _is_flash(layer)
    eager_run = shape.fusion == "eager"
    tiles, whole = (aft_local_tiles(s, a.window, model.max_seq_len) if a.type == "aft_local" and eager_run
                    else (1, 0))
    softmax = not flash and core_fwd and not a.type.startswith("aft")   # a materialising softmax core
    rerun = bool(softmax) and shape.recompute == "selective"           # checkpointed: its forward again
    loop = _block_loop(layer, model, shape, rerun)
    ops: list[Op] = [*gemms, Core(core_fwd, core_bwd, 2 * pairs / s if flash else pairs / s, head_dim, flash,
                                  conv=a.type == "aft_conv", calls=tiles, rerun=rerun, looped=loop.kernels,
                                  block_rows=loop.rows, block_calls=loop.gemms)]
    if loop.kernels != (0, 0):      # its softmax and the rest over its score tiles (their kernels are the Core's)
        scores = heads * pairs
        ops.append(Stream("block_tiles", scores * loop.tiles[0], backward=scores * loop.tiles[1], kernels=(0, 0)))
    elif softmax:
        # its backward at twice the forward's bytes (the fused reading's convention), and under selective
        # recomputation its forward again first (Korthikanti et al. §5)
        ops.append(Stream("softmax", 2 * heads * pairs * e, backward=(2 + rerun) * 2 * heads * pairs * e,
                          kernels=(1, 1 + rerun)))
    rotated = s * (model.q_width + model.kv_width)
    if model.position == "rope" and getattr(a, "rope", True):     # a NoPE layer (rope: false) rotates nothing
        ops.append(_eager("rotary", rotated, eager.rotary(e), kernels=eager.rotary_kernels(e),
                          views=eager.ROTARY_VIEWS)
                   if shape.eager("rotary") else Stream("rotary", 2 * rotated * e, kernels=(2, 2)))   # q and k
    if a.type == "mla":
        ops.append(_latent_norms(a, model, shape))
    if model.qk_norm != "none":      # the queries' and keys' norms (per head or over all heads), split with them
        ops.append(_norms("qk_norm", 2, (model.q_width + model.kv_width) / 2, model, shape, split=True))
    if eager_run:
        ops += _eager_attention(a, model, shape, heads * pairs, (tiles, whole), rerun)
    # the projections reading the normed input (every list ends with the output projection)
    return ops + _fan_out(sum(g.count for g in gemms[:-1] if g.d_in == model.d_model), shape, model)


def _mlp(model: ModelSpec, d_ff: int, rows: float, count: int = 1, expert: bool = False) -> list[Op]:
    d, up, bias = model.d_model, 2 if model.gated else 1, bool(model.bias)
    return [Gemm(rows, d, d_ff, count=count * up, expert=expert, bias=bias),
            Gemm(rows, d_ff, d, count=count, expert=expert, bias=bias, row_parallel=True)]


def _activation(model: ModelSpec, d_ff: int, rows: float, shape: Shape, calls: int = 1) -> Stream:
    """The MLP's activation over `rows` rows, run as `calls` calls (the reference's experts each run their own)."""
    e = shape.act_bytes
    if shape.eager("activation"):
        # a gated unit's activation and product forward; backward the product's two gradients and the activation's
        kernels = (2 * calls, 3 * calls) if model.gated else (calls, calls)
        return _eager("activation", rows * d_ff, eager.activation(model.gated, e), kernels=kernels)
    return Stream("activation", (3 if model.gated else 2) * rows * d_ff * e, kernels=(calls, calls))


def mlp_ops(layer: Layer, model: ModelSpec, shape: Shape) -> list[Op]:
    s, e, d = shape.seq_len, shape.act_bytes, model.d_model
    moe = layer.moe
    if moe is None:
        return [*_mlp(model, layer.d_ff, s), _activation(model, layer.d_ff, s, shape),
                *_fan_out(2 if model.gated else 1, shape, model)]
    rows, experts, eager_run = routed_rows(moe, s), moe.n_experts, shape.fusion == "eager"
    # the router's softmax and top-k, the dispatch's gather and the combine's scatter-add (eager: as the
    # reference launches them, eager.routing_kernels)
    routing = (eager.routing_kernels(not moe.capacity_factor, experts, e) if eager_run else (4, 4))
    ops: list[Op] = [Gemm(s, d, experts, replicated=True, fp8=False),
                     *_mlp(model, moe.d_ff_expert, rows / experts, experts, expert=True),
                     _activation(model, moe.d_ff_expert, rows, shape, experts if eager_run else 1),
                     # the dispatch's gathered rows and the combine's weighted outputs; the router's probabilities
                     Stream("routing", 4 * rows * d * e, kernels=routing, plain=eager_run, routed=True),
                     Stream("router", 2 * s * experts * STAT_BYTES, kernels=(0, 0))]
    if eager_run and model.gated:       # each expert's rows feed its two first GEMMs: their gradients summed
        ops.append(Stream("gradient_sum", 0.0, False, eager.ADD * rows * d * e, (0, experts), routed=True))
    if moe.n_shared_experts:
        gate = 1 if moe.shared_expert_gate else 0
        ops += [*_mlp(model, moe.d_ff_shared, s), _activation(model, moe.d_ff_shared, s, shape)]
        if gate:
            ops.append(Gemm(s, d, 1, replicated=True, fp8=False))
        if eager_run:
            # the shared output's add (and its gate's product); the layer's input read by the routing, the
            # shared GEMMs and the gate: their gradients summed
            wide = s * d * e
            ops.append(Stream("shared_output", (1 + gate) * eager.ADD * wide, False, gate * (2 * eager.ADD + 1) * wide,
                              (1 + gate * eager.SHARED_GATE_KERNELS[0], gate * eager.SHARED_GATE_KERNELS[1])))
            ops += _fan_out(1 + (2 if model.gated else 1) + gate, shape, model)
    return ops


def norm_ops(model: ModelSpec, shape: Shape) -> list[Op]:
    """A layer's norms and residual adds (as model.block wires them): d_model wide, whole on every tensor rank."""
    wide = shape.seq_len * model.d_model * shape.act_bytes
    structure = STRUCTURES[model.block]
    norms = _norms("norm", structure.norms, model.d_model, model, shape)
    if shape.fusion == "eager":
        # every structure's PyTorch code adds twice, and backward sums gradients twice: where x and h each feed
        # a norm and an add; where a parallel layer's x feeds two norms and the add; where its x feeds the
        # shared norm and the add and the normed x feeds attention and MLP
        return [norms, Stream("residual", 2 * eager.ADD * wide, False, 2 * eager.ADD * wide, (2, 0))]
    # an add's backward passes its gradient through; where the residual stream fans out into a norm and the add,
    # backward sums the two gradients, an add as the forward's (eager PyTorch's count above)
    return [norms, Stream("residual", structure.residual * wide, False, structure.residual * wide, (2, 0))]


def layer_ops(layer: Layer, model: ModelSpec, shape: Shape) -> dict[str, list[Op]]:
    """One layer's forward operations by component (shared inside memo.shared(), by widths)."""
    width = block_width(model)
    return memo.cached(("ops", memo.token(layer), memo.token(width), memo.token(shape)),
                       lambda: _layer_ops(layer, width, shape))


def _layer_ops(layer: Layer, model: ModelSpec, shape: Shape) -> dict[str, list[Op]]:
    return {"attention": attention_ops(layer, model, shape),
            "moe" if layer.moe is not None else "mlp": mlp_ops(layer, model, shape),
            "norms": norm_ops(model, shape)}


def embedding_ops(model: ModelSpec, shape: Shape) -> list[Op]:
    """The embedding's operations (shared inside memo.shared(), by widths, as a layer's are)."""
    return memo.cached(("embedding ops", memo.token(block_width(model)), memo.token(shape)),
                       lambda: _embedding_ops(model, shape))


def _embedding_ops(model: ModelSpec, shape: Shape) -> list[Op]:
    """The lookups, and their tables' gradients: torch's dense embedding backward zero-fills a gradient of each
    table's size (in the activations' dtype) before adding the looked-up rows into it, whatever the rows; the
    token table split over tensor ranks (vocabulary-parallel), the positions' not."""
    lookups = 2 if model.position == "learned" else 1          # the token table, and the positions' own
    e = shape.act_bytes
    ops: list[Op] = [Stream("embedding", 2 * shape.seq_len * model.d_model * e, False, None, (lookups, lookups),
                            lookups)]
    for rows, split in ((model.vocab_size, True), *([(model.max_seq_len, False)] if lookups == 2 else [])):
        table = rows * model.d_model * e
        ops.append(Stream("embedding_gradient", 0.0, split, table, (0, 0), fresh=((), (table,)), batched=False))
    return ops


def tied_sum_ops(model: ModelSpec, shape: Shape) -> list[Op]:
    """Where the head's weight is the token table and both run on one GPU, eager autograd adds the head's gradient
    and the lookup's (one add, reading two and writing one, a new tensor); nothing otherwise."""
    if not model.tie_embeddings or shape.fusion != "eager":
        return []
    table = model.vocab_size * model.d_model * shape.act_bytes
    return [Stream("tied_gradient_sum", 0.0, True, eager.ADD * table, (0, 1), fresh=((), (table,)), batched=False)]


def head_ops(model: ModelSpec, shape: Shape) -> list[Op]:
    """The final norm, the LM head and the loss (shared inside memo.shared(), by widths)."""
    return memo.cached(("head ops", memo.token(block_width(model)), memo.token(shape)), lambda: _head_ops(model, shape))


def _head_ops(model: ModelSpec, shape: Shape) -> list[Op]:
    s, e = shape.seq_len, shape.act_bytes
    head = Gemm(s, model.d_model, model.vocab_size, fp8=False, bias=model.head_bias, tied=model.tie_embeddings)
    norm = _norms("norm", 1, model.d_model, model, shape)
    kernel, logits = shape.loss(), s * model.vocab_size
    if kernel == "eager":
        return [head, _eager("loss", logits, eager.loss(e), kernels=eager.loss_kernels(e),
                             allocations=eager.loss_allocations(e)), norm]
    if kernel == "vocab_parallel":
        return [head, _eager("loss", logits, eager.vocab_parallel_loss(e),
                             kernels=eager.vocab_parallel_loss_kernels(e),
                             allocations=eager.vocab_parallel_loss_allocations(e)), norm]
    # log-softmax, NLL: fp32 log-probabilities forward, the logits' gradient backward
    return [head, Stream("loss", logits * (e + STAT_BYTES), kernels=(2, 2),
                         fresh=((logits * STAT_BYTES,), (logits * e,))), norm]
