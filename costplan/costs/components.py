"""A spec's component costs for one sequence: summed over the concrete layers of the whole model or of one
pipeline stage, and shared between the points of a sweep."""
from __future__ import annotations

from dataclasses import replace

from costplan.costs import ZERO, Cost, Shape, memo
from costplan.costs.embedding import embedding, head
from costplan.costs.implementation import (capped_logits, d_model_wide, eager_peak, fp32_residual, model_extra,
                                          position_ids, weight_copies)
from costplan.costs.layers import Stages, distinct_layers, layer_cost, stage_count, stage_layers
from costplan.costs.memory import element_bytes
from costplan.costs.norm import norm
from costplan.spec import ModelSpec, Spec

COMPONENTS = ("embedding", "attention", "mlp", "moe", "norms", "head")


def shape_of(spec: Spec) -> Shape:
    t = spec.training
    return Shape(seq_len=spec.seq_len, act_bytes=element_bytes(t.precision), recompute=t.recompute,
                 implementation=t.implementation, autocast=t.autocast, modules=t.modules,
                 fusion=t.fusion)


def components(spec: Spec, shape: Shape | None = None, stage: int = 0, stages: Stages = 1) -> dict[str, Cost]:
    """Cost of one sequence by component, summed over every layer; or over the layers of one pipeline stage of
    `stages` (layers.stage_layers: a count of equal runs, or each run's depth): the first holds the embedding,
    the last the final norm and the head."""
    key = ("components", spec.model, shape or shape_of(spec), stage, stages)
    return dict(memo.cached(key, lambda: _components(*key[1:])))


# Inside `shared_components()` (a sweep, a layout search), points whose models and shapes are equal share their
# component costs: many differ only in training or hardware settings. ModelSpec and Shape are frozen: keys.
shared_components = memo.shared


def _components(model: ModelSpec, shape: Shape, stage: int, stages: Stages) -> dict[str, Cost]:
    parts = {key: ZERO for key in COMPONENTS if key != "moe" or model.moe is not None}
    outer_norm = norm(model.norm, model.d_model, shape)
    outer_norm = replace(outer_norm, act_d_model=outer_norm.activations) + d_model_wide(fp32_residual(1, model, shape))
    if stage == 0:
        parts["embedding"] = embedding(model, shape) + d_model_wide(position_ids(model, shape))
        parts["attention"] = Cost(activations=model_extra(model, shape))   # the rotary tables: once
        if model.embedding_norm:
            parts["norms"] = outer_norm
    last_stage = stage == stage_count(stages) - 1
    if last_stage:
        # under autocast the head's 16-bit weight copy (the tied embedding's too) is saved once per micro-batch
        parts["head"] = head(model, shape) + Cost(
            activations=capped_logits(model, shape),
            shared_activations=weight_copies(model.vocab_size * model.d_model, shape))
        parts["norms"] = parts["norms"] + outer_norm  # the final norm
    for layer, count in distinct_layers(model, stage, stages):
        for key, cost in layer_cost(layer, model, shape).items():
            parts[key] = parts[key] + cost * count
    last = layer_cost(stage_layers(model, stage, stages)[-1], model, shape)
    after = sum(last[k].activations for k in ("mlp", "moe") if k in last) + (
        parts["head"].activations + outer_norm.activations if last_stage else 0)
    workspace = sum(c.workspace for c in parts.values())
    parts["attention"] = parts["attention"] + Cost(workspace=eager_peak(model, shape, after, workspace))
    return parts
