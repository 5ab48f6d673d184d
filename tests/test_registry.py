"""Variants are data: the cost registry, the spec's union and the README name the same attention types.

The expected set is written out by hand: the union is built from the spec's own registry, so comparing the two
could never fail.
"""
from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import pytest

from costplan import spec_attention as spec_module
from costplan.costs.attention import COST
from costplan.errors import SpecError
from costplan.sections import Section

EXPECTED = {"dense", "flash", "sliding_window", "sparse", "chunked", "mla", "aft_full", "aft_local", "aft_simple",
            "aft_conv"}
# the fields each type requires, so that a minimal spec of each validates
FIELDS = {"sliding_window": {"window": 16}, "aft_local": {"window": 16}, "aft_conv": {"window": 16},
          "sparse": {"pattern": "strided", "block": 16}, "chunked": {"chunk": 16},
          "mla": {"kv_lora_rank": 16, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16}}
README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_cost_registry_names_the_expected_types():
    assert set(COST) == EXPECTED


def test_every_attention_class_of_the_spec_is_in_the_union():
    # a model with a `type: Literal[...]` field defined in spec_attention.py but left out of the registry would never
    # validate; find them all by their field, not through the registry
    found = {}
    for _, cls in inspect.getmembers(spec_module, inspect.isclass):
        field = cls.model_fields.get("type") if issubclass(cls, Section) else None
        if field is not None and typing.get_origin(field.annotation) is typing.Literal:
            found.update(dict.fromkeys(typing.get_args(field.annotation), cls))
    assert set(found) == EXPECTED
    union = typing.get_args(spec_module.AttentionSpec)
    assert set(found.values()) == set(union)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_accepts_each_expected_type(name):
    from conftest import make_spec

    fields = FIELDS.get(name, {})
    assert make_spec({"attention": {"type": name, **fields}}).model.attention.type == name


def test_spec_rejects_an_unknown_type():
    from conftest import make_spec

    with pytest.raises(SpecError, match="attention"):
        make_spec({"attention": {"type": "linear"}})


def test_readme_table_lists_the_expected_types():
    section = README.split("### Attention types", 1)[1].split("###", 1)[0]
    assert set(re.findall(r"^\| `(\w+)` \|", section, flags=re.M)) - {"type"} == EXPECTED
