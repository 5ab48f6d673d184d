"""training.implementation: activations as transformers' modules save them (sdpa, eager), derived tensor by
tensor and checked against the transformers classes themselves (costplan check --against transformers)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import costplan
from costplan.errors import SpecError

TINY = Path(__file__).parents[1] / "specs" / "ci" / "hf" / "tiny"
S, D, H, G, HD, F, V = 128, 64, 4, 2, 16, 176, 256      # the tiny Llama config: 2 layers


def estimate(implementation: str, autocast: bool = False, config: str = "llama"):
    return costplan.estimate(costplan.load_spec(TINY / f"{config}.json", [
        f"training.implementation={implementation}", f"training.autocast={str(autocast).lower()}"]))


def activations(implementation: str, config: str = "llama") -> int:
    return estimate(implementation, config=config).memory.activations


def test_sdpa_by_hand():
    """Beyond fused kernels: an fp32 copy of each RMSNorm's input (2 per layer and the final one) and the
    rotary tables cos and sin (bf16, once)."""
    assert activations("sdpa") - activations("fused") == 5 * S * D * 4 + 2 * S * HD * 2


def test_eager_by_hand():
    """Beyond SDPA, per layer: K and V repeated from 2 to 4 heads, the fp32 softmax and its bf16 copy for every
    pair, instead of the flash kernel's fp32 log-sum-exp per row."""
    per_layer = 2 * S * (H - G) * HD * 2 + H * S * S * (4 + 2) - H * S * 4
    assert activations("eager") - activations("sdpa") == 2 * per_layer


def test_moe_by_hand():
    """Mixtral's block beyond the fused estimate, per MoE layer: the top-k weights' fp32 copy (renormalised), their
    sum and int64 expert indices, one more int64 index per routed row, and 4 int32 grouped-matmul offsets."""
    k, experts = 2, 4
    extra = S * k * 4 + S * 4 + S * k * 8 + S * k * 8 + experts * 4
    assert activations("sdpa", "mixtral") - activations("fused", "mixtral") == (
        2 * extra + 5 * S * D * 4 + 2 * S * HD * 2)   # and the RMSNorm copies and rotary tables, as dense


def test_autocast_by_hand():
    """Beyond SDPA with 16-bit weights: the fp32 residual in each of the 5 norms (2 bytes more per element), two
    more casts of each layer's attention input and one more of its MLP input, fp32 rotary tables, and a 16-bit
    copy of every weight matrix (the head's too), once per micro-batch; weights, gradients and moments in
    fp32 without a master copy."""
    plain, cast = estimate("sdpa"), estimate("sdpa", autocast=True)
    saved = 5 * S * D * 2 + 2 * 3 * S * D * 2 + 2 * S * HD * 2
    matrices = 2 * (D * H * HD + 2 * D * G * HD + H * HD * D + 3 * D * F) + V * D
    assert cast.memory.activations - plain.memory.activations == saved + 2 * matrices
    params = cast.params.total
    assert (cast.memory.weights, cast.memory.gradients, cast.memory.optimizer) == (4 * params, 4 * params,
                                                                                   8 * params)


@pytest.mark.parametrize("config, autocast", [
    *((config, autocast) for config in ("llama", "mistral", "qwen2", "qwen3", "granite", "qwen2-layer-types")
      for autocast in (False, True)),
    ("mixtral", False), ("qwen3_moe", False), ("olmoe", False),    # MoE under autocast is not modelled
])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_activations_equal_the_transformers_class(config, implementation, autocast, run):
    pytest.importorskip("transformers")
    result = run("check", str(TINY / f"{config}.json"), "--against", "transformers", "--format", "json",
                 "--set", f"training.implementation={implementation}",
                 "--set", f"training.autocast={str(autocast).lower()}")
    assert result.exit_code == 0, result.output
    rows = {row["item"]: row for row in json.loads(result.stdout)[0]["checks"]}
    saved, peak = rows["activations saved for backward"], rows["peak memory of a training step"]
    assert saved["status"] == "ok" and saved["tolerance"] == 0.05
    assert abs(saved["measured"] - saved["estimate"]) <= 0.01 * saved["measured"]
    assert peak["status"] == "ok" and abs(peak["measured"] - peak["estimate"]) <= 0.01 * peak["measured"]


# The tiny parallel-layer configs: d_model 64, 4 heads of 16, d_ff 256, vocabulary 256, 2 layers, 128 tokens;
# rotary embeddings on 8 features of each head (GPT-J rotary_dim, Phi partial_rotary_factor 0.5), 4 (GPT-NeoX
# rotary_pct 0.25) or all 16 (Falcon).
PD, PH, PHD, PF, PV = 64, 4, 16, 256, 256


def test_falcon_by_hand():
    """FalconModel always materialises its causal mask (allow_is_causal_skip=False) and _split_heads broadcasts
    K and V from 2 to 4 heads: SDPA saves the bf16 s × s mask and the repeated K and V, per layer, beyond the
    fused kernels (LayerNorm is torch's kernel; the rotary tables once). Eager's softmax runs in the hidden
    states' dtype: one bf16 tensor per pair, no fp32 copy, instead of the mask and the log-sum-exp."""
    rotary = 2 * S * PHD * 2
    per_layer = S * S * 2 + 2 * S * (PH - 2) * PHD * 2
    assert activations("sdpa", "falcon") - activations("fused", "falcon") == rotary + 2 * per_layer
    assert activations("eager", "falcon") - activations("sdpa", "falcon") == 2 * (
        PH * S * S * 2 - S * S * 2 - PH * S * 4)


def test_gptj_by_hand():
    """GPT-J's modules, per layer: sin and cos repeat_interleaved for q and again for k (no model-wide tables),
    and NewGELUActivation's x, 0.5·x, tanh and 1 + tanh where a fused GELU keeps x; eager adds the fp32 softmax
    and its bf16 copy per pair, and fp32 copies of q and k (eager_attention_forward's .to(torch.float32))."""
    per_layer = 2 * (2 * S * 8 * 2) + 3 * S * PF * 2
    assert activations("sdpa", "gptj") - activations("fused", "gptj") == 2 * per_layer
    assert activations("eager", "gptj") - activations("sdpa", "gptj") == 2 * (
        PH * S * S * (4 + 2) - PH * S * 4 + 2 * S * PH * PHD * (4 - 2))


def test_head_major_query_by_hand():
    """GPT-NeoX and Phi rebuild q by torch.cat after moving heads first: SDPA's output comes back head-major
    and the copy `.transpose(1, 2).contiguous()` makes is saved by the output projection too (s × d_model per
    layer). Phi's MLP is NewGELUActivation."""
    assert activations("sdpa", "gpt_neox") - activations("fused", "gpt_neox") == 2 * S * 4 * 2 + 2 * S * PD * 2
    assert activations("sdpa", "phi") - activations("fused", "phi") == 2 * S * 8 * 2 + 2 * (
        S * PD * 2 + 3 * S * PF * 2)


@pytest.mark.parametrize("config, casts, rope_dim", [("gpt_neox", 0, 4), ("phi", 3, 8)])
def test_parallel_autocast_by_hand(config, casts, rope_dim):
    """Under autocast a parallel layer's norms read one fp32 input (saved once, 2 bytes more per element, and
    the final norm's): GPT-NeoX's fused query_key_value and its MLP each cast their own normed input, as in
    16-bit training; Phi's q, k, v and fc1 each cast the one shared input, three copies more. fp32 rotary
    tables, and a bf16 copy of every weight matrix (untied head)."""
    plain, cast = estimate("sdpa", config=config), estimate("sdpa", autocast=True, config=config)
    saved = 3 * S * PD * 2 + 2 * casts * S * PD * 2 + 2 * S * rope_dim * 2
    matrices = 2 * (4 * PD * PD + 2 * PD * PF) + PV * PD
    assert cast.memory.activations - plain.memory.activations == saved + 2 * matrices


@pytest.mark.parametrize("config, implementation, autocast", [
    ("falcon", "eager", False), ("falcon", "sdpa", True), ("gptj", "eager", False), ("gptj", "sdpa", True),
    ("gpt_neox", "sdpa", False), ("gpt_neox", "eager", True), ("phi", "sdpa", False), ("phi", "eager", True),
])
def test_parallel_layers_against_the_transformers_class(config, implementation, autocast, run):
    """Within 1% / 0.5%: the estimate keeps LayerNorm statistics in fp32, torch on CPU in bf16 (under
    autocast, fp32: equal but for 4 bytes)."""
    pytest.importorskip("transformers")
    result = run("check", str(TINY / f"{config}.json"), "--against", "transformers", "--format", "json",
                 "--set", f"training.implementation={implementation}",
                 "--set", f"training.autocast={str(autocast).lower()}")
    assert result.exit_code == 0, result.output
    rows = {row["item"]: row for row in json.loads(result.stdout)[0]["checks"]}
    saved, peak = rows["activations saved for backward"], rows["peak memory of a training step"]
    assert abs(saved["measured"] - saved["estimate"]) <= 0.01 * saved["measured"]
    assert abs(peak["measured"] - peak["estimate"]) <= 0.005 * peak["measured"]


def test_a_class_without_the_implementation_says_so(run):
    pytest.importorskip("transformers")
    result = run("check", str(TINY / "bloom.json"), "--against", "transformers",
                 "--set", "training.implementation=sdpa")
    assert result.exit_code == 2
    assert "training.implementation sdpa: BloomForCausalLM does not support" in result.stderr


@pytest.mark.parametrize("changes, named", [
    ({"model.attention": "mla", "model.attention.kv_lora_rank": 8, "model.attention.qk_nope_head_dim": 8,
      "model.attention.qk_rope_head_dim": 4, "model.attention.v_head_dim": 8, "model.n_kv_heads": None},
     "the modules of mla attention are not modelled"),
    ({"model.moe.n_experts": 4, "model.moe.top_k": 2, "model.moe.capacity_factor": 1.25},
     "mixture-of-experts modules drop no tokens"),
    ({"model.attention_sinks": "true"}, "with attention sinks (gpt-oss) are not modelled yet"),
    ({"training.recompute": "full"}, "with recompute full"),
    ({"model.block": "parallel"}, "parallel layers are modelled for the falcon, gpt_neox, gptj, phi modules; "
                                  "training.modules llama builds sequential ones"),
    ({"model.block": "sandwich"}, "block sandwich is not"),
    ({"model.block": "parallel_shared_norm", "training.modules": "falcon"},
     "the falcon modules are modelled for block parallel, not parallel_shared_norm"),
])
def test_what_is_not_modelled_is_an_error(changes, named):
    overrides = ["training.implementation=eager", *(f"{k}={'null' if v is None else v}" for k, v in changes.items())]
    with pytest.raises(SpecError) as caught:
        costplan.load_spec(TINY / "llama.json", overrides)
    assert any(p.startswith("training.implementation: eager: ") and named in p for p in caught.value.problems), \
        caught.value.problems


@pytest.mark.parametrize("overrides, named", [
    (["training.autocast=true"], "training.autocast: modelled for transformers' modules"),
    (["training.autocast=true", "training.implementation=sdpa", "training.precision=fp32"],
     "training.autocast: casts fp32 weights to 16 bits; precision fp32 is not bf16 or fp16"),
    (["training.autocast=true", "training.implementation=sdpa", "model.moe.n_experts=4", "model.moe.top_k=2"],
     "training.autocast: with mixture-of-experts modules is not modelled"),
])
def test_autocast_rules(overrides, named):
    with pytest.raises(SpecError) as caught:
        costplan.load_spec(TINY / "llama.json", overrides)
    assert any(p.startswith(named) for p in caught.value.problems), caught.value.problems
