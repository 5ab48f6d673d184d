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
    ({"training.modules": "llama4_text"}, "the llama4_text modules (every expert on every token"),
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
