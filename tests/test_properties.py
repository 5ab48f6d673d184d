"""Invariants of the cost model, over random architectures."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import costplan
from costplan.costs.estimate import components
from costplan.spec_attention import SOFTMAX_TYPES

settings.register_profile("costplan", max_examples=60, deadline=None)
settings.load_profile("costplan")


@st.composite
def attentions(draw, max_seq_len):
    kind = draw(st.sampled_from(["dense", "flash", "sliding_window", "sparse", "chunked", "mla", "aft_full",
                                 "aft_local", "aft_simple", "aft_conv"]))
    window = draw(st.integers(1, max_seq_len))
    kernel = draw(st.sampled_from(["flash", "materialized"]))
    if kind == "sliding_window":
        return {"type": kind, "window": window, "kernel": kernel}
    if kind == "chunked":
        return {"type": kind, "chunk": window, "kernel": kernel, "rope": draw(st.booleans())}
    if kind == "sparse":
        pattern = draw(st.sampled_from(["strided", "fixed"]))
        extra = {"summary": draw(st.integers(1, window))} if pattern == "fixed" else {}
        return {"type": kind, "pattern": pattern, "block": window, "kernel": kernel, **extra}
    if kind == "mla":
        return {"type": kind, "kv_lora_rank": draw(st.integers(1, 64)),
                "q_lora_rank": draw(st.one_of(st.none(), st.integers(1, 64))),
                "qk_nope_head_dim": draw(st.integers(1, 32)), "qk_rope_head_dim": 2 * draw(st.integers(1, 8)),
                "v_head_dim": draw(st.integers(1, 32))}
    if kind in ("aft_local", "aft_conv"):
        return {"type": kind, "window": window}
    return kind


@st.composite
def moes(draw):
    n_experts = draw(st.integers(1, 8))
    shared = draw(st.integers(0, 2))
    return {"n_experts": n_experts, "top_k": draw(st.integers(1, n_experts)), "n_shared_experts": shared,
            "shared_expert_gate": shared > 0 and draw(st.booleans()), "every": draw(st.integers(1, 3)),
            "d_ff_expert": draw(st.integers(1, 128)), "router_bias": draw(st.booleans()),
            "capacity_factor": draw(st.one_of(st.none(), st.sampled_from([0.5, 1.0, 1.25, 2.0])))}


@st.composite
def models(draw, attention_types=None):
    """Random valid architectures: every attention type (or those given) and, sometimes, MoE."""
    kv = draw(st.integers(1, 4))
    heads = kv * draw(st.integers(1, 4))
    head_dim = 2 * draw(st.integers(1, 16))
    max_seq_len = draw(st.integers(1, 512))
    attention = draw(st.sampled_from(attention_types) if attention_types else attentions(max_seq_len))
    kind = attention if isinstance(attention, str) else attention["type"]
    if kind == "sparse":
        heads, kv = max(heads, 2), 1
    if kind.startswith("aft") or kind == "mla":
        kv = heads
    return {
        "vocab_size": draw(st.integers(1, 5000)),
        "d_model": draw(st.integers(1, 256)),
        "n_layers": draw(st.integers(1, 6)),
        "n_heads": heads,
        "n_kv_heads": kv,
        "head_dim": head_dim,
        "d_ff": draw(st.integers(1, 512)),
        "max_seq_len": max_seq_len,
        "mlp": draw(st.sampled_from(["gelu", "relu", "swiglu", "geglu"])),
        "norm": draw(st.sampled_from(["layernorm", "rmsnorm", "nonparametric_layernorm"])),
        "position": draw(st.sampled_from(["rope", "learned", "alibi", "none"])),
        "tie_embeddings": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "o_bias": draw(st.one_of(st.none(), st.booleans())),
        "head_bias": draw(st.booleans()),
        "block": draw(st.sampled_from(["sequential", "sandwich", "parallel", "parallel_shared_norm"])),
        "qk_norm": draw(st.sampled_from(["none", "head", "full"])) if kind in SOFTMAX_TYPES else "none",
        "embedding_norm": draw(st.booleans()),
        "attention_sinks": kind in SOFTMAX_TYPES and draw(st.booleans()),
        "attention": attention,
        "moe": draw(st.one_of(st.none(), moes())),
    }


def spec_of(model, **training):
    return costplan.load_spec({"model": model, "training": {"tokens": 10**9, **training}})


@given(models())
def test_breakdown_sums_to_total(model):
    e = costplan.estimate(spec_of(model))
    assert sum(e.params.by_component.values()) == e.params.total
    assert e.params.embedding + e.params.non_embedding == e.params.total
    # Per-token FLOPs are exact integers when seq_len divides them, floats otherwise: compare floats to rounding.
    assert sum(e.flops.by_component.values()) == pytest.approx(e.flops.forward_per_token, rel=1e-12)


@given(models())
def test_gqa_with_all_kv_heads_equals_multi_head(model):
    mha = dict(model)
    del mha["n_kv_heads"]                   # defaults to n_heads
    explicit = {**model, "n_kv_heads": model["n_heads"]}
    assert costplan.estimate(spec_of(mha)).model_dump() == costplan.estimate(spec_of(explicit)).model_dump()


@given(models(["dense", "flash"]))
def test_flash_equals_dense_flops_with_smaller_activations(model):
    dense = costplan.estimate(spec_of({**model, "attention": "dense"}))
    flash = costplan.estimate(spec_of({**model, "attention": "flash"}))
    assert flash.flops.training_per_token == dense.flops.training_per_token
    assert flash.params == dense.params
    # probabilities h·s·c·2 bytes (c = s columns, one more with sinks) against a log-sum-exp h·s·4 bytes: smaller
    # once c > 2, equal at c = 2 (and at c = 1 a lone fp32 log-sum-exp outweighs a lone 16-bit probability)
    columns = model["max_seq_len"] + model["attention_sinks"]
    if columns > 2:
        assert flash.memory.activations < dense.memory.activations
    elif columns == 2:
        assert flash.memory.activations == dense.memory.activations


@given(models(), st.integers(1, 64))
def test_flops_per_token_do_not_depend_on_batch(model, batch):
    one = costplan.estimate(spec_of(model)).flops
    many = costplan.estimate(spec_of(model, micro_batch_size=batch, global_batch_size=batch * 3)).flops
    assert one == many


@given(models(), st.data())
def test_params_do_not_depend_on_seq_len(model, data):
    seq_len = data.draw(st.integers(1, model["max_seq_len"]))
    assert (costplan.estimate(spec_of(model, seq_len=seq_len)).params
            == costplan.estimate(spec_of(model)).params)


@given(models())
def test_recomputation_trades_flops_for_memory(model):
    none, full = (costplan.estimate(spec_of(model, recompute=r)) for r in ("none", "full"))
    assert full.memory.activations < none.memory.activations
    assert full.flops.hardware_per_token > none.flops.hardware_per_token
    assert full.flops.training_per_token == none.flops.training_per_token


@given(models())
def test_active_at_most_total(model):
    p = costplan.estimate(spec_of(model)).params
    assert 0 < p.active <= p.total


@given(models(), st.data())
def test_window_at_least_seq_len_gives_dense_flops(model, data):
    s = model["max_seq_len"]
    window = data.draw(st.integers(s, 2 * s))
    dense = costplan.estimate(spec_of({**model, "attention": "dense"}))
    windowed = costplan.estimate(spec_of({**model, "attention": {"type": "sliding_window", "window": window}}))
    assert windowed.flops.training_per_token == dense.flops.training_per_token


@given(models(), st.data())
def test_chunks_between_dense_and_a_window_of_their_length(model, data):
    # A chunk at least as long as the sequence is dense attention; a shorter one sees no more keys than a
    # window of its length (a chunk's first query sees one key, a window's first query w), and executes no
    # more tiles than that window's banded kernel.
    s = model["max_seq_len"]
    dense = costplan.estimate(spec_of({**model, "attention": "dense"}))
    whole = costplan.estimate(spec_of({**model, "attention": {"type": "chunked", "chunk": data.draw(
        st.integers(s, 2 * s))}}))
    assert whole.flops.training_per_token == dense.flops.training_per_token
    c = data.draw(st.integers(1, s))
    chunked = costplan.estimate(spec_of({**model, "attention": {"type": "chunked", "chunk": c}}))
    window = costplan.estimate(spec_of({**model, "attention": {"type": "sliding_window", "window": c}}))
    assert chunked.flops.training_per_token <= window.flops.training_per_token
    assert chunked.flops.hardware_per_token <= window.flops.hardware_per_token


@given(models(["aft_simple"]), st.integers(1, 8))
def test_aft_simple_flops_linear_in_seq_len(model, factor):
    def per_sequence(s):
        return costplan.estimate(spec_of({**model, "max_seq_len": s})).flops.forward_per_token * s

    s = model["max_seq_len"]
    assert per_sequence(factor * s) == factor * per_sequence(s)


@given(models())
def test_hardware_flops_are_consistent(model):
    # Backward is 2 × forward for weight matmuls and materialised cores; a flash core's is (3·d_qk + 2·d_v) /
    # (d_qk + d_v) × forward, 2.5 × when d_qk = d_v and below 3 × however large d_qk (MLA's is larger than d_v).
    # So without recomputation every component executes between 3 and 4 forwards; outside attention and MoE
    # (the only places with patterns, tiles and buffers) the executed forward is the model forward.
    for key, cost in components(spec_of(model)).items():
        assert 3 * cost.hw_fwd <= cost.hw_flops
        assert cost.hw_flops < 4 * cost.hw_fwd or cost.hw_flops == 0
        if key not in ("attention", "moe"):
            assert cost.hw_fwd == cost.flops
