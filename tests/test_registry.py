"""Variants are data: the cost registry and the spec's tagged union name the same attention types."""
from __future__ import annotations

import typing

from costplan.costs.attention import COST
from costplan.spec import ATTENTION_TYPES, AttentionSpec


def test_registry_matches_union():
    union = typing.get_args(typing.get_args(AttentionSpec)[0])
    literals = {cls.model_fields["type"].default for cls in union}
    assert literals == set(ATTENTION_TYPES) == set(COST)
