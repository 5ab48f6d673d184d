"""Bytes that eager PyTorch moves for the memory-bound work of a training step (training.fusion: eager), for
the step model (costs/ops.py). Each figure is (forward, backward) bytes per element of the tensor the op works
on, counted as eager PyTorch runs it: every aten kernel reads its inputs and writes its output in HBM, views
(reshape, view_as_complex, transpose, expand) move nothing, and backward is what autograd's formulas for those
kernels run (torch/csrc/autograd/FunctionsManual.cpp, derivatives.yaml), including the add that sums the
gradients of a tensor used twice. Per-row statistics and weight vectors are left out: 1/width of the rows.

The modules are torchtitan's Llama (torchtitan/models/llama/model.py and models/norms.py, the versions of 2024
its published runs used) trained in the activation dtype `e` (FSDP2's param_dtype; fp32 is F = 4 bytes):
- RMSNorm (norms.py RMSNorm, also transformers' LlamaRMSNorm): `(x.float() * rsqrt(x.float().pow(2).mean(-1)
  + eps)).type_as(x) * weight`. Forward: cast up (e + F), pow (2F), mean (reads F), multiply by 1/rms (2F), cast
  down (F + e), multiply by the weight (2e): 4e + 7F. Backward: weight multiply (dx = g·w: 2e; dw = sum(g·y):
  3e + e), cast (e + F), 1/rms multiply (dx = g·r: 2F; dr = sum(g·x): 3F + F), mean (expand / width: F), pow
  (pow_backward: x.pow(1) copies 2F, times 2 2F, times g 3F), the two gradients of x.float() summed (3F), cast
  (F + e): 8e + 19F. In fp32 the casts are no-ops: 2e + 5F and 6e + 17F.
- LayerNorm (torch.nn.LayerNorm, also MPT's low-precision one): torch's native kernel, forward 2e; backward
  its dX kernel reads g and x and writes dx (3e) and GammaBetaBackward reads g and x again (2e; without weight
  and bias, nothing): aten/src/ATen/native/cuda/layer_norm_kernel.cu.
- SwiGLU (FeedForward.forward: `F.silu(w1(x)) * w3(x)`), per element of d_ff: silu (2e), multiply (3e);
  backward: the multiply's two gradients (3e each) and silu_backward (reads g and the input, writes: 3e): 5e and
  9e. GeGLU alike; GELU and ReLU one kernel each way: 2e and 3e.
- Rotary (apply_rotary_emb): q and k cast to fp32 (e + F), viewed as complex and multiplied by freqs_cis (2F;
  the table is 1/heads of the rows, left out), cast back (F + e); backward the same three kernels mirrored:
  2e + 4F each way (2F in fp32).
- repeat_kv (grouped-query attention before SDPA's enable_gqa): expand + reshape copies k and v to every query
  head (reads kv, writes q width); backward sums them back (reads q width, writes kv).
- Residual adds (`h = x + attention(...)`, `out = h + feed_forward(...)`): 3e forward each; backward passes
  the gradient through, and the add that sums a tensor's gradients where it fans out (x into the norm and the
  residual; the normed x into wq, wk and wv; into w1 and w3) moves 3e per extra consumer.
- Loss (torchtitan train.py loss_fn: `cross_entropy(pred.float(), labels)`), per logit: cast up (e + F),
  log_softmax (2F), nll_loss (a gather per row); backward: nll_loss_backward zero-fills its gradient (F),
  log_softmax_backward reads the gradient and the output and writes (3F), the cast back (F + e): e + 3F and
  e + 5F (2F and 4F in fp32).
- Megatron-Core's vocab-parallel cross-entropy (megatron/core/tensor_parallel/cross_entropy.py at f2e5db4, July
  2024; its default until `cross_entropy_loss_fusion`), per logit of a rank's vocabulary slice: cast up (e + F),
  max (reads F), subtract the max in place (2F), exp in place (2F), sum (reads F), divide by the sum in place,
  keeping the softmax for backward (2F); backward scales that softmax by the gradient in place (2F; the target's
  subtraction touches one logit a row) and autograd casts it back to the logits' dtype (F + e): e + 9F and e + 3F
  (8F and 2F in fp32, whose casts are no-ops).

- AFT (profiling/aft.py, Zhai et al. 2021), per element of the s × width mixing. Every variant: sigmoid(q)
  (2e), exp(k) (2e), exp(k)·v (3e), num / den (3e), gate · ratio (3e): 13e; backward the gate product's two
  gradients (6e), sigmoid_backward (3e), the quotient's (grad / den, and −grad·((num / den) / den): three
  divides, a negation and a product, 14e), the exp(k)·v product's two (6e), exp's (grad · result, 3e) and the
  add summing exp(k)'s gradients from its two uses (3e): 35e. The running sums of AFT-simple, -local and
  -conv: a cumsum each (2e), backward flip, cumsum, flip (6e): 4e and 12e for the two. AFT-conv besides: its
  layout (batch·head_dim, heads, s) and back, three copies (2e each; three again backward), the causal
  padding of both inputs (2e each, forward, and again in backward), the two adds of convolution and running
  sum (3e each), and backward the adds summing the gradients of exp(k) (a third use) and exp(k)·v (a second):
  16e each way. The block's input is copied once into (s, b, d) order (2e per d-element, forward only).
  Left out, as per-row statistics are: AFT-full's s × s weights exp(masked w) and AFT-conv's kernel exp(w) − 1,
  computed once per micro-batch (their kernels are counted); the bytes of AFT-local's band, tile by tile (its
  kernels are counted, below).

Kernels launched, for the fixed cost per kernel that `costplan calibrate` measures (ops.kernels), are the
reference model's, where its modules differ from torchtitan's: those counts are priced only on a device that
`calibrate` measured, whose steps `check` times on the reference (and torch's profiler counts them there,
tests/test_step_counts.py), while the bytes, priced on every device, stay torchtitan's (the published runs
validated against are torchtitan's and other frameworks'). The reference's RMSNorm is one autograd Function
(profiling/modules.py), one node each way, whose steps run inside it on a CPU without autograd's recording, priced
as the block loop's kernels are (ops.looped): nine forward (cast up, pow, mean, the epsilon's add, rsqrt, the
1/rms product, the weight's cast and product, cast down) and fourteen backward (the casts of the gradient, x and
the weight; x̂; g·w; its product with x̂ and that product's mean; x̂ times the mean; the difference; times 1/rms;
g·x̂ and its sum; two casts back), six and nine in fp32, whose casts are no-ops (torchtitan's module launches
eight and fourteen, recorded; on CUDA the Function runs torch's fused pair, one kernel each way, which a
calibration on a GPU would have to count); its bytes (2e + 9F forward, 3e + 22F backward) are within 11% of
torchtitan's in bf16. The reference rotates by halves (profiling/modules.py rotate: x·cos + cat(−x₂, x₁)·sin, its
tables in the activations' dtype): five kernels a tensor forward (neg, cat, two products, add) and seven backward
(two products, neg, the two halves' slice_backward, the two adds summing x's gradient) in any precision, where
torchtitan's complex product runs three each way (one in fp32); its bytes, 10e forward and 15e backward, equal
torchtitan's forward in bf16. It runs no repeat_kv: SDPA takes grouped K/V heads as they are, and its explicit
core and block loops fold the groups themselves. LayerNorm one native kernel each way; the loss three each way
(two in fp32). AFT: the input copy one forward; every variant five forward and twelve backward; the running sums
two and six; AFT-conv's layout, padding and adds eight forward (with its kernel's exp(w) − 1) and eleven backward
(with its kernel's gradient: the sum of its two uses, the expm1 backward's add and product, the slice's backward);
AFT-full's weights two forward (masked_fill, exp) and three backward (exp's product, masked_fill's, the add into
w's gradient). Counted against torch's profiler on the reference block (tests/test_step_counts.py). AFT-local's
band, tile by tile (costs/attention/blocks.py aft_local_tiles), two more forward a tile (masked_fill, expm1) and
the concatenations and the adds of the band to the running sums (four); eleven more backward a tile (expm1's add
and product, masked_fill's, the four slices' backward: the position bias's rows and columns, exp(k)'s and
exp(k)·v's keys, and the four adds summing their gradients and the tile weights' second use), less one (the first
tile's gradients start those sums) and less each slice of the bias that is the whole tensor (autograd passes it
through); its GEMMs, two a tile forward and four backward, are the core's.

The explicit core (dense attention as the reference model writes it: profiling/attention.py explicit_core)
beside its two batched GEMMs and its softmax: the scale and the causal mask (masked_fill; with ALiBi the bias's
add, whose backward passes the gradient through) each way; with sinks their column joined (cat) forward, and
backward the slice's gradient and the sinks' sum; the output copied into the projection's layout forward (and q
into its groups when heads are grouped), and backward four copies (the output's gradient into the core's layout,
q's, k's and v's gradients back into the projections'; not v's with one K/V head, whose transpose is then
contiguous). Selective recomputation reruns the core's forward kernels. It folds grouped heads itself: no
repeat_kv. Counted against torch's profiler on the reference's attention module (tests/test_step_counts.py).

The block-sparse kernel (profiling/blocks.py; sliding windows, chunks, the sparse patterns, MLA and flash
attention with sinks) is a Python loop over blocks inside an autograd Function: its kernels are launched without
autograd's recording, at the lower fixed cost that `costplan calibrate` measures for such a loop
(kernels.loop_kernel_seconds). Counted from its code (GEMMs included), per block forward: the scores (GEMM,
fp32 cast, scale, the causal mask from the query and key positions: two aranges, compare, invert, masked_fill),
the row maximum, rows that see nothing (isinf, zeros, where), exp(scores - max) (two), the row sum, clamp and
divide, the output (cast, GEMM, copy into place) and the log-sum-exp (compare, log, add, full, where, copy): 26;
a window inside the block 3 more (subtract, compare, and); keys given as an index 1 more (K and V gathered, no key
positions); a materialising kernel 1 (the probabilities' cast); ALiBi 6 (positions, difference, cast, slope
product, add; one position fewer with index keys); sinks 5 (the sink's cast, maximum, exp(sink - max) and its
add). Backward, materialising, 22: the probabilities' fp32 cast, dV (cast, GEMM, cast, add, copy back), dP (GEMM,
cast), the row sums (product, sum), dS (subtract, two products, cast), dQ and dK (GEMM, cast, add, copy back each);
index keys 4 more (K and V gathered; dK and dV summed through the index: gather, add and index_put, not a view's
add and copy). The flash kernel's backward recomputes the scores (8) and exp(scores - lse) (2) instead of the
fp32 cast and the row sums (3): 29, plus the mask's 3 with a window,
3 with index keys, 6 with ALiBi (5 with index keys). Sinks 6 more either way (their gradient's terms). Each call
2 forward (the output and log-sum-exp zeroed), backward 6 (the gradients zeroed and cast back), 4 more for flash
(the saved output's row products) and 2 with sinks; each part of the heads whose K/V heads are shared by several
query heads, 6 forward (the K/V heads' index and index_select) and 12 backward (those, the expanded gradients'
zeros and the index_adds back). Counted against torch's profiler (tests/test_step_counts.py).
Those kernels move their blocks' score tiles (b·heads·rows·keys elements; row statistics, one sequence's ALiBi
bias and head-dimension tensors left out), per element forward: the cast to fp32 (e + F), the scale (2F), ALiBi's
add (2F), the mask (2F), the row maximum (F), the difference from it and its exp (2F each), the row sum (F), the
division (2F), the probabilities' cast for the output's product (F + e) and, materialising, for keeping (F + e):
12F + 2F with ALiBi + 2 or 3 casts. Backward, materialising: the kept probabilities cast up, and down for dV's
product, dP's cast up (three casts), dP·P and its row sum (3F + F), the difference from it, the products with P
and the scale (2F + 3F + 2F) and dS's cast (a fourth), with sinks P's row sum (F): 11F + 4 casts; flash: the
scores again (cast, scale, ALiBi, mask, the difference from the log-sum-exp and its exp: 8F + 2F with ALiBi +
a cast), P's cast, dP's cast, dP less the row term (2F), the products (3F + 2F), dS's cast, with sinks P's row
sum: 15F + 4 casts. In fp32 the casts are no-ops.

The reference's mixture of experts (profiling/moe.py) routes in PyTorch operations and loops over its experts.
Its routing, GEMMs apart, launches forward the router's softmax and top-k, the gathers of the rows and of their
gate weights (each a zeros row, a cat and an index), the concatenation of the experts' outputs, the gate product
and the scatter-add back into a zeroed output (12), with its plan: dropless, an argsort, the tokens' division,
the entries' product, index and add, a bincount and its read back to Python (7); with a capacity factor, the
one-hot, its cumsum, less one, gather and compare with the capacity, the group and slot aranges, the rows' and
slots' four products and four adds, the clamp, the tokens' division, the three buffers filled, the where, two
scatters and two clones (25). Backward: the two gathers' zeroed gradients and index_puts, the softmax's, the sum of
the input's gradients from the router and the gather, the scatter-add's gather, the gate product's two products
and the weights' sum (10), and for each expert its rows' slice_backward and the add into the gathered rows'
gradient (one fewer add, one more slice: the output's). In 16 bits the router's fp32 cast and the output's cast
back run a kernel each way, and the weights' gradient a third cast. Each expert runs its own activation, and a gated
expert sums its input's two gradients. A shared expert adds its output forward; its GEMMs (and a gate's) read the
layer's input beside the routing, one add each backward; its sigmoid gate, the sigmoid and the product forward,
their gradients and the gate's sum backward. Counted against torch's profiler (tests/test_step_counts.py).
"""
from __future__ import annotations

F32 = 4                     # bytes of an fp32 element, what the casts above upcast to
Pair = tuple[float, float]  # (forward, backward) bytes per element


def _casts(e: int) -> bool:
    """Whether the modules' .float() and .type_as() run a kernel (not when activations are fp32 already)."""
    return e != F32


def norm(kind: str, e: int) -> Pair:
    if kind == "rmsnorm":
        return (4 * e + 7 * F32, 8 * e + 19 * F32) if _casts(e) else (2 * e + 5 * F32, 6 * e + 17 * F32)
    return 2 * e, (5 if kind == "layernorm" else 3) * e


def norm_kernels(kind: str, e: int) -> Pair:
    """Kernels a norm launches with autograd's recording: the reference's RMSNorm is one autograd Function."""
    return 1, 1


# Views the reference's forward dispatches beside its kernels (a dispatch mode sees them too: per-op
# checkpointing's, ops.dispatched): a linear's weight transpose and its input's and output's reshapes; SDPA's
# reshapes of q, k, v and the output into heads and their transposes; rotary's two halves and its two tables'
# broadcasts, for q and k. Counted against the mode's own calls (tests/test_step_counts.py).
LINEAR_VIEWS, SDPA_VIEWS, ROTARY_VIEWS = 3, 8, 8


def norm_views(kind: str) -> int:
    """The reference's RMSNorm promotes its dtype (promote_types) before its Function's kernels."""
    return 1 if kind == "rmsnorm" else 0


def norm_function_kernels(kind: str, e: int) -> Pair:
    """Kernels the reference's RMSNorm Function launches inside itself on a CPU (none for LayerNorm's kernel)."""
    if kind == "rmsnorm":
        return (9, 14) if _casts(e) else (6, 9)
    return 0, 0


def rotary_kernels(e: int) -> Pair:
    """For q and k together, as the reference rotates them (by halves: five a tensor forward, seven backward)."""
    return 10, 14


def loss_kernels(e: int) -> Pair:
    return (3, 3) if _casts(e) else (2, 2)


def activation(gated: bool, e: int) -> Pair:
    return (5 * e, 9 * e) if gated else (2 * e, 3 * e)


def rotary(e: int) -> Pair:
    each = 2 * e + 4 * F32 if _casts(e) else 2 * F32
    return each, each


def repeat_kv(q_width: int, kv_width: int, e: int) -> Pair:
    """Bytes per token for k and v together; nothing without grouped heads."""
    if q_width == kv_width:
        return 0.0, 0.0
    return 2 * (kv_width + q_width) * e, 2 * (q_width + kv_width) * e


ADD = 3                     # an add reads two tensors and writes one, in units of e


def routing_kernels(dropless: bool, experts: int, e: int) -> Pair:
    """Kernels of the reference's routing, forward and backward, GEMMs and the experts' activations apart."""
    casts = _casts(e)
    return 12 + (7 if dropless else 25) + 2 * casts, 10 + 2 * experts + 3 * casts


SHARED_GATE_KERNELS = (2, 4)     # sigmoid and product forward; their gradients and the gate's sum backward


def aft_input(e: int) -> Pair:
    """Bytes per element of the AFT block's input, copied into (s, b, d) order: forward only."""
    return 2 * e, 0


def aft(kind: str, e: int) -> Pair:
    """Bytes per element of an AFT block's s × width mixing, forward and backward."""
    forward, backward = 13 * e, 35 * e
    if kind in ("aft_simple", "aft_local", "aft_conv"):
        forward, backward = forward + 4 * e, backward + 12 * e
    if kind == "aft_conv":
        forward, backward = forward + 16 * e, backward + 16 * e
    return forward, backward


def aft_kernels(kind: str) -> Pair:
    """Kernels of an AFT block's elementwise work, forward and backward (the input's copy apart)."""
    forward, backward = 5, 12
    if kind in ("aft_simple", "aft_local", "aft_conv"):
        forward, backward = forward + 2, backward + 6
    if kind == "aft_conv":
        forward, backward = forward + 8, backward + 11
    if kind == "aft_full":
        forward, backward = forward + 2, backward + 3
    return forward, backward


def aft_local_kernels(tiles: int, whole_slices: int) -> Pair:
    """Kernels AFT-local's band adds to its mixing's, forward and backward, GEMMs apart (the core's)."""
    return 2 * tiles + 4, 11 * tiles - 1 - whole_slices


def loop_kernels(parts: list, materialize: bool, alibi: bool, sinks: bool, grouped: bool) -> Pair:
    """Kernels the block-sparse kernel launches forward and backward over `parts` (costs/attention/blocks.py
    Part), GEMMs included; `grouped`: query heads share K/V heads."""
    forward = 2
    backward = 6 + (0 if materialize else 4) + (2 if sinks else 0)
    block_forward = 26 + materialize + (6 if alibi else 0) + (5 if sinks else 0)
    if materialize:
        block_backward = 22 + (6 if sinks else 0)
    else:
        block_backward = 29 + (6 if alibi else 0) + (6 if sinks else 0)
    for part in parts:
        blocks = part.blocks
        forward += (6 if grouped else 0) + blocks * block_forward + 3 * part.windowed
        forward += part.indexed * (0 if alibi else 1)
        backward += (12 if grouped else 0) + blocks * block_backward
        if materialize:
            backward += 4 * part.indexed
        else:
            backward += 3 * part.windowed + part.indexed * (2 if alibi else 3)
    return forward, backward


def loop_tiles(materialize: bool, alibi: bool, sinks: bool, e: int) -> Pair:
    """Bytes per score element that the block loop's elementwise kernels move over its tiles, forward and
    backward (the forward again under selective recomputation is the caller's)."""
    cast = (e + F32) if _casts(e) else 0
    forward = 12 * F32 + (2 * F32 if alibi else 0) + (3 if materialize else 2) * cast
    if materialize:
        backward = 11 * F32 + 4 * cast
    else:
        backward = 15 * F32 + (2 * F32 if alibi else 0) + 4 * cast
    return forward, backward + (F32 if sinks else 0)


def loop_gemms(parts: list, materialize: bool) -> Pair:
    """Of loop_kernels, the batched matmuls: a block's scores and output forward; backward the gradients of its
    values, probabilities, queries and keys, and the scores again where the kernel does not keep them (flash)."""
    blocks = sum(part.blocks for part in parts)
    return 2 * blocks, (4 if materialize else 5) * blocks


def explicit_scores(alibi: bool, sinks: bool, e: int) -> Pair:
    """Bytes per score of the explicit core's scale and mask (ALiBi's bias added, or the causal masked_fill) and
    the sinks' column joined, forward and backward (ALiBi's add passes its gradient through)."""
    forward = 2 * e + (ADD if alibi else 2) * e + (2 * e if sinks else 0)
    backward = 2 * e + (0 if alibi else 2 * e) + (2 * e if sinks else 0)
    return forward, backward


def explicit_scores_kernels(alibi: bool, sinks: bool, rerun: bool) -> Pair:
    """Their kernels; selective recomputation reruns the forward's in backward."""
    forward = 2 + (1 if sinks else 0)
    backward = 1 + (0 if alibi else 1) + (2 if sinks else 0)
    return forward, backward + (forward if rerun else 0)


def explicit_layout(q_width: int, kv_width: int, kv_heads: int, e: int) -> Pair:
    """Bytes per token of the explicit core's layout copies: forward the output into the projection's layout
    (and q into its groups, when heads are grouped), backward the output's gradient into the core's layout and
    q's, k's and v's gradients back into the projections' (not v's with one K/V head: its transpose is then a
    contiguous view)."""
    grouped = q_width != kv_width
    v = 0 if kv_heads == 1 else 1
    return 2 * q_width * e * (2 if grouped else 1), 2 * (2 * q_width + (1 + v) * kv_width) * e


def explicit_layout_kernels(grouped: bool, kv_heads: int, rerun: bool) -> Pair:
    """Their kernels (q's copy into groups is inside the core: selective recomputation reruns it)."""
    return 1 + (1 if grouped else 0), (3 if kv_heads == 1 else 4) + (1 if grouped and rerun else 0)


def loss(e: int) -> Pair:
    return (e + 3 * F32, e + 5 * F32) if _casts(e) else (2 * F32, 4 * F32)


def loss_allocations(e: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Bytes per logit of each tensor torch's cross-entropy allocates forward (the cast up, log_softmax's output)
    and backward (nll_loss_backward's zeros, log_softmax_backward's output, the cast back)."""
    return ((F32, F32), (F32, F32, e)) if _casts(e) else ((F32,), (F32, F32))


def vocab_parallel_loss_allocations(e: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Megatron-Core's: the cast up forward and the cast back backward, the rest in place (nothing in fp32)."""
    return ((F32,), (e,)) if _casts(e) else ((), ())


def vocab_parallel_loss(e: int) -> Pair:
    """Megatron-Core's unfused cross-entropy per logit: e + 9F forward and e + 3F backward (module docstring)."""
    return (e + 9 * F32, e + 3 * F32) if _casts(e) else (8 * F32, 2 * F32)


def vocab_parallel_loss_kernels(e: int) -> Pair:
    """Its kernels over the logits: cast, max, subtract, exp, sum, divide; scale, cast back (fp32: no casts)."""
    return (6, 2) if _casts(e) else (5, 1)
