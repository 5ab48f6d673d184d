"""The model as a list of concrete layers, expanded once from the spec, and the cost of one layer in each of
the block structures a spec names (`model.block`, spec.ModelSpec)."""
from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from dataclasses import dataclass

from costplan.costs import Cost, Shape, fp8_inputs, memo, selective_op
from costplan.costs.attention import COPIES_INPUT, COST as ATTENTION_COST
from costplan.costs.implementation import (attention_extra, autocast_extra, deepseek_router, family_attention_extra,
                                          mlp_extra, moe_extra)
from costplan.costs.mlp import mlp
from costplan.costs.moe import moe_block, routed_rows
from costplan.costs.norm import norm
from costplan.spec import ModelSpec, MoESpec, Spec
from costplan.spec_attention import AttentionSpec
from costplan.spec_rules import stage_depths, uneven_split


@dataclass(frozen=True)
class Structure:
    """How a layer's norms, blocks and residual adds are wired (model.block)."""

    norms: int                 # norms per layer
    norm_inputs: int           # distinct tensors they normalise: each is saved once, whichever norms read it
    shared_input: bool         # attention and MLP read the same normed tensor, saved once (by attention, first)
    residual: int              # elements moved by the residual adds, in s·d_model units (ops.py)
    # tensor-parallel reductions of a dense layer's outputs: a parallel layer sums attention's and the MLP's
    # row-parallel partial outputs and reduces them once (GPT-NeoX's gpt_j_residual, vLLM's Falcon)
    reductions: int = 2


# Two adds of two tensors move 3 each; a parallel layer sums x, attention and MLP in one add (read 3, write 1).
STRUCTURES = {
    "sequential": Structure(norms=2, norm_inputs=2, shared_input=False, residual=6),
    # the post-norms normalise each block's output, a tensor nothing else saves
    "sandwich": Structure(norms=4, norm_inputs=4, shared_input=False, residual=6),
    # both norms read the layer input
    "parallel": Structure(norms=2, norm_inputs=1, shared_input=False, residual=4, reductions=1),
    "parallel_shared_norm": Structure(norms=1, norm_inputs=1, shared_input=True, residual=4, reductions=1),
}


def tensor_reductions(model: ModelSpec, moe: MoESpec | None) -> int:
    """All-reduces (or reduce-scatters under sequence parallelism) of a layer's s·b·h output per pass under
    tensor parallelism: attention's and the MLP's (Megatron-LM §3), once for both in a parallel layer; a MoE block
    without shared experts has none of its own (its routed experts take their tokens by all-to-all)."""
    if moe is not None and not moe.n_shared_experts:
        return 1
    return STRUCTURES[model.block].reductions


@dataclass(frozen=True)
class Layer:
    """One transformer layer as built: attention and an MLP or MoE block, wired as model.block says."""

    attention: AttentionSpec
    d_ff: int
    moe: MoESpec | None = None


def is_moe_layer(index: int, moe: MoESpec | None) -> bool:
    """After `first_dense_layers` dense layers, the first layer is MoE and then every `every`-th one."""
    return moe is not None and index >= moe.first_dense_layers and (index - moe.first_dense_layers) % moe.every == 0


def layers(model: ModelSpec) -> list[Layer]:
    """Every layer of the model, in order."""
    return list(_layers(model))


@functools.lru_cache(maxsize=256)
def _layers(model: ModelSpec) -> tuple[Layer, ...]:
    # Layers with the same pattern entry and the same MoE-ness are one object: counting and keying them by
    # identity is then cheap (hashing a Layer hashes its attention section).
    pattern, built, found = model.attention_pattern, {}, []
    for i in range(model.n_layers):
        key = (i % len(pattern), is_moe_layer(i, model.moe))
        layer = built.get(key)
        if layer is None:
            layer = built[key] = Layer(pattern[key[0]], model.d_ff, model.moe if key[1] else None)
        found.append(layer)
    return tuple(found)


# A pipeline's stages: a count of equal runs of consecutive layers, or each stage's depth, first to last.
Stages = int | tuple[int, ...]


def pipeline_stages(spec: Spec) -> Stages:
    """The spec's pipeline as stage_layers takes it: the count of its stages when they split the layers evenly,
    otherwise each stage's depth (spec_rules.stage_depths, Megatron-Core's uneven split)."""
    par, n_layers = spec.parallel, spec.model.n_layers
    if not uneven_split(par.__dict__.get):
        return par.pipeline
    return stage_depths(n_layers, par.pipeline, par.first_stage_layers, par.last_stage_layers,
                        par.account_for_embedding, par.account_for_loss, par.stage_layers)


def stage_count(stages: Stages) -> int:
    return stages if isinstance(stages, int) else len(stages)


def stage_depth(model: ModelSpec, stage: int, stages: Stages) -> int:
    """Layers of pipeline stage `stage`: n_layers / stages, or the depth given for it."""
    return model.n_layers // stages if isinstance(stages, int) else stages[stage]


def stage_layers(model: ModelSpec, stage: int = 0, stages: Stages = 1) -> list[Layer]:
    """The layers of pipeline stage `stage` of `stages`: equal runs of consecutive layers (spec validation
    makes their count divide n_layers), or runs of the depths given (which validation makes sum to n_layers).
    An interleaved rank (virtual_stages) is taken as one run too: it holds as many layers, though of a per-layer
    attention pattern not always the same ones."""
    start = stage * stage_depth(model, 0, stages) if isinstance(stages, int) else sum(stages[:stage])
    return list(_layers(model)[start:start + stage_depth(model, stage, stages)])


@functools.lru_cache(maxsize=1024)
def distinct_layers(model: ModelSpec, stage: int = 0, stages: Stages = 1) -> tuple[tuple[Layer, int], ...]:
    """Each distinct layer of a pipeline stage and how many times it repeats (cached: costs and step times
    loop over these, many times per estimate)."""
    return _distinct(stage_layers(model, stage, stages))


def _distinct(run: list[Layer]) -> tuple[tuple[Layer, int], ...]:
    if run and run.count(run[0]) == len(run):    # every layer alike (one object: _layers): the common case
        return ((run[0], len(run)),)
    by_identity: dict[int, list] = {}
    for layer in run:
        entry = by_identity.get(id(layer))
        if entry is None:
            by_identity[id(layer)] = [layer, 1]
        else:
            entry[1] += 1
    # then equal layers of different objects merged, in order of first appearance (as a Counter of the layers)
    merged: Counter[Layer] = Counter()
    for layer, count in by_identity.values():
        merged[layer] += count
    return tuple(merged.items())


def stage_distinct(model: ModelSpec, stage: int = 0, stages: Stages = 1) -> tuple[tuple[Layer, int], ...]:
    """distinct_layers inside memo.shared(), without hashing the model once it is known to be one layer
    repeated (most are): that layer, as many times as a stage holds."""
    one = memo.cached(("one layer", memo.token(model)), lambda: _one_layer(model))
    if one is None:
        return distinct_layers(model, stage, stages)
    return ((one, stage_depth(model, stage, stages)),)


def recompute_groups(model: ModelSpec, shape: Shape, stage: int = 0,
                     stages: Stages = 1) -> tuple[tuple[Layer, int, Shape], ...]:
    """stage_distinct with the shape each layer runs at. With training.recompute_layers N under full
    recomputation, the first N layers of each stage recompute and the rest do not (Megatron's
    --recompute-method block --recompute-num-layers N); a stage of N layers or fewer recomputes all of them."""
    n = shape.recompute_layers
    if shape.recompute != "full" or n is None or n >= stage_depth(model, stage, stages):
        return tuple((layer, count, shape) for layer, count in stage_distinct(model, stage, stages))
    run, plain = stage_layers(model, stage, stages), kept(shape)
    return (tuple((layer, count, shape) for layer, count in _distinct(run[:n]))
            + tuple((layer, count, plain) for layer, count in _distinct(run[n:])))


def last_layer_shape(model: ModelSpec, shape: Shape, stage: int = 0, stages: Stages = 1) -> Shape:
    """The shape the last layer of a stage runs at (recompute_groups: it recomputes only if all of them do)."""
    n = shape.recompute_layers
    return shape if n is None or n >= stage_depth(model, stage, stages) else kept(shape)


def kept(shape: Shape) -> Shape:
    """The shape of a layer that saves its activations (not recomputed) among recomputed ones."""
    return dataclasses.replace(shape, recompute="none", recompute_layers=None)


def _one_layer(model: ModelSpec) -> Layer | None:
    every = _layers(model)
    return every[0] if every.count(every[0]) == len(every) else None


@functools.lru_cache(maxsize=1024)
def layer_model(model: ModelSpec) -> ModelSpec:
    """The model as one layer sees it: the same but for its depth, so that models differing only in n_layers
    (a sweep over depth) share their per-layer costs. Not validated: it is only ever read for widths."""
    return model if model.n_layers == 1 else model.model_copy(update={"n_layers": 1})


def block_width(model: ModelSpec) -> ModelSpec:
    """layer_model(model), found by the model's token inside memo.shared() (without hashing the model)."""
    return memo.cached(("width", memo.token(model)), lambda: layer_model(model))


def layer_cost(layer: Layer, model: ModelSpec, shape: Shape) -> dict[str, Cost]:
    """One layer's cost by component: attention, mlp or moe, and its norms (shared inside memo.shared() by
    every model of the same widths)."""
    width = block_width(model)
    return dict(memo.cached(("layer", memo.token(layer), memo.token(width), memo.token(shape)),
                            lambda: _layer_cost(layer, width, shape)))


def attention_cost(attention: AttentionSpec, model: ModelSpec, shape: Shape) -> Cost:
    """The attention formula of its type (shared inside memo.shared(): the layer's cost and its operations,
    costs/ops.py, both start from it)."""
    return memo.cached(("attention", memo.token(attention), memo.token(model), memo.token(shape)),
                       lambda: ATTENTION_COST[attention.type](attention, model, shape))


def _fp8_inputs(parts: dict[str, Cost], layer: Layer, model: ModelSpec, shape: Shape, ffn: str) -> dict[str, Cost]:
    """The layer's activations with its linears' inputs saved in fp8 (fp8_inputs.py), in sequential or sandwich
    blocks (spec_rules.fp8_input_rules), where each block's normed input is its own."""
    latent = layer.attention.type == "mla"
    more, wide = (fp8_inputs.latent_attention if latent else fp8_inputs.attention)(layer.attention, model, shape)
    a, f = parts["attention"], parts[ffn]
    parts = {**parts, "attention": a.replace(activations=a.activations + more, act_d_model=a.act_d_model + wide)}
    if layer.moe is None:
        more, wide = fp8_inputs.mlp(model, layer.d_ff, shape)
        return {**parts, ffn: f.replace(activations=f.activations + more, act_d_model=f.act_d_model + wide)}
    more, wide, rows = fp8_inputs.moe(layer.moe, model, routed_rows(layer.moe, shape.seq_len), shape)
    return {**parts, ffn: f.replace(activations=f.activations + more, act_d_model=f.act_d_model + wide,
                                     act_routed_rows=f.act_routed_rows + rows)}


def _layer_cost(layer: Layer, model: ModelSpec, shape: Shape) -> dict[str, Cost]:
    block_input = shape.seq_len * model.d_model * shape.act_bytes
    structure = STRUCTURES[model.block]
    norms = norm(model.norm, model.d_model, shape) * structure.norms
    # A norm saves its input; norms reading the same tensor hold one copy of it.
    norms = norms.replace(activations=norms.activations - (structure.norms - structure.norm_inputs) * block_input)
    ffn = "moe" if layer.moe is not None else "mlp"
    attention = attention_cost(layer.attention, model, shape)
    parts = {
        "attention": attention + Cost(activations=attention_extra(layer.attention, model, shape)
                                      + family_attention_extra(layer.attention, model, shape)),
        "norms": norms.replace(act_d_model=norms.activations),
        ffn: (moe_block(layer.moe, model, shape) + Cost(activations=moe_extra(layer.moe, model, shape))
              + deepseek_router(layer.moe, model, shape)
              if layer.moe is not None
              else mlp(model, layer.d_ff, shape) + Cost(activations=mlp_extra(layer.d_ff, shape))),
    }
    # Each block saves its (normed) d_model-wide input once, whatever it computes from it; a shared one is
    # saved by attention, which runs first, unless attention saves a copy of its own. (An attention's own
    # per-token tensors, MLA's latents, are beside it.)
    parts["attention"] = parts["attention"].replace(act_d_model=parts["attention"].act_d_model + block_input)
    if structure.shared_input and layer.attention.type not in COPIES_INPUT:
        parts[ffn] = parts[ffn].replace(activations=parts[ffn].activations - block_input, act_d_model=0)
    else:
        parts[ffn] = parts[ffn].replace(act_d_model=block_input)
    parts = autocast_extra(parts, ffn, structure.norm_inputs, structure.shared_input, model, shape)
    if shape.fp8_saved_inputs:
        parts = _fp8_inputs(parts, layer, model, shape, ffn)
    if shape.recompute == "full":
        # Checkpointing each layer keeps only its input (Korthikanti et al. 2022, Table 2: 2·sbh per layer) and
        # runs every block's forward again during backward.
        parts = {key: c.replace(activations=0, shared_activations=0, act_d_model=0, act_routed_rows=0,
                              hw_flops=c.hw_flops + c.hw_fwd) for key, c in parts.items()}
        parts["norms"] = parts["norms"].replace(activations=block_input, act_d_model=block_input)
    elif shape.recompute == "selective_op":
        # torchtitan's per-op checkpointing keeps some matmul outputs and reruns some matmuls (selective_op.py)
        kept, again = selective_op.kept_bytes(model, layer.d_ff, shape), selective_op.recomputed_products(
            model, layer.d_ff)
        rows = shape.seq_len
        parts = {key: c.replace(activations=kept[key], shared_activations=0, act_routed_rows=0,
                                act_d_model=block_input if key == "norms" else 0,
                                hw_flops=c.hw_flops + sum(2 * rows * i * o for i, o in again.get(key, ())))
                 for key, c in parts.items()}
    return parts
