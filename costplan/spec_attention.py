"""The attention section of a spec: one frozen section per attention type, a tagged union on `type`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Union

from costplan.errors import did_you_mean, shown
from costplan.kinds import FAILED, Invalid, Kind, ListOf, Place, kind_of, raise_if
from costplan.sections import Section, canonical
from costplan.validation import Flag, Width


class Softmax(Section):
    """What every q·k softmax attention states besides its pattern: whether its layer rotates q and k when
    model.position is rope. `rope: false` is a NoPE layer (Kazemnejad et al. 2023): Llama 4's every fourth,
    global, layer. Rotation has no parameters and no matmul FLOPs; a NoPE layer only skips its elementwise
    pass over q and k (costs/ops.py)."""

    rope: Flag = True

    @property
    def materializes(self) -> bool:
        """Whether the core stores its probabilities (per pair) rather than its output and a log-sum-exp: a
        pattern's `kernel: materialized`, and dense attention."""
        return getattr(self, "kernel", "flash") == "materialized"


class DenseAttention(Softmax):
    """Softmax attention that materialises the seq_len × seq_len score matrix."""

    type: Literal["dense"] = "dense"

    @property
    def materializes(self) -> bool:
        return True


class FlashAttention(Softmax):
    """Exact softmax attention with an IO-aware kernel (Dao et al. 2022): no score matrix is stored."""

    type: Literal["flash"] = "flash"


Kernel = Literal["flash", "materialized"]   # a fused kernel storing O(s), or probabilities stored per pair


class SlidingWindowAttention(Softmax):
    """Each query sees the `window` most recent keys, itself included (Longformer; Mistral 7B)."""

    type: Literal["sliding_window"] = "sliding_window"
    window: Width
    kernel: Kernel = "flash"             # FlashAttention-2's windowed kernel, as Mistral trains; or Longformer's


class SparseAttention(Softmax):
    """The factorized patterns of Child et al. 2019, half of the heads on each of the two parts."""

    type: Literal["sparse"] = "sparse"
    pattern: Literal["strided", "fixed"]
    block: Width                         # the stride l
    summary: Width | None = None         # fixed only: the c summary positions at the end of each block
    kernel: Kernel = "flash"             # block-sparse kernels recompute attention in backward (Child et al. §5)

    def _after(self) -> None:
        problems = []
        if self.pattern == "fixed" and self.summary is None:
            problems.append(("summary", "the fixed pattern needs `summary` (c, the summary positions per block)"))
        if self.pattern == "strided" and self.summary is not None:
            problems.append(("summary", "only the fixed pattern has summary positions; remove it or use "
                                        "pattern: fixed"))
        if self.summary is not None and self.summary > self.block:
            problems.append(("summary", f"{self.summary} is more than block ({self.block})"))
        raise_if(problems)


class ChunkedAttention(Softmax):
    """Chunked local attention (Llama 4's RoPE layers, transformers' chunked_attention): the sequence is cut into
    consecutive chunks of `chunk` tokens and each query sees the keys of its own chunk up to itself; no key of
    an earlier chunk. A decoder serving it keeps at most one chunk of K and V per layer."""

    type: Literal["chunked"] = "chunked"
    chunk: Width
    kernel: Kernel = "flash"             # a block-diagonal causal flash kernel; or one storing its probabilities


class LatentAttention(Section):
    """Multi-head latent attention of DeepSeek-V2 (§2.1) and V3: low-rank K/V (and Q) with a decoupled RoPE key."""

    type: Literal["mla"] = "mla"
    kv_lora_rank: Width                  # d_c, the cached latent
    q_lora_rank: Width | None = None     # d_c'; None: queries are projected directly from x
    qk_nope_head_dim: Width
    qk_rope_head_dim: Width
    v_head_dim: Width


class AFTFull(Section):
    """Attention-Free Transformer (Zhai et al. 2021, Eq. 2): a learned max_seq_len × max_seq_len position bias."""

    type: Literal["aft_full"] = "aft_full"


class AFTLocal(Section):
    """AFT-local: the position bias is kept inside a band of `window` keys, zero outside."""

    type: Literal["aft_local"] = "aft_local"
    window: Width


class AFTSimple(Section):
    """AFT-simple: no position bias; a global, softmax(K)-weighted pooling of V."""

    type: Literal["aft_simple"] = "aft_simple"


class AFTConv(Section):
    """AFT-conv: the position bias is a learned kernel of `window` taps per head."""

    type: Literal["aft_conv"] = "aft_conv"
    window: Width


ATTENTION_TYPES: dict[str, type[Section]] = {
    cls.model_fields["type"].default: cls
    for cls in (DenseAttention, FlashAttention, SlidingWindowAttention, SparseAttention, ChunkedAttention,
                LatentAttention, AFTFull, AFTLocal, AFTSimple, AFTConv)
}
# q·k attention with query and key/value heads
SOFTMAX_TYPES = ("dense", "flash", "sliding_window", "sparse", "chunked")
AFT_TYPES = ("aft_full", "aft_local", "aft_simple", "aft_conv")


def _attention_shorthand(value: Any) -> Any:
    """`attention: flash` means `attention: {type: flash}`; a mapping without a type is dense attention."""
    if isinstance(value, str):
        return {"type": canonical(value, ATTENTION_TYPES)}
    if isinstance(value, Mapping) and "type" not in value:
        return {"type": "dense", **value}
    if isinstance(value, Mapping):
        return {**value, "type": canonical(value["type"], ATTENTION_TYPES)}
    return value


class TaggedAttention(Kind):
    """One attention section, picked by its `type` (shorthands expanded first); a field another type has gets
    a message naming those types."""

    def __init__(self) -> None:
        super().__init__("AttentionSpec", None)
        self.members = ATTENTION_TYPES

    def check(self, value: Any, at: Place) -> Any:
        value = _attention_shorthand(value)
        if not isinstance(value, Mapping):
            raise Invalid(f"expected a mapping of fields, got {kind_of(value)}")
        tag = str(value["type"])
        if tag not in self.members:
            at.at("type").add(f"{shown(tag)} is not one of {', '.join(self.members)}"
                              f"{did_you_mean(tag, self.members)}")
            return FAILED
        return self.members[tag]._validate_at(value, at, siblings=self.members)

    def sections(self) -> list[type[Section]]:
        return list(self.members.values())


class OneOrPattern(Kind):
    """`model.attention`: one attention for every layer, or a pattern of them repeated over the layers in order
    (layer i has pattern[i mod len]): Gemma 2's alternating windowed and global layers, Gemma 3's five of one
    and one of the other, or one entry per layer."""

    def __init__(self, one: Kind) -> None:
        super().__init__("ModelAttention", None)
        self.one, self.pattern = one, ListOf(one, as_tuple=True)

    def check(self, value: Any, at: Place) -> Any:
        if not isinstance(value, (list, tuple)):
            return self.one.check(value, at)
        if not value:
            raise Invalid("an empty list; write one attention type, or a list of them repeated over the layers")
        if len(value) == 1:     # a list of one is that one attention; its problems still name the entry
            return at.at(0).check(self.one, value[0])
        return self.pattern.check(value, at)

    def sections(self) -> list[type[Section]]:
        return self.one.sections()


AttentionSpec = Union[tuple(ATTENTION_TYPES.values())]  # noqa: UP007 - the type of one attention section
AttentionPattern = tuple[AttentionSpec, ...]
ModelAttention = OneOrPattern(TaggedAttention())


def pattern_of(attention: AttentionSpec | AttentionPattern) -> AttentionPattern:
    """The attention of a model as a pattern: a single attention is a pattern of one."""
    return attention if isinstance(attention, tuple) else (attention,)


def describe(attention: AttentionSpec | AttentionPattern) -> str:
    """A short label: `flash`, or a pattern's types in order with runs counted (`sliding_window×5 + flash`)."""
    runs: list[list] = []
    for a in pattern_of(attention):
        if runs and runs[-1][0] == a.type:
            runs[-1][1] += 1
        else:
            runs.append([a.type, 1])
    return " + ".join(kind if n == 1 else f"{kind}×{n}" for kind, n in runs)
