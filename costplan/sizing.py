"""From a parameter count to a concrete architecture: the shape rule of `costplan plan`.

The proposal is a Llama-style decoder (Touvron et al. 2023, Llama 2 §2.2 and its HF configs): SwiGLU MLP,
RMSNorm, rotary positions, untied embeddings, no biases, FlashAttention, multi-head attention.

- head_dim = 128 and n_heads = d_model / 128 (Llama 2 7B/13B/70B, GPT-3 175B and Chinchilla 70B all use
  128-wide heads). From 16 heads a multiple of 4, from 64 a multiple of 8, so that the tensor-parallel
  degrees such models use divide them: d_model 128 to 1920 in steps of 128, 2048 to 7680 in steps of 512,
  then steps of 1024.
- d_ff = 8/3 · d_model rounded up to a multiple of 256: a SwiGLU block with the parameters of a 4·d_model GELU
  MLP, Llama's `multiple_of` rule (4096 → 11008).
- d_model / n_layers ≈ 128, the aspect ratio of Llama 2 7B (4096/32), 13B (5120/40) and GPT-3 175B
  (12288/96); Kaplan et al. 2020 §3.1 found the loss nearly flat in the ratio over a wide range, so the ratio
  is a convention, not an optimum.
- vocab_size and seq_len are inputs (defaults: Llama's 32,000; Chinchilla's 2,048 training context).

Search: the two allowed widths whose shape at the aspect ratio (n_layers = d_model/128) comes nearest the
target from below and from above are both tried; for each, n_layers is the whole number that brings the exact
parameter count (costplan.estimate) nearest the target. Of the two, the one whose d_model/n_layers is nearer
128 (by ratio) wins, then the one nearer the target. Either way the result is within half a layer of the
target, i.e. within 1/(2·n_layers) relative; the width steps keep d_model/n_layers between about 90 and 190
from 1e8 to 1e13 parameters. Below ~1e8 the embeddings dominate and the ratio means little.
"""
from __future__ import annotations

import math
from typing import Any

from costplan.costs.estimate import estimate
from costplan.loading import load_spec

HEAD_DIM = 128
ASPECT_RATIO = 128          # d_model / n_layers
D_FF_MULTIPLE = 256
# Allowed n_heads (d_model / 128): 1..15, multiples of 4 to 60, then of 8 up to d_model = 131,072.
WIDTH_STEPS = (*range(1, 16), *range(16, 64, 4), *range(64, 1025, 8))
DEFAULT_VOCAB = 32_000
DEFAULT_SEQ_LEN = 2048


def model_section(width_steps: int, n_layers: int, vocab_size: int, seq_len: int) -> dict[str, Any]:
    """The `model` section of the rule's architecture with d_model = 128·width_steps."""
    d_model = HEAD_DIM * width_steps
    d_ff = -(-8 * d_model // (3 * D_FF_MULTIPLE)) * D_FF_MULTIPLE   # ⌈8·d_model / (3·256)⌉ · 256
    return {
        "vocab_size": vocab_size, "d_model": d_model, "n_layers": n_layers, "n_heads": width_steps,
        "head_dim": HEAD_DIM, "d_ff": d_ff, "mlp": "swiglu", "norm": "rmsnorm", "position": "rope",
        "max_seq_len": seq_len, "tie_embeddings": False, "bias": False, "attention": {"type": "flash"},
    }


def _params(model: dict[str, Any]) -> int:
    return estimate(load_spec({"model": model, "training": {"tokens": 1}})).params.total


def architecture(params: float, vocab_size: int = DEFAULT_VOCAB, seq_len: int = DEFAULT_SEQ_LEN) -> dict[str, Any]:
    """The rule's `model` section whose exact parameter count is nearest `params`."""
    def square(k: int) -> int:
        return _params(model_section(k, max(1, k * HEAD_DIM // ASPECT_RATIO), vocab_size, seq_len))

    lo, hi = 0, len(WIDTH_STEPS) - 1   # the first allowed width whose model at the ratio reaches the target
    while lo < hi:
        mid = (lo + hi) // 2
        if square(WIDTH_STEPS[mid]) >= params:
            hi = mid
        else:
            lo = mid + 1
    best: tuple[tuple[float, float], dict[str, Any]] | None = None
    for k in sorted({WIDTH_STEPS[max(0, lo - 1)], WIDTH_STEPS[lo]}):
        one = _params(model_section(k, 1, vocab_size, seq_len))
        per_layer = _params(model_section(k, 2, vocab_size, seq_len)) - one
        n_layers = max(1, round((params - one) / per_layer) + 1)
        model = model_section(k, n_layers, vocab_size, seq_len)
        total = one + (n_layers - 1) * per_layer
        key = (abs(math.log(model["d_model"] / n_layers / ASPECT_RATIO)), abs(total - params))
        if best is None or key < best[0]:
            best = (key, model)
    return best[1]
