"""The reference PyTorch model of a spec: token ids (batch, seq) → logits (batch, seq, vocab).

Its submodule names carry the analytic breakdown's component keys (costplan.costs.estimate.COMPONENTS), so a
parameter, a FLOP or a saved tensor is attributed by the first key in its module path:

    embedding.token, embedding.position            → embedding
    layers.{i}.norms.{attention,mlp,attention_out,mlp_out,shared} → norms  (BLOCK_NORMS, by model.block)
    layers.{i}.attention.{q,k,v,o,q_norm,k_norm}    → attention
    layers.{i}.mlp.{gate,up,down}                   → mlp
    layers.{i}.moe.{router,experts.{j},shared,shared_gate} → moe  (in MoE layers, instead of mlp)
    norms.embedding, norms.final                    → norms
    head.proj, head.bias                            → head        (a tied head has no matrix of its own)

Constants (position ids, rotary tables, masks, ALiBi biases) are non-persistent buffers, so autograd saves
views of them rather than fresh tensors, and they are not parameters.
"""
from __future__ import annotations

import functools
import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from costplan.costs import fp8_weights
from costplan.costs.components import shape_of
from costplan.costs.estimate import COMPONENTS
from costplan.costs.layers import Layer, layers
from costplan.costs.mlp import fused_gated
from costplan.errors import CostplanError
from costplan.profiling.aft import AFT
from costplan.profiling.attention import Attention, Positions, make_core
from costplan.profiling.fp8_inputs import save_fp8_inputs
from costplan.profiling.mla import LatentAttentionModule
from costplan.profiling.modules import MLP, alibi_slopes, norm, rotary_tables
from costplan.profiling.precision import DTYPES
from costplan.profiling.private import tree_leaves
from costplan.profiling.moe import MoE
from costplan.spec import ModelSpec, Spec

INIT_STD = 0.02   # GPT-2's initialiser; values do not matter for any measurement, only finiteness


def component_of(name: str) -> str | None:
    """The component key a module or parameter path belongs to: its first segment that is one."""
    for part in name.split("."):
        if part in COMPONENTS:
            return part
    return None


def training_dtype(spec: Spec) -> torch.dtype:
    """Weights and activations: bf16 and fp8 training run in bf16, fp16 in fp16, fp32 and tf32 in fp32."""
    return DTYPES[spec.training.precision]


class Embedding(nn.Module):
    """Token embedding (+ learned positions). Backward needs the token ids; position ids are a buffer."""

    def __init__(self, model: ModelSpec, **factory):
        super().__init__()
        self.token = nn.Embedding(model.vocab_size, model.d_model, **factory)
        self.position = (nn.Embedding(model.max_seq_len, model.d_model, **factory)
                         if model.position == "learned" else None)
        if self.position is not None:
            ids = torch.arange(model.max_seq_len, device=factory.get("device"))
            self.register_buffer("position_ids", ids, persistent=False)

    def forward(self, ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Tokens at positions start, start + 1, … (start > 0: after the tokens of a cache)."""
        x = self.token(ids)
        if self.position is not None:
            x = x + self.position(self.position_ids[start: start + ids.shape[1]])
        return x


class Head(nn.Module):
    """logits = x·Wᵀ (+ b). A tied head multiplies by the token embedding, which it does not own; its bias, if
    any, is its own either way."""

    def __init__(self, model: ModelSpec, tied_to: nn.Embedding | None, **factory):
        super().__init__()
        self.proj = None if tied_to is not None else nn.Linear(model.d_model, model.vocab_size, bias=False,
                                                               **factory)
        self.bias = nn.Parameter(torch.zeros(model.vocab_size, **factory)) if model.head_bias else None
        # Kept outside the module tree so the tied matrix is listed (and counted) once, under `embedding`.
        self.__dict__["tied_to"] = tied_to

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.tied_to.weight if self.proj is None else self.proj.weight
        return nn.functional.linear(x, weight, self.bias)


# The norms of each block structure (model.block), by name: the norm before each block ("attention", "mlp"),
# after it ("attention_out", "mlp_out"), or one before both ("shared").
BLOCK_NORMS = {
    "sequential": ("attention", "mlp"),
    "sandwich": ("attention", "attention_out", "mlp", "mlp_out"),
    "parallel": ("attention", "mlp"),
    "parallel_shared_norm": ("shared",),
}


class Block(nn.Module):
    """One pre-norm transformer layer, wired as model.block says (spec.ModelSpec)."""

    def __init__(self, layer: Layer, spec: Spec, core: str | None, slopes, **factory):  # noqa: ANN001
        super().__init__()
        model = spec.model
        self.kind = model.block
        self.norms = nn.ModuleDict({name: norm(model.norm, model.d_model, **factory)
                                    for name in BLOCK_NORMS[model.block]})
        build, _ = ATTENTION_MODULES[layer.attention.type]
        self.attention = build(layer, spec, core, slopes, factory)
        fused = fused_gated(model, shape_of(spec))
        if layer.moe is not None:
            self.moe = MoE(layer.moe, model, fused, **factory)
        else:
            self.mlp = MLP(model.mlp, model.d_model, layer.d_ff, model.bias, fused, **factory)

    def forward(self, x: torch.Tensor, pos: Positions, cache=None) -> torch.Tensor:  # noqa: ANN001
        block = self.moe if hasattr(self, "moe") else self.mlp
        n = self.norms
        if self.kind == "parallel_shared_norm":
            h = n["shared"](x)
            return x + self.attention(h, pos, cache) + block(h)
        if self.kind == "parallel":
            return x + self.attention(n["attention"](x), pos, cache) + block(n["mlp"](x))
        if self.kind == "sandwich":
            x = x + n["attention_out"](self.attention(n["attention"](x), pos, cache))
            return x + n["mlp_out"](block(n["mlp"](x)))
        x = x + self.attention(n["attention"](x), pos, cache)
        return x + block(n["mlp"](x))


def _softmax(layer: Layer, spec: Spec, core: str | None, slopes, factory: dict) -> nn.Module:  # noqa: ANN001
    kernel, materializes = make_core(layer.attention, spec.model, spec.seq_len, core, slopes, factory.get("device"))
    # A flash core already recomputes its scores in backward; only a materialising core is checkpointed.
    selective = spec.training.recompute == "selective" and materializes
    return Attention(spec.model, kernel, recompute_core=selective, rope=layer.attention.rope, **factory)


def _latent(layer: Layer, spec: Spec, core: str | None, slopes, factory: dict) -> nn.Module:  # noqa: ANN001
    return LatentAttentionModule(layer.attention, spec.model, spec.seq_len, **factory)


def _attention_free(layer: Layer, spec: Spec, core: str | None, slopes, factory: dict) -> nn.Module:  # noqa: ANN001
    return AFT(layer.attention, spec.model, spec.seq_len, **factory)


# Attention type → (module builder, whether the module is laid out for training.seq_len: block patterns and
# tiles are). A test keeps the keys and the spec's attention types in step.
ATTENTION_MODULES = {
    "dense": (_softmax, False), "flash": (_softmax, False),
    "sliding_window": (_softmax, True), "sparse": (_softmax, True), "chunked": (_softmax, True),
    "mla": (_latent, True),
    "aft_full": (_attention_free, False), "aft_local": (_attention_free, True),
    "aft_simple": (_attention_free, False), "aft_conv": (_attention_free, False),
}


class Model(nn.Module):
    """The whole decoder: embedding → (norm) → layers → final norm → head."""

    def __init__(self, spec: Spec, core: str | None = None, **factory):
        super().__init__()
        model = spec.model
        self.recompute, self.recompute_layers = spec.training.recompute, spec.training.recompute_layers
        # selective_op: weak references to the storages its checkpoints keep in the last forward, with the
        # component that made each (selective_op_contexts), and what names the running component (set by
        # memory.saved_bytes while it counts)
        self.kept: list[tuple[weakref.ref, str | None]] = []
        self.component: Callable[[], str] | None = None
        self.seq_len = spec.seq_len
        self.patterned = any(ATTENTION_MODULES[layer.attention.type][1] for layer in layers(model))
        self.embedding = Embedding(model, **factory)
        norms = {"final": norm(model.norm, model.d_model, **factory)}
        if model.embedding_norm:
            norms["embedding"] = norm(model.norm, model.d_model, **factory)
        self.norms = nn.ModuleDict(norms)
        slopes = (torch.tensor(alibi_slopes(model.n_heads), device=factory.get("device"))
                  if model.position == "alibi" else None)
        self.layers = nn.ModuleList(Block(layer, spec, core, slopes, **factory) for layer in layers(model))
        self.head = Head(model, self.embedding.token if model.tie_embeddings else None, **factory)
        self._constants(model, core, slopes, **factory)

    def _constants(self, model: ModelSpec, core: str | None, slopes, **factory) -> None:  # noqa: ANN001
        s = model.max_seq_len
        device = factory.get("device")
        # The causal mask, s² bytes: only what materialises scores (explicit cores, AFT-full, ALiBi) needs it.
        kinds, first = model.attention_types, model.attention_pattern[0]   # MLA and AFT come alone, not in patterns
        future = None
        if kinds & {"dense", "aft_full"} or core == "explicit" or model.position == "alibi":
            future = torch.ones(s, s, dtype=torch.bool, device=device).triu(1)
        self.register_buffer("future", future, persistent=False)
        cos = sin = alibi = outside = None
        if model.position == "rope":
            # MLA rotates only its decoupled RoPE dimensions.
            dim = first.qk_rope_head_dim if first.type == "mla" else model.head_dim
            cos, sin = rotary_tables(s, dim, **factory)
        if first.type == "aft_local":
            # Keys outside AFT-local's band (and future keys): where its position bias is held at 0.
            ahead = torch.arange(s, device=device)[:, None] - torch.arange(s, device=device)[None, :]
            outside = (ahead < 0) | (ahead >= first.window)
        if model.position == "alibi":
            # Press et al. 2022: bias −slope·(i − j) for key j ≤ query i; −inf above the diagonal.
            distance = torch.arange(s, device=device)[None, :] - torch.arange(s, device=device)[:, None]
            bias = (slopes[:, None, None] * distance).masked_fill(self.future, float("-inf"))
            alibi = bias.to(factory.get("dtype"))
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.register_buffer("alibi", alibi, persistent=False)
        self.register_buffer("outside", outside, persistent=False)

    def positions(self, s: int) -> Positions:
        return Positions(
            cos=None if self.cos is None else self.cos[:s],
            sin=None if self.sin is None else self.sin[:s],
            bias=None if self.alibi is None else self.alibi[None, :, :s, :s],  # 4-D: CPU flash takes it
            future=None if self.future is None else self.future[:s, :s],
            outside=None if self.outside is None else self.outside[:s, :s],
        )

    def decode_positions(self, p: int) -> Positions:
        """Views for one new token at position p, which sees every cached key (no future mask)."""
        return Positions(
            cos=None if self.cos is None else self.cos[p: p + 1],
            sin=None if self.sin is None else self.sin[p: p + 1],
            bias=None if self.alibi is None else self.alibi[None, :, p: p + 1, : p + 1],
            future=None, causal=False,
        )

    def forward(self, ids: torch.Tensor, cache=None) -> torch.Tensor:  # noqa: ANN001
        """Logits of every position; with a `cache` (generate.Cache), logits of the last position only: an
        empty cache takes a prompt, a filled one a single next token (see generate.py)."""
        start = 0 if cache is None else cache.length
        if start and ids.shape[1] != 1:
            raise CostplanError(f"a filled cache takes one token at a time, got {ids.shape[1]}")
        if not start and self.patterned and ids.shape[1] != self.seq_len:
            # Block patterns and AFT-local's tiles are laid out for the spec's training.seq_len.
            raise CostplanError(f"this model was built for sequences of {self.seq_len} tokens (training.seq_len), "
                                f"got {ids.shape[1]}")
        pos = self.decode_positions(start) if start else self.positions(ids.shape[1])
        x = self.embedding(ids, start)
        if "embedding" in self.norms:
            x = self.norms["embedding"](x)
        if cache is not None:
            for block, layer_cache in zip(self.layers, cache.layers):
                x = block(x, pos, layer_cache)
            cache.length += ids.shape[1]
            return self.head(self.norms["final"](x[:, -1:]))      # generation needs the next token only
        self.kept.clear()
        for index, block in enumerate(self.layers):
            if self.recompute == "selective_op":
                # torchtitan's per-op checkpointing, with torch's default early stop as torchtitan runs it
                x = checkpoint(block, x, pos, use_reentrant=False,
                               context_fn=functools.partial(selective_op_contexts, self))
            elif self.recompute == "full" and (self.recompute_layers is None or index < self.recompute_layers):
                # Full recomputation: each layer keeps only its input and reruns its whole forward in backward
                # (Megatron's convention; torch's default early stop would skip the MLP down projection). With
                # training.recompute_layers, only the first layers do (one stage: the whole model here).
                x = checkpoint(block, x, pos, use_reentrant=False, early_stop=False)
            else:
                x = block(x, pos)
        return self.head(self.norms["final"](x))


# What torchtitan's op policy keeps besides every second matmul: the attention kernel's outputs (each backend's).
ATTENTION_KERNELS = tuple(getattr(torch.ops.aten, name).default for name in (
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention"))


def selective_op_contexts(model: Model) -> tuple:
    """torch's selective-checkpoint contexts for one layer's checkpoint under torchtitan's op policy
    (costs/selective_op.py): keep the output of the attention kernel and of the 1st, 3rd, … matmul of the
    layer's forward, counted apart in forward and in recomputation; recompute everything else. Each output kept
    in forward is also appended to `model.kept`, with the component running where `model.component` asks."""
    counts = {False: 0, True: 0}

    def policy(ctx, func, *args, **kwargs):  # noqa: ANN001, ANN202 - torch's policy signature
        if func is torch.ops.aten.mm.default:
            counts[ctx.is_recompute] += 1
            keep = counts[ctx.is_recompute] % 2 == 1
        else:
            keep = func in ATTENTION_KERNELS
        if keep and not ctx.is_recompute:
            if not hasattr(ctx, "op_output"):
                raise CostplanError("training.recompute selective_op: this torch does not pass an op's output to "
                                    "the checkpoint policy, which measuring it needs; use a newer torch")
            component = model.component() if model.component is not None else None
            model.kept.extend((weakref.ref(t.untyped_storage()), component)
                              for t in tree_leaves(ctx.op_output) if isinstance(t, torch.Tensor))
        return CheckpointPolicy.MUST_SAVE if keep else CheckpointPolicy.PREFER_RECOMPUTE

    return create_selective_checkpoint_contexts(policy)


def init_weights(model: nn.Module) -> None:
    """Small normal weights, unit norm weights, zero biases (values only need to be finite)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.device.type == "meta":
                continue
            if p.dim() >= 2:
                p.normal_(0.0, INIT_STD)
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)


def build_model(spec: Spec, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                core: str | None = None) -> Model:
    """The reference model of `spec`, its parameters in the training precision's dtype.

    `core` overrides the attention core of every layer ("explicit" or "sdpa"), e.g. dense attention through
    torch's fused kernel; by default dense attention is explicit and flash attention is SDPA. On the `meta`
    device nothing is allocated (parameter counts of 405B-parameter specs cost nothing)."""
    factory = {"device": torch.device(device), "dtype": dtype or training_dtype(spec)}
    if core not in (None, "explicit", "sdpa"):
        raise CostplanError(f"core: expected 'explicit' or 'sdpa', got {core!r}")
    model = Model(spec, core, **factory)
    init_weights(model)
    if spec.training.fp8_saved_inputs:
        save_fp8_inputs(model, fp8_weights.copies(spec))
    return model
