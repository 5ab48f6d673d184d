"""A spec's component costs for one sequence: summed over the concrete layers of the whole model or of one
pipeline stage, and shared between the points of a sweep."""
from __future__ import annotations

from costplan.costs import ZERO, Cost, Shape, memo
from costplan.costs.attention import dense as dense_attention
from costplan.costs.embedding import embedding, head
from costplan.costs.implementation import (capped_logits, d_model_wide, eager_peak, fp32_residual, model_extra,
                                          position_ids, weight_copies)
from costplan.costs.layers import (Layer, Stages, block_width, kept, last_layer_shape, layer_cost, recompute_groups,
                                   stage_count, stage_layers)
from costplan.costs.memory import element_bytes
from costplan.costs.norm import norm
from costplan.spec import ModelSpec, Spec

COMPONENTS = ("embedding", "attention", "mlp", "moe", "norms", "head")


def shape_of(spec: Spec) -> Shape:
    t = spec.training
    return Shape(seq_len=spec.seq_len, act_bytes=element_bytes(t.precision), recompute=t.recompute,
                 recompute_layers=t.recompute_layers,
                 implementation=t.implementation, autocast=t.autocast, modules=t.modules, activation=t.activation,
                 fusion=t.fusion, fused_kernels=tuple(sorted(set(t.fused_kernels))),
                 loss_kernel=t.loss_kernel, fp8_saved_inputs=t.fp8_saved_inputs)


def components(spec: Spec, shape: Shape | None = None, stage: int = 0, stages: Stages = 1) -> dict[str, Cost]:
    """Cost of one sequence by component, summed over every layer; or over the layers of one pipeline stage of
    `stages` (layers.stage_layers: a count of equal runs, or each run's depth): the first holds the embedding,
    the last the final norm and the head."""
    return dict(stage_parts(spec, shape or shape_of(spec), stage, stages))


def stage_parts(spec: Spec, shape: Shape, stage: int = 0, stages: Stages = 1) -> dict[str, Cost]:
    """components() itself, not a copy, for callers that only read it (the memory and the step of a layout)."""
    return memo.cached(("components", memo.token(spec.model), memo.token(shape), stage, stages),
                       lambda: _shared_stage(spec.model, shape, stage, stages))


# Inside `shared_components()` (a sweep, a layout search), points whose models and shapes are equal share their
# component costs: many differ only in training or hardware settings. ModelSpec and Shape are frozen: keys.
shared_components = memo.shared


def _shared_stage(model: ModelSpec, shape: Shape, stage: int, stages: Stages) -> dict[str, Cost]:
    """A stage's costs depend on its model only through the widths, whether it holds the embedding and the head,
    and its layers: the middle stages of a pipeline, and stages of that many layers in deeper models of the
    same widths, share them (inside shared_components())."""
    groups = recompute_groups(model, shape, stage, stages)
    last = groups[0][0] if len(groups) == 1 else stage_layers(model, stage, stages)[-1]
    layers = tuple((memo.token(layer), count, memo.token(layer_shape)) for layer, count, layer_shape in groups)
    key = ("stage components", memo.token(block_width(model)), memo.token(shape), stage == 0,
           stage == stage_count(stages) - 1, layers, memo.token(last))
    return memo.cached(key, lambda: _components(model, shape, stage, stages))


def edge_params(model: ModelSpec, shape: Shape, stage: int, stages: Stages) -> tuple[int, int]:
    """A stage's parameters outside its layers (the embedding and an embedding norm on the first stage, the final
    norm and the head on the last): those split over the tensor ranks with the vocabulary, and the norms', which
    every tensor rank keeps whole."""
    outer_norm, embedded, _, headed = _shared_edges(block_width(model), shape)
    first, last = stage == 0, stage == stage_count(stages) - 1
    vocabulary = (embedded.params if first else 0) + (headed.params if last else 0)
    norms = outer_norm.params * ((first and model.embedding_norm) + last)
    return vocabulary, norms


def _components(model: ModelSpec, shape: Shape, stage: int, stages: Stages) -> dict[str, Cost]:
    parts = {key: ZERO for key in COMPONENTS if key != "moe" or model.moe is not None}
    width = block_width(model)
    outer_norm, embedded, tables, headed = _shared_edges(width, shape)
    if stage == 0:
        parts["embedding"] = embedded
        parts["attention"] = tables
        if model.embedding_norm:
            parts["norms"] = outer_norm
    last_stage = stage == stage_count(stages) - 1
    if last_stage:
        parts["head"] = headed
        parts["norms"] = parts["norms"] + outer_norm  # the final norm
    for layer, count, layer_shape in recompute_groups(model, shape, stage, stages):
        for key, cost in layer_cost(layer, model, layer_shape).items():
            parts[key] = parts[key].plus(cost, count)
    last_layer, last_shape = stage_layers(model, stage, stages)[-1], last_layer_shape(model, shape, stage, stages)
    last = layer_cost(last_layer, model, last_shape)
    after = sum(last[k].activations for k in ("mlp", "moe") if k in last) + (
        parts["head"].activations + outer_norm.activations if last_stage else 0)
    workspace = sum(c.workspace for c in parts.values())
    core = core_transient(last_layer, width, last_shape)
    parts["attention"] = parts["attention"] + Cost(
        workspace=max(eager_peak(width, shape, after, workspace), core - after - workspace, 0))
    return parts


def core_transient(layer: Layer, model: ModelSpec, shape: Shape) -> int:
    """What the stage's last attention core holds beyond the saved tensors at its busiest moment in backward,
    where the fused formulas run it materialised over the whole square (dense attention); the transformers
    modules' eager softmax is eager_peak's. A fully recomputed layer has just saved its attention block again
    (its input, saved once, aside); its feed-forward block's backward has run and freed its own."""
    if shape.implementation != "fused" or layer.attention.type != "dense":
        return 0
    again = 0
    if shape.recompute == "full":
        redone = layer_cost(layer, model, kept(shape))
        layer_input = shape.seq_len * model.d_model * shape.act_bytes
        again = redone["attention"].activations + redone["norms"].activations - layer_input
    return dense_attention.backward_transient(model, shape) + again


def _shared_edges(width: ModelSpec, shape: Shape) -> tuple[Cost, Cost, Cost, Cost]:
    return memo.cached(("edges", memo.token(width), memo.token(shape)), lambda: _edges(width, shape))


def _edges(model: ModelSpec, shape: Shape) -> tuple[Cost, Cost, Cost, Cost]:
    """What a stage adds around its layers, the same at every depth (shared inside memo.shared() by every model
    of the same widths): a final or embedding norm, the embedding, the rotary tables and the head."""
    outer_norm = norm(model.norm, model.d_model, shape)
    outer_norm = outer_norm.replace(act_d_model=outer_norm.activations) + d_model_wide(fp32_residual(1, model, shape))
    embedded = embedding(model, shape) + d_model_wide(position_ids(model, shape))
    tables = Cost(activations=model_extra(model, shape))   # the rotary tables: once
    # under autocast the head's 16-bit weight copy (the tied embedding's too) is saved once per micro-batch
    headed = head(model, shape) + Cost(activations=capped_logits(model, shape),
                                       shared_activations=weight_copies(model.vocab_size * model.d_model, shape))
    return outer_norm, embedded, tables, headed
