"""Calibration of causal attention (costplan calibrate, profiling/calibrate.py): the FLOP/s torch's
scaled_dot_product_attention reaches forward and backward, by head dimension and sequence length, each call
sized to take about CALL_SECONDS and the whole within its share of the calibration's time budget."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from costplan import report
from costplan.profiling.aft import causal_conv
from costplan.profiling.measure import MEMORY_FRACTION, available_bytes
from costplan.profiling.precision import DTYPES, FALLBACK, choose
from costplan.profiling.timing import BEST_OF, best_seconds, queued_note, synchronize

# Attention: sequence lengths and head dimensions timed, and how long one call should take at the peak rate
# (batch·heads is chosen for it, so that every length does about the same work).
SEQ_LENS = {"cpu": (128, 256, 512, 1024), "cuda": (512, 1024, 2048, 4096, 8192)}
HEAD_DIMS = {"cpu": (64,), "cuda": (64, 128)}
CALL_SECONDS = 0.02
HEADS = 16                  # heads per sequence of batch·heads, once there are that many
BACKWARD_FLOPS = 2.5        # × the forward's, with its recompute, as FlashAttention's benchmark counts it
TENSORS = 10                # q, k, v, output and their gradients, with room to spare: the memory of one call
# AFT-conv's causal depthwise convolution as its reference runs it (profiling/aft.py): (batch·head_dim, heads,
# seq_len) with one kernel of `taps` per head. (rows, heads, taps): a batch of 2 of 8 heads of 64, at each of
# the lengths: a call's size (its FLOPs) sets its rate, small calls running far below large ones on a CPU.
CONV_SHAPE = {"cpu": (128, 8, 32), "cuda": (1024, 16, 128)}
CONV_LENGTHS = {"cpu": (32, 64, 128, 256, 512), "cuda": (512, 1024, 2048, 4096)}
# The reference's block loop (profiling/blocks.py) runs one small batched matmul per block and product: a block
# of `rows` queries of 4 heads against `keys` keys at head dimension d, from (b, s, heads, d) tensors sliced and
# transposed as the loop slices them. (rows, keys, d), from the tiny loop calibrate times for its fixed cost to
# blocks of a long sequence: a call's FLOPs set its rate, small calls running far below the square matmuls.
BLOCK_HEADS = 4
BLOCK_SHAPES = ((8, 16, 8), (16, 32, 16), (16, 64, 32), (32, 64, 64), (64, 128, 64), (128, 256, 64))


@dataclass
class Attention:
    """Achieved FLOP/s of causal scaled_dot_product_attention, by head dimension and sequence length."""

    precision: str                                          # what it ran in (bf16, or fp32 where bf16 is slow)
    forward: dict[int, dict[int, float]]                    # head_dim → seq_len → FLOP/s
    backward: dict[int, dict[int, float]]
    heads: dict[int, dict[int, int]]                        # head_dim → seq_len → batch·heads per call


def attention_precision(peaks: dict[str, float]) -> str:
    """The precision a bf16 spec's step is timed in here: bf16, or fp32 where bf16 runs at under a quarter of it
    (precision.SLOW_FRACTION)."""
    return choose("bf16", peaks).used if "bf16" in peaks else FALLBACK


def forward_flops(heads: int, seq_len: int, head_dim: int) -> float:
    """FLOPs a causal attention forward executes: QKᵀ and PV (2·s²·d each) over half the score matrix."""
    return 2 * 2 * heads * seq_len**2 * head_dim / 2


def _shape(heads: int, seq_len: int, head_dim: int) -> tuple[int, int, int, int]:
    """(batch, heads, seq_len, head_dim) for batch·heads = `heads`, a multiple of HEADS once it is that large
    (a GPU kernel's launch grid takes at most 65,535 along the batch and head axes)."""
    return (heads // HEADS, HEADS, seq_len, head_dim) if heads >= HEADS else (1, heads, seq_len, head_dim)


def attention_times(heads: int, seq_len: int, head_dim: int, precision: str,
                    device: torch.device) -> tuple[float, float]:
    """Best seconds of a causal scaled_dot_product_attention forward, and of its backward (the best forward +
    backward less the best forward), on `heads` = batch × HEADS sequences of one head each."""
    shape = _shape(heads, seq_len, head_dim)

    def tensor() -> torch.Tensor:
        return torch.randn(shape, device=device, dtype=DTYPES[precision], requires_grad=True)

    q, k, v = tensor(), tensor(), tensor()
    grad = torch.randn(shape, device=device, dtype=DTYPES[precision])
    attend = torch.nn.functional.scaled_dot_product_attention

    def forward() -> None:         # with autograd on, as in a training step (it keeps what backward needs)
        attend(q, k, v, is_causal=True)

    def forward_backward() -> None:
        torch.autograd.grad(attend(q, k, v, is_causal=True), (q, k, v), grad)

    fwd = best_seconds(forward, device)
    return fwd, best_seconds(forward_backward, device) - fwd


def attention_forward_once(heads: int, seq_len: int, head_dim: int, precision: str,
                           device: torch.device) -> float:
    """Seconds of one causal attention forward (after one to warm up): for sizing calls, never reported."""
    q = torch.randn(_shape(heads, seq_len, head_dim), device=device, dtype=DTYPES[precision])
    attend = torch.nn.functional.scaled_dot_product_attention
    attend(q, q, q, is_causal=True)
    synchronize(device)
    start = time.perf_counter()
    attend(q, q, q, is_causal=True)
    synchronize(device)
    return max(time.perf_counter() - start, 1e-6)


def _heads(wanted: float, most: int) -> int:
    """batch·heads near `wanted`, at most `most` and at least 1, a multiple of HEADS once it is that large."""
    h = max(1, min(round(wanted), most))
    return h - h % HEADS if h >= HEADS else h


def attention_rates(peak: float, precision: str, device: torch.device, seconds: float,
                    progress: Callable[[str], None]) -> Attention:
    """attention_times over HEAD_DIMS and SEQ_LENS, shortest first, as FLOP/s. Each forward call takes about
    CALL_SECONDS (less when `seconds` is short; its batch·heads sized on one forward at the shortest length,
    from the `peak` guess, then on the forward rate of the length before), in at most 1/TENSORS of the free
    memory per tensor; a length whose predicted time (the calls of the length before, in proportion to the
    work) would take its head dimension's calls past their part of `seconds` is left out; the shortest is always
    measured."""
    dims, lengths = HEAD_DIMS[device.type], SEQ_LENS[device.type]
    # 1 warm-up + BEST_OF runs of the forward and of forward + backward (3.5 × its work): 6 × 4.5 calls.
    call = min(CALL_SECONDS, seconds / (len(dims) * len(lengths) * (1 + BEST_OF) * (1 + 1 + BACKWARD_FLOPS)))
    memory = available_bytes(device) * MEMORY_FRACTION / TENSORS
    result = Attention(precision, {}, {}, {})
    for d in dims:
        spent = 0.0                         # seconds the calls of this head dimension's lengths took
        share = seconds / len(dims)
        fwd: dict[int, float] = {}
        bwd: dict[int, float] = {}
        heads: dict[int, int] = {}
        last = (0.0, 0.0)                   # seconds and forward FLOPs of the length before
        rate = peak                         # the forward FLOP/s that sizes the next call
        for s in lengths:
            per_head = forward_flops(1, s, d)
            most = max(1, int(memory // (s * d * DTYPES[precision].itemsize)))
            h = _heads(call * rate / per_head, most)
            if not fwd:                     # the peak overstates attention: size the first call on one forward
                rate = forward_flops(h, s, d) / attention_forward_once(h, s, d, precision, device)
                h = _heads(call * rate / per_head, most)
            flops = forward_flops(h, s, d)
            if fwd and spent + last[0] * flops / last[1] > share:
                break
            forward_s, backward_s = attention_times(h, s, d, precision, device)
            # what the point's calls took (warm-ups included), not its wall time, which on a GPU also holds the
            # kernels' one-time set-up
            last = ((2 + BEST_OF) * (2 * forward_s + max(backward_s, 0.0)), flops)
            spent += last[0]
            fwd[s] = rate = flops / forward_s
            # A backward too fast to tell from the forward's noise counts as infinitely fast (capped later).
            bwd[s] = BACKWARD_FLOPS * flops / backward_s if backward_s > 0 else math.inf
            heads[s] = h
        result.forward[d], result.backward[d], result.heads[d] = fwd, bwd, heads
        progress(f"{precision} causal attention, head_dim {d} (s = {', '.join(str(s) for s in fwd)}): best "
                 f"forward {report.flops_rate(max(fwd.values()))}, backward "
                 f"{report.flops_rate(max(bwd.values()))}")
    return result


def depthwise_conv_rates(precision: str, device: torch.device) -> tuple[dict[float, float], dict[float, float], str]:
    """FLOP/s of AFT-conv's causal depthwise convolution forward and backward (its input's and its kernel's
    gradients) by the FLOPs of one call, each FLOP counted as the cost model counts them: 2 per tap of every
    output, the padded taps of the first positions included; and what was timed. A CPU has no GEMM for it, so it
    runs far below the matmul rate, backward most of all."""
    rows, heads, taps = CONV_SHAPE[device.type]
    dtype = DTYPES[precision]
    forward, backward = {}, {}
    for seq_len in CONV_LENGTHS[device.type]:
        x = torch.randn(rows, heads, seq_len, device=device, dtype=dtype, requires_grad=True)
        kernel = torch.randn(heads, 1, taps, device=device, dtype=dtype, requires_grad=True)
        grad = torch.randn(rows, heads, seq_len, device=device, dtype=dtype)
        fwd = best_seconds(lambda: causal_conv(x, kernel), device)
        both = best_seconds(lambda: torch.autograd.grad(causal_conv(x, kernel), (x, kernel), grad), device)
        flops = 2 * rows * heads * seq_len * taps
        forward[flops], backward[flops] = flops / fwd, 2 * flops / max(both - fwd, fwd / 100)
    what = (f"{precision} causal depthwise conv1d as AFT-conv's reference runs it, input ({rows}, {heads}, s) for s "
            f"= {', '.join(map(str, CONV_LENGTHS[device.type]))}, {taps} taps a channel, best of "
            f"{BEST_OF}{queued_note(device.type)}; "
            f"against 2·rows·heads·s·taps, the FLOPs of one call forward, twice that backward (forward + backward "
            f"less forward)")
    return forward, backward, what


def block_gemm_rates(precision: str, device: torch.device) -> tuple[dict[float, float], str]:
    """FLOP/s of the block loop's batched matmuls (a block's scores: its queries against its keys) by the FLOPs
    of one call, 2·heads·rows·keys·d; and what was timed."""
    dtype = DTYPES[precision]
    rates = {}
    for rows, keys, d in BLOCK_SHAPES:
        q = torch.randn(1, 2 * rows, BLOCK_HEADS, d, device=device, dtype=dtype)
        k = torch.randn(1, 2 * keys, BLOCK_HEADS, d, device=device, dtype=dtype)
        qb = q[:, rows:].transpose(1, 2)                  # (1, heads, rows, d): a view, as the loop takes it
        kb = k[:, keys:].transpose(1, 2)
        flops = 2 * BLOCK_HEADS * rows * keys * d
        rates[flops] = flops / best_seconds(lambda: torch.matmul(qb, kb.transpose(-1, -2)), device)
    what = (f"{precision} batched matmuls of a block's scores as the reference's block loop runs them, "
            f"{BLOCK_HEADS} heads of (rows × d) by (d × keys) from sliced and transposed (1, s, heads, d) tensors, "
            f"(rows, keys, d) = {', '.join(str(shape) for shape in BLOCK_SHAPES)}, best of {BEST_OF}"
            f"{queued_note(device.type)}; against "
            f"2·heads·rows·keys·d, the FLOPs of one call")
    return rates, what
