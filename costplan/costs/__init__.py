"""The analytic cost model: pure Python, no torch. Conventions, written down once:

1. A FLOP is one multiply or one add; a multiply-accumulate is 2 FLOPs (Kaplan et al. 2020 §2.1, PaLM App. B).
2. Headline FLOPs are matmul FLOPs. Softmax, norms, activations, bias adds and the embedding lookup are not
   in them. The LM head is a matmul and counts (tied or not).
3. Attention counts every key a query may see under its pattern. For dense and flash attention that is the
   whole context of `seq_len` keys, even though the model is causal: the convention of PaLM's MFU (6N + 12LHQT),
   torchtitan, nanoGPT and torch's FLOP counter. What a causal kernel actually skips is in hardware FLOPs only.
4. Training model FLOPs = 3 × forward: backward is exactly two matmuls of the forward's size per weight matmul
   (dgrad, wgrad), and four per two for the attention core. Hardware FLOPs add what the GPU really executes
   on top: activation recomputation, FlashAttention's backward recompute of QKᵀ (2.5 × forward for the core,
   Dao 2023 §4.1), and the fully masked tiles a causal flash kernel skips.
5. Parameters are unique tensors: a tied LM head counts once, under `embedding`. `embedding` holds the token
   (and learned position) embeddings; everything else is non-embedding, the LM head included (Kaplan counts
   it only because GPT-2 ties it).
6. Costs are computed for one sequence of `seq_len` tokens (batch 1); per-token figures divide by seq_len and
   a micro-batch multiplies by its size. Bytes are bytes; only report.py turns them into GiB.
7. Activation memory is what autograd saves for backward in the reference implementation (no dropout):
   each saved tensor counted once even when several ops save it. With dropout masks added this is
   Korthikanti et al. 2022, §4: 34·sbh + 5·a·s²·b per layer for GPT-style layers.

8. What a FLOP counter sees is what the reference PyTorch model executes: `hw_fwd` and `hw_flops` computed with
   `Shape(skip_masked_tiles=False)`. That differs from model FLOPs where the kernel does other work than the
   convention counts: banded tiles of windowed and sparse patterns, padded expert buffers under a capacity
   factor, flash attention's backward recompute. Only flash kernels skip masked tiles internally, invisibly to
   a counter; the flag turns that skipping off.

Each component is a function from (spec part, Shape) to a `Cost`, built from `linear()` and `matmul()`, which
hold the factor 2 in one place.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import NamedTuple


class Cost(NamedTuple):
    """What one part of the model costs for one sequence of seq_len tokens (batch 1). A named tuple, not a frozen
    dataclass: an estimate builds and adds hundreds, and a tuple is built in one C call where a frozen dataclass
    sets each field through object.__setattr__ (2.4 µs a Cost against 0.2 on 2 cores of an Intel Xeon)."""

    params: int = 0
    inactive_params: int = 0  # parameters a token does not touch (the routed experts it is not sent to)
    routed_params: int = 0    # parameters of routed experts: what expert parallelism splits
    # Parameters of a component tensor parallelism splits that every tensor rank keeps whole nonetheless: MLA's
    # down-projections and their norms, which Megatron-Core's Transformer Engine spec builds duplicated
    # (TELinear parallel_mode="duplicated"), as vLLM does for serving; a MoE router and shared-expert gate; a
    # row-parallel linear's bias (linear); the learned position table (embedding), AFT's pairwise bias; q and k
    # norms over head_dim (Megatron-Core's q_layernorm, k_layernorm).
    tensor_whole: int = 0
    flops: int = 0            # forward matmul FLOPs (the model FLOPs convention)
    hw_fwd: int = 0           # forward FLOPs as executed (a causal flash kernel skips masked tiles)
    hw_flops: int = 0         # training FLOPs as executed: forward + backward + recomputation
    activations: int = 0      # bytes saved for backward, per sequence
    shared_activations: int = 0  # bytes saved for backward once per micro-batch (tensors computed from weights)
    # The part of `activations` held in d_model-wide (or per-token) tensors: layer and block inputs, the norms,
    # token ids, MLA's latents. Korthikanti et al. 2022 §4.2.2: tensor parallelism leaves these whole on every
    # rank, sequence parallelism splits them; everything else (per-head, d_ff-wide, per-vocabulary) tensor
    # parallelism splits.
    act_d_model: int = 0
    # The part of `activations` held per routed row of a mixture of experts (its gathered input and output, gate
    # weight and indices): after the all-to-all each expert tensor rank holds the rows of its experts whole
    # (costs/parallel.py), where tensor parallelism alone would split them.
    act_routed_rows: int = 0
    # Bytes live only around the peak of a step, not saved for backward: what the loss makes as backward starts
    # (embedding.py loss_bytes: torch's fp32 gradients of its log-softmax and logits), with every saved
    # activation; or, where that moment is higher, what the last materialised or eager softmax holds beyond
    # (components.py core_transient, costs/implementation/model.py eager_peak).
    workspace: int = 0
    kv_cache: int = 0         # inference K/V cache bytes per cached token
    kv_cache_seq: int = 0     # inference cache bytes for one sequence of seq_len tokens (windows, states)
    factored: int = 0         # elements of Adafactor's factored second moment (rows + cols per matrix)
    # Of them, the matrices' row and column factors: torch's Adafactor allocates them with new_zeros, which under
    # FSDP2 makes a replicated DTensor, so every data rank holds them whole (a vector's moment is sharded).
    factors: int = 0
    # Weight matrices of matmuls with activations, which a serving format may quantize (costs/serving.py):
    # how many, their output rows (one int8 scale each) and their elements; biases and vectors are not in them.
    matrices: int = 0
    matrix_rows: int = 0
    matrix_params: int = 0

    @property
    def active_params(self) -> int:
        """Parameters a token touches."""
        return self.params - self.inactive_params

    def __add__(self, other: Cost) -> Cost:  # type: ignore[override] - fieldwise, not concatenation
        # Adding ZERO changes no field (they are counts of ints).
        if other is ZERO:
            return self
        if self is ZERO:
            return other
        return _new(Cost, map(operator.add, self, other))

    def replace(self, **changes: int) -> Cost:
        """A copy with these fields changed."""
        values = list(self)
        for name, value in changes.items():
            values[_INDEX[name]] = value
        return _new(Cost, values)

    def plus(self, other: Cost, n: int) -> Cost:
        """self + other * n, building one Cost instead of two."""
        return _new(Cost, [a + b * n for a, b in zip(self, other)])

    def __mul__(self, n: int) -> Cost:  # type: ignore[override] - fieldwise, not repetition
        return _new(Cost, [value * n for value in self])

    __rmul__ = __mul__


# A Cost from an iterable of every field's value, in one C call.
_new = tuple.__new__
_INDEX = {name: i for i, name in enumerate(Cost._fields)}


ZERO = Cost()


def total(costs) -> Cost:
    """The sum of an iterable of Costs."""
    result = ZERO
    for cost in costs:
        result = result + cost
    return result


def matmul(batch: int, m: int, k: int, n: int) -> int:
    """Forward FLOPs of `batch` products of (m×k)·(k×n): one multiply and one add per term."""
    return 2 * batch * m * k * n


def linear(tokens: int, d_in: int, d_out: int, bias: bool = False, row_parallel: bool = False) -> Cost:
    """y = x·W (+ b) for `tokens` rows: x (tokens × d_in), W (d_in × d_out); the bias add is not a matmul FLOP.
    A row-parallel linear (a block's output projection: attention's, the MLP's down) adds its bias after the
    tensor ranks' partial sums are reduced, so each rank keeps the bias whole (Megatron's RowParallelLinear)."""
    flops = matmul(1, tokens, d_in, d_out)
    return Cost(
        params=d_in * d_out + (d_out if bias else 0),
        tensor_whole=d_out if bias and row_parallel else 0,
        flops=flops,
        hw_fwd=flops,
        hw_flops=3 * flops,  # forward, dgrad, wgrad
        factored=d_in + d_out + (d_out if bias else 0),
        factors=d_in + d_out,
        matrices=1,
        matrix_rows=d_out,
        matrix_params=d_in * d_out,
    )


def unquantized(cost: Cost) -> Cost:
    """The same cost with its matrices marked as kept in 16 bits by every serving format (a MoE router)."""
    return cost.replace(matrices=0, matrix_rows=0, matrix_params=0)


def vector(n: int) -> Cost:
    """A parameter vector of n elements (a norm weight or bias): no matmul FLOPs."""
    return Cost(params=n, factored=n)


@dataclass(frozen=True, slots=True)
class Shape:
    """What every component needs besides its own spec: the sequence and how activations are stored."""

    seq_len: int
    act_bytes: int            # bytes per saved activation element: 2 for 16-bit training, 4 for fp32
    recompute: str = "none"   # none | selective | selective_op | full (training.recompute)
    recompute_layers: int | None = None   # under full: the first N layers of each stage (layers.recompute_groups)
    # Hardware FLOPs count only the tiles a causal kernel computes. FLOP counters (torch's among them) count
    # the whole square; the profiler compares against them with this off.
    skip_masked_tiles: bool = True
    # Whose modules save the activations (training.implementation): fused kernels, or transformers' sdpa / eager.
    implementation: str = "fused"
    autocast: bool = False    # fp32 weights and residual stream, 16-bit copies cast per matmul (training.autocast)
    modules: str = "llama"    # whose transformers modules sdpa / eager describe (training.modules)
    activation: str | None = None   # the activation those modules run, where the spec says (training.activation)
    fusion: str = "fused"     # memory-bound kernels fused, eager PyTorch, or blocks compiled (training.fusion)
    fused_kernels: tuple[str, ...] = ()   # ops one fused kernel each in an eager step (training.fused_kernels)
    loss_kernel: str | None = None        # how the loss runs, where the spec says (training.loss_kernel)
    fp8_saved_inputs: bool = False        # linears save fp8 copies of their inputs (training.fp8_saved_inputs)

    def eager(self, op: str) -> bool:
        """Whether `op` (a norm, rotary, the activation, the loss) runs as eager PyTorch's kernels."""
        return self.fusion == "eager" and op not in self.fused_kernels

    def loss(self) -> str:
        """How the loss over the vocabulary runs: fused, eager, vocab_parallel or transformer_engine
        (training.loss_kernel, else as the step's fusion runs it)."""
        return self.loss_kernel if self.loss_kernel is not None else fusion_loss(self.fusion, self.fused_kernels)

    def loss_memory(self) -> str:
        """What the loss keeps for backward (costs/embedding.py loss_bytes): "torch", torch's cross-entropy (an
        eager loss, and transformers' modules); "softmax", Megatron-Core's kernels, fused or vocabulary-parallel,
        which save an fp32 softmax and make it the gradient in place; "gradient", Liger's kernel where
        fused_kernels names the loss in an eager or compiled step (the spec rules allow fused_kernels only in
        such a step, and not beside a loss_kernel), and Transformer Engine's, which save the 16-bit logits
        themselves and write the gradient over them."""
        if self.implementation != "fused" or self.loss() == "eager":
            return "torch"
        return "gradient" if "loss" in self.fused_kernels or self.loss() == "transformer_engine" else "softmax"


def fusion_loss(fusion: str, fused_kernels: tuple[str, ...] | list[str]) -> str:
    """The loss kernel training.fusion implies: eager outside a fused step (compiled blocks leave it eager too),
    unless training.fused_kernels names it."""
    return "eager" if fusion != "fused" and "loss" not in fused_kernels else "fused"


STAT_BYTES = 4                # norm statistics, softmax log-sum-exp and the loss are kept in fp32
INDEX_BYTES = 8               # token ids and targets are int64
FP8_BYTES = 1                 # an fp8 copy of a linear's input (training.fp8_saved_inputs)
