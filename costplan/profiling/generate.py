"""Generation with the reference model: prefill a prompt into a cache, then decode one token at a time.

The attention modules take the cache themselves (attention.py, mla.py, aft.py): a prompt runs its core as in
training and leaves behind what later tokens need; a decode step appends its own token and attends to the
cache. What each attention type caches, per layer and sequence (the analytic model's `kv_cache_seq`):

- dense, flash (MHA, GQA, MQA): K and V of every token, per KV head;
- sliding_window: K and V of the last `window` tokens, a rolling buffer (Mistral 7B §2);
- chunked: K and V of the current chunk's tokens, at most `chunk`: a ring of `chunk` slots whose slot is the
  position mod chunk, so a new chunk overwrites the last from its first slot and reads only what it wrote;
- mla: the normed latent c_kv and the rotated rope key (DeepSeek-V2 §2.1.3); decode attends in latent space;
- aft_full: K and V of every token; aft_local, aft_conv: of the last `window` tokens, plus the running sums
  Σ exp(K)⊙V and Σ exp(K) of the tokens that left the band; aft_simple: the running sums only;
- sparse (strided, fixed): no incremental form here (its pattern reaches back by stride), so no cache.

Buffers are allocated once for the tokens a generation will hold (`capacity`), as a static cache is; a buffer
shorter than that is a ring, slot = position mod its length. The cache's dtype is the KV format's (bf16, or
fp8 stored as float8_e4m3fn without a scale); tokens are converted back to the model's dtype when read.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from costplan.costs.layers import layers
from costplan.errors import CostplanError
from costplan.spec import ModelSpec, Spec

KV_DTYPES = {"bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn}


def _raw(t: torch.Tensor) -> torch.Tensor:
    """fp8 tensors as their bytes: torch 2.13 has no CPU index_copy/index_select for float8 types."""
    return t.view(torch.uint8) if t.dtype == torch.float8_e4m3fn else t


class TokenCache:
    """Per-token tensors (b, capacity, …) of the last `capacity` tokens of a sequence."""

    def __init__(self, capacity: int, batch: int, widths: list[tuple[int, ...]], dtype: torch.dtype,
                 device: torch.device):
        self.capacity, self.count = capacity, 0          # count: tokens appended so far
        self.buffers = [torch.zeros(batch, capacity, *w, dtype=dtype, device=device) for w in widths]

    def append(self, *tokens: torch.Tensor) -> list[torch.Tensor]:
        """Store s new tokens (each tensor (b, s, …)), the oldest overwritten when full; the cached tokens
        after the append (views, in slot order)."""
        s, start, capacity = tokens[0].shape[1], self.count, self.capacity
        end = start + s
        keep = max(0, end - capacity)                       # positions before this leave (or never enter)
        if capacity and start:                              # stored tokens about to be overwritten
            old = torch.arange(max(0, start - capacity), min(start, keep), device=tokens[0].device)
            if len(old):
                self._dropped([_raw(buffer).index_select(1, old % capacity).view(buffer.dtype)
                               for buffer in self.buffers])
        first = max(start, keep)
        self._dropped([t[:, : first - start] for t in tokens])
        if first < end:
            slots = torch.arange(first, end, device=tokens[0].device) % capacity
            for buffer, new in zip(self.buffers, tokens):
                _raw(buffer).index_copy_(1, slots, _raw(new[:, first - start:].to(buffer.dtype)))
        self.count = end
        return self.cached()

    def _dropped(self, tokens: list[torch.Tensor]) -> None:
        """Tokens that leave the cache (a softmax window forgets them)."""

    def cached(self) -> list[torch.Tensor]:
        n = min(self.count, self.capacity)
        return [buffer[:, :n] for buffer in self.buffers]

    def positions(self) -> torch.Tensor:
        """The position of the token in each cached slot."""
        n, last = min(self.count, self.capacity), self.count - 1
        slots = torch.arange(n, device=self.buffers[0].device)
        return last - (last - slots) % self.capacity

    @property
    def nbytes(self) -> int:
        return sum(buffer.nbytes for buffer in self.buffers)


class AFTCache(TokenCache):
    """K and V of AFT's band, and the running sums of exp(K)⊙V and exp(K) over the tokens that left it,
    allocated when the first one does."""

    def __init__(self, capacity: int, batch: int, width: int, dtype: torch.dtype, device: torch.device):
        super().__init__(capacity, batch, [(width,), (width,)], dtype, device)
        self.sums: list[torch.Tensor] | None = None

    def _dropped(self, tokens: list[torch.Tensor]) -> None:
        k, v = tokens
        if not k.shape[1]:
            return
        ek = torch.exp(k.float())
        add = [(ek * v.float()).sum(1), ek.sum(1)]
        if self.sums is None:
            self.sums = [torch.zeros_like(a, dtype=self.buffers[0].dtype) for a in add]
        for total, extra in zip(self.sums, add):
            total.copy_(total.float() + extra)

    def state(self, batch: int, width: int) -> list[torch.Tensor]:
        """The running sums (b, W), zeros while no token has left the band."""
        if self.sums is None:
            return [self.buffers[0].new_zeros(batch, width)] * 2
        return self.sums

    @property
    def nbytes(self) -> int:
        return super().nbytes + (0 if self.sums is None else sum(s.nbytes for s in self.sums))


class ChunkCache(TokenCache):
    """K and V of chunked attention: a ring of `chunk` slots (or fewer, for a shorter generation) of which only
    the current chunk's are read: the first (count − 1) mod chunk + 1 slots."""

    def _current(self) -> int:
        return (self.count - 1) % self.capacity + 1 if self.count else 0

    def cached(self) -> list[torch.Tensor]:
        return [buffer[:, :self._current()] for buffer in self.buffers]

    def positions(self) -> torch.Tensor:
        return torch.arange(self.count - self._current(), self.count, device=self.buffers[0].device)


class Cache:
    """One sequence batch's cache: a cache per layer, and how many tokens it holds."""

    def __init__(self, layers: list[TokenCache]):
        self.layers, self.length = layers, 0

    @property
    def nbytes(self) -> int:
        return sum(layer.nbytes for layer in self.layers)

    def rewind(self, length: int) -> None:
        """Forget the tokens after `length` (timing repeats a step at one context; running sums that already
        took a dropped token keep it, which changes values, not work)."""
        for layer in self.layers:
            layer.count = min(layer.count, length)
        self.length = length


# ---------------------------------------------------------------------------------------------- per type
def _softmax(attention, model: ModelSpec, capacity: int, batch: int, dtype, device) -> TokenCache:  # noqa: ANN001
    width = [(model.n_kv_heads, model.head_dim)] * 2
    return TokenCache(capacity, batch, width, dtype, device)


def _window(attention, model: ModelSpec, capacity: int, batch: int, dtype, device) -> TokenCache:  # noqa: ANN001
    return _softmax(attention, model, min(capacity, attention.window), batch, dtype, device)


def _chunk(attention, model: ModelSpec, capacity: int, batch: int, dtype, device) -> ChunkCache:  # noqa: ANN001
    width = [(model.n_kv_heads, model.head_dim)] * 2
    return ChunkCache(min(capacity, attention.chunk), batch, width, dtype, device)


def _latent(attention, model: ModelSpec, capacity: int, batch: int, dtype, device) -> TokenCache:  # noqa: ANN001
    return TokenCache(capacity, batch, [(attention.kv_lora_rank,), (attention.qk_rope_head_dim,)], dtype, device)


def _aft(band: Callable[[object, int], int]):  # noqa: ANN202
    def make(attention, model: ModelSpec, capacity: int, batch: int, dtype, device) -> AFTCache:  # noqa: ANN001
        return AFTCache(band(attention, capacity), batch, model.q_width, dtype, device)
    return make


def _sparse(attention, model: ModelSpec, capacity: int, batch: int, dtype, device):  # noqa: ANN001, ANN202
    raise CostplanError(NO_DECODE["sparse"])


# Attention type → its cache; a test keeps the keys and the spec's attention types in step.
CACHES = {
    "dense": _softmax, "flash": _softmax, "sliding_window": _window, "chunked": _chunk, "mla": _latent,
    "aft_full": _aft(lambda a, capacity: capacity), "aft_local": _aft(lambda a, capacity: min(capacity, a.window)),
    "aft_conv": _aft(lambda a, capacity: min(capacity, a.window)), "aft_simple": _aft(lambda a, capacity: 0),
    "sparse": _sparse,
}
NO_DECODE = {"sparse": "sparse attention cannot decode incrementally in the reference model: its strided and "
                       "fixed patterns have no cache here"}


def decode_unsupported(spec: Spec) -> str:
    """Why the spec's reference model cannot decode with a cache ('' when it can)."""
    return next((NO_DECODE[layer.attention.type] for layer in layers(spec.model)
                 if layer.attention.type in NO_DECODE), "")


def new_cache(spec: Spec, capacity: int, batch: int = 1, dtype: torch.dtype = torch.bfloat16,
              device: str | torch.device = "cpu") -> Cache:
    """An empty cache for `batch` sequences of up to `capacity` tokens (prompt and generated)."""
    if capacity > spec.model.max_seq_len:
        raise CostplanError(f"a cache of {capacity} tokens is longer than model.max_seq_len "
                            f"({spec.model.max_seq_len})")
    device = torch.device(device)
    return Cache([CACHES[layer.attention.type](layer.attention, spec.model, capacity, batch, dtype, device)
                  for layer in layers(spec.model)])


@torch.no_grad()
def generate(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int, cache: Cache) -> list[torch.Tensor]:
    """Greedy decoding: the logits (b, vocab) of the prompt's last position and of each generated token."""
    logits = [model(prompt, cache)[:, -1]]
    for _ in range(new_tokens):
        logits.append(model(logits[-1].argmax(-1, keepdim=True), cache)[:, -1])
    return logits
