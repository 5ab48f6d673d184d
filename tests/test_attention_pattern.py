"""Per-layer attention patterns (`model.attention` as a list repeated over the layers): validation, and costs
that are each layer's own attention's, checked against specs of one attention for every layer."""
from __future__ import annotations

import pytest

import costplan
from costplan.errors import SpecError

WINDOW = 32
MODEL = {"vocab_size": 512, "d_model": 128, "n_layers": 3, "n_heads": 4, "n_kv_heads": 2, "max_seq_len": 256,
         "mlp": "swiglu", "norm": "rmsnorm", "position": "rope", "bias": False}
SLIDING = {"type": "sliding_window", "window": WINDOW}


def spec(attention, **model):
    return costplan.load_spec({"model": {**MODEL, **model, "attention": attention},
                               "training": {"tokens": 1e6}})


def problems(attention, **model) -> list[str]:
    with pytest.raises(SpecError) as caught:
        spec(attention, **model)
    return caught.value.problems


def test_a_pattern_repeats_over_the_layers_in_order():
    m = spec([SLIDING, "flash"]).model
    assert [m.layer_attention(i).type for i in range(3)] == ["sliding_window", "flash", "sliding_window"]
    assert m.attention_types == {"sliding_window", "flash"}


def test_a_list_of_one_is_that_attention():
    assert spec([SLIDING]).model.attention == spec(SLIDING).model.attention


@pytest.mark.parametrize("attention, expected", [
    ([], "model.attention: an empty list"),
    ([{"type": "sliding_window"}, "flash"], "model.attention[0].window: required field is missing"),
    ([{"type": "sliding_window", "window": -3}], "model.attention[0].window: must be greater than 0"),  # a list of one
    (["flash", "flashy"], "model.attention[1].type: 'flashy' is not one of dense, flash"),
    (["flash", {"type": "flash", "window": 8}], "model.attention[1].window: type 'flash' has no field 'window'"),
    (["flash", "aft_simple"], "model.attention[1].type: aft_simple cannot be part of a per-layer pattern"),
    (["flash", "flash", "flash", "flash"], "model.attention: a pattern of 4 layers is longer than n_layers (3)"),
    (["flash", {"type": "sparse", "pattern": "strided", "block": 512}],
     "model.attention[1].block: 512 is longer than max_seq_len (256)"),
])
def test_pattern_errors_name_the_entry(attention, expected):
    assert any(line.startswith(expected) for line in problems(attention)), problems(attention)


def test_a_model_wide_rule_is_said_once():
    lines = problems(["flash", SLIDING], head_dim=33, n_heads=4, d_model=132)
    assert sum("head_dim: 33 is odd" in line for line in lines) == 1


def test_costs_are_each_layers_own():
    """2 windowed layers and 1 global one cost 2/3 of an all-windowed model plus 1/3 of an all-global one, in
    every layer-wise figure (the embedding and head are the same in all three)."""
    mixed, sliding, flash = (costplan.estimate(spec(a)) for a in ([SLIDING, "flash"], SLIDING, "flash"))
    for figure in ("forward_per_token", "training_per_token", "hardware_per_token"):
        assert 3 * getattr(mixed.flops, figure) == pytest.approx(2 * getattr(sliding.flops, figure)
                                                                 + getattr(flash.flops, figure), rel=1e-12)
    assert 3 * mixed.memory.activations == 2 * sliding.memory.activations + flash.memory.activations
    assert mixed.params.total == flash.params.total


def test_kv_cache_by_hand():
    """Windowed layers keep a rolling buffer of WINDOW tokens, global ones every token: K and V of 2 heads of
    32 features in bf16 per layer and token."""
    per_layer_token = 2 * 2 * 32 * 2
    mixed = costplan.estimate(spec([SLIDING, "flash"]))
    assert mixed.memory.kv_cache_per_token == 3 * per_layer_token
    assert mixed.memory.kv_cache_at_seq_len == per_layer_token * (2 * WINDOW + 256)


def test_set_refuses_a_dotted_field_inside_a_pattern(run, tmp_path):
    path = tmp_path / "pattern.yaml"
    path.write_text(f"model: {dict(MODEL, attention=[SLIDING, 'flash'])}\n")
    result = run("estimate", str(path), "--set", "model.attention.window=16")
    assert result.exit_code == 2
    assert "model.attention is a list; set it whole" in result.output
    whole = run("estimate", str(path), "--set", "model.attention=[flash, {type: sliding_window, window: 16}]")
    assert whole.exit_code == 0, whole.output


def test_the_estimate_names_the_pattern(run, tmp_path):
    path = tmp_path / "pattern.yaml"
    path.write_text(f"model: {dict(MODEL, attention=[SLIDING, SLIDING, 'flash'])}\n")
    assert run("estimate", str(path), "--format", "json").exit_code == 0
