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


GPT2_F, BLOOM_S, BLOOM_F = 256, 2048, 256      # the tiny GPT-2's d_ff; the tiny BLOOM's seq_len and d_ff


def test_gpt2_by_hand():
    """GPT-2's modules beyond fused kernels, per layer: the k and v thirds of c_attn's output, alive through q's
    view, and three more d_ff-wide tensors of the Python tanh GELU; once: the int64 position ids. Its
    LayerNorm is torch's (no copy). Eager instead of SDPA: the softmax in bf16 (2 bytes per pair and head)
    instead of the flash kernel's fp32 log-sum-exp per row."""
    per_layer = 2 * S * D * 2 + 3 * S * GPT2_F * 2
    assert activations("sdpa", "gpt2") - activations("fused", "gpt2") == 2 * per_layer + S * 8
    assert activations("eager", "gpt2") - activations("sdpa", "gpt2") == 2 * (H * S * S * 2 - H * S * 4)


def test_gpt2_autocast_by_hand():
    """Under autocast GPT-2 casts c_attn's input once (one fused matmul: no copies more), keeps the residual in
    fp32 in its 5 LayerNorms, and saves a 16-bit copy of every weight matrix (the tied head's once); its eager
    softmax runs in fp32 then, with the bf16 copy that multiplies V (6 bytes per pair and head, not 2)."""
    sdpa = estimate("sdpa", True, "gpt2").memory.activations - estimate("sdpa", config="gpt2").memory.activations
    matrices = 2 * (D * 3 * D + D * D + 2 * D * GPT2_F) + V * D
    assert sdpa == 5 * S * D * 2 + 2 * matrices
    eager = estimate("eager", True, "gpt2").memory.activations - estimate("eager", config="gpt2").memory.activations
    assert eager - sdpa == 2 * H * S * S * 4


def test_bloom_peak_by_hand():
    """BLOOM's eager step peaks at the last layer's softmax, not at the loss: beyond every saved tensor it holds
    the raw and masked bf16 scores and the softmax's fp32 input copy (8 bytes per pair and head) and the bf16
    causal mask, less the bf16 probabilities saved only after it and what the last MLP, final LayerNorm and head
    save later (GELU input and output, their inputs, LayerNorm statistics, the fp32 log-softmax and targets)."""
    s, held = BLOOM_S, H * BLOOM_S ** 2 * (2 + 2 + 4 - 2) + BLOOM_S ** 2 * 2
    after = (s * D * 2 + 2 * s * BLOOM_F * 2) + (s * D * 2 + 2 * s * 4) + (s * D * 2 + s * 8 + s * V * 4)
    assert estimate("eager", config="bloom").memory.workspace == held - after


LONG = ["model.max_seq_len=1024", "training.seq_len=1024"]     # the tiny Llama's rotary class takes any length


def test_long_eager_peak_by_hand():
    """At 1,024 tokens the tiny Llama's eager step peaks at the last softmax's backward, not at the loss: the
    fp32 gradients of its output and input (8 bytes per pair and head) less the bf16 probabilities the matmul
    with V has released, beyond every saved tensor but those of the last MLP (its input, gate, up, their
    activation and product), the final RMSNorm (input, fp32 copy, statistic) and the head (input, fp32
    log-softmax, targets), freed by then."""
    s = 1024
    spec = costplan.load_spec(TINY / "llama.json", [*LONG, "training.implementation=eager"])
    after = (s * D * 2 + 4 * s * F * 2) + (s * D * (2 + 4) + s * 4) + (s * D * 2 + s * V * 4 + s * 8)
    assert costplan.estimate(spec).memory.workspace == H * s * s * (8 - 2) - after


@pytest.mark.parametrize("autocast", [False, True])
def test_long_eager_peak_equals_the_class(autocast, run):
    assert_equals_the_class(run, "llama", "eager", autocast, [f"--set={o}" for o in LONG])


@pytest.mark.parametrize("config, autocast", [
    *((config, autocast) for config in ("llama", "mistral", "qwen2", "qwen3", "granite", "qwen2-layer-types")
      for autocast in (False, True)),
    ("mixtral", False), ("qwen3_moe", False), ("olmoe", False),    # MoE under autocast is not modelled
    ("gpt2", False), ("gpt2", True), ("opt", False), ("opt", True),
])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_activations_equal_the_transformers_class(config, implementation, autocast, run):
    assert_equals_the_class(run, config, implementation, autocast)


@pytest.mark.parametrize("autocast", [False, True])
def test_bloom_equals_its_eager_class(autocast, run):
    """BLOOM has no SDPA attention; its eager step peaks at the last softmax (seq_len 2048)."""
    assert_equals_the_class(run, "bloom", "eager", autocast)


def assert_equals_the_class(run, config, implementation, autocast, more=()):  # noqa: ANN001
    pytest.importorskip("transformers")
    result = run("check", str(TINY / f"{config}.json"), "--against", "transformers", "--format", "json",
                 "--set", f"training.implementation={implementation}",
                 "--set", f"training.autocast={str(autocast).lower()}", *more)
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


def test_the_class_is_built_without_dropout():
    """Activations are counted without dropout (convention 7): every dropout probability of the class's config
    is 0, whatever the file says; other numbers stay."""
    transformers = pytest.importorskip("transformers")
    from costplan.profiling.against import without_dropout
    cfg = without_dropout(transformers.GPT2Config(attn_pdrop=0.1, resid_pdrop=0.1, embd_pdrop=0.1))
    assert (cfg.attn_pdrop, cfg.resid_pdrop, cfg.embd_pdrop, cfg.summary_first_dropout) == (0, 0, 0, 0)
    assert (cfg.layer_norm_epsilon, cfg.n_layer, cfg.scale_attn_weights) == (1e-5, 12, True)
