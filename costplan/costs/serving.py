"""Serving a model: the bytes it keeps on the GPUs and the FLOPs of prefill and decode, from the cost model.

All sizes are bytes; FLOPs follow the conventions of costs/__init__.py (2 per multiply-add, matmuls only,
attention counts every key a query may see, with no causal halving).

Weight formats (what a serving engine loads; the weight matrices of attention, MLP and experts are quantized;
embeddings, the LM head, norms, biases, MoE routers and AFT position biases stay 16-bit):
- bf16: 2 bytes per parameter.
- fp8: 1 byte per quantized weight and one fp32 scale per matrix (per-tensor scaling, as vLLM and
  TensorRT-LLM load fp8 checkpoints).
- int8: 1 byte per quantized weight and one 16-bit scale per output row (per-channel), weight-only: dequantized
  to 16 bits for the GEMMs (costs/inference.py), whose activations stay 16-bit.
- int4: two weights per byte and one 16-bit scale per group of `group_size` weights along the input
  dimension (GPTQ, AWQ; symmetric, no zero points); group_size None means one scale per output row. The
  group size is taken to divide every matrix's input width, as GPTQ/AWQ kernels require.
KV-cache formats: bf16 (2 bytes per element) or fp8 (1 byte; its per-tensor scale is not counted).
"""
from __future__ import annotations

from costplan.costs import Cost, Shape
from costplan.costs.attention.pairs import chunk_pairs
from costplan.costs.attention.softmax import score_flops
from costplan.costs.estimate import components
from costplan.errors import CostplanError
from costplan.spec import ModelSpec, Spec

WEIGHT_FORMATS = ("bf16", "fp8", "int8", "int4")
KV_FORMATS = ("bf16", "fp8")
QUANTIZED_COMPONENTS = ("attention", "mlp", "moe")   # whose weight matrices a format quantizes
SIXTEEN_BIT = 2
FP8_SCALE_BYTES = 4          # one fp32 scale per tensor
INT_SCALE_BYTES = 2          # one fp16/bf16 scale per row or group
KV_ELEMENT_BYTES = {"bf16": 2, "fp8": 1}
# Any valid per-sequence shape gives the same parameters; one token keeps every sum small.
_ONE_TOKEN = Shape(seq_len=1, act_bytes=SIXTEEN_BIT)


class Parts:
    """The cost model's components of one spec, each shape computed once: a serving estimate asks the same
    few shapes for parameters, cache and FLOPs many times over, and every answer walks all the layers.
    Every function below takes a Spec or, to share that work, a Parts of it."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self._by_shape: dict[Shape, dict[str, Cost]] = {}

    def __call__(self, shape: Shape) -> dict[str, Cost]:
        if shape not in self._by_shape:
            self._by_shape[shape] = components(self.spec, shape)
        return self._by_shape[shape]


def parts_of(spec: Spec | Parts) -> Parts:
    return spec if isinstance(spec, Parts) else Parts(spec)


def _check_format(value: str, formats: tuple[str, ...], what: str) -> None:
    if value not in formats:
        raise CostplanError(f"{what} {value!r} is not one of {', '.join(formats)}")


def _check_tokens(tokens: int, what: str) -> None:
    if tokens < 1:
        raise CostplanError(f"{what} must be at least 1 token, got {tokens}")


def _whole(parts: dict[str, Cost]) -> Cost:
    return sum(parts.values(), Cost())


def quantized(spec: Spec | Parts) -> Cost:
    """The weight matrices a serving format quantizes, summed: attention, MLP and expert matrices."""
    parts = parts_of(spec)(_ONE_TOKEN)
    return sum((parts[key] for key in QUANTIZED_COMPONENTS if key in parts), Cost())


def weight_bytes(spec: Spec | Parts, weights: str = "bf16", group_size: int | None = 128) -> int:
    """Every parameter's stored bytes in the format, scales included (see the module docstring for which
    tensors are quantized and how their scales are laid out)."""
    _check_format(weights, WEIGHT_FORMATS, "weight format")
    params = _whole(parts_of(spec)(_ONE_TOKEN)).params
    if weights == "bf16":
        return params * SIXTEEN_BIT
    q = quantized(spec)
    rest = (params - q.matrix_params) * SIXTEEN_BIT
    if weights == "fp8":
        return rest + q.matrix_params + q.matrices * FP8_SCALE_BYTES
    if weights == "int8":
        return rest + q.matrix_params + q.matrix_rows * INT_SCALE_BYTES
    if group_size is not None and group_size < 1:
        raise CostplanError(f"group size must be at least 1, got {group_size}")
    # a group longer than a row still takes a scale a row
    scales = q.matrix_rows if group_size is None else max(q.matrix_rows, -(-q.matrix_params // group_size))
    return rest + -(-q.matrix_params // 2) + scales * INT_SCALE_BYTES


def cached_tokens(prompt: int, output: int) -> int:
    """The tokens a sequence's cache holds at its end: the prompt's and every output token but the last, which
    is sampled and never fed back (the prefill writes the prompt's keys, each of the o − 1 decode steps its input
    token's)."""
    return prompt + output - 1


def kv_cache_bytes(spec: Spec | Parts, context: int, kv_format: str = "bf16") -> int:
    """The cache of one sequence holding `context` tokens: K and V per KV head (GQA, MHA, MQA), MLA's latent
    and rope key, a rolling buffer of `window` tokens for sliding windows, AFT's running sums."""
    _check_format(kv_format, KV_FORMATS, "KV-cache format")
    _check_tokens(context, "the context")
    shape = Shape(seq_len=context, act_bytes=KV_ELEMENT_BYTES[kv_format])
    return _whole(parts_of(spec)(shape)).kv_cache_seq


def kv_cache_bytes_per_token(spec: Spec | Parts, kv_format: str = "bf16") -> int:
    """Cache bytes each cached token adds before any window caps it (0 for attention-free layers)."""
    _check_format(kv_format, KV_FORMATS, "KV-cache format")
    return _whole(parts_of(spec)(Shape(seq_len=1, act_bytes=KV_ELEMENT_BYTES[kv_format]))).kv_cache


def prefill_flops(spec: Spec | Parts, prompt_tokens: int) -> int:
    """Forward matmul FLOPs of one sequence's prompt: every prompt token through every layer, each seeing the
    whole prompt (convention 3), and the logits of the last token only (what generation needs)."""
    _check_tokens(prompt_tokens, "the prompt")
    parts = parts_of(spec)(Shape(seq_len=prompt_tokens, act_bytes=SIXTEEN_BIT))
    head = parts["head"].flops
    return _whole(parts).flops - head + head // prompt_tokens


def prefill_executed_flops(spec: Spec | Parts, prompt_tokens: int) -> int:
    """The prefill's FLOPs as a causal kernel executes them: key tiles above the diagonal are skipped."""
    _check_tokens(prompt_tokens, "the prompt")
    parts = parts_of(spec)(Shape(seq_len=prompt_tokens, act_bytes=SIXTEEN_BIT))
    head = parts["head"].hw_fwd
    return _whole(parts).hw_fwd - head + head // prompt_tokens


def decode_flops(spec: Spec | Parts, context: int) -> int:
    """Forward matmul FLOPs of one new token attending to `context` cached tokens and itself, logits included.

    Under convention 3 every token of a sequence of context + 1 tokens sees what its last token sees (all of
    them, or the window), so that sequence's forward FLOPs per token are exactly the new token's; for the
    strided and fixed sparse patterns they are the average query's. A chunk's queries see unequal keys (its
    whole chunk, convention 3, and the last partial chunk only itself): the new token's, its chunk so far, are
    put in place of their average.
    """
    if context < 0:
        raise CostplanError(f"the context must be 0 or more tokens, got {context}")
    parts = parts_of(spec)
    tokens = context + 1
    model = parts.spec.model
    own = sum(score_flops(model.n_heads, tokens * (context % chunk + 1) - chunk_pairs(tokens, chunk),
                          model.head_dim, model.head_dim) for chunk in _chunks(model))
    whole = _whole(parts(Shape(seq_len=tokens, act_bytes=SIXTEEN_BIT))).flops
    return (whole + own) // tokens + _latent_decode(parts, tokens)


def decode_cached(prompt: int, output: int) -> int:
    """The cached tokens a decode step is timed at: the mean over the o − 1 steps, which feed the tokens at
    positions prompt .. prompt + output − 2, each attending to the tokens before it and itself; p + (o − 2)/2,
    whole for an even output, half a token above the mean for an odd one."""
    return prompt + (output - 1) // 2


def decode_steps(prompt: int, output: int) -> range:
    """The positions of the tokens the o − 1 decode steps feed: the prefill gives the first output token, and
    the last is never fed back."""
    return range(prompt, prompt + output - 1)


def chunk_decode(spec: Spec | Parts, positions: range, cached: int, kv_format: str = "bf16") -> tuple[float, float]:
    """What chunked layers' new tokens read of the cache (bytes) and compute (FLOPs) per decode step, on
    average over the steps that feed the tokens at `positions`, beyond what kv_cache_bytes at cached + 1 (a whole
    chunk's cache) and decode_flops at `cached` give: a new token at position x reads its chunk so far and itself,
    x mod the chunk + 1 keys (vLLM's ChunkedLocalAttention), which rises and falls over a decode as no single
    context does. No position, no step: nothing."""
    if not positions:
        return 0.0, 0.0
    model = parts_of(spec).spec.model
    per_token = 2 * model.kv_width * KV_ELEMENT_BYTES[kv_format]
    read = flops = 0.0
    for chunk in _chunks(model):
        before = _remainders(positions.start, positions.stop, chunk) / len(positions)   # the mean of x % chunk
        read += per_token * (before + 1 - min(cached + 1, chunk))
        flops += score_flops(model.n_heads, 1, model.head_dim, model.head_dim) * (before - cached % chunk)
    return read, flops


def _chunks(model: ModelSpec) -> list[int]:
    """The chunk of each chunked-attention layer."""
    return [a.chunk for a in map(model.layer_attention, range(model.n_layers)) if a.type == "chunked"]


def _remainders(start: int, stop: int, modulus: int) -> int:
    """The sum of x % modulus over start <= x < stop: whole periods, then what is left from start's remainder."""
    periods, left = divmod(stop - start, modulus)
    first = start % modulus
    total = periods * modulus * (modulus - 1) // 2
    upto_end = min(left, modulus - first)       # first, first + 1, ... before wrapping to 0
    wrapped = left - upto_end
    return total + upto_end * first + upto_end * (upto_end - 1) // 2 + wrapped * (wrapped - 1) // 2


def _latent_decode(parts: Parts, keys: int) -> int:
    """MLA decodes against its cached latents (DeepSeek-V2 §2.1.3): W_UK folds into the query and W_UV into the
    output, so each key costs 2·H·(d_c + r) for the scores and 2·H·d_c for the values, where the expanded form
    of the estimate costs 2·H·(d_nope + r) and 2·H·d_v. The folded projections cost what W_UKV costs on the new
    token, which the estimate already counts. This returns the difference over every layer."""
    model = parts.spec.model
    a = model.attention_pattern[0]    # MLA is every layer's attention or none's
    if a.type != "mla":
        return 0
    return model.n_layers * 2 * model.n_heads * keys * (2 * a.kv_lora_rank - a.qk_nope_head_dim - a.v_head_dim)
