"""training.implementation: activations as transformers' modules save them (sdpa, eager), derived tensor by
tensor and checked against the transformers classes themselves (costplan check --against transformers)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import costplan
from costplan.costs.estimate import components
from costplan.errors import SpecError

TINY = Path(__file__).parents[1] / "specs" / "ci" / "hf" / "tiny"
S, D, H, G, HD, F, V = 128, 64, 4, 2, 16, 176, 256      # the tiny Llama config: 2 layers


def estimate(implementation: str, autocast: bool = False, config: str = "llama", *overrides: str):
    return costplan.estimate(costplan.load_spec(TINY / f"{config}.json", [
        f"training.implementation={implementation}", f"training.autocast={str(autocast).lower()}", *overrides]))


def activations(implementation: str, config: str = "llama") -> int:
    return estimate(implementation, config=config).memory.activations


def test_sdpa_by_hand():
    """Beyond fused kernels: an fp32 copy of each RMSNorm's input (2 per layer and the final one), the rotary
    tables cos and sin (bf16, once), and per layer silu's output, which a fused SwiGLU kernel recomputes."""
    assert activations("sdpa") - activations("fused") == 5 * S * D * 4 + 2 * S * HD * 2 + 2 * S * F * 2


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
    silu = S * k * F * 2             # per routed row the expert's silu output, which a fused kernel recomputes
    assert activations("sdpa", "mixtral") - activations("fused", "mixtral") == (
        2 * (extra + silu) + 5 * S * D * 4 + 2 * S * HD * 2)   # and the RMSNorm copies and rotary tables, as dense


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


def beyond_llama(config: str, implementation: str, autocast: bool = False) -> int:
    """What a family's modules save beyond the Llama family's modules on the same architecture."""
    return (estimate(implementation, autocast, config).memory.activations
            - estimate(implementation, autocast, config, "training.modules=llama").memory.activations)


def test_olmo_by_hand():
    """The tiny OLMo (2 layers, d_model 64, 4 heads of 16, clip_qkv 8) beyond fused kernels: each of the 5
    OlmoLayerNorms runs on an fp32 copy of its bf16 input (2 bytes more per element), the rotary tables stay
    fp32 (OlmoRotaryEmbedding does not cast them), and each layer's in-place clamp_ saves q, k and v as their
    projections return them, and each layer's silu its output (a fused SwiGLU kernel recomputes it); only the
    rotary tables are the class's own rather than the architecture's."""
    d, hd, f = 64, 16, 96
    assert activations("sdpa", "olmo") - activations("fused", "olmo") == (
        5 * S * d * 2 + 2 * S * hd * 4 + 2 * S * 3 * d * 2 + 2 * S * f * 2)
    assert beyond_llama("olmo", "sdpa") == 2 * S * hd * (4 - 2)
    assert beyond_llama("olmo", "eager", autocast=True) == 0       # fp32 tables under autocast in any class
    unclipped = estimate("sdpa", False, "olmo", "model.clip_qkv=null").memory.activations
    assert activations("sdpa", "olmo") - unclipped == 2 * S * 3 * d * 2


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_gemma_by_hand(implementation):
    """GemmaRMSNorm multiplies its fp32 normalized value by the fp32 vector 1 + weight before casting back: per
    norm (5), the normalized value in fp32 instead of bf16 and the vector; under autocast both classes' norms
    keep it in fp32, and only the vector is more."""
    d = 64
    assert beyond_llama("gemma", implementation) == 5 * (S * d * (4 - 2) + d * 4)
    assert beyond_llama("gemma", implementation, autocast=True) == 5 * d * 4


def test_phi3_by_hand():
    """Phi-3's rotary embedding concatenates q, so SDPA's output is head-major and o_proj saves a token-major
    copy of it (4 heads of 16, bf16, per layer); eager attention copies in every class. Under autocast its fused
    qkv_proj and gate_up_proj cast the normed input once each, where Llama's q, k, v and gate, up cast it five
    times in all."""
    d, q_width = 64, H * HD
    assert beyond_llama("phi3", "sdpa") == 2 * S * q_width * 2
    assert beyond_llama("phi3", "eager") == 0
    assert beyond_llama("phi3", "sdpa", autocast=True) == 2 * (S * q_width * 2 - 3 * S * d * 2)
    assert beyond_llama("phi3", "eager", autocast=True) == -2 * 3 * S * d * 2


def test_gemma2_by_hand():
    """Gemma2's modules beyond Llama's on the same 3-layer model: each of its 13 RMSNorms (4 per layer, the
    final one) saves its normalized value in fp32 (2 bytes more per element) and the fp32 1 + weight; eager
    attention soft-caps the scores (tanh saves a bf16 s × s per head) and the class its logits (s × vocab)."""
    gemma2, llama = (estimate("eager", False, "gemma2", f"training.modules={m}").memory.activations
                     for m in ("gemma2", "llama"))
    assert gemma2 - llama == 13 * (S * D * 2 + D * 4) + 3 * H * S * S * 2 + S * V * 2


def test_gemma3_by_hand():
    """Gemma3's modules beyond Llama's on the same 7-layer model: 29 d_model-wide RMSNorms and a q and a k
    norm per layer (4 and 2 heads of 16) saving their normalized value in fp32 and their 1 + weight, and a
    second pair of rotary tables for the sliding layers' own base."""
    gemma3, llama = (estimate("sdpa", False, "gemma3_text", f"training.modules={m}").memory.activations
                     for m in ("gemma3_text", "llama"))
    qk_norms = 7 * ((H + G) * S * HD * 2 + 2 * HD * 4)
    assert gemma3 - llama == 29 * (S * D * 2 + D * 4) + qk_norms + 2 * S * HD * 2


def test_sinks_by_hand():
    """Eager attention with sinks, per layer of the tiny Llama: the softmax over s + 1 columns in bf16 and the row
    maximum's int64 index per head, instead of the fp32 softmax and its bf16 copy over s columns."""
    sinks, plain = (activations_of(estimate("eager", False, "llama", f"model.attention_sinks={flag}"))
                    for flag in ("true", "false"))
    assert sinks - plain == 2 * (H * S * ((S + 1) * 2 + 8) - H * S * S * (4 + 2))


def test_gpt_oss_by_hand():
    """gpt-oss's modules beyond Llama's on the same 3 layers: 7 RMSNorms saving their normalized value in fp32,
    rotary tables half as wide; per MoE layer (s × 2 routed rows, 4 experts of width 32) a router saving the
    top-k indices and bf16 softmax instead of Mixtral's fp32 softmax over 4 experts, renormalised weights and
    their sum, bf16 gate weights per row instead of fp32, and a clamped SwiGLU saving 3 more 32-wide tensors per
    row."""
    oss, llama = (activations_of(estimate("eager", False, "gpt_oss", f"training.modules={m}"))
                  for m in ("gpt_oss", "llama"))
    k, experts, f, rows = 2, 4, 32, 2 * S
    router = S * k * (8 + 2) - S * experts * 4 - (S * k * (4 + 8) + S * 4)
    assert oss - llama == 7 * S * D * 2 - 2 * S * HD // 2 * 2 + 3 * (router + rows * (2 - 4) + rows * 3 * f * 2)


@pytest.mark.parametrize("implementation, autocast", [("sdpa", False), ("eager", False), ("sdpa", True)])
def test_llama4_by_hand(implementation, autocast):
    """Llama 4's modules beyond Llama's on the tiny llama4_text (4 layers: 0 to 2 chunked and rotated, 3 NoPE;
    1 and 3 MoE, 4 experts of width 48, top-1, a shared expert). Its L2 qk norm saves an fp32 copy of the
    rotated q (4 heads) and k (2 heads) of 16 and one fp32 rsqrt per token and head on each rotated layer; the
    NoPE layer's temperature tuning an fp32 scale per position; the rotary table is one complex64 per position
    and pair of features (as many bytes as bf16 cos and sin, half fp32's under autocast). Llama4TextMoe runs all
    4 experts on every token: 4·s rows, each saving the repeated input, its product with the bf16 score, the
    score and SwiGLU's 4 inner tensors, where grouped experts save s·top_k rows with an fp32 weight, 3 int64
    indices and 4 int32 offsets. Eager softmax runs in bf16 (2 bytes per pair and head, not 4 + 2), except under
    autocast; there the bmm experts copy their weights to bf16 and keep only the repeated input in fp32, where
    grouped experts run every row in fp32."""
    experts, f, rows = 4, 48, 4 * S
    llama4, llama = (activations_of(estimate(implementation, autocast, "llama4_text", f"training.modules={m}"))
                     for m in ("llama4_text", "llama"))
    qk_norm = 3 * S * ((H + G) * HD + H + G) * 4
    rotary = S * HD // 2 * 8 - 2 * S * HD * (4 if autocast else 2)
    moe = rows * (2 * D * 2 + 2 + 4 * f * 2) - S * (2 * D * 2 + 4 + 2 * 8 + 4 * f * 2 + 8) - experts * 4
    if autocast:
        moe += rows * D * (4 - 2) + experts * 3 * D * f * 2 - S * (2 * D + 4 * f) * (4 - 2)
    softmax = -4 * H * S * S * 4 if implementation == "eager" and not autocast else 0
    assert llama4 - llama == qk_norm + S * 4 + rotary + 2 * moe + softmax


def activations_of(result) -> int:
    return result.memory.activations


def test_moe_autocast_by_hand():
    """Mixtral under autocast beyond 16-bit training: as dense for norms, attention and the head, but its grouped
    expert matmuls run in fp32 (no autocast rule for them), so every routed row's gathered input and output
    (d_model each) and its four d_ff-wide inner tensors take 4 bytes instead of 2, and no expert weight is
    copied; the router casts its weight (4 experts × d_model) and its input (the block input already saved)."""
    k, experts = 2, 4
    plain, cast = estimate("sdpa", config="mixtral"), estimate("sdpa", autocast=True, config="mixtral")
    saved = 5 * S * D * 2 + 2 * 2 * S * D * 2 + 2 * S * HD * 2 + 2 * S * k * (2 * D + 4 * F) * (4 - 2)
    matrices = 2 * (D * H * HD + 2 * D * G * HD + H * HD * D + experts * D) + V * D
    assert cast.memory.activations - plain.memory.activations == saved + 2 * matrices


def components_of(config: str, *overrides: str) -> dict:
    return components(costplan.load_spec(TINY / f"{config}.json", list(overrides)))


# The tiny DeepSeek configs: 3 layers (the first dense), 4 heads, nope 16 + rope 8 = 24 wide q and k, v 16 wide,
# kv_lora_rank 16; V3 has q_lora_rank 24; 8 routed experts, top 2.
DQK, DV, C, R, CQ, EXPERTS = 24, 16, 16, 8, 24, 8


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("config", ["deepseek_v2", "deepseek_v3"])
def test_mla_by_hand(config, implementation):
    """DeepseekV2/V3Attention per layer: the normed input; kv_a_layernorm's fp32 copy, 1/rms and 16-bit output,
    and kv_b_proj's input (V3: the same for q_a_layernorm and q_b_proj); the core; o_proj's input. SDPA on CPU
    runs its math fallback (d_v 16 ≠ d_qk 24) in fp32: scaled q and k, probabilities, v. Eager: q, k, the fp32
    softmax and its bf16 copy, and v as a slice of kv_b_proj's whole output (4 heads × (16 + 16)). Once per
    model, the rotary tables of the rope width: V2's complex64 (S × 4 × 8 bytes), V3's cos and sin in bf16."""
    norm_and_input = lambda width: S * width * 4 + S * 4 + S * width * 2 + S * width * 2   # noqa: E731
    layer = S * D * 2 + norm_and_input(C) + S * H * DV * 2
    if config == "deepseek_v3":
        layer += norm_and_input(CQ)
    if implementation == "sdpa":
        layer += H * S * (2 * DQK + S + DV) * 4
    else:
        layer += 2 * H * S * DQK * 2 + H * S * S * (4 + 2) + H * S * (16 + DV) * 2
    tables = S * R // 2 * 8 if config == "deepseek_v2" else 2 * S * R * 2
    attention = components_of(config, f"training.implementation={implementation}")["attention"]
    assert attention.activations == 3 * layer + tables


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_mla_in_fp32_by_hand(implementation):
    """DeepSeek-V2's attention in fp32 training, per layer: kv_a_layernorm's upcast is no copy, so it saves its
    input, a slice holding all of kv_a_proj_with_mqa's output (16 + 8 wide), 1/rms and its output, which
    kv_b_proj saves too; SDPA's math fallback converts nothing and so saves what eager does: the scaled q and
    k, the probabilities and v as kv_b_proj's slice (4 heads × (16 + 16))."""
    layer = (S * D * 4 + S * (C + R) * 4 + S * 4 + 2 * S * C * 4 + S * H * DV * 4
             + 2 * H * S * DQK * 4 + H * S * S * 4 + H * S * (16 + DV) * 4)
    attention = components_of("deepseek_v2", f"training.implementation={implementation}",
                              "training.precision=fp32")["attention"]
    assert attention.activations == 3 * layer + S * R // 2 * 8


@pytest.mark.parametrize("autocast", [False, True])
def test_renormalisation_by_hand(autocast):
    """Mixtral's router renormalises its 2 fp32 top-k weights per token in place, saving their fp32 copy and
    their sum (2 MoE layers); without it (moe.renormalize false) neither. Qwen3-MoE's router casts the weights
    to the logits' dtype, 16 bits with or without autocast: each routed row's weight takes 2 bytes, not 4 (2
    MoE layers of its 3, 2 rows per token)."""
    on, off = (estimate("sdpa", autocast, "mixtral", f"model.moe.renormalize={flag}").memory.activations
               for flag in ("true", "false"))
    assert on - off == 2 * (S * 2 * 4 + S * 4)
    qwen, as_mixtral = (components_of("qwen3_moe", "training.implementation=sdpa",
                                      f"training.autocast={str(autocast).lower()}", f"training.modules={m}")["moe"]
                        for m in ("qwen3_moe", "mixtral"))
    assert qwen.activations - as_mixtral.activations == 2 * S * 2 * (2 - 4)


@pytest.mark.parametrize("config", ["deepseek_v2", "deepseek_v3"])
def test_deepseek_routers_by_hand(config):
    """Beyond Mixtral's router, per MoE layer (2): F.linear over fp32 copies of the block input and of the
    router weight (once per micro-batch). V2 also keeps its group mask (a byte per token and expert); that it
    does not renormalise its top-k weights is the import's moe.renormalize (test_renormalisation_by_hand)."""
    plain = components_of(config, "training.implementation=sdpa", "training.modules=mixtral")["moe"]
    own = components_of(config, "training.implementation=sdpa")["moe"]
    router = S * D * 4 + (S * EXPERTS if config == "deepseek_v2" else 0)
    assert own.activations - plain.activations == 2 * router
    assert own.shared_activations - plain.shared_activations == 2 * EXPERTS * D * 4


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
    equals_the_class(run, "llama", "eager", autocast, [f"--set={o}" for o in LONG])


@pytest.mark.parametrize("config, autocast", [
    (config, autocast) for config in ("llama", "mistral", "qwen2", "qwen3", "granite", "qwen2-layer-types",
                                      "olmo", "gemma", "phi3", "mixtral", "qwen3_moe", "olmoe", "qwen2_moe",
                                      "deepseek_v2", "deepseek_v3", "gpt2", "opt", "llama4_text")
    for autocast in (False, True)
])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_activations_equal_the_transformers_class(config, implementation, autocast, run):
    equals_the_class(run, config, implementation, autocast)


@pytest.mark.parametrize("config, implementation, autocast", [
    ("gemma2", "eager", False), ("gemma2", "eager", True),          # Gemma2 has no sdpa attention
    ("gemma3_text", "sdpa", False), ("gemma3_text", "sdpa", True), ("gemma3_text", "eager", False),
    ("gpt_oss", "eager", False), ("gpt_oss", "eager", True),         # no sdpa
])
def test_sandwich_and_sinks_equal_the_transformers_class(config, implementation, autocast, run):
    equals_the_class(run, config, implementation, autocast)


@pytest.mark.parametrize("autocast", [False, True])
def test_bloom_equals_its_eager_class(autocast, run):
    """BLOOM has no SDPA attention; its eager step peaks at the last softmax (seq_len 2048)."""
    equals_the_class(run, "bloom", "eager", autocast)


def equals_the_class(run, config: str, implementation: str, autocast: bool, more=()) -> None:  # noqa: ANN001
    """The estimate's activations and peak within 1% of the class's, checked as the CLI checks them."""
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
    ({"model.attention": "aft_full", "model.n_kv_heads": None},
     "the modules of aft_full attention are not modelled"),
    ({"model.moe.n_experts": 4, "model.moe.top_k": 2, "model.moe.capacity_factor": 1.25},
     "mixture-of-experts modules drop no tokens"),
    ({"training.recompute": "full"}, "with recompute full"),
    ({"model.block": "parallel"}, "parallel layers are modelled for the falcon, gpt_neox, gptj, phi modules; "
                                  "training.modules llama is not one of them"),
    ({"model.block": "parallel_shared_norm", "training.modules": "falcon"},
     "the falcon modules are modelled for block parallel, not parallel_shared_norm"),
])
def test_what_is_not_modelled_is_an_error(changes, named):
    overrides = ["training.implementation=eager", *(f"{k}={'null' if v is None else v}" for k, v in changes.items())]
    with pytest.raises(SpecError) as caught:
        costplan.load_spec(TINY / "llama.json", overrides)
    assert any(p.startswith("training.implementation: eager: ") and named in p for p in caught.value.problems), \
        caught.value.problems


def test_sinks_under_sdpa_are_an_error():
    with pytest.raises(SpecError) as caught:
        costplan.load_spec(TINY / "gpt_oss.json", ["training.implementation=sdpa"])
    assert any(p.startswith("training.implementation: sdpa: transformers' sdpa attention takes no sinks")
               for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("overrides, named", [
    (["training.autocast=true"], "training.autocast: modelled for transformers' modules"),
    (["training.autocast=true", "training.implementation=sdpa", "training.precision=fp32"],
     "training.autocast: casts fp32 weights to 16 bits; precision fp32 is not bf16 or fp16"),
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
