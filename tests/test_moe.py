"""Mixture of experts: published totals, hand-derived pieces, properties."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import costplan
from conftest import make_spec
from costplan.costs.estimate import components

D, F, S, L = 64, 96, 128, 2        # tiny: d_model 64, expert width 96, seq 128, 2 layers


def moe_spec(moe: dict, training: dict | None = None, **model):
    return make_spec({"mlp": "swiglu", "norm": "rmsnorm", "position": "rope", "bias": False,
                      "tie_embeddings": False, **model, "moe": {"d_ff_expert": F, **moe}}, training)


def test_mixtral_8x7b_exact():
    # Jiang et al. 2024 / Mistral AI: 46.7B parameters, 12.9B active; exact counts from the checkpoint's shapes.
    p = costplan.estimate(costplan.load_spec("mixtral-8x7b")).params
    assert (p.total, p.active) == (46_702_792_704, 12_879_925_248)


def test_mixtral_8x22b_and_deepseek_v3_published_sizes():
    p = costplan.estimate(costplan.load_spec("mixtral-8x22b")).params
    assert p.total == pytest.approx(141e9, rel=0.005) and p.active == pytest.approx(39e9, rel=0.01)
    # DeepSeek-V3 report: 671B total, 37B activated (counted without the input embedding), MTP module aside.
    p = costplan.estimate(costplan.load_spec("deepseek-v3")).params
    assert p.total == pytest.approx(671e9, rel=0.001)
    assert p.active_non_embedding == pytest.approx(37e9, rel=0.02)
    assert p.active - p.active_non_embedding == p.embedding


def test_parameters_by_hand():
    # 8 experts, top-2, 1 shared expert of width 96 with a gate, the first layer dense (d_ff 256).
    spec = moe_spec({"n_experts": 8, "top_k": 2, "n_shared_experts": 1, "shared_expert_gate": True,
                     "first_dense_layers": 1}, d_ff=256)
    p = costplan.estimate(spec).params
    expert = 3 * D * F                               # gate, up, down
    moe_layer = D * 8 + 8 * expert + expert + D      # router, experts, shared expert, shared gate
    assert p.by_component["moe"] == moe_layer
    assert p.by_component["mlp"] == 3 * D * 256
    assert p.total - p.active == 6 * expert          # six of eight experts idle for any one token


def test_router_bias_adds_one_parameter_per_expert_and_no_flops():
    plain = costplan.estimate(moe_spec({"n_experts": 8, "top_k": 2}))
    biased = costplan.estimate(moe_spec({"n_experts": 8, "top_k": 2, "router_bias": True}))
    assert biased.params.by_component["moe"] - plain.params.by_component["moe"] == L * 8
    assert biased.params.active - plain.params.active == L * 8           # every token touches the router
    assert biased.flops.forward_per_token == plain.flops.forward_per_token


def test_every_nth_layer():
    spec = moe_spec({"n_experts": 4, "top_k": 1, "first_dense_layers": 1, "every": 2}, n_layers=6)
    p = costplan.estimate(spec).params
    # layers 1, 3, 5 are MoE (the first after the dense one, then every second); 0, 2, 4 dense
    assert p.by_component["moe"] == 3 * (D * 4 + 4 * 3 * D * F)
    assert p.by_component["mlp"] == 3 * 3 * D * 4 * D


def test_flops_use_top_k_and_router():
    f = costplan.estimate(moe_spec({"n_experts": 8, "top_k": 2})).flops
    assert f.by_component["moe"] == L * (2 * D * 8 + 2 * 2 * 3 * D * F)      # router + two experts per token


def test_capacity_factor_pads_hardware_flops():
    # Switch §2.1: capacity ⌈1.25 · 128 · 2 / 8⌉ = 40 slots per expert, 320 rows computed for 256 routed tokens.
    plain = components(moe_spec({"n_experts": 8, "top_k": 2}))["moe"]
    capped = components(moe_spec({"n_experts": 8, "top_k": 2, "capacity_factor": 1.25}))["moe"]
    expert_row = 2 * 3 * D * F
    assert capped.flops == plain.flops
    assert capped.hw_fwd - plain.hw_fwd == L * (320 - 256) * expert_row
    assert capped.hw_flops - plain.hw_flops == 3 * L * (320 - 256) * expert_row


def test_capacity_uses_the_written_decimal():
    from costplan.costs.moe import capacity
    from costplan.spec import MoESpec

    # 1.1 · 100 · 1 / 11 = 10 exactly; the binary float 1.1 would round up to 11.
    assert capacity(MoESpec(n_experts=11, top_k=1, d_ff_expert=8, capacity_factor=1.1), 100) == 10


@pytest.mark.parametrize("n_experts, top_k, capacity_factor, seq_len, slots", [
    (3, 2, 1.25, 128, 107),     # 1.25 · 128 · 2 / 3 = 106.67: a partial slot is a whole slot
    (3, 1, 1.0, 10, 4),         # 10 / 3 = 3.33
    (8, 2, 0.3, 128, 10),       # 0.3 · 128 · 2 / 8 = 9.6
])
def test_capacity_rounds_a_fraction_up(n_experts, top_k, capacity_factor, seq_len, slots):
    # Switch Transformer §2.1: expert capacity = ⌈(tokens per batch / experts) · capacity factor⌉ (× top_k for
    # top-k routing, GShard); the slots above are worked out by hand, not by the function under test.
    from costplan.costs.moe import capacity
    from costplan.spec import MoESpec

    moe = MoESpec(n_experts=n_experts, top_k=top_k, d_ff_expert=8, capacity_factor=capacity_factor)
    assert capacity(moe, seq_len) == slots


def test_a_fractional_capacity_pads_hardware_flops_by_whole_slots():
    # 3 experts of ⌈1.25 · 128 · 2 / 3⌉ = 107 slots: 321 rows computed for 256 routed tokens, per layer.
    plain = components(moe_spec({"n_experts": 3, "top_k": 2}))["moe"]
    capped = components(moe_spec({"n_experts": 3, "top_k": 2, "capacity_factor": 1.25}))["moe"]
    assert capped.hw_fwd - plain.hw_fwd == L * (321 - 256) * 2 * 3 * D * F


def test_memory_holds_every_expert():
    e = costplan.estimate(moe_spec({"n_experts": 8, "top_k": 2}))
    assert e.memory.weights == 2 * e.params.total and e.memory.optimizer == 12 * e.params.total


@st.composite
def moe_models(draw):
    n_experts = draw(st.integers(1, 16))
    return {"n_experts": n_experts, "top_k": draw(st.integers(1, n_experts)),
            "n_shared_experts": draw(st.integers(0, 2)), "every": draw(st.integers(1, 3)),
            "first_dense_layers": draw(st.integers(0, 1))}, draw(st.sampled_from(["gelu", "swiglu"]))


@given(moe_models())
def test_active_at_most_total(args):
    moe, mlp = args
    p = costplan.estimate(moe_spec(moe, mlp=mlp, n_layers=3)).params
    assert p.active <= p.total and p.active_non_embedding < p.active


@given(st.sampled_from(["gelu", "relu", "swiglu", "geglu"]), st.integers(1, 4))
def test_one_expert_top_one_is_dense_plus_router(mlp, layers):
    dense = costplan.estimate(make_spec({"mlp": mlp, "norm": "rmsnorm", "position": "rope", "bias": False,
                                         "tie_embeddings": False, "d_ff": F, "n_layers": layers}))
    moe = costplan.estimate(moe_spec({"n_experts": 1, "top_k": 1}, mlp=mlp, n_layers=layers))
    router = layers * D                              # a d_model × 1 router per layer
    assert moe.params.total == dense.params.total + router == moe.params.active
    assert moe.flops.forward_per_token == dense.flops.forward_per_token + 2 * router


@given(st.integers(1, 64), st.integers(1, 64), st.integers(1, 4))
def test_flops_do_not_depend_on_n_experts_but_for_the_router(e1, e2, top_k):
    top_k = min(top_k, e1, e2)
    f1 = costplan.estimate(moe_spec({"n_experts": e1, "top_k": top_k})).flops.forward_per_token
    f2 = costplan.estimate(moe_spec({"n_experts": e2, "top_k": top_k})).flops.forward_per_token
    assert f1 - f2 == L * 2 * D * (e1 - e2)


@pytest.mark.parametrize("capacity_factor, rows", [
    (None, S * 2),                          # dropless: one row per token and chosen expert
    (1.25, 4 * 80),                         # 4 buffers of ⌈1.25 · 128 · 2 / 4⌉ = 80 rows, computed whole
])
def test_moe_saved_bytes_by_hand(capacity_factor, rows):
    # One MoE layer, 4 experts, top 2, swiglu experts of width 96, bf16 (2 bytes). Saved for backward:
    # the block input (d), the fp32 router probabilities (4 experts), and per routed row: the gathered input
    # (d), the fused swiglu's gate and up and their product (3 × 96; eager PyTorch also saves the activation),
    # the expert output (d), the fp32 gate weight, and two int64 indices (the row's token; its gate weight's
    # (token, expert) entry).
    moe = {"n_experts": 4, "top_k": 2, **({"capacity_factor": capacity_factor} if capacity_factor else {})}
    parts = components(moe_spec(moe, n_layers=1))
    expected = S * D * 2 + S * 4 * 4 + rows * (D * 2 + 3 * F * 2 + D * 2 + 4 + 2 * 8)
    assert parts["moe"].activations == expected
    eager = components(moe_spec(moe, n_layers=1, training={"fusion": "eager"}))
    assert eager["moe"].activations == expected + rows * F * 2


def test_tensor_parallel_experts_need_sequence_parallelism():
    # Megatron-LM refuses MoE with tensor parallelism but without sequence parallelism, and the share of routed
    # rows each tensor rank holds is sequence-parallel's
    with pytest.raises(costplan.SpecError, match="parallelism.sequence_parallel: false with tensor 2 on a mixture "
                                                 "of experts: Megatron requires sequence parallelism there"):
        costplan.load_spec("mixtral-8x7b", ["hardware.count=64", "parallelism.expert=8", "parallelism.tensor=2"])
    costplan.load_spec("mixtral-8x7b", ["hardware.count=64", "parallelism.expert=8", "parallelism.tensor=2",
                                        "parallelism.sequence_parallel=true"])
