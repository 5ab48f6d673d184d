"""costplan's own validation of input files (costplan/sections.py) and its frozen values (costplan/records.py).

The spec's messages are pinned field by field in test_input.py and test_spec.py; these tests pin what the
machinery promises every section and record: construction, freezing, equality, dumps, problem order and paths.
"""
from __future__ import annotations

import pytest

from costplan import hardware
from costplan.errors import SpecError
from costplan.records import Record, set_private
from costplan.sections import InvalidInput, Section, valid_field_getter
from costplan.spec import ModelSpec, TrainingSpec
from costplan.validation import Count, Flag, Width


class Point(Record):
    x: int
    y: int = 0
    tags: tuple = ()


class Inner(Section):
    width: Width
    on: Flag = False


class Outer(Section):
    count: Count
    inner: Inner
    more: list[Inner] = []


def test_a_record_takes_its_fields_by_position_or_name_with_defaults():
    assert Point(1) == Point(x=1) == Point(1, 0, ())
    assert (Point(2, y=3).x, Point(2, y=3).y) == (2, 3)
    with pytest.raises(TypeError, match="needs x"):
        Point(y=1)
    with pytest.raises(TypeError, match="no field z"):
        Point(1, z=2)
    with pytest.raises(TypeError, match="3 fields, not 4"):
        Point(1, 2, (), 4)


def test_a_record_is_frozen_and_equal_by_its_fields_alone():
    p = Point(1, 2)
    with pytest.raises(AttributeError, match="frozen"):
        p.x = 5
    q = Point(y=2, x=1)          # other keyword order: the same record, the same hash
    set_private(q, "_note", "not a field")
    assert p == q and hash(p) == hash(q) and p != Point(1, 3)
    assert {p: "a"}[q] == "a"
    assert q.model_copy(update={"y": 7}) == Point(1, 7)
    assert not hasattr(q.model_copy(), "_note")


def test_dumps_are_plain_nested_values_and_json_mode_writes_lists():
    outer = Outer.model_validate({"count": 2, "inner": {"width": 3}, "more": [{"width": 4, "on": True}]})
    assert outer.model_dump() == {"count": 2, "inner": {"width": 3, "on": False},
                                  "more": [{"width": 4, "on": True}]}
    assert Point(1, tags=(1, 2)).model_dump(mode="json") == {"x": 1, "y": 0, "tags": [1, 2]}
    assert Point(1, tags=(1, 2)).model_dump()["tags"] == (1, 2)
    assert Outer.model_validate({"count": 1, "inner": {"width": 1}}).model_dump(exclude=("more",)) == {
        "count": 1, "inner": {"width": 1, "on": False}}


def test_every_problem_is_reported_with_its_dotted_path_fields_first_then_unknown_keys():
    with pytest.raises(InvalidInput) as caught:
        Outer.model_validate({"cuont": 1, "inner": {"width": 0, "on": "yes"},
                              "more": [{"width": 1}, {"width": 2.5}, 3]})
    assert caught.value.messages == [
        "count: required field is missing",
        "inner.width: must be greater than 0, got 0",
        "inner.on: expected true or false, got 'yes'",
        "more[1].width: expected a whole number, got 2.5",
        "more[2]: expected a mapping of fields, got a number",
        "cuont: unknown field (did you mean 'count'?)",
    ]


def test_keyword_construction_validates_as_a_file_does():
    assert TrainingSpec(precision="BF16").precision == "bf16"      # words in any case, as in a file
    with pytest.raises(InvalidInput, match=r"^precision: 'fp9' is not one of fp32, tf32, fp16, bf16 or fp8"):
        TrainingSpec(precision="fp9")


def test_cross_field_rules_run_only_on_fields_valid_on_their_own():
    # n_heads 3 does not divide d_model 64, but with d_model itself invalid only d_model is reported
    with pytest.raises(InvalidInput) as caught:
        ModelSpec.model_validate({"vocab_size": 10, "d_model": "x", "n_layers": 1, "n_heads": 3,
                                  "max_seq_len": 8})
    assert caught.value.messages == ["d_model: expected a whole number, got 'x'"]
    with pytest.raises(InvalidInput) as caught:
        ModelSpec.model_validate({"vocab_size": 10, "d_model": 64, "n_layers": 1, "n_heads": 3, "max_seq_len": 8})
    assert caught.value.messages == ["n_heads: 3 does not divide d_model (64); set head_dim explicitly"]


def test_a_field_getter_over_raw_data_gives_valid_values_defaults_or_none():
    get = valid_field_getter(Inner, {"width": "wide"})
    assert get("width") is None and get("on") is False
    assert valid_field_getter(Inner, {"width": 8})("width") == 8


def test_a_hardware_files_curves_are_checked_point_by_point(tmp_path):
    # What pydantic once said as "Tuple should have at most 2 items after validation, not 3" under
    # `attention_forward[64]`, costplan says with the file's own keys.
    import yaml

    entry = hardware.catalogue()["a100-80gb"].model_dump(mode="json", exclude_none=True)
    curves = hardware.catalogue()["a100-80gb"].curves().model_dump(mode="json", exclude_none=True)
    curves["attention_forward"] = {64: {"points": [[1024, 0.5, 3]], "source": "s"}}
    curves["gemm"] = {}
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump({**entry, "kernels": curves}), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        hardware.resolve(str(path))
    assert caught.value.problems == ["kernels.gemm: expected at least 1 entry, got 0",
                                     "kernels.attention_forward.64.points[0]: expected 2 values, got 3"]


def test_a_curve_point_is_a_finite_number():
    # a NaN efficiency would read as a rate of nothing at all; the spec's numbers refuse it the same way
    from costplan import kernels

    with pytest.raises(InvalidInput) as caught:
        kernels.Curve.model_validate({"points": [[1, float("nan")], [True, 0.5]], "source": "s"})
    assert caught.value.messages == ["points[0][1]: expected a finite number, got nan",
                                     "points[1][0]: expected a number, got true"]
