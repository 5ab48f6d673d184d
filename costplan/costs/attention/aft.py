"""Attention-Free Transformer (Zhai et al. 2021, arXiv 2105.14103), causal, as a language model uses it.

    Y_t = σ(Q_t) ⊙ Σ_t' exp(K_t' + w_t,t') ⊙ V_t' / Σ_t' exp(K_t' + w_t,t')        (Eq. 2)

Q, K, V = x·W_Q, x·W_K, x·W_V of width W = n_heads·head_dim, then an output projection W → d_model. There is
no query-key product; the context is mixed by the position bias w:
- aft_full: w is a learned max_seq_len × max_seq_len matrix; the sums are two matmuls exp(w)·(exp(K)⊙V) and
  exp(w)·exp(K): 4·s²·W FLOPs per layer, O(T²·d) (Table 1).
- aft_local: w is kept inside a band of `window` keys and is 0 outside, so the sums split into a running sum
  over all past keys (no matmul) plus the band, (exp(w) − 1) on `window` keys per query: 4·s·window·W FLOPs,
  O(T·s·d). Its parameter is still the full max_seq_len² matrix (the issue's convention; the band is used).
- aft_simple: no w; the sums are running sums of exp(K)⊙V and exp(K): no matmul at all, O(T·d) elementwise.
- aft_conv: w is a causal kernel of `window` taps per head (n_heads heads, each shared by its head_dim
  channels), applied as exp(w) − 1 in two depthwise convolutions on top of the running sums (§3.3; w = 0 is
  aft_simple): 4·s·window·W FLOPs (2 per multiply-add, as for matmuls).
Model FLOPs count the full square (aft_full) and min(window, s) keys per query, like sliding-window attention;
hardware FLOPs count the tiles a banded kernel computes for aft_local. Backward of every product is 2 ×
forward. Selective recomputation targets softmax cores and changes nothing here.

Saved for backward, per token, in units of W: σ(Q), exp(K), V, exp(K)⊙V, the two sums and their ratio, and the
output projection's input (8), plus the projections' input x (d_model). aft_simple keeps 7: its sums are
running sums, whose backward (a reversed running sum) needs no input, so nothing keeps exp(K)⊙V (measured on
the reference model; the matmuls and convolutions of the other variants keep it as their input). The position
weights (aft_full: exp(w), s²; aft_local: exp(w) − 1 on the computed band; aft_conv: the n_heads × window
kernel exp(w) − 1) are saved once per micro-batch, not per sequence.
Inference keeps K and V of the tokens the bias reaches (all for aft_full, `window` for aft_local and aft_conv)
plus the two running sums, which are all aft_simple keeps: a constant-size state, like an RNN.
"""
from __future__ import annotations

from costplan.costs import Cost, Shape, linear, matmul
from costplan.costs.attention.pairs import tile_for, tiled_pairs, window_pairs
from costplan.spec import ModelSpec

SAVED_PER_TOKEN = 8      # in units of W, see the module docstring
SAVED_PER_TOKEN_SIMPLE = 7


def cost(attention, model: ModelSpec, shape: Shape) -> Cost:
    return COST[attention.type](attention, model, shape)


def _common(model: ModelSpec, shape: Shape, cached_tokens: int, saved: int = SAVED_PER_TOKEN) -> Cost:
    """Projections, the saved tensors that do not depend on the bias, and the inference cache."""
    s, d, width, e = shape.seq_len, model.d_model, model.q_width, shape.act_bytes
    projections = linear(s, d, width, model.qkv_bias) * 3 + linear(s, width, d, model.o_bias, row_parallel=True)
    state = 2 * width * e                                  # the running sums Σexp(K)⊙V and Σexp(K)
    return projections + Cost(
        activations=s * (d + saved * width) * e,
        kv_cache=2 * width * e if cached_tokens else 0,
        kv_cache_seq=2 * width * e * cached_tokens + (state if cached_tokens < s else 0),
    )


PRODUCTS = 2     # the position weights' products with exp(K)⊙V and with exp(K): AFT-conv's two convolutions


def _mixing(width: int, pairs: int, executed: int, shape: Shape, weights_saved: int) -> Cost:
    """The two products of the position weights with (exp(K)⊙V) and exp(K), over `pairs` (query, key) pairs."""
    forward = PRODUCTS * matmul(1, executed, 1, width)
    return Cost(flops=2 * matmul(1, pairs, 1, width), hw_fwd=forward, hw_flops=3 * forward,
                shared_activations=weights_saved * shape.act_bytes)


def _position_bias(model: ModelSpec) -> Cost:
    """AFT's learned pairwise position bias, max_seq_len² per layer, shared by every channel: whole on every tensor
    rank, as a learned position table is (embedding.py)."""
    n = model.max_seq_len
    return Cost(params=n * n, factored=2 * n, factors=2 * n, tensor_whole=n * n)


def full(attention, model: ModelSpec, shape: Shape) -> Cost:
    s = shape.seq_len
    bias = _position_bias(model)
    return _common(model, shape, s) + bias + _mixing(model.q_width, s * s, s * s, shape, s * s)


def local(attention, model: ModelSpec, shape: Shape) -> Cost:
    s, w = shape.seq_len, attention.window
    executed = tiled_pairs(s, w, tile_for(w))
    bias = _position_bias(model)
    return (_common(model, shape, min(s, w)) + bias
            + _mixing(model.q_width, window_pairs(s, w), executed, shape, executed))


def simple(attention, model: ModelSpec, shape: Shape) -> Cost:
    return _common(model, shape, 0, SAVED_PER_TOKEN_SIMPLE)


def conv(attention, model: ModelSpec, shape: Shape) -> Cost:
    s, w = shape.seq_len, attention.window
    taps = window_pairs(s, w)                       # a depthwise causal convolution of min(w, s) taps
    # an n_heads × window matrix: Adafactor keeps a row and a column factor
    kernel = Cost(params=model.n_heads * w, factored=model.n_heads + w, factors=model.n_heads + w)
    # The convolutions keep their kernel exp(w) − 1 (n_heads × min(w, s)), computed from w once per micro-batch.
    return (_common(model, shape, min(s, w)) + kernel
            + _mixing(model.q_width, taps, taps, shape, model.n_heads * min(w, s)))


COST = {"aft_full": full, "aft_local": local, "aft_simple": simple, "aft_conv": conv}
